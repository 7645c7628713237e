"""Restore a backup made by `openchargeback backup` into this (fresh) site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from openchargeback.backup import BackupError, restore


class Command(BillingCommand):
    help = (
        "Restore a backup archive into this site's database (DATABASE_URL) and MEDIA_ROOT. "
        "Stop the web server and the workers first. Refuses a database with billing data "
        "or a non-empty MEDIA_ROOT unless --force."
    )

    takes_json = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="A .tar.gz written by `backup`.")
        parser.add_argument("--force", action="store_true", help="Replace existing data and files.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = restore(options["archive"], force=options["force"])
        except (BackupError, OSError) as exc:
            raise CommandError(f"nothing restored: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"Restored {result['file']} (made {result['created_at']}): "
                f"{result['database']} database and {result['files']:,} files. "
                "Run `openchargeback migrate` if this release is newer than the backup."
            )
