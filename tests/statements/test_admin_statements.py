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

from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
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
    assert page.context["preview"].would_create
    assert not Statement.objects.exists()
    assert b"Generate 3 statements and send 2 emails" in page.content
    # Who the emails go to, with the amounts, before anything is written.
    assert page.context["sending"]["summary"] == (
        "Then 2 emails to 2 PIs, 3 statements, total due $94.09."
    )
    assert [(r["to"], r["total"]) for r in page.context["sending"]["rows"]] == [
        ("ada@example.edu", "$90.76"),
        ("bob@example.edu", "$3.33"),
    ]
    assert [s["number"] for s in page.context["sending"]["rows"][0]["statements"]] == [
        "new statement",
        "new statement",
    ]
    done = client.post(
        BASE + "generate/", {"period": month, "send": "on", "confirm": "1"}, follow=True
    )
    assert Statement.objects.filter(status="ready").count() == 3
    text = done.content.decode()
    assert "3 statements generated" in text
    assert "2 emails sent" in text
    assert len(mail.outbox) == 2
    assert done.redirect_chain[-1][0].endswith("&version=current")


def test_generate_and_send_lists_the_statements_not_emailed_yet(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    ada_a, ada_b, bob = Statement.objects.order_by("number")
    emailing.email_send(
        emailing.emails_queue(period=month, actor=actor, statement_ids=[bob.pk]).emails[0].pk
    )
    client = role_client(BILLING_ADMIN)
    page = client.post(BASE + "generate/", {"period": month, "send": "on", "preview": "1"})
    sending = page.context["sending"]
    assert sending["summary"] == "Then 1 email to 1 PI, 2 statements, total due $90.76."
    assert sending["rows"] == [
        {
            "name": "—",
            "to": "ada@example.edu",
            "statements": [
                {"number": ada_a.number, "project": "proj-a", "due": "$10.01"},
                {"number": ada_b.number, "project": "proj-b", "due": "$80.75"},
            ],
            "total": "$90.76",
        }
    ]
    assert b'id="ocb-send-total">$90.76</td>' in page.content
    assert b"Generate 0 statements and send 1 email" in page.content
    assert len(mail.outbox) == 1  # bob's, before the page


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
    _confirm_sending(admin_client, BASE, data)
    assert len(mail.outbox) == 1  # only the selected statement's PI
    _confirm_sending(admin_client, BASE, {**data, helpers.ACTION_CHECKBOX_NAME: ids})
    # the other two statements (ada's second project in its own email, bob's); none twice
    attached = sorted(a[0] for m in mail.outbox for a in m.attachments)
    assert attached == sorted(
        f"{n}.pdf" for n in Statement.objects.values_list("number", flat=True)
    )
    assert Statement.objects.filter(deliveries__email__status="sent").count() == 3

    reviewer = role_client(REVIEWER)
    resend = {"action": "resend_selected", helpers.ACTION_CHECKBOX_NAME: ids[:1], "index": 0}
    confirm = reviewer.post(BASE, resend)
    first = Statement.objects.get(pk=ids[0])
    assert confirm.context["summary"] == (
        f"1 email to 1 PI, 1 statement, total due ${first.billed_total}."
    )
    assert [r["to"] for r in confirm.context["rows"]] == [first.pi.email]
    assert b'value="Resend 1 email"' in confirm.content
    assert len(mail.outbox) == 3
    reviewer.post(BASE, {**resend, "apply": "1", "reason": "PI asked again"})
    assert len(mail.outbox) == 4
    assert mail.outbox[-1].subject.endswith("(copy)")
    assert AuditEvent.objects.get(action="statement.email.resend").reason == "PI asked again"


def _confirm_sending(client: Client, url: str, data: dict[str, Any]) -> Any:
    """Post the send action, check nothing went out yet, confirm the page."""
    sent = len(mail.outbox)
    page = client.post(url, data)
    assert page.status_code == 200
    assert len(mail.outbox) == sent
    apply = {k: v for k, v in data.items() if k != "index"}
    return client.post(url, {**apply, "apply": "1", "plan": page.context["fingerprint"]})


def test_sending_shows_who_gets_what_and_the_total_before_anything_is_sent(
    month: str, actor: Actor
) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    period = BillingPeriod.objects.get(period=month)
    ada_a, ada_b, bob = Statement.objects.order_by("number")
    # bob's was emailed already: listed as left out, with why.
    emailing.email_send(
        emailing.emails_queue(period=month, actor=actor, statement_ids=[bob.pk]).emails[0].pk
    )
    mail.outbox.clear()
    listing = f"{BASE}?email=&period__id__exact={period.pk}&q=example"
    client = role_client(BILLING_ADMIN)
    data = {
        "action": "send_selected",
        helpers.ACTION_CHECKBOX_NAME: [ada_a.pk],
        "select_across": "1",  # "all 3 matching"
    }
    page = client.post(listing, {**data, "index": 0})
    assert page.status_code == 200
    assert not mail.outbox
    assert EmailLog.objects.count() == 1
    assert page.context["summary"] == "1 email to 1 PI, 2 statements, total due $90.76."
    assert page.context["rows"] == [
        {
            "name": "—",
            "to": "ada@example.edu",
            "period": month,
            "statements": [
                {"number": ada_a.number, "project": "proj-a", "due": "$10.01"},
                {"number": ada_b.number, "project": "proj-b", "due": "$80.75"},
            ],
            "total": "$90.76",
        }
    ]
    assert page.context["skipped"] == [(f"{bob.number}, bob@example.edu", "already emailed")]
    html = page.content.decode()
    assert 'value="Send 1 email"' in html
    assert '<td class="numeric" id="ocb-send-total">$90.76</td>' in html
    # Cancel goes back to the list as it was filtered.
    assert page.context["cancel_url"] == listing
    assert f'href="{listing.replace("&", "&amp;")}" class="button cancel-link">Cancel' in html

    done = client.post(
        listing, {**data, "apply": "1", "plan": page.context["fingerprint"]}, follow=True
    )
    assert done.redirect_chain == [(listing, 302)]
    assert [str(m) for m in done.context["messages"]] == ["1 email sent."]
    assert [m.to for m in mail.outbox] == [["ada@example.edu"]]
    assert sorted(a[0] for a in mail.outbox[0].attachments) == [
        f"{ada_a.number}.pdf",
        f"{ada_b.number}.pdf",
    ]
    again = client.post(listing, {**data, "index": 0}, follow=True)
    [message] = [str(m) for m in again.context["messages"]]
    assert message == "Nothing to send: no selected statement can be emailed (3 already emailed)."


def test_statements_that_cannot_be_sent_are_listed_with_why(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    ada_a, ada_b, bob = Statement.objects.order_by("number")
    Statement.objects.filter(pk=ada_a.pk).update(status=Statement.Status.RENDERING)
    Statement.objects.filter(pk=ada_b.pk).update(status=Statement.Status.FAILED)
    Statement.objects.filter(pk=bob.pk).update(superseded_at=timezone.now())  # withdrawn
    client = role_client(BILLING_ADMIN)
    data = {"action": "send_selected", helpers.ACTION_CHECKBOX_NAME: [ada_a.pk, ada_b.pk, bob.pk]}
    done = client.post(BASE, {**data, "index": 0}, follow=True)
    [message] = [str(m) for m in done.context["messages"]]
    assert message == (
        "Nothing to send: no selected statement can be emailed "
        "(1 no PDF yet, 1 rendering failed, 1 withdrawn: nothing left to bill)."
    )
    Statement.objects.filter(pk=ada_a.pk).update(status=Statement.Status.READY)
    page = client.post(BASE, {**data, "index": 0})
    assert page.context["summary"] == "1 email to 1 PI, 1 statement, total due $10.01."
    assert page.context["skipped"] == [
        (f"{ada_b.number}, ada@example.edu", "rendering failed"),
        (f"{bob.number}, bob@example.edu", "withdrawn: nothing left to bill"),
    ]
    assert EmailLog.objects.count() == 0
    assert not mail.outbox


def test_resending_what_was_never_sent_says_why_and_offers_no_button(
    month: str, actor: Actor
) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    bob = Statement.objects.get(pi__email="bob@example.edu")
    client = role_client(REVIEWER)
    data = {"action": "resend_selected", helpers.ACTION_CHECKBOX_NAME: [bob.pk], "index": 0}
    page = client.post(BASE + "?q=bob", data)
    assert page.context["problems"] == [
        f"{bob.number} was never emailed: send it rather than resend it"
    ]
    assert b'value="Resend 1 email"' not in page.content
    assert page.context["cancel_url"] == BASE + "?q=bob"
    assert not mail.outbox


def test_a_confirmation_that_is_out_of_date_sends_nothing(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    ids = list(Statement.objects.order_by("number").values_list("pk", flat=True))
    client = role_client(BILLING_ADMIN)
    data = {"action": "send_selected", helpers.ACTION_CHECKBOX_NAME: ids}
    page = client.post(BASE, {**data, "index": 0})
    assert page.context["summary"] == "2 emails to 2 PIs, 3 statements, total due $94.09."
    # Someone else sends bob's meanwhile: the page is shown again, as it is now.
    bob = Statement.objects.get(pi__email="bob@example.edu")
    emailing.emails_queue(period=month, actor=actor, statement_ids=[bob.pk])
    stale = client.post(BASE, {**data, "apply": "1", "plan": page.context["fingerprint"]})
    assert stale.status_code == 200
    assert not mail.outbox
    assert stale.context["summary"] == "1 email to 1 PI, 2 statements, total due $90.76."
    assert [str(m) for m in stale.context["messages"]] == [
        "What would be sent changed since the page was shown (statements were sent or "
        "generated meanwhile): check the emails below again."
    ]
    client.post(BASE, {**data, "apply": "1", "plan": stale.context["fingerprint"]})
    assert [m.to for m in mail.outbox] == [["ada@example.edu"]]


def test_many_emails_are_queued_after_the_commit(
    month: str,
    actor: Actor,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    import django_q.tasks

    settings.OPENCHARGEBACK_ADMIN_INLINE_LIMIT = 1
    statements_generate(period=month, actor=actor, sync=True)
    ids = list(Statement.objects.values_list("pk", flat=True))
    client = role_client(BILLING_ADMIN)
    data = {"action": "send_selected", helpers.ACTION_CHECKBOX_NAME: ids}
    page = client.post(BASE, {**data, "index": 0})
    jobs: list[tuple[Any, ...]] = []
    monkeypatch.setattr(django_q.tasks, "async_task", lambda *args, **kw: jobs.append(args))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = client.post(
            BASE, {**data, "apply": "1", "plan": page.context["fingerprint"]}, follow=True
        )
        assert not jobs  # nothing queued before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    queued = sorted(EmailLog.objects.values_list("pk", flat=True))
    assert sorted(job[1] for job in jobs) == queued
    assert len(queued) == 2
    assert {job[0] for job in jobs} == {"statements.tasks.send_email"}
    assert not mail.outbox
    assert "2 emails queued as job group emails-" in done.content.decode()


def test_filters_show_sent_unsent_failed_stuck_and_superseded(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    queued = emailing.emails_queue(period=month, actor=actor).emails
    ada = next(e for e in queued if e.to == "ada@example.edu")
    bob = next(e for e in queued if e.to == "bob@example.edu")
    emailing.email_send(ada.pk)
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
    settings.EMAIL_BACKEND = "tests.statements.test_statement_emails.BrokenBackend"
    emailing.emails_queue(period=month, actor=actor)
    emailing.emails_send_due()
    assert EmailLog.objects.filter(status="failed").count() == 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client = role_client(BILLING_ADMIN)
    ids = list(EmailLog.objects.values_list("pk", flat=True))
    data = {"action": "send_now", helpers.ACTION_CHECKBOX_NAME: ids}
    page = client.post(EMAILS + "?status__exact=failed", {**data, "index": 0})
    assert page.context["summary"] == "2 emails to 2 PIs, 3 statements, total due $94.09."
    assert [r["to"] for r in page.context["rows"]] == ["ada@example.edu", "bob@example.edu"]
    assert page.context["cancel_url"] == EMAILS + "?status__exact=failed"
    assert not mail.outbox
    client.post(EMAILS + "?status__exact=failed", {**data, "apply": "1"})
    assert len(mail.outbox) == 2
    assert not EmailLog.objects.exclude(status="sent").exists()


def test_statement_page_previews_and_downloads_the_pdf(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    statement = Statement.objects.get(pi__email="bob@example.edu")
    client: Client = role_client(VIEWER)
    page = client.get(f"{BASE}{statement.pk}/change/")
    html = page.content.decode()
    assert f'src="{BASE}{statement.pk}/pdf/#view=FitH"' in html
    assert "Not emailed." in html
    assert statement.number in html
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
    assert jobs["unsent"] == 3
    assert jobs["stuck"] == 0
    assert "2025-01: progress" in page.content.decode()
