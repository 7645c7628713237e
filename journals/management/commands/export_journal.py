"""Export a period's journal: detail, summary, gl or an institution layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from billing.commands import BillingCommand
from journals.services import journal_export


class Command(BillingCommand):
    help = (
        "Export a closed period's general-ledger journal as CSV or XLSX "
        "(also: openchargeback export-journal)."
    )

    takes_json = True
    takes_user = True
    takes_dry_run = True
    dry_run_help = "Build the journal and report its totals; write and record nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", "-p", required=True, help="YYYY-MM")
        parser.add_argument(
            "--format",
            "-f",
            default="gl",
            help="detail, summary, gl (default) or a template's slug (banner, workday, ...).",
        )
        parser.add_argument("--xlsx", action="store_true", help="An Excel workbook, not CSV.")
        parser.add_argument("--output", "-o", type=Path, help="Also write the file here.")
        parser.add_argument(
            "--include-pending",
            action="store_true",
            help="Include charges pending review (recorded on the export).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        export = journal_export(
            period=options["period"],
            format=options["format"],
            actor=self.actor(options),
            xlsx=options["xlsx"],
            include_pending=options["include_pending"],
            output=options["output"],
            dry_run=options["dry_run"],
        )
        data = export.as_dict()
        if options["dry_run"]:
            self._dry_run(data, options)
            return
        if options["output"]:
            data["file"] = str(options["output"])
        data["stored"] = export.file.path
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(
            f"{data['period']} {data['format']}: {data['lines']:,} lines, "
            f"debits {data['debit_total']}, credits {data['credit_total']}, "
            f"{data['charges']:,} charges ({data['cost_basis'] or 'billed cost'}) -> {data['file']}"
        )

    def _dry_run(self, data: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps({**data, "dry_run": True}, indent=2))
            return
        self.stdout.write(
            f"Dry run, nothing written: {data['period']} {data['format']}: "
            f"{data['lines']:,} lines, debits {data['debit_total']}, credits "
            f"{data['credit_total']}, {data['charges']:,} charges "
            f"({data['cost_basis'] or 'billed cost'}) would be exported"
            + (f" and copied to {options['output']}" if options["output"] else "")
        )
