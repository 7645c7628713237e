"""What ``slurm-usage`` and ``storage-usage`` share: the output options, the
what-if table, importing, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from billing.periods import parse_period
from billing.services import source_for_slug
from ingest.focus.errors import IngestError
from ingest.management.commands.ingest import import_summary
from ingest.usage.converters import Conversion, conversion_import
from openchargeback.money import format_money, money_str


class ConverterCommand(BillingCommand):
    """Subclasses add their input options and implement :meth:`convert`."""

    takes_dry_run = True
    dry_run_help = "With --ingest: report what the import would do; write nothing."
    takes_json = True
    takes_user = True

    default_source = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", "-p", required=True, help="The month, YYYY-MM.")
        out = parser.add_argument_group("what to do with the priced usage (one at least)")
        out.add_argument("--output", "-o", metavar="FILE", help="Write a FOCUS CSV file.")
        out.add_argument(
            "--ingest",
            action="store_true",
            help="Import it as the source's charges for the month (re-running replaces the "
            "month's rows; review decisions on unchanged rows are kept).",
        )
        out.add_argument(
            "--what-if",
            action="store_true",
            help="Print the totals per PI and project (list, subsidy, billed); write nothing.",
        )
        parser.add_argument(
            "--source",
            "-s",
            default=self.default_source,
            help=f"Source slug for --ingest (default: {self.default_source}).",
        )

    def convert(self, period: str, options: dict[str, Any]) -> Conversion:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        what_if, output, ingest = options["what_if"], options["output"], options["ingest"]
        if not (what_if or output or ingest):
            raise CommandError("say what to do: --output FILE, --ingest or --what-if")
        if what_if and (output or ingest):
            raise CommandError("--what-if writes nothing; use it without --output and --ingest")
        if options["dry_run"] and not ingest:
            raise CommandError("--dry-run goes with --ingest")
        period = parse_period(options["period"])
        source = source_for_slug(options["source"]) if ingest else None
        conversion = self.convert(period, options)
        report: dict[str, Any] = {"conversion": conversion.as_dict()}
        if output:
            conversion.write(Path(output))
            report["output"] = output
        if ingest and not conversion.rows:
            raise IngestError(
                f"{conversion.input_name}: no billable usage in {period} "
                f"({self.describe(conversion)}); nothing was imported"
            )
        if ingest:
            assert source is not None
            result = conversion_import(
                conversion=conversion,
                source=source,
                actor=self.actor(options),
                dry_run=options["dry_run"],
            )
            report["import"] = result.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(self.headline(conversion))
        if what_if:
            self.stdout.write(owner_table(conversion))
        if output:
            self.stdout.write(f"wrote {len(conversion.rows):,} FOCUS rows to {output}")
        if ingest:
            self.stdout.write(import_summary(result))

    def headline(self, conversion: Conversion) -> str:
        """One line: what was read and what it costs."""
        text = (
            f"{conversion.input_name}: {conversion.period}, {self.describe(conversion)}; "
            f"list {format_money(conversion.list_cost)}, "
            f"subsidy {format_money(conversion.list_cost - conversion.billed_cost)}, "
            f"billed {format_money(conversion.billed_cost)} "
            f"(exact {money_str(conversion.billed_cost)})"
        )
        if conversion.unmapped:
            shown = ", ".join(conversion.unmapped[:5])
            more = len(conversion.unmapped) - 5
            text += (
                f"; {len(conversion.unmapped)} unmapped "
                f"({shown}{f' and {more} more' if more > 0 else ''}), flagged for review"
            )
        return text

    def describe(self, conversion: Conversion) -> str:
        raise NotImplementedError


def owner_table(conversion: Conversion) -> str:
    """The what-if table: PI, project, list, subsidy, billed; a total line."""
    header = ("PI", "Project", "List", "Subsidy", "Billed")
    lines: list[tuple[str, ...]] = []
    for total in conversion.by_owner():
        pi = total.pi_email or "(unmapped)"
        project = total.project_id or total.account
        lines.append(
            (
                pi,
                project,
                format_money(total.list_cost),
                format_money(total.subsidy),
                format_money(total.billed_cost),
            )
        )
    lines.append(
        (
            "Total",
            "",
            format_money(conversion.list_cost),
            format_money(conversion.list_cost - conversion.billed_cost),
            format_money(conversion.billed_cost),
        )
    )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(5)]

    def fmt(row: tuple[str, ...]) -> str:
        left = [row[i].ljust(widths[i]) for i in range(2)]
        right = [row[i].rjust(widths[i]) for i in range(2, 5)]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(row) for row in lines[:-1]), rule, fmt(lines[-1])])
