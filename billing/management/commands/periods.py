"""List billing periods with their charge counts and exact totals. Read-only."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing.selectors import period_summaries
from openchargeback.money import format_money, money_str


class Command(BaseCommand):
    help = "Billing periods: list (status, charges, pending, billed total)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="List periods with counts and totals.")
        listing.add_argument("--json", action="store_true", help="Print a JSON array.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = period_summaries()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    [
                        {
                            "period": r.period,
                            "status": r.status,
                            "charges": r.charges,
                            "pending": r.pending,
                            "rejected": r.rejected,
                            "billed_total": money_str(r.billed_total),
                            "list_total": money_str(r.list_total),
                        }
                        for r in rows
                    ]
                )
            )
            return
        if not rows:
            self.stdout.write("No billing periods yet: import a FOCUS file first.")
            return
        self.stdout.write(
            f"{'PERIOD':<8} {'STATUS':<10} {'CHARGES':>9} {'PENDING':>8} {'LIST':>16} "
            f"{'BILLED':>16}"
        )
        for r in rows:
            self.stdout.write(
                f"{r.period:<8} {r.status:<10} {r.charges:>9,} {r.pending:>8,} "
                f"{format_money(r.list_total):>16} {format_money(r.billed_total):>16}"
            )
