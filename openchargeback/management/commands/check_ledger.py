"""Verify a period's ledger: debits = credits = statement totals, each charge once."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from openchargeback.ledger import check_ledger


class Command(BillingCommand):
    help = (
        "Check a period: Σ journal debits = Σ credits = Σ statement totals, and every "
        "approved charge on exactly one current statement. Exit 1 with the differences."
    )

    takes_json = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", "-p", required=True, help="YYYY-MM")

    def handle(self, *args: Any, **options: Any) -> None:
        result = check_ledger(period=options["period"])
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
