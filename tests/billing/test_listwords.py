"""The lists' words: flag chips in the review queue, audit events as sentences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from billing.audit import Actor
from billing.listwords import action_words, audit_sentence, object_type_words
from billing.models import AuditEvent, BillingPeriod, Charge, Source
from billing.review import charges_review
from billing.roles import REVIEWER, VIEWER
from billing.services import period_close
from ingest.focus.services import file_import
from tests.conftest import focus_row, role_client


def event(action: str, object_type: str, object_id: str = "", object_repr: str = "") -> AuditEvent:
    return AuditEvent(
        action=action, object_type=object_type, object_id=object_id, object_repr=object_repr
    )


def test_audit_events_read_as_sentences() -> None:
    assert audit_sentence(event("charge.approve", "billing.charge", "123", "Charge 123")) == (
        "Approved charge #123"
    )
    assert audit_sentence(event("period.close", "billing.billingperiod", "4", "2026-10")) == (
        "Closed period 2026-10"
    )
    assert audit_sentence(event("pi.create", "billing.pi", "2", "Ada <ada@example.edu>")) == (
        "Added PI Ada <ada@example.edu>"
    )
    assert audit_sentence(event("import.create", "ingest.import", "7", "aws.csv (7)")) == (
        "Imported aws.csv (7)"
    )
    queued = event("statement.email.queue", "statements.emaillog", "", "21 emails for 2026-08")
    assert audit_sentence(queued) == "Queued 21 emails for 2026-08"
    # An action without a sentence of its own is spelled out, never dropped.
    assert audit_sentence(event("widget.frobnicate", "acme.widget", "9", "w9")) == (
        "Widget frobnicate: widget w9"
    )
    assert action_words("accountmapping.create") == "Account mapping: create"
    assert action_words("exchange_rate.change") == "Exchange rate: change"
    assert object_type_words("billing.billingperiod") == "Period"


def test_queue_and_audit_log_render_words(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [
        focus_row(resource="vm", billed="12.50"),
        focus_row(resource="orphan", pi="yuki@", project="", fund_org="", billed="3.00"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    orphan = Charge.objects.get(resource_id="orphan")
    charges_review(
        charges=Charge.objects.filter(pk=orphan.pk),
        action="reject",
        actor=actor,
        note="no owner: raised with the account holder",
    )
    period_close(period="2025-01", actor=actor)

    queue = role_client(REVIEWER).get("/admin/billing/charge/").content.decode()
    assert '<span class="ocb-chip" title="Invalid PI email">Bad PI email</span>' in queue
    assert '<span class="ocb-chip" title="Missing project">No project</span>' in queue
    assert '<th scope="col" class="sortable column-billed_amount">' in queue

    log = role_client(VIEWER).get("/admin/billing/auditevent/").content.decode()
    charge_url = f"/admin/billing/charge/{orphan.pk}/change/"
    assert f'<a href="{charge_url}" title="charge.reject">Rejected charge #{orphan.pk}</a>' in log
    assert "no owner: raised with the account holder" in log
    period = BillingPeriod.objects.get(period="2025-01")
    assert (
        f'<a href="/admin/billing/billingperiod/{period.pk}/change/" title="period.close">'
        "Closed period 2025-01</a>"
    ) in log
    assert "Charge: reject" in log  # the action filter, in words
