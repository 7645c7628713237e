"""The period page reconciles the month: approved charges, statements and the
journal, each difference explained in one line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.audit import Actor
from billing.models import BillingPeriod
from billing.roles import VIEWER
from billing.services import period_close
from journals.services import journal_export
from openchargeback.cycle import reconciliation
from statements.services import statements_generate
from tests.conftest import role_client
from tests.factories import FOCUS_ROW_OWNER, make_charges

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(defaults: None, actor: Actor) -> BillingPeriod:
    """2025-01: three charges that round on their lines, and a -$2.61 credit on a fund of
    bob's that has nothing else (a net credit: the GL books it on the credit side)."""
    bob = {"pi": "bob@example.edu", "project": "proj-c"}
    make_charges(
        {"resource": "a", "billed": "10.004"},
        {"resource": "b", "service": "Amazon S3", "billed": "0.004"},
        {"resource": "c", **bob, "billed": "3.333"},
        {
            "resource": "credit",
            **bob,
            "service": "Support",
            "billed": "-2.61",
            "fund_org": "NSF-CHE-2025",
        },
        **FOCUS_ROW_OWNER,
    )
    period_close(period="2025-01", actor=actor)
    return BillingPeriod.objects.get(period="2025-01")


def _figures(period: BillingPeriod) -> list[tuple[str, Decimal, str]]:
    return [(f.label, f.amount, f.explanation) for f in reconciliation(period).figures]


def test_before_statements_only_the_charges_are_shown(closed: BillingPeriod) -> None:
    result = reconciliation(closed)
    assert result.state == "incomplete"
    assert _figures(closed) == [
        (
            "Approved charges, exact",
            Decimal("10.731"),
            "The sum of every approved charge's billed cost, before any rounding.",
        )
    ]


def test_rounding_and_the_gl_gross_up_are_explained_to_the_cent(
    closed: BillingPeriod, actor: Actor
) -> None:
    statements_generate(period="2025-01", actor=actor, sync=True)
    export = journal_export(period="2025-01", format="gl", actor=actor)
    result = reconciliation(closed)
    assert result.state == "reconciles"
    (_, approved, _), (label, due, rounding), (_, debits, journal) = _figures(closed)
    assert approved == Decimal("10.731")
    # Lines: 10.00 + 0.00 (ada) and 3.33 - 2.61 (bob, two services): 10.72.
    assert due == Decimal("10.72")
    assert label == "Statements (2 current), amount due"
    assert rounding == (
        "Each statement line (PI, project, source, service) is rounded to the cent; "
        "the roundings add up to -$0.01."
    )
    # The credit is booked on the other side: both columns grow by $2.61.
    assert debits == export.debit_total == export.credit_total == Decimal("13.33")
    assert journal.startswith(
        "Debits = credits. They exceed the statements by $2.61: a net credit (a negative "
        "line) is booked on the other side of the ledger"
    )
    page = role_client(VIEWER).get(f"/admin/billing/billingperiod/{closed.pk}/change/")
    html = page.content.decode()
    assert '<span class="ocb-ok">reconciles</span>' in html
    assert "$10.731" in html
    assert "$13.33" in html
    assert "exceed the statements by $2.61" in html


def test_a_stale_statement_or_export_is_named(closed: BillingPeriod, actor: Actor) -> None:
    statements_generate(period="2025-01", actor=actor, sync=True)
    journal_export(period="2025-01", format="gl", actor=actor)
    from billing.services import period_reopen

    period_reopen(period="2025-01", actor=actor, reason="late credit")
    from billing.models import Charge
    from billing.review import charges_review

    charges_review(
        charges=Charge.objects.filter(resource_id="b"), action="reject", actor=actor, note="x"
    )
    result = reconciliation(BillingPeriod.objects.get(pk=closed.pk))
    assert result.state == "stale"
    explanations = [f.explanation for f in result.figures]
    assert "The charges changed since these statements: generate them again." in explanations
    assert "The charges changed since this export: export the journal again." in explanations
