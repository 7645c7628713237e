"""Generate and send the statements of closed months that nothing blocks; for
sites that send as soon as review is done (OPENCHARGEBACK_AUTO_SEND).
``--dry-run`` plans each period's statements; nothing is written, rendered or sent."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.models import BillingPeriod, Charge
from statements.services import statements_generate


class Command(BillingCommand):
    help = (
        "For every closed (not finalized) period with nothing pending review: generate the "
        "statements whose charges changed and email every PI not emailed yet. Safe to re-run: "
        "nothing unchanged is generated or sent twice. Periods that cannot be billed yet are "
        "listed and skipped."
    )

    takes_json = True
    json_help = "Print a JSON array."
    takes_user = True
    takes_dry_run = True
    dry_run_help = "Report what would be generated; write, render and send nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sync", action="store_true", help="Render and send here, not in the workers."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        report: list[dict[str, Any]] = []
        closed = BillingPeriod.objects.filter(status=BillingPeriod.Status.CLOSED).order_by("period")
        for period in closed:
            if period.charges.filter(review_state=Charge.ReviewState.PENDING).exists():
                report.append({"period": period.period, "skipped": "charges pending review"})
                continue
            try:
                result = statements_generate(
                    period=period.period,
                    actor=actor,
                    sync=options["sync"],
                    send=True,
                    dry_run=options["dry_run"],
                )
            except BillingError as exc:
                report.append({"period": period.period, "skipped": str(exc)})
                continue
            if options["dry_run"]:
                report.append({"period": period.period, "would_generate": len(result.would_create)})
                continue
            report.append(
                {
                    "period": period.period,
                    "generated": len(result.created),
                    "emails_sent": result.emails_sent,
                    "emails_failed": result.emails_failed,
                    "job_group": result.job_group,
                }
            )
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        if not report:
            self.stdout.write("No closed period to send.")
        for line in report:
            if "skipped" in line:
                self.stdout.write(f"{line['period']}: skipped, {line['skipped']}.")
            elif "would_generate" in line:
                self.stdout.write(
                    f"{line['period']}: would generate {line['would_generate']} statements "
                    "and email every PI not emailed yet."
                )
            else:
                self.stdout.write(
                    f"{line['period']}: {line['generated']} statements generated, "
                    f"{line['emails_sent']} emails sent, {line['emails_failed']} failed"
                    + (f" (jobs: {line['job_group']})" if line["job_group"] else "")
                    + "."
                )
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing generated, written or sent.")
