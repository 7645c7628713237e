"""Billing periods: list, open, close, reopen, finalize. Every change goes
through billing.services (same guards and audit trail as the admin);
``--dry-run`` makes the change and rolls it back."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from billing.models import BillingPeriod
from billing.periods import parse_period
from billing.selectors import period_summaries
from billing.services import (
    finalize_blockers,
    period_close,
    period_finalize,
    period_open,
    period_reopen,
)
from openchargeback.money import format_money, money_str
from openchargeback.text import count

CHANGES = ("open", "close", "reopen", "finalize")


class Command(BillingCommand):
    help = "Billing periods: list, open, close, reopen, finalize."
    takes_json = ("list", *CHANGES)
    json_help = {"list": "Print a JSON array."}
    json_help.update(dict.fromkeys(CHANGES, "Print the period as JSON."))
    takes_user = CHANGES
    takes_dry_run = CHANGES
    dry_run_help = "Make the change and roll it back: report, write nothing (no confirmation)."
    dry_run_rolls_back = True
    stealth_options = ("stdin",)  # tests (and callers) may answer the finalize prompt

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="List periods with counts and totals.")
        for name, text in (
            ("open", "Create an open period before its first import."),
            ("close", "Close an open period (no charges may be pending review)."),
            ("reopen", "Reopen a closed period (needs --reason)."),
            ("finalize", "Finalize a closed period: permanent (asks for the period again)."),
        ):
            cmd = sub.add_parser(name, help=text)
            cmd.add_argument("period", metavar="YYYY-MM")
            if name == "reopen":
                cmd.add_argument("--reason", default="", help="Why (required; recorded).")
            else:
                cmd.add_argument("--note", default="", help="Note appended to the period.")
            if name == "finalize":
                cmd.add_argument(
                    "--yes",
                    action="store_true",
                    help="Do not ask to type the period again (for cron and scripts; "
                    "needed when standard input is not a terminal).",
                )
            if name == "close":
                cmd.add_argument(
                    "--allow-pending",
                    action="store_true",
                    help="Close although charges are pending review (they stay out of "
                    "statements and journals); the override is recorded.",
                )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list(as_json=options["json"])
            return
        actor = self.actor(options)
        period = options["period"]
        if action == "open":
            obj = period_open(period=period, actor=actor, note=options["note"])
        elif action == "close":
            obj = period_close(
                period=period,
                actor=actor,
                note=options["note"],
                allow_pending=options["allow_pending"],
            )
        elif action == "reopen":
            obj = period_reopen(period=period, actor=actor, reason=options["reason"])
        else:
            if not (options["yes"] or options["dry_run"]):
                self._confirm_finalize(period, options.get("stdin") or sys.stdin)
            obj = period_finalize(period=period, actor=actor, note=options["note"])
        if options["json"]:
            self.stdout.write(json.dumps({"period": obj.period, "status": obj.status}))
        else:
            self.stdout.write(f"Period {obj.period} is {obj.status}.")

    def _confirm_finalize(self, period: str, stdin: IO[str]) -> None:
        """Ask for the period again before locking it for ever. Nothing is asked
        when finalizing would be refused anyway (period_finalize says why)."""
        period = parse_period(period)
        obj = BillingPeriod.objects.filter(period=period).first()
        if obj is None or obj.status != BillingPeriod.Status.CLOSED or finalize_blockers(obj):
            return
        if not stdin.isatty():
            raise CommandError(
                f"periods finalize {period}: standard input is not a terminal, so nobody can "
                "confirm; pass --yes to finalize without asking (cron, scripts)"
            )
        [summary] = [r for r in period_summaries() if r.period == period]
        rejected = f"; {count(summary.rejected, 'rejected charge')}" if summary.rejected else ""
        self.stderr.write(
            f"Finalizing {period} is permanent: its "
            f"{count(summary.charges - summary.rejected, 'charge')} "
            f"(billed {format_money(summary.billed_total)}{rejected}), statements and journal "
            "can never change again, and the period can never be reopened.\n"
            f"Type the period ({period}) to finalize it: ",
            style_func=lambda text: text,
            ending="",
        )
        self.stderr.flush()
        answer = stdin.readline().strip()
        if answer != period:
            shown = f"typed {answer!r}" if answer else "typed nothing"
            raise CommandError(f"{period} not finalized: you {shown}, not {period}")

    def _list(self, *, as_json: bool) -> None:

        rows = period_summaries()
        if as_json:
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
