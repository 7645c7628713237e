"""Import or export the account mappings (Slurm accounts, storage quotas and
cloud accounts -> project, PI, fund/org) as CSV, and apply the cloud mappings
to pending charges of open periods. Importing the same file or applying the
same mappings again changes nothing, so re-running is safe."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from billing.services import source_for_slug
from ingest.focus.cloud_accounts import account_mappings_apply
from ingest.usage.mapping_files import account_mapping_export, account_mapping_import
from ingest.usage.mappings import CLOUD_COLUMNS, MAPPING_COLUMNS


class Command(BillingCommand):
    help = (
        "Account mappings (Slurm accounts, storage quotas, cloud accounts -> projects): "
        "import, export, apply."
    )

    takes_dry_run = ("import", "apply")
    dry_run_help = {"import": "Check and report; write nothing.", "apply": "Report; write nothing."}
    takes_json = ("import", "apply")
    takes_user = ("import", "apply")

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        columns = ",".join(MAPPING_COLUMNS)
        imp = sub.add_parser(
            "import",
            help=f"Create or update mappings from a CSV file with the header {columns} "
            f"(cloud mappings add {','.join(CLOUD_COLUMNS)}).",
        )
        imp.add_argument("file", metavar="FILE", help="The CSV file.")
        exp = sub.add_parser("export", help=f"Write every mapping as CSV ({columns}).")
        exp.add_argument(
            "--output", "-o", metavar="FILE", help="Write to FILE (default: standard output)."
        )
        app = sub.add_parser(
            "apply",
            help="Attribute pending charges of open periods by the cloud mappings (audited "
            "per charge; charges left without a flag are approved).",
        )
        app.add_argument("--period", help="Only this open period (YYYY-MM).")
        app.add_argument("--source", help="Only this source.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options["output"])
            return
        if options["action"] == "apply":
            self._apply(options)
            return
        result = account_mapping_import(
            path=Path(options["file"]), actor=self.actor(options), dry_run=options["dry_run"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
        else:
            self.stdout.write(result.summary())

    def _apply(self, options: dict[str, Any]) -> None:
        source = source_for_slug(options["source"]) if options["source"] else None
        result = account_mappings_apply(
            actor=self.actor(options),
            period=options["period"],
            source=source,
            dry_run=options["dry_run"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
        else:
            self.stdout.write(result.summary())

    def _export(self, output: str | None) -> None:
        text = account_mapping_export()
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_bytes(text.encode("utf-8"))  # CRLF and quoted CRs as written
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        rows = len(list(csv.reader(io.StringIO(text, newline="")))) - 1  # less the header
        self.stdout.write(f"Wrote {rows:,} mapping{'s' if rows != 1 else ''} to {output}.")
