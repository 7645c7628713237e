"""The statements pages of the admin: generate with a preview, send, resend,
resolve stuck emails, filters, PDF preview and download, job progress."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing.models import AuditEvent, BillingPeriod
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import Actor
from statements import emailing
from statements.models import EmailLog, Statement
from statements.services import statements_generate
from tests.conftest import role_client

pytestmark = pytest.mark.django_db

BASE = "/admin/statements/statement/"
EMAILS = "/admin/statements/emaillog/"


def _numbers(response: Any) -> list[str]:
    return sorted(s.number for s in response.context["cl"].result_list)


def test_generate_previews_then_generates_and_sends(month: str) -> None:
    client = role_client(BILLING_ADMIN)
    page = client.post(BASE + "generate/", {"period": month, "send": "on", "preview": "1"})
    assert page.status_code == 200
    assert page.context["preview"].would_create and not Statement.objects.exists()
    assert b"Generate 3 statements and send" in page.content
    done = client.post(
        BASE + "generate/", {"period": month, "send": "on", "confirm": "1"}, follow=True
    )
    assert Statement.objects.filter(status="ready").count() == 3
    text = done.content.decode()
    assert "3 statements generated" in text and "2 emails sent" in text
    assert len(mail.outbox) == 2
    assert done.redirect_chain[-1][0].endswith("&version=current")


def test_generate_refusal_is_shown_on_the_form(month: str, actor: Actor) -> None:
    from billing.services import period_reopen

    period_reopen(period=month, actor=actor, reason="x")
    client = role_client(BILLING_ADMIN)
    page = client.post(BASE + "generate/", {"period": month, "preview": "1"})
    # an open period is not offered at all
    assert "period" in page.context["form"].errors
    assert not Statement.objects.exists()


def test_large_runs_go_to_the_workers(month: str, settings: Any) -> None:
    settings.OPENCHARGEBACK_ADMIN_INLINE_LIMIT = 1
    client = role_client(BILLING_ADMIN)
    done = client.post(BASE + "generate/", {"period": month, "confirm": "1"}, follow=True)
    assert "queued as job group statements-2025-01-" in done.content.decode()


def test_send_and_resend_actions(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    ids = list(Statement.objects.values_list("pk", flat=True))
    admin_client = role_client(BILLING_ADMIN)
    data = {"action": "send_selected", helpers.ACTION_CHECKBOX_NAME: ids[:1], "index": 0}
    admin_client.post(BASE, data)
    assert len(mail.outbox) == 1  # only the selected statement's PI
    admin_client.post(BASE, {**data, helpers.ACTION_CHECKBOX_NAME: ids})
    # the other two statements (ada's second project in its own email, bob's); none twice
    attached = sorted(a[0] for m in mail.outbox for a in m.attachments)
    assert attached == sorted(
        f"{n}.pdf" for n in Statement.objects.values_list("number", flat=True)
    )
    assert Statement.objects.filter(deliveries__email__status="sent").count() == 3

    reviewer = role_client(REVIEWER)
    resend = {"action": "resend_selected", helpers.ACTION_CHECKBOX_NAME: ids[:1], "index": 0}
    confirm = reviewer.post(BASE, resend)
    assert b"Selected: 1 statement." in confirm.content
    assert len(mail.outbox) == 3
    reviewer.post(BASE, {**resend, "apply": "1", "reason": "PI asked again"})
    assert len(mail.outbox) == 4 and mail.outbox[-1].subject.endswith("(copy)")
    assert AuditEvent.objects.get(action="statement.email.resend").reason == "PI asked again"


def test_filters_show_sent_unsent_failed_stuck_and_superseded(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    queued = emailing.emails_queue(period=month, actor=actor).emails
    ada = next(e for e in queued if e.to == "ada@example.edu")
    bob = next(e for e in queued if e.to == "bob@example.edu")
    emailing.send_email(ada.pk)
    EmailLog.objects.filter(pk=bob.pk).update(
        status="sending", claimed_at=timezone.now() - timedelta(days=1)
    )
    client = role_client(VIEWER)
    by_pi = {
        pi: sorted(Statement.objects.filter(pi__email=pi).values_list("number", flat=True))
        for pi in ("ada@example.edu", "bob@example.edu")
    }
    assert _numbers(client.get(BASE + "?email=sent")) == by_pi["ada@example.edu"]
    assert _numbers(client.get(BASE + "?email=unsent")) == by_pi["bob@example.edu"]
    assert _numbers(client.get(BASE + "?email=stuck")) == by_pi["bob@example.edu"]
    assert _numbers(client.get(BASE + "?email=failed")) == []
    assert _numbers(client.get(BASE + "?version=superseded")) == []
    page = client.get(BASE)
    assert "1 stuck" in page.content.decode()
    assert [e.to for e in client.get(EMAILS + "?stuck=stuck").context["cl"].result_list] == [
        "bob@example.edu"
    ]


def test_stuck_email_is_resolved_by_an_operator(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    queued = emailing.emails_queue(period=month, actor=actor).emails
    EmailLog.objects.filter(pk=queued[0].pk).update(
        status="sending", claimed_at=timezone.now() - timedelta(days=1)
    )
    client = role_client(BILLING_ADMIN)
    data = {"action": "resolve", helpers.ACTION_CHECKBOX_NAME: [queued[0].pk], "index": 0}
    page = client.post(EMAILS, data)
    assert b"never resent automatically" in page.content
    client.post(EMAILS, {**data, "apply": "1", "outcome": "retry", "note": "bounced"})
    assert [m.to for m in mail.outbox] == [[queued[0].to]]
    assert EmailLog.objects.get(pk=queued[0].pk).status == "sent"


def test_failed_email_send_now(month: str, actor: Actor, settings: Any) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    settings.EMAIL_BACKEND = "tests.test_statement_emails.BrokenBackend"
    emailing.emails_queue(period=month, actor=actor)
    emailing.send_due()
    assert EmailLog.objects.filter(status="failed").count() == 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client = role_client(BILLING_ADMIN)
    ids = list(EmailLog.objects.values_list("pk", flat=True))
    client.post(EMAILS, {"action": "send_now", helpers.ACTION_CHECKBOX_NAME: ids, "index": 0})
    assert len(mail.outbox) == 2
    assert not EmailLog.objects.exclude(status="sent").exists()


def test_statement_page_previews_and_downloads_the_pdf(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    statement = Statement.objects.get(pi__email="bob@example.edu")
    client: Client = role_client(VIEWER)
    page = client.get(f"{BASE}{statement.pk}/change/")
    html = page.content.decode()
    assert f'src="{BASE}{statement.pk}/pdf/#view=FitH"' in html
    assert "Not emailed." in html and statement.number in html
    inline = client.get(f"{BASE}{statement.pk}/pdf/")
    assert inline["Content-Type"] == "application/pdf"
    assert inline["Content-Disposition"].startswith("inline")
    assert inline["X-Frame-Options"] == "SAMEORIGIN"
    body = b"".join(inline.streaming_content)  # type: ignore[attr-defined]
    import hashlib

    assert hashlib.sha256(body).hexdigest() == statement.pdf_sha256
    download = client.get(f"{BASE}{statement.pk}/pdf/?download=1")
    assert download["Content-Disposition"].startswith("attachment")
    assert f'{statement.number}.pdf"' in download["Content-Disposition"]


def test_changelist_shows_progress_of_the_period(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    period = BillingPeriod.objects.get(period=month)
    page = role_client(VIEWER).get(f"{BASE}?period__id__exact={period.pk}")
    jobs = page.context["jobs"]
    assert dict(jobs["statements"])["Ready"] == 3
    assert jobs["unsent"] == 3 and jobs["stuck"] == 0
    assert "2025-01: progress" in page.content.decode()
