"""Period pages: lifecycle buttons by role, POST only, typed confirmation to finalize."""

from __future__ import annotations

import pytest

from billing import flags
from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod, Charge
from billing.review import charges_review
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import period_open
from tests.conftest import role_client
from tests.factories import FOCUS_ROW_OWNER, make_charges, make_pi, make_project

pytestmark = pytest.mark.django_db

MISSING_PI = flags.to_mask(["missing_pi"])


@pytest.fixture
def period(defaults: None, actor: Actor) -> BillingPeriod:
    """2025-01 as an import opened it: one charge of ada's, one pending with no PI."""
    period_open(period="2025-01", actor=actor, note="first import")
    make_project("proj-a", pi=make_pi("ada@example.edu"))
    make_charges(
        {"resource": "a"},
        {"resource": "b", "pi": None, "review_state": "pending", "flags": MISSING_PI},
        **FOCUS_ROW_OWNER,
    )
    return BillingPeriod.objects.get(period="2025-01")


def _url(period: BillingPeriod, step: str = "") -> str:
    base = f"/admin/billing/billingperiod/{period.pk}/"
    return f"{base}transition/{step}/" if step else base + "change/"


@pytest.mark.parametrize("role", [VIEWER, REVIEWER])
def test_viewers_and_reviewers_see_no_lifecycle_buttons(period: BillingPeriod, role: str) -> None:
    client = role_client(role)
    page = client.get(_url(period))
    assert page.status_code == 200
    assert b"Close period" not in page.content
    assert client.post(_url(period, "close")).status_code == 403
    assert BillingPeriod.objects.get(pk=period.pk).status == "open"


def test_transitions_are_post_only(period: BillingPeriod) -> None:
    client = role_client(BILLING_ADMIN)
    assert client.get(_url(period, "close")).status_code == 405


def test_billing_admin_closes_reopens_and_finalizes(period: BillingPeriod) -> None:
    client = role_client(BILLING_ADMIN)
    assert b"Close period 2025-01" in client.get(_url(period)).content

    # Pending charges block closing; the message says so.
    response = client.post(_url(period, "close"), {"note": "month end"}, follow=True)
    assert b"pending review" in response.content
    assert BillingPeriod.objects.get(pk=period.pk).status == "open"

    client.post(_url(period, "close"), {"note": "override", "allow_pending": "on"})
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"

    client.post(_url(period, "reopen"), {"note": ""})
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"  # reason required
    client.post(_url(period, "reopen"), {"note": "late credit"})
    assert BillingPeriod.objects.get(pk=period.pk).status == "open"

    charges_review(charges=Charge.objects.all(), action="reject", actor=Actor("t"), note="x")
    client.post(_url(period, "close"), {})
    page = client.get(_url(period))
    assert b"Finalize period 2025-01" in page.content

    client.post(_url(period, "finalize"), {"confirm": "2025-02"})
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"  # wrong confirmation
    client.post(_url(period, "finalize"), {"confirm": "2025-01", "note": "done"})
    assert BillingPeriod.objects.get(pk=period.pk).status == "finalized"
    actions = list(
        AuditEvent.objects.filter(object_type="billing.billingperiod")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-4:] == ["period.close", "period.reopen", "period.close", "period.finalize"]
    transitions = AuditEvent.objects.filter(
        action__in=["period.close", "period.reopen", "period.finalize"]
    )
    assert {e.channel for e in transitions} == {"admin"}


def test_finalize_blockers_are_shown(period: BillingPeriod) -> None:
    client = role_client(BILLING_ADMIN)
    client.post(_url(period, "close"), {"allow_pending": "on"})
    page = client.get(_url(period))
    assert b"Finalizing is blocked" in page.content
    assert b"1 charge pending review" in page.content
