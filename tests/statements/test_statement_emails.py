"""Statement emails: one per PI, claimed before sending, retried with backoff, never twice."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import AuditEvent, Charge, InstitutionSettings
from billing.review import charges_review
from billing.services import period_close, period_reopen
from statements import emailing, selectors, tasks
from statements.models import EmailLog, EmailStatement, Statement
from statements.services import statements_generate
from tests.factories import FOCUS_ROW_OWNER, make_charges

pytestmark = pytest.mark.django_db

SMTP = "django.core.mail.backends.smtp.EmailBackend"


class BrokenBackend:
    """A mail backend whose server is down."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def send_messages(self, _messages: Any) -> int:
        raise ConnectionRefusedError(111, "Connection refused")


def _generate_and_send(period: str, actor: Actor) -> list[emailing.SendOutcome]:
    return statements_generate(period=period, actor=actor, sync=True, send=True).emails


def test_one_email_per_pi_with_their_pdfs(month: str, actor: Actor) -> None:
    settings = InstitutionSettings.load()
    settings.contact_email = "help@example.edu"
    settings.save()
    outcomes = _generate_and_send(month, actor)
    assert sorted(o.status for o in outcomes) == ["sent", "sent"]
    by_to = {m.to[0]: m for m in mail.outbox}
    assert sorted(by_to) == ["ada@example.edu", "bob@example.edu"]
    ada = by_to["ada@example.edu"]
    assert isinstance(ada, EmailMultiAlternatives)
    numbers = sorted(
        Statement.objects.filter(pi__email="ada@example.edu").values_list("number", flat=True)
    )
    assert [(name, mime) for name, _, mime in ada.attachments] == [
        (f"{n}.pdf", "application/pdf") for n in numbers
    ]
    assert all(content.startswith(b"%PDF") for _, content, _ in ada.attachments)
    total = sum(s.billed_total for s in Statement.objects.filter(pi__email="ada@example.edu"))
    assert ada.subject == f"Research Computing statement for 2025-01: ${total:,.2f} due"
    assert ada.reply_to == ["help@example.edu"]
    assert "proj-a" in ada.body
    assert f"${total:,.2f}" in ada.body
    html, mime = ada.alternatives[0]
    assert isinstance(html, str)
    assert mime == "text/html"
    assert "<table" in html
    assert "proj-b" in html
    log = EmailLog.objects.get(to="ada@example.edu")
    assert (log.status, log.attempts, log.subject) == ("sent", 1, ada.subject)
    assert log.message_id == ada.extra_headers["Message-ID"]
    assert log.sent_at is not None


def test_sending_again_sends_nothing_and_new_versions_are_sent_once(
    month: str, actor: Actor
) -> None:
    _generate_and_send(month, actor)
    assert len(mail.outbox) == 2
    assert _generate_and_send(month, actor) == []
    call_command("emails", "send", "--period", month, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert len(mail.outbox) == 2

    # bob's data changes: only bob gets the new version; the sent flag stays with v1
    period_reopen(period=month, actor=actor, reason="late usage")
    make_charges(
        {"resource": "bob-late", "billed": "1.00"},
        **{**FOCUS_ROW_OWNER, "pi": "bob@example.edu", "project": "proj-c"},
    )
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=actor
    )
    period_close(period=month, actor=actor)
    outcomes = _generate_and_send(month, actor)
    assert [o.status for o in outcomes] == ["sent"]
    assert mail.outbox[-1].to == ["bob@example.edu"]
    v2 = Statement.objects.get(pi__email="bob@example.edu", superseded_at=None)
    assert v2.version == 2
    assert [a[0] for a in mail.outbox[-1].attachments] == [f"{v2.number}.pdf"]
    assert EmailStatement.objects.filter(statement__pi__email="bob@example.edu").count() == 2

    # v2 says what it replaces, when, and the amount due before and after
    v1 = Statement.objects.get(superseded_by=v2)
    sent: Any = mail.outbox[-1]  # EmailMultiAlternatives
    assert sent.subject.endswith("$4.33 due (revised)")
    replaces = (
        f"This statement replaces statement {v1.number} (version 1) of {v1.generated_at:%Y-%m-%d}."
    )
    amounts = "Amount due was $3.33, now $4.33 (up $1.00)."
    body = " ".join(sent.body.split())
    assert f"{v2.number} proj-c (revised)" in body
    assert f"{replaces} {amounts}" in body
    assert f"Total due for the 1 statement in this email ({v2.number} proj-c $4.33): $4.33" in body
    html = " ".join(sent.alternatives[0][0].split())
    assert f"{replaces} {amounts}" in html
    assert "Revised</strong>" in html
    assert "Sources: Amazon Web Services" in body
    assert "Amazon Web Services" in html
    shown = " ".join(_pdf_text(sent.attachments[0][1]).split())
    assert f"REVISED STATEMENT {replaces} {amounts}" in shown
    assert "Amazon Web Services" in shown
    # the first email said nothing of revisions
    first: Any = next(m for m in mail.outbox if m.to == ["bob@example.edu"])
    assert "revised" not in first.subject
    assert "replaces" not in first.body
    assert "REVISED" not in _pdf_text(first.attachments[0][1])


def _pdf_text(content: bytes) -> str:
    """The words of a PDF as a reader sees them (lines joined)."""
    import subprocess

    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=content, capture_output=True, check=True
    )
    return done.stdout.decode()


def test_an_email_total_names_every_statement_it_covers(month: str, actor: Actor) -> None:
    """A revised statement and a new one in one email: the total is theirs, each named."""
    _generate_and_send(month, actor)
    period_reopen(period=month, actor=actor, reason="late usage")
    make_charges(
        {"resource": "ada-late", "project": "proj-b", "billed": "19.25"},
        {"resource": "ada-new", "project": "proj-d", "billed": "7.10", "list_cost": "10.00"},
        **FOCUS_ROW_OWNER,
    )
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=actor
    )
    period_close(period=month, actor=actor)
    assert [o.status for o in _generate_and_send(month, actor)] == ["sent"]
    sent: Any = mail.outbox[-1]  # EmailMultiAlternatives
    assert sent.to == ["ada@example.edu"]
    b2 = Statement.objects.get(project__project_id="proj-b", superseded_at=None)
    b1 = Statement.objects.get(superseded_by=b2)
    d1 = Statement.objects.get(project__project_id="proj-d")
    assert (b2.version, d1.version, b1.billed_total, b2.billed_total, d1.billed_total) == (
        2,
        1,
        Decimal("80.75"),
        Decimal("100.00"),
        Decimal("7.10"),
    )
    body = " ".join(sent.body.split())
    assert "1 of them is a revised statement" in body
    assert (
        f"Total due for the 2 statements in this email ({b2.number} proj-b $100.00; "
        f"{d1.number} proj-d $7.10): $107.10"
    ) in body
    assert "Amount due was $80.75, now $100.00 (up $19.25)." in body
    assert body.count("replaces statement") == 1  # the new statement replaces nothing
    assert sent.subject.endswith("$107.10 due (revised)")
    html = sent.alternatives[0][0]
    assert "Total due for the 2 statements in this email" in html
    assert "$107.10" in html


def test_a_task_run_twice_sends_once(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    queued = emailing.emails_queue(period=month, actor=actor)
    again = emailing.emails_queue(period=month, actor=actor)
    assert len(queued.emails) == 2
    assert again.emails == []
    first = queued.emails[0].pk
    assert emailing.email_send(first).status == "sent"
    assert emailing.email_send(first).status == "skipped"
    tasks.send_email(first)
    assert len(mail.outbox) == 1


def test_open_period_is_refused(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    period_reopen(period=month, actor=actor, reason="x")
    with pytest.raises(BillingError, match="is open"):
        emailing.emails_queue(period=month, actor=actor)


def test_failures_are_retried_with_backoff_then_left_to_an_operator(
    month: str, actor: Actor, settings: Any
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.BrokenBackend"
    settings.OPENCHARGEBACK_EMAIL_MAX_ATTEMPTS = 3
    before = timezone.now()
    outcomes = _generate_and_send(month, actor)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    log = EmailLog.objects.get(to="ada@example.edu")
    assert log.status == "failed"
    assert "Connection refused" in log.error
    assert log.attempts == 1
    assert log.next_attempt_at is not None
    assert timedelta(seconds=299) < log.next_attempt_at - before < timedelta(seconds=320)

    # not due yet: nothing is attempted
    assert emailing.emails_send_due() == []

    def make_due() -> None:
        EmailLog.objects.filter(status="failed").update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )

    make_due()
    assert [o.status for o in emailing.emails_send_due()] == ["failed", "failed"]
    log.refresh_from_db()
    assert log.attempts == 2
    assert log.next_attempt_at - timezone.now() > timedelta(seconds=850)  # 3x the first wait
    make_due()
    emailing.emails_send_due()
    log.refresh_from_db()
    assert (log.attempts, log.next_attempt_at) == (3, None)  # gave up: an operator decides
    assert emailing.emails_send_due() == []

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    emailing.emails_resolve(email=log, actor=actor, outcome="retry", note="server fixed")
    assert [o.status for o in emailing.emails_send_due()] == ["sent"]
    assert [m.to for m in mail.outbox] == [["ada@example.edu"]]


def test_a_failed_job_schedules_its_own_retry(month: str, actor: Actor, settings: Any) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    settings.EMAIL_BACKEND = f"{__name__}.BrokenBackend"
    email_log = emailing.emails_queue(period=month, actor=actor).emails[0]
    tasks.send_email(email_log.pk)
    email_log.refresh_from_db()
    retry = Schedule.objects.get(func="statements.tasks.send_email")
    assert retry.schedule_type == Schedule.ONCE
    assert retry.args == f"({email_log.pk},)"
    assert retry.next_run == email_log.next_attempt_at


def test_a_stuck_claim_is_shown_and_never_resent_automatically(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    queued = emailing.emails_queue(period=month, actor=actor).emails
    # a worker claimed this one and died before recording the outcome
    EmailLog.objects.filter(pk=queued[0].pk).update(
        status="sending", attempts=1, claimed_at=timezone.now() - timedelta(hours=1)
    )
    EmailLog.objects.filter(pk=queued[1].pk).update(status="sending", claimed_at=timezone.now())
    assert list(selectors.stuck()) == [EmailLog.objects.get(pk=queued[0].pk)]
    assert emailing.emails_send_due() == []
    assert emailing.email_send(queued[0].pk).status == "skipped"
    assert mail.outbox == []
    with pytest.raises(BillingError, match="say how you know"):
        emailing.emails_resolve(email=queued[0], actor=actor, outcome="sent", note="")
    resolved = emailing.emails_resolve(
        email=queued[0], actor=actor, outcome="sent", note="PI confirmed receipt"
    )
    assert resolved.status == "sent"
    assert "PI confirmed receipt" in resolved.error
    event = AuditEvent.objects.get(action="statement.email.sent")
    assert event.reason == "PI confirmed receipt"
    assert mail.outbox == []


def test_only_statements_already_emailed_can_be_resent(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    with pytest.raises(BillingError, match="was never emailed"):
        emailing.emails_resend(statements=Statement.objects.all(), actor=actor, reason="r")
    with pytest.raises(CommandError, match="was never emailed"):
        _run("emails", "resend", "--period", month, "--pi", "bob@example.edu", "--reason", "r")
    assert not EmailLog.objects.exists()


def test_resend_is_explicit_audited_and_marked_as_a_copy(month: str, actor: Actor) -> None:
    _generate_and_send(month, actor)
    mail.outbox.clear()
    ada = Statement.objects.filter(pi__email="ada@example.edu", superseded_at=None)
    with pytest.raises(BillingError, match="needs a reason"):
        emailing.emails_resend(statements=ada, actor=actor, reason=" ")
    emails = emailing.emails_resend(statements=ada, actor=actor, reason="PI lost it")
    assert [emailing.email_send(e.pk).status for e in emails] == ["sent"]
    assert mail.outbox[0].subject.endswith("(copy)")
    assert "sent again" in mail.outbox[0].body
    assert AuditEvent.objects.get(action="statement.email.resend").reason == "PI lost it"
    # the command does the same; a never-emailed statement is refused
    out = _run("emails", "resend", "--period", month, "--pi", "bob@example.edu", "--reason", "r")
    assert "1 emails sent" in out
    assert len(mail.outbox) == 2


def test_subject_template_is_validated() -> None:
    settings = InstitutionSettings.load()
    settings.email_subject = "{period} {pi_name} {total} {institution}"
    settings.full_clean()
    for bad in ("{secret}", "{period.__class__}", "{period"):
        settings.email_subject = bad
        with pytest.raises(ValidationError):
            settings.full_clean()


def test_names_are_escaped_in_the_html_body(defaults: None, actor: Actor) -> None:
    from billing.models import PI

    make_charges(
        {"billed": "2.00"}, **{**FOCUS_ROW_OWNER, "pi": "eve@example.edu", "project": "<b>x</b>"}
    )
    PI.objects.filter(email="eve@example.edu").update(name="<script>alert(1)</script>")
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    _generate_and_send("2025-01", actor)
    sent = mail.outbox[0]
    assert isinstance(sent, EmailMultiAlternatives)
    html = sent.alternatives[0][0]
    assert isinstance(html, str)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in mail.outbox[0].body  # plain text is plain


def test_generate_send_json_reports_emails(month: str) -> None:
    data = json.loads(_run("generate", "--period", month, "--sync", "--send", "--json"))
    assert data["emails_sent"] == 2
    assert data["emails_failed"] == 0
    listed = json.loads(_run("emails", "list", "--period", month, "--json"))
    assert sorted(e["to"] for e in listed) == ["ada@example.edu", "bob@example.edu"]
    assert all(e["status"] == "sent" for e in listed)


def test_generate_send_exits_1_when_the_mail_server_is_down(month: str, settings: Any) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.BrokenBackend"
    with pytest.raises(CommandError, match="2 of 2 emails failed and will be retried"):
        _run("generate", "--period", month, "--sync", "--send")
    assert EmailLog.objects.filter(status="failed").count() == 2


def test_queued_jobs_render_then_email_each_pi_once(
    month: str, actor: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = statements_generate(period=month, actor=actor, send=True)
    assert result.job_group.startswith("statements-2025-01-")
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.edu", "bob@example.edu"]
    assert not Statement.objects.exclude(status="ready").exists()


def _run(*args: str) -> str:
    import io

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- A real SMTP server --------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(settings: Any) -> Iterator[tuple[Inbox, Callable[[], Controller]]]:
    port = _free_port()
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    inbox = Inbox()
    started: list[Controller] = []

    def start() -> Controller:
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        return controller

    yield inbox, start
    for controller in started:
        if getattr(controller, "_thread", None) is not None:
            controller.stop()


@pytest.fixture
def forty_pis(defaults: None, actor: Actor) -> str:
    """100 project statements for 40 PIs (each PI owns 2 or 3 projects)."""
    rows = [
        {
            "resource": f"r-{k}",
            "pi": f"pi{k % 40:02d}@example.edu",
            "project": f"proj-{k:03d}",
            "billed": f"{k}.{k % 100:02d}",
            "list_cost": f"{2 * k}.00",
        }
        for k in range(1, 101)  # k = 0 would be a $0.00 project: no statement
    ]
    make_charges(*rows, fund_org=FOCUS_ROW_OWNER["fund_org"])
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    return "2025-01"


def test_smtp_100_statements_40_pis_exactly_40_messages(
    forty_pis: str, actor: Actor, smtp: tuple[Inbox, Callable[[], Controller]]
) -> None:
    inbox, start = smtp
    start()
    outcomes = _generate_and_send(forty_pis, actor)
    assert Statement.objects.count() == 100
    assert Counter(o.status for o in outcomes) == {"sent": 40}
    recipients = Counter(m["To"] for m in inbox.messages)
    assert len(recipients) == 40
    assert set(recipients.values()) == {1}
    pdfs = sum(
        1
        for m in inbox.messages
        for part in m.iter_attachments()
        if part.get_content_type() == "application/pdf"
    )
    assert pdfs == 100
    # again: nothing more
    assert _generate_and_send(forty_pis, actor) == []
    assert len(inbox.messages) == 40


def test_smtp_down_then_back_each_pi_gets_exactly_one(
    forty_pis: str, actor: Actor, smtp: tuple[Inbox, Callable[[], Controller]]
) -> None:
    inbox, start = smtp
    outcomes = _generate_and_send(forty_pis, actor)  # no server listening
    assert Counter(o.status for o in outcomes) == {"failed": 40}
    assert EmailLog.objects.filter(status="failed", error__contains="refused").count() == 40
    start()
    EmailLog.objects.update(next_attempt_at=timezone.now())
    outcomes = emailing.emails_send_due()
    assert Counter(o.status for o in outcomes) == {"sent": 40}
    assert emailing.emails_send_due() == []
    recipients = Counter(m["To"] for m in inbox.messages)
    assert len(recipients) == 40
    assert set(recipients.values()) == {1}
    assert set(EmailLog.objects.values_list("attempts", flat=True)) == {2}
