"""Back up the database and the kept files into one archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from billing.commands import BillingCommand
from openchargeback.backup import BackupError, backup


class Command(BillingCommand):
    help = (
        "Write a backup (database + statement PDFs, journals and import files) to one "
        ".tar.gz; SQLite is copied with its online backup API, PostgreSQL with pg_dump."
    )

    takes_json = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            "-o",
            type=Path,
            help="Archive to write, or a folder for openchargeback-YYYYmmddTHHMMSS.tar.gz "
            "(default: the current folder).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path = options["output"] or Path.cwd()
        if output.is_dir() or not output.name.endswith(".tar.gz"):
            stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
            output = output / f"openchargeback-{stamp}.tar.gz"
        try:
            result = backup(output)
        except (BackupError, OSError) as exc:
            raise CommandError(f"backup not written: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
        else:
            self.stdout.write(
                f"Backup written: {result.path} ({result.database} database, "
                f"{result.files:,} files, {result.bytes:,} bytes)."
            )
