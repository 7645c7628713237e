"""Review flagged charges: list, approve, reject, reset, fix attribution.
Changes go through billing.review (charges_review, and for `fix` the same
attribution fix as the admin action), audited per charge; re-running is safe.
``--dry-run`` reports and writes nothing (approve, reject and reset roll back)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from django.db.models import QuerySet
from django.db.models.functions import Abs

from billing import flags
from billing.blockers import approvable, left_blocked, with_reason
from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.exchange import missing_rate_reason, missing_rates
from billing.models import BillingPeriod, Charge
from billing.periods import parse_period
from billing.review import charges_fix_attribution_report, charges_review
from billing.services import normalise_slug
from openchargeback.money import format_money, money_str

CHANGES = ("approve", "reject", "reset", "fix")


class Command(BillingCommand):
    help = "Review charges: list, approve, reject, reset, fix attribution."
    takes_json = ("list", *CHANGES)
    json_help = "Print JSON."
    takes_user = CHANGES
    user_help = "Acting user (default: OS user)."
    takes_dry_run = CHANGES
    dry_run_help = "Report the changes; write nothing."
    dry_run_rolls_back = ("approve", "reject", "reset")  # fix has its own dry run

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name, text in (
            ("list", "List charges waiting for review (or in another state)."),
            ("approve", "Approve charges."),
            ("reject", "Reject charges (needs --note); they leave every total."),
            ("reset", "Put approved or rejected charges back to pending review."),
            (
                "fix",
                "Fix the PI, project and/or fund/org of charges (by --period: pending ones) "
                "and re-evaluate their flags; charges left without a flag are approved.",
            ),
        ):
            cmd = sub.add_parser(name, help=text)
            cmd.add_argument(
                "--id", type=int, nargs="+", dest="ids", metavar="N", help="Charge ids."
            )
            cmd.add_argument("--period", help="All matching charges of a period (YYYY-MM).")
            cmd.add_argument(
                "--reason",
                choices=[*flags.BIT, flags.NEEDS_ATTRIBUTION],
                help="Only charges flagged with this reason ('blocking': any attribution "
                "reason, those that cannot be approved as they are).",
            )
            cmd.add_argument("--source", help="Only charges of this source.")
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
            if name == "fix":
                cmd.add_argument(
                    "--sub-account",
                    dest="sub_account",
                    metavar="ID",
                    help="Only charges of this cloud SubAccountId (any letter case).",
                )
                cmd.add_argument(
                    "--pi", metavar="EMAIL", help="The PI to bill (an existing PI's email)."
                )
                cmd.add_argument(
                    "--create-pi",
                    action="store_true",
                    help="Create the PI named by --pi if nobody has that email (needs --pi-name).",
                )
                cmd.add_argument("--pi-name", dest="pi_name", default="", help="A new PI's name.")
                cmd.add_argument(
                    "--project", metavar="ID", help="The project to bill (an existing project id)."
                )
                cmd.add_argument(
                    "--create-project",
                    action="store_true",
                    help="Create the project named by --project if it does not exist.",
                )
                cmd.add_argument(
                    "--project-title",
                    dest="project_title",
                    default="",
                    help="A new project's title.",
                )
                cmd.add_argument(
                    "--fund-org",
                    dest="fund_org",
                    metavar="F",
                    help="The fund/org to charge ('' clears it).",
                )

    def handle(self, *args: Any, **options: Any) -> None:
        charges = self._select(options)
        if options["action"] == "list":
            self._list(charges, options)
            return
        if options["action"] == "fix":
            self._fix(charges, options)
            return
        # Charges whose attribution is wrong, and charges in another currency
        # without a rate, stay pending (and are named).
        stuck = missing = None
        if options["action"] == "approve":
            stuck = left_blocked(charges)
            missing = missing_rates(approvable(charges))
        changed = charges_review(
            charges=charges,
            action=options["action"],
            actor=self.actor(options),
            note=options["note"],
        )
        left = sum(m.charges for m in missing or [])
        if options["json"]:
            payload: dict[str, Any] = {"action": options["action"], "changed": changed}
            if left:  # charges in another currency without a rate, left pending
                payload["left_pending"] = left
            if stuck:  # charges whose attribution must be fixed first
                payload["left_blocked"] = stuck.charges
                payload["left_blocked_reasons"] = stuck.reasons
            self.stdout.write(json.dumps(payload))
        else:
            line = f"{options['action'].capitalize()}: {changed:,} charges changed."
            if stuck:
                line += f" Left pending: {stuck.text()}"
                if options["period"]:
                    line += (
                        f" (openchargeback review list --period {options['period']} "
                        f"--reason {flags.NEEDS_ATTRIBUTION})"
                    )
                line += "."
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
            period = parse_period(options["period"])
            if not BillingPeriod.objects.filter(period=period).exists():
                raise BillingError(f"period {period} does not exist")
            charges = charges.filter(period__period=period)
        if options["source"]:
            charges = charges.filter(source__slug=normalise_slug(options["source"]))
        if options.get("sub_account"):
            charges = charges.filter(sub_account_id__iexact=options["sub_account"].strip())
        if options["reason"]:
            charges = with_reason(charges, options["reason"])
        if action == "list":
            return charges.filter(review_state=options["state"])
        if action in {"approve", "reject", "fix"} and not options["ids"]:
            # By period, approve/reject/fix act on the review queue only.
            charges = charges.filter(review_state=Charge.ReviewState.PENDING)
        return charges

    def _fix(self, charges: QuerySet[Charge], options: dict[str, Any]) -> None:
        if not charges.exists():
            raise BillingError("no charges match; nothing to fix")
        report = charges_fix_attribution_report(
            charges=charges,
            actor=self.actor(options),
            pi_email=options["pi"],
            project_id=options["project"],
            fund_org=options["fund_org"],
            note=options["note"],
            dry_run=options["dry_run"],
            create_pi=options["create_pi"],
            pi_name=options["pi_name"],
            create_project=options["create_project"],
            project_title=options["project_title"],
        )
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "action": "fix",
                        "status": "dry_run" if options["dry_run"] else "fixed",
                        "changed": report.changed,
                        "flags_cleared": report.flags_cleared,
                        "approved": report.approved,
                        "cleared": report.cleared,
                    }
                )
            )
            return
        verb = "would change" if options["dry_run"] else "changed"
        self.stdout.write(
            ("Dry run, nothing written: " if options["dry_run"] else "")
            + f"Fix {verb} {report.changed:,} charge{'s' if report.changed != 1 else ''}: "
            f"{report.flags_cleared:,} flag reason{'s' if report.flags_cleared != 1 else ''} "
            f"cleared, {report.approved:,} now approved."
        )

    def _list(self, charges: QuerySet[Charge], options: dict[str, Any]) -> None:
        # Largest amounts first either way: a -$2.61 credit is not listed after every $0.01.
        rows = charges.select_related("period", "source", "pi", "project").order_by(
            Abs("billed_cost").desc(), "pk"
        )
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
            + (f" (showing {len(shown):,}, largest amounts first)" if len(shown) < total else "")
        )
        for c in shown:
            who = c.pi.email if c.pi else "-"
            self.stdout.write(
                f"#{c.pk:<9} {c.period.period} {c.source.slug:<10} {who:<32} "
                f"{format_money(c.billed_cost):>14}  {', '.join(c.flag_reasons)}"
            )
