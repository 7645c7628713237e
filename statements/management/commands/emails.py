"""Statement emails: list, send, retry, resend, resolve.

Every change goes through statements.emailing (the same claim-before-send
rules and audit trail as the admin). ``--dry-run`` says which emails would go
out and sends nothing: the emails are queued and rolled back, never sent.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.periods import parse_period
from statements import emailing, selectors
from statements.models import EmailLog, Statement


class Command(BillingCommand):
    help = "Statement emails: list, send, retry, resend, resolve."
    takes_json = ("list", "send", "retry", "resend")
    json_help = {
        "list": "Print a JSON array.",
        **dict.fromkeys(("send", "retry", "resend"), "Print one JSON object."),
    }
    takes_user = ("send", "resend", "resolve")
    takes_dry_run = ("send", "retry", "resend", "resolve")
    dry_run_help = "Report which emails would go out; record and send nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="The emails of a period and their state.")
        listing.add_argument("--period", "-p", required=True, help="YYYY-MM")
        listing.add_argument(
            "--status",
            choices=[*EmailLog.Status.values, "stuck"],
            help="Only emails in this state (stuck: claimed too long ago).",
        )

        send = sub.add_parser(
            "send", help="Email each PI their current statements not sent yet, now."
        )
        send.add_argument("--period", "-p", required=True, help="YYYY-MM")

        retry = sub.add_parser(
            "retry", help="Send every email that is due: new ones and failures whose wait is over."
        )
        retry.add_argument("--period", "-p", help="Only this period (YYYY-MM).")

        resend = sub.add_parser(
            "resend", help="Send a PI a second copy of statements already emailed."
        )
        resend.add_argument("--period", "-p", required=True, help="YYYY-MM")
        resend.add_argument("--pi", required=True, help="The PI's email address.")
        resend.add_argument("--project", help="Only this project's statement (project id).")
        resend.add_argument("--reason", default="", help="Why (required; recorded).")

        resolve = sub.add_parser(
            "resolve", help="Decide a stuck email: it was sent, or send it again."
        )
        resolve.add_argument("id", type=int, help="Email id (see `emails list`).")
        resolve.add_argument("--as", dest="outcome", required=True, choices=["sent", "retry"])
        resolve.add_argument("--note", default="", help="How you know (required; recorded).")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _list(self, options: dict[str, Any]) -> None:
        emails = EmailLog.objects.filter(period__period=parse_period(options["period"]))
        status = options["status"]
        if status == "stuck":
            emails = selectors.stuck(emails)
        elif status:
            emails = emails.filter(status=status)
        rows: list[dict[str, Any]] = [
            {
                "id": e.pk,
                "to": e.to,
                "status": e.status,
                "resend": e.resend,
                "attempts": e.attempts,
                "statements": sorted(i.statement.number for i in e.items.all()),
                "sent_at": e.sent_at.isoformat() if e.sent_at else None,
                "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None,
                "error": e.error,
            }
            for e in emails.order_by("id").prefetch_related("items__statement")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            line = (
                f"{r['id']:>6}  {r['status']:<8} {r['to']:<36} "
                f"{', '.join(r['statements'])}  attempts={r['attempts']}"
            )
            if r["error"]:
                line += f"  error: {r['error']}"
            self.stdout.write(line)
        self.stdout.write(f"{len(rows):,} emails")

    def _send(self, options: dict[str, Any]) -> None:
        if options["dry_run"]:
            with self.rolled_back():
                queued = emailing.emails_queue(period=options["period"], actor=self.actor(options))
                self._would_send(queued.emails, options, not_ready=queued.not_ready)
            return
        queued = emailing.emails_queue(period=options["period"], actor=self.actor(options))
        outcomes = [emailing.email_send(e.pk) for e in queued.emails]
        self._outcomes(outcomes, options, not_ready=queued.not_ready)

    def _retry(self, options: dict[str, Any]) -> None:
        if options["dry_run"]:
            emails = selectors.due()
            if options["period"]:
                emails = emails.filter(period__period=parse_period(options["period"]))
            self._would_send(list(emails.order_by("id")), options, not_ready=[])
            return
        self._outcomes(emailing.emails_send_due(period=options["period"]), options, not_ready=[])

    def _resend(self, options: dict[str, Any]) -> None:
        statements = Statement.objects.filter(
            period__period=parse_period(options["period"]),
            pi__email__iexact=options["pi"],
            superseded_at=None,
        )
        if options["project"]:
            statements = statements.filter(project__project_id=options["project"])
        if not statements.exists():
            raise BillingError(
                f"no current statement of {options['period']} for {options['pi']}"
                + (f" and project {options['project']}" if options["project"] else "")
            )
        if options["dry_run"]:
            with self.rolled_back():
                emails = emailing.emails_resend(
                    statements=statements, actor=self.actor(options), reason=options["reason"]
                )
                self._would_send(emails, options, not_ready=[])
            return
        emails = emailing.emails_resend(
            statements=statements, actor=self.actor(options), reason=options["reason"]
        )
        self._outcomes([emailing.email_send(e.pk) for e in emails], options, not_ready=[])

    def _resolve(self, options: dict[str, Any]) -> None:
        email = EmailLog.objects.filter(pk=options["id"]).first()
        if email is None:
            raise BillingError(f"no email with id {options['id']}")
        if options["dry_run"]:
            with self.rolled_back():
                emailing.emails_resolve(
                    email=email,
                    actor=self.actor(options),
                    outcome=options["outcome"],
                    note=options["note"],
                )
            what = "send it again" if options["outcome"] == "retry" else "record it as sent"
            self.stdout.write(
                f"Dry run, nothing recorded or sent: email {email.pk} to {email.to}: would {what}"
            )
            return
        email = emailing.emails_resolve(
            email=email,
            actor=self.actor(options),
            outcome=options["outcome"],
            note=options["note"],
        )
        if options["outcome"] == "retry":
            outcome = emailing.email_send(email.pk)
            self.stdout.write(f"email {email.pk} to {email.to}: {outcome.status} {outcome.error}")
        else:
            self.stdout.write(f"email {email.pk} to {email.to} recorded as sent")

    def _would_send(
        self, emails: list[EmailLog], options: dict[str, Any], *, not_ready: list[str]
    ) -> None:
        """What a dry run reports: the emails that would go out (none did)."""
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "dry_run": True,
                        "would_send": [e.to for e in emails],
                        "not_ready": not_ready,
                    },
                    indent=2,
                )
            )
            return
        self.stdout.write(f"Dry run, nothing recorded or sent: would send {len(emails):,} emails")
        for e in emails:
            self.stdout.write(f"  to {e.to}")
        if not_ready:
            self.stdout.write(f"not emailed, no PDF yet: {', '.join(not_ready)}")

    def _outcomes(
        self, outcomes: list[emailing.SendOutcome], options: dict[str, Any], *, not_ready: list[str]
    ) -> None:
        sent = sum(1 for o in outcomes if o.status == "sent")
        failed = [o for o in outcomes if o.status == "failed"]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "emails_sent": sent,
                        "emails_failed": len(failed),
                        "not_ready": not_ready,
                        "emails": [
                            {"id": o.email_id, "status": o.status, "error": o.error}
                            for o in outcomes
                        ],
                    },
                    indent=2,
                )
            )
        else:
            self.stdout.write(f"{sent:,} emails sent, {len(failed):,} failed")
            for o in failed:
                when = (
                    f"; next try {o.next_attempt_at:%Y-%m-%d %H:%M} UTC"
                    if o.next_attempt_at
                    else ""
                )
                self.stdout.write(f"  email {o.email_id}: {o.error}{when}")
            if not_ready:
                self.stdout.write(f"not emailed, no PDF yet: {', '.join(not_ready)}")
        if failed:
            raise CommandError(f"{len(failed)} emails failed (they are retried with backoff)")
