"""django-q2 task entry points: small, id-based, safe to run twice.

Queued and scheduled jobs name these functions by dotted path
(``statements.tasks.render_statement``), so they keep their names whatever
the services they call are named."""

from __future__ import annotations

from billing.audit import Actor
from openchargeback.logging import logged_job
from statements import emailing, selectors, services


@logged_job
def render_statement(statement_id: int) -> None:
    services.statement_render(statement_id)


@logged_job
def render_and_email(
    period: str, pi_id: int, statement_ids: list[int], actor: str, user_id: int | None = None
) -> None:
    """One PI: render their new statements, then email everything of theirs not yet sent."""
    for statement_id in statement_ids:
        services.statement_render(statement_id)
    who = Actor(name=actor, channel="job", user_id=user_id)
    emailing.emails_queue(period=period, actor=who, pi_ids=[pi_id])
    # Every due email of this PI, not only the one just queued: a run of this
    # job that was killed after queueing left a pending email behind. The
    # claim in emailing.email_send makes a second delivery of this job harmless.
    due = selectors.due().filter(period__period=period, pi_id=pi_id, resend=False)
    for email_id in due.values_list("pk", flat=True):
        send_email(email_id)


@logged_job
def send_email(email_id: int) -> None:
    """Send one email; a failure schedules its own retry after the backoff."""
    outcome = emailing.email_send(email_id)
    if outcome.status == "failed" and outcome.next_attempt_at is not None:
        from django_q.models import Schedule
        from django_q.tasks import schedule

        schedule(
            "statements.tasks.send_email",
            email_id,
            name=f"retry email {email_id} at {outcome.next_attempt_at:%Y-%m-%dT%H:%M:%S}",
            schedule_type=Schedule.ONCE,
            next_run=outcome.next_attempt_at,
        )
