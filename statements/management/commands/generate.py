"""Generate the statements of a closed period (one PDF per PI project)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from openchargeback.money import format_money, money_str
from statements.building import StatementData
from statements.models import Statement
from statements.services import GenerateResult, statements_generate


class Command(BillingCommand):
    help = (
        "Generate statements for a closed period: a new version for every PI project whose "
        "charges changed, nothing for the others."
    )

    takes_dry_run = True
    dry_run_help = "Report what would be generated; write nothing."
    takes_json = True
    takes_user = True
    user_help = "Who is acting (default: the OS user)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", "-p", required=True, help="YYYY-MM")
        parser.add_argument(
            "--sync",
            action="store_true",
            help="Render the PDFs now, in this process (cron, tests); default: queue jobs.",
        )
        parser.add_argument(
            "--allow-pending",
            action="store_true",
            help="Leave charges pending review out of the statements (reported).",
        )
        parser.add_argument(
            "--send",
            action="store_true",
            help="Then email each PI their statements not sent yet (one email per PI).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = statements_generate(
            period=options["period"],
            actor=self.actor(options),
            allow_pending=options["allow_pending"],
            dry_run=options["dry_run"],
            sync=options["sync"],
            send=options["send"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(result), indent=2))
        else:
            self._report(result)
        if result.emails_failed:
            raise CommandError(
                f"{result.emails_failed} of {len(result.emails)} emails failed and will be "
                "retried (`openchargeback emails list --period "
                f"{result.period} --status failed` shows why)"
            )

    def _report(self, result: GenerateResult) -> None:
        verb = "would generate" if result.dry_run else "generated"
        made = result.would_create if result.dry_run else result.created
        self.stdout.write(
            f"{result.period}: {verb} {len(made):,} statements, "
            f"{len(result.unchanged):,} unchanged, {len(result.withdrawn):,} withdrawn, "
            f"{result.skipped_empty:,} skipped as empty ($0.00 list and due, not generated)"
        )
        for item in made:
            row = _row(item)
            self.stdout.write(
                f"  {row['number'] or '(new)':<18} {row['pi_email']:<36} {row['project']:<28} "
                f"{format_money(row['_billed']):>14}  {row['pdf']}"
            )
        if result.pending_excluded:
            self.stdout.write(
                f"left out: {result.pending_excluded:,} charges pending review "
                f"({format_money(result.pending_billed)} billed)"
            )
        if result.send and not result.dry_run and not result.job_group:
            self.stdout.write(
                f"emails: {result.emails_sent:,} sent, {result.emails_failed:,} failed "
                f"({result.emails_queued:,} PIs had statements not yet emailed)"
            )
            for outcome in result.emails:
                if outcome.status == "failed":
                    self.stdout.write(f"  email {outcome.email_id} failed: {outcome.error}")
        if result.not_ready:
            self.stdout.write(f"not emailed, no PDF yet: {', '.join(result.not_ready)}")
        if result.job_group:
            what = "rendering and emailing" if result.send else "rendering"
            self.stdout.write(
                f"{what} queued as job group {result.job_group} (run `openchargeback "
                "qcluster` for the workers, or use --sync)"
            )


def _row(item: Statement | StatementData) -> dict[str, Any]:
    if isinstance(item, Statement):
        return {
            "number": item.number,
            "version": item.version,
            "pi_email": item.pi.email,
            "project": item.project.project_id if item.project else "",
            "total": money_str(item.billed_total),
            "list_total": money_str(item.list_total),
            "charges": item.charge_count,
            "status": item.status,
            "pdf": item.pdf.path if item.pdf else "",
            "_billed": item.billed_total,
        }
    return {
        "number": "",
        "version": None,
        "pi_email": item.pi_email,
        "project": item.project_id,
        "total": money_str(item.billed_total),
        "list_total": money_str(item.list_total),
        "charges": item.charge_count,
        "status": "planned",
        "pdf": "",
        "_billed": item.billed_total,
    }


def _as_json(result: GenerateResult) -> dict[str, Any]:
    made = result.would_create if result.dry_run else result.created
    rows = [{k: v for k, v in _row(item).items() if not k.startswith("_")} for item in made]
    return {
        "period": result.period,
        "dry_run": result.dry_run,
        "statements": rows,
        "unchanged": [s.number for s in result.unchanged],
        "withdrawn": [s.number for s in result.withdrawn],
        "skipped_empty": result.skipped_empty,
        "pending_excluded": result.pending_excluded,
        "pending_billed": money_str(result.pending_billed),
        "job_group": result.job_group,
        "emails_sent": result.emails_sent,
        "emails_failed": result.emails_failed,
        "emails": [{"id": o.email_id, "status": o.status, "error": o.error} for o in result.emails],
    }
