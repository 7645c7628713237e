"""Show one PI's charges in a period, by project, source and service. Read-only."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from billing.models import PI, BillingPeriod
from billing.periods import parse_period
from billing.selectors import pi_period_lines
from openchargeback.money import format_money, money_str


class Command(BillingCommand):
    help = "Show a PI's charges in a period (rejected charges left out)."
    takes_json = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pi_email", metavar="PI_EMAIL")
        parser.add_argument("--period", "-p", required=True, help="YYYY-MM")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["pi_email"].strip().lower()
        period = parse_period(options["period"])
        pi = PI.objects.filter(email=email).first()
        if pi is None:
            raise CommandError(f"no PI with email {email}")
        if not BillingPeriod.objects.filter(period=period).exists():
            raise CommandError(f"period {period} does not exist")
        lines = pi_period_lines(email=email, period=period)
        total_list = sum((line.list_total for line in lines), Decimal("0.00"))
        total_billed = sum((line.billed_total for line in lines), Decimal("0.00"))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "pi_email": pi.email,
                        "pi_name": pi.name,
                        "period": period,
                        "list_total": money_str(total_list),
                        "billed_total": money_str(total_billed),
                        "lines": [
                            {
                                "project": line.project,
                                "source": line.source,
                                "service": line.service,
                                "charges": line.charges,
                                "pending": line.pending,
                                "list_total": money_str(line.list_total),
                                "discount": money_str(line.discount),
                                "billed_total": money_str(line.billed_total),
                            }
                            for line in lines
                        ],
                    }
                )
            )
            return
        self.stdout.write(f"{pi} — {period}")
        if not lines:
            self.stdout.write("No charges.")
            return
        self.stdout.write(
            f"{'PROJECT':<24} {'SOURCE':<10} {'SERVICE':<30} {'LIST':>14} {'BILLED':>14} PENDING"
        )
        for line in lines:
            self.stdout.write(
                f"{(line.project or '-')[:24]:<24} {line.source[:10]:<10} "
                f"{line.service[:30]:<30} {format_money(line.list_total):>14} "
                f"{format_money(line.billed_total):>14} {line.pending or ''}"
            )
        self.stdout.write(
            f"{'TOTAL':<66} {format_money(total_list):>14} {format_money(total_billed):>14}"
        )
