"""Emailing statements: one message per PI, claimed before it is sent, never twice.

The life of an email (an ``EmailLog`` row):

1. ``emails_queue`` records, under the period's lock, one ``pending`` email per
   PI carrying every current, rendered statement of that PI not yet emailed.
   A statement version can be in only one such email (a unique constraint),
   so queueing twice — two operators, a re-run cron job — sends nothing twice.
2. ``email_send`` *claims* the row (``pending``/due ``failed`` → ``sending``,
   one conditional UPDATE, committed) before it talks to the mail server, then
   records ``sent`` or ``failed`` with the error and the time of the next try
   (backoff). A task delivered twice finds nothing to claim.
3. A worker killed between the claim and ``sent`` leaves a ``sending`` row.
   Nobody can know whether the server took the message, so it is never resent
   automatically: after ``OPENCHARGEBACK_EMAIL_STUCK_SECONDS`` it is shown as
   stuck, and an operator resolves it (``emails_resolve``).
4. ``emails_resend`` is the operator's explicit second copy, audited with a
   reason.

What queueing or resending would do, and which emails are due or stuck, are
reads: ``statements.selectors``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from billing.audit import Actor, audit
from billing.errors import BillingError
from billing.models import EMAIL_SUBJECT_FIELDS, BillingPeriod, InstitutionSettings
from billing.periods import parse_period
from billing.placeholders import TemplateError, fill
from billing.services import period_locked
from statements.models import EmailLog, EmailStatement, Statement, StatementCharge
from statements.selectors import due, resend_plan, statements_by_pi, unsent_statements

log = logging.getLogger(__name__)

Status = EmailLog.Status


def retry_delay(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: base, 3x, 9x, ... capped at 12 hours."""
    base = settings.OPENCHARGEBACK_EMAIL_RETRY_SECONDS
    return timedelta(seconds=min(base * 3 ** max(attempts - 1, 0), 12 * 3600))


# --- Queueing ------------------------------------------------------------------


@dataclass
class QueueResult:
    period: str
    emails: list[EmailLog] = field(default_factory=list)
    statements: int = 0
    not_ready: list[str] = field(default_factory=list)  # numbers of unrendered statements


def _sendable_period(period: str) -> BillingPeriod:
    obj = period_locked(period)
    if obj.status == BillingPeriod.Status.OPEN:
        raise BillingError(
            f"period {obj.period} is open: statements are sent after it is closed "
            f"(openchargeback periods close {obj.period})"
        )
    return obj


def emails_queue(
    *,
    period: str,
    actor: Actor,
    pi_ids: list[int] | None = None,
    statement_ids: list[int] | None = None,
) -> QueueResult:
    """One pending email per PI with their current statements not emailed yet
    (only these PIs' or these statements, when given)."""
    period = parse_period(period)
    with transaction.atomic():
        obj = _sendable_period(period)
        current = Statement.objects.filter(period=obj, superseded_at=None)
        if pi_ids is not None:
            current = current.filter(pi_id__in=pi_ids)
        if statement_ids is not None:
            current = current.filter(pk__in=statement_ids)
        result = QueueResult(
            period=period,
            not_ready=list(
                current.exclude(status=Statement.Status.READY)
                .order_by("number")
                .values_list("number", flat=True)
            ),
        )
        for statements in statements_by_pi(unsent_statements(current)).values():
            email = _new_email(obj, statements, actor=actor, resend=False)
            result.emails.append(email)
            result.statements += len(statements)
        if result.emails:
            audit(
                actor=actor,
                action="statement.email.queue",
                object_type="statements.emaillog",
                object_repr=f"{len(result.emails)} emails for {period}",
                period=obj,
                after={"emails": len(result.emails), "statements": result.statements},
            )
    return result


def _new_email(
    period: BillingPeriod, statements: list[Statement], *, actor: Actor, resend: bool
) -> EmailLog:
    pi = statements[0].pi
    email = EmailLog.objects.create(
        period=period, pi=pi, to=pi.email, resend=resend, created_by=actor.name
    )
    EmailStatement.objects.bulk_create(
        EmailStatement(email=email, statement=s, resend=resend) for s in statements
    )
    return email


def emails_resend(*, statements: QuerySet[Statement], actor: Actor, reason: str) -> list[EmailLog]:
    """An operator's explicit second copy of statements already emailed."""
    if not reason.strip():
        raise BillingError("a resend needs a reason (it is kept in the audit trail)")
    planned, problems = resend_plan(statements)
    if problems:
        raise BillingError("cannot resend: " + "; ".join(problems))
    emails = []
    with transaction.atomic():
        for group in (p.statements for p in planned):
            email = _new_email(group[0].period, group, actor=actor, resend=True)
            audit(
                actor=actor,
                action="statement.email.resend",
                obj=email,
                period=group[0].period,
                after={"to": email.to, "statements": [s.number for s in group]},
                reason=reason,
            )
            emails.append(email)
    return emails


# --- Sending ------------------------------------------------------------------


def _claim(email_id: int, now: datetime) -> bool:
    """Take the email for this worker; False if it is not due or someone else has it."""
    # attempts counts claims, so a worker killed mid-send still counts one.
    claimed = (
        due(now)
        .filter(pk=email_id)
        .update(
            status=Status.SENDING,
            claimed_at=now,
            next_attempt_at=None,
            attempts=F("attempts") + 1,
        )
    )
    return bool(claimed)


def build_message(email: EmailLog) -> EmailMultiAlternatives:
    """The message for `email`: subject and bodies from templates, PDFs attached."""
    inst = InstitutionSettings.load()
    statements = list(
        Statement.objects.filter(deliveries__email=email)
        .select_related("project", "period")
        .order_by("number")
    )
    total = sum((s.billed_total for s in statements), Decimal(0))
    total_list = sum((s.list_total for s in statements), Decimal(0))
    replaced = {
        old.superseded_by_id: old
        for old in Statement.objects.filter(superseded_by__in=[s.pk for s in statements])
    }
    sources: dict[int, set[str]] = defaultdict(set)
    for statement_id, name, slug in (
        StatementCharge.objects.filter(statement__in=[s.pk for s in statements])
        .values_list("statement_id", "charge__source__name", "charge__source__slug")
        .distinct()
    ):
        sources[statement_id].add(name or slug)
    rows = []
    for s in statements:
        old = replaced.get(s.pk)
        revision = None
        if old is not None:
            replaces, amounts = s.replacing(old).sentences(inst.format_money)
            revision = {
                "number": old.number,
                "version": old.version,
                "replaces": replaces,
                "amounts": amounts,
            }
        rows.append(
            {
                "number": s.number,
                "project_id": s.project.project_id if s.project else "",
                "project_title": s.project.title if s.project else "",
                "fund_org": s.fund_org,
                "sources": ", ".join(sorted(sources[s.pk])),
                "list": inst.format_money(s.list_total),
                "discount": inst.format_money(s.discount_total),
                "billed": inst.format_money(s.billed_total),
                "revision": revision,
            }
        )
    revised = sum(1 for row in rows if row["revision"])
    context: dict[str, Any] = {
        "institution": inst,
        "pi": email.pi,
        "period": email.period.period,
        "statements": rows,
        "revised": revised,
        # which statements the total covers: every one in this email, by number and project
        "covered": "; ".join(
            f"{row['number']} {row['project_id'] or '(no project)'} {row['billed']}" for row in rows
        ),
        "total": inst.format_money(total),
        "total_list": inst.format_money(total_list),
        # discount and subsidy only (credits are in the amount due, not a discount)
        "total_discount": inst.format_money(
            sum((s.discount_total for s in statements), Decimal(0))
        ),
        "resend": email.resend,
    }
    subject = email_subject(
        inst,
        period=email.period.period,
        pi_name=email.pi.name or email.pi.email,
        total=context["total"],
    )
    subject = " ".join(subject.split())[:300]  # one line, whatever the names hold
    if revised and not email.resend:
        subject = f"{subject} (revised)"
    if email.resend:
        subject = f"{subject} (copy)"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("statements/email/body.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email.to],
        reply_to=[inst.contact_email] if inst.contact_email else None,
        headers={"Message-ID": make_msgid(idstring=f"ocb-email-{email.pk}", domain=_domain())},
    )
    message.attach_alternative(render_to_string("statements/email/body.html", context), "text/html")
    for s in statements:
        with s.pdf.open("rb") as fh:
            message.attach(f"{s.number}.pdf", fh.read(), "application/pdf")
        if s.line_items:
            with s.line_items.open("rb") as fh:
                message.attach(f"{s.number}-line-items.csv", fh.read(), "text/csv")
    return message


def email_subject(inst: InstitutionSettings, *, period: str, pi_name: str, total: str) -> str:
    """The subject from the institution's template. A template the settings form
    would refuse (saved before it checked, or written to the database directly)
    gives the default subject and a warning in the log, never a failed email."""
    values = {"period": period, "pi_name": pi_name, "total": total, "institution": inst.name}
    try:
        return fill(inst.email_subject, EMAIL_SUBJECT_FIELDS, values)
    except TemplateError as exc:
        log.warning(
            "the email subject template %r cannot be used (%s); sending with the default "
            "subject; fix it in the institution settings",
            inst.email_subject,
            exc,
        )
        default = InstitutionSettings._meta.get_field("email_subject").get_default()
        return fill(default, EMAIL_SUBJECT_FIELDS, values)


def _domain() -> str:
    sender = settings.DEFAULT_FROM_EMAIL
    return sender.rsplit("@", 1)[-1].strip(">") if "@" in sender else "localhost"


@dataclass
class SendOutcome:
    email_id: int
    status: str  # sent, failed, skipped (not ours to send)
    error: str = ""
    next_attempt_at: datetime | None = None


def email_send(email_id: int) -> SendOutcome:
    """Send one email if it is due; safe to call any number of times, concurrently."""
    now = timezone.now()
    if not _claim(email_id, now):
        return SendOutcome(email_id, "skipped")
    email = EmailLog.objects.select_related("pi", "period").get(pk=email_id)
    try:
        message = build_message(email)
        sent = message.send(fail_silently=False)
        if sent != 1:
            raise RuntimeError("the mail backend accepted no message")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        give_up = email.attempts >= settings.OPENCHARGEBACK_EMAIL_MAX_ATTEMPTS
        next_at = None if give_up else timezone.now() + retry_delay(email.attempts)
        EmailLog.objects.filter(pk=email_id, status=Status.SENDING).update(
            status=Status.FAILED, error=error, next_attempt_at=next_at
        )
        log.warning(
            "email %s to %s failed (attempt %s): %s", email_id, email.to, email.attempts, error
        )
        return SendOutcome(email_id, "failed", error, next_at)
    EmailLog.objects.filter(pk=email_id, status=Status.SENDING).update(
        status=Status.SENT,
        sent_at=timezone.now(),
        error="",
        subject=message.subject,
        message_id=message.extra_headers["Message-ID"],
    )
    log.info("email %s to %s sent", email_id, email.to)
    return SendOutcome(email_id, "sent")


def emails_send_due(*, period: str | None = None) -> list[SendOutcome]:
    """Send every email that is due now (cron: `openchargeback emails retry`)."""
    emails = due()
    if period:
        emails = emails.filter(period__period=parse_period(period))
    ids = list(emails.order_by("id").values_list("id", flat=True))
    return [email_send(email_id) for email_id in ids]


def inline_limit() -> int:
    """How much the admin does in its request (emails to send, statements to
    render); more goes to the workers."""
    return int(settings.OPENCHARGEBACK_ADMIN_INLINE_LIMIT)


@dataclass
class Dispatch:
    """What ``emails_dispatch`` did: the emails sent here, or how many were queued."""

    outcomes: list[SendOutcome] = field(default_factory=list)
    queued: int = 0


def emails_dispatch(*, email_ids: list[int], group: str) -> Dispatch:
    """Send recorded emails: here when few (``inline_limit``), else one worker
    job per email in job group ``group``.

    The jobs are queued once the emails' rows are committed (a worker must
    find them); sent here only outside a transaction (the claim commits).
    Safe to repeat: every send claims its row first (``email_send``)."""
    if len(email_ids) <= inline_limit():
        return Dispatch(outcomes=[email_send(i) for i in email_ids])
    from django_q.tasks import async_task

    ids = list(email_ids)

    def enqueue() -> None:
        for email_id in ids:
            async_task("statements.tasks.send_email", email_id, group=group)

    transaction.on_commit(enqueue)
    return Dispatch(queued=len(ids))


def emails_retry_now(*, emails: QuerySet[EmailLog], actor: Actor) -> list[int]:
    """Make failed emails due now (an operator's "send now"); returns their ids."""
    with transaction.atomic():
        failed = list(
            emails.select_for_update().filter(status=Status.FAILED).values_list("pk", flat=True)
        )
        EmailLog.objects.filter(pk__in=failed).update(next_attempt_at=timezone.now())
        for email_id in failed:
            audit(
                actor=actor,
                action="statement.email.retry",
                object_type="statements.emaillog",
                object_id=str(email_id),
                object_repr=f"Email {email_id}",
            )
    return failed


def emails_resolve(*, email: EmailLog, actor: Actor, outcome: str, note: str) -> EmailLog:
    """An operator's decision on a stuck claim: it was `sent`, or `retry` it."""
    if outcome not in ("sent", "retry"):
        raise BillingError("outcome must be 'sent' or 'retry'")
    if not note.strip():
        raise BillingError("say how you know (the note is kept in the audit trail)")
    with transaction.atomic():
        locked = EmailLog.objects.select_for_update().get(pk=email.pk)
        if locked.status not in (Status.SENDING, Status.FAILED):
            raise BillingError(f"email {locked.pk} is {locked.get_status_display().lower()}")
        before = {"status": locked.status, "error": locked.error}
        if outcome == "sent":
            locked.status, locked.sent_at = Status.SENT, locked.claimed_at or timezone.now()
            locked.error = f"marked sent by {actor.name}: {note}"
        else:
            locked.status, locked.next_attempt_at = Status.FAILED, timezone.now()
            locked.error = f"retry requested by {actor.name}: {note}"
        locked.save(update_fields=["status", "sent_at", "error", "next_attempt_at"])
        audit(
            actor=actor,
            action=f"statement.email.{outcome}",
            obj=locked,
            period=locked.period,
            before=before,
            after={"status": locked.status},
            reason=note,
        )
    return locked
