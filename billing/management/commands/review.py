"""Review flagged charges: list, approve, reject, reset. Changes go through
billing.services.charges_review (per-charge audit); re-running is safe."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import F, QuerySet

from billing import flags
from billing.models import BillingPeriod, Charge
from billing.services import (
    Actor,
    BillingError,
    charges_review,
    missing_rate_reason,
    missing_rates,
    normalise_slug,
    validate_period,
)
from openchargeback.money import format_money, money_str


class Command(BaseCommand):
    help = "Review charges: list, approve, reject, reset."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name, text in (
            ("list", "List charges waiting for review (or in another state)."),
            ("approve", "Approve charges."),
            ("reject", "Reject charges (needs --note); they leave every total."),
            ("reset", "Put approved or rejected charges back to pending review."),
        ):
            cmd = sub.add_parser(name, help=text)
            cmd.add_argument(
                "--id", type=int, nargs="+", dest="ids", metavar="N", help="Charge ids."
            )
            cmd.add_argument("--period", help="All matching charges of a period (YYYY-MM).")
            cmd.add_argument(
                "--reason", choices=list(flags.BIT), help="Only charges flagged with this reason."
            )
            cmd.add_argument("--source", help="Only charges of this source.")
            cmd.add_argument("--json", action="store_true", help="Print JSON.")
            if name == "list":
                cmd.add_argument(
                    "--state",
                    choices=[s.value for s in Charge.ReviewState],
                    default=Charge.ReviewState.PENDING,
                    help="Review state to list (default: pending).",
                )
                cmd.add_argument("--limit", type=int, default=50, help="Rows to print (0: all).")
            else:
                cmd.add_argument("--note", default="", help="Why; stored on each charge.")
                cmd.add_argument("--user", help="Acting user (default: OS user).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            charges = self._select(options)
            if options["action"] == "list":
                self._list(charges, options)
                return
            # Charges in another currency without a rate stay pending (and are named).
            missing = missing_rates(charges) if options["action"] == "approve" else []
            changed = charges_review(
                charges=charges,
                action=options["action"],
                actor=Actor.from_cli(options.get("user")),
                note=options["note"],
            )
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        left = sum(m.charges for m in missing)
        if options["json"]:
            payload: dict[str, Any] = {"action": options["action"], "changed": changed}
            if left:  # charges in another currency without a rate, left pending
                payload["left_pending"] = left
            self.stdout.write(json.dumps(payload))
        else:
            line = f"{options['action'].capitalize()}: {changed:,} charges changed."
            if missing:
                line += f" Left pending: {missing_rate_reason(missing)}."
            self.stdout.write(line)

    def _select(self, options: dict[str, Any]) -> QuerySet[Charge]:
        action = options["action"]
        if not options["ids"] and not options["period"]:
            raise BillingError("say which charges: --id N ... or --period YYYY-MM")
        charges = Charge.objects.all()
        if options["ids"]:
            charges = charges.filter(pk__in=options["ids"])
            missing = set(options["ids"]) - set(charges.values_list("pk", flat=True))
            if missing:
                raise BillingError(f"no charge with id {', '.join(map(str, sorted(missing)))}")
        if options["period"]:
            period = validate_period(options["period"])
            if not BillingPeriod.objects.filter(period=period).exists():
                raise BillingError(f"period {period} does not exist")
            charges = charges.filter(period__period=period)
        if options["source"]:
            charges = charges.filter(source__slug=normalise_slug(options["source"]))
        if options["reason"]:
            bit = flags.BIT[options["reason"]]
            charges = charges.alias(hit=F("flags").bitand(bit)).filter(hit=bit)
        if action == "list":
            return charges.filter(review_state=options["state"])
        if action in {"approve", "reject"} and not options["ids"]:
            # By period, approve/reject act on the review queue only.
            charges = charges.filter(review_state=Charge.ReviewState.PENDING)
        return charges

    def _list(self, charges: QuerySet[Charge], options: dict[str, Any]) -> None:
        rows = charges.select_related("period", "source", "pi", "project").order_by("-billed_cost")
        limit = options["limit"]
        shown = list(rows[:limit] if limit else rows)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    [
                        {
                            "id": c.pk,
                            "period": c.period.period,
                            "source": c.source.slug,
                            "pi_email": c.pi.email if c.pi else "",
                            "project": c.project.project_id if c.project else "",
                            "fund_org": c.fund_org,
                            "service": c.service_name,
                            "billed_cost": money_str(c.billed_cost),
                            "reasons": c.flag_reasons,
                            "state": c.review_state,
                        }
                        for c in shown
                    ]
                )
            )
            return
        total = charges.count()
        self.stdout.write(
            f"{total:,} charges {options['state']}"
            + (f" (showing {len(shown):,}, largest first)" if len(shown) < total else "")
        )
        for c in shown:
            who = c.pi.email if c.pi else "-"
            self.stdout.write(
                f"#{c.pk:<9} {c.period.period} {c.source.slug:<10} {who:<32} "
                f"{format_money(c.billed_cost):>14}  {', '.join(c.flag_reasons)}"
            )
