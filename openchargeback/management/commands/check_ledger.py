"""Verify a period's ledger: debits = credits = statement totals, each charge once."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.errors import BillingError
from openchargeback.ledger import check_ledger


class Command(BaseCommand):
    help = (
        "Check a period: Σ journal debits = Σ credits = Σ statement totals, and every "
        "approved charge on exactly one current statement. Exit 1 with the differences."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", "-p", required=True, help="YYYY-MM")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = check_ledger(period=options["period"])
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        else:
            data = result.as_dict()
            self.stdout.write(
                f"{data['period']}: debits {data['debit_total']}, credits "
                f"{data['credit_total']}, charged to fund/orgs {data['charged_total']}, "
                f"statements {data['statement_total']}; "
                f"{data['charges']:,} approved charges, {data['charges_on_statements']:,} "
                "on current statements"
            )
        if result.problems:
            raise CommandError("; ".join(result.problems))
        if not options["json"]:
            self.stdout.write("ledger balanced")
