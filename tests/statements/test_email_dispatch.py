"""emails_dispatch: few emails go out in the request, more as worker jobs queued on commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from billing.audit import Actor
from statements import emailing
from statements.models import EmailLog
from statements.services import statements_generate

pytestmark = pytest.mark.django_db


def _queued_ids(month: str, actor: Actor) -> list[int]:
    statements_generate(period=month, actor=actor, sync=True)
    return [e.pk for e in emailing.emails_queue(period=month, actor=actor).emails]


def test_few_emails_are_sent_in_the_request_and_never_twice(month: str, actor: Actor) -> None:
    ids = _queued_ids(month, actor)
    assert len(ids) == 2
    first = emailing.emails_dispatch(email_ids=ids, group="emails-tester")
    assert sorted(o.status for o in first.outcomes) == ["sent", "sent"]
    assert first.queued == 0
    again = emailing.emails_dispatch(email_ids=ids, group="emails-tester")
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert len(mail.outbox) == 2


def test_more_than_the_inline_limit_are_queued_only_once_committed(
    month: str,
    actor: Actor,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ids = _queued_ids(month, actor)
    settings.OPENCHARGEBACK_ADMIN_INLINE_LIMIT = 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        dispatch = emailing.emails_dispatch(email_ids=ids, group="emails-tester")
    assert (dispatch.outcomes, dispatch.queued) == ([], 2)
    assert len(callbacks) == 1
    assert mail.outbox == []
    assert set(EmailLog.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        EmailLog.Status.PENDING
    }
    callbacks[0]()  # the commit: one job per email (django-q2 runs them in-process in tests)
    assert len(mail.outbox) == 2
    assert set(EmailLog.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        EmailLog.Status.SENT
    }
