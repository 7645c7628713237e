"""The test factories build what the product would: exact money, summaries, links."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from billing.models import BillingPeriod, Charge, ChargeSummary
from statements.models import StatementCharge
from tests.factories import make_charge, make_charges, make_statement

pytestmark = pytest.mark.django_db


def test_a_charge_stores_its_money_exactly_in_nano_units() -> None:
    charge = make_charge(billed="10.000000001", list_cost=Decimal("12.5"), pi="Ada@Example.edu")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT billed_cost, list_cost, contracted_cost FROM billing_charge WHERE id = %s",
            [charge.pk],
        )
        assert cursor.fetchone() == (10_000_000_001, 12_500_000_000, 10_000_000_001)
    stored = Charge.objects.get(pk=charge.pk)
    assert stored.billed_cost == Decimal("10.000000001")
    assert stored.pi is not None
    assert stored.pi.email == "ada@example.edu"


def test_a_float_amount_is_refused() -> None:
    with pytest.raises(TypeError, match="never be a float"):
        make_charge(billed=1.5)  # type: ignore[arg-type]
    assert not Charge.objects.exists()
    assert not BillingPeriod.objects.exists()


def test_charges_keep_the_summaries_of_their_period_current() -> None:
    make_charge(billed="1.25", project="proj-a", pi="ada@example.edu")
    make_charge(billed="2.50", project="proj-a", pi="ada@example.edu", resource="r-2")
    summary = ChargeSummary.objects.get()
    assert (summary.charges, summary.billed_total) == (2, Decimal("3.75"))


def test_a_statement_covers_the_charges_it_is_given() -> None:
    charges = [make_charge(billed="1.004", resource=f"r-{n}") for n in range(2)]
    first = make_statement(billed_total="2.01", exact_billed="2.008", charges=charges)
    second = make_statement(pi="bob@example.edu")
    assert first.number == "2025-01-0001-v1"
    assert second.number == "2025-01-0002-v1"
    assert (first.billed_total, first.exact_billed, first.discount_total) == (
        Decimal("2.01"),
        Decimal("2.008"),
        Decimal("0.00"),
    )
    assert first.charge_count == 2
    assert set(
        StatementCharge.objects.filter(statement=first).values_list("charge_id", flat=True)
    ) == {c.pk for c in charges}


def test_charges_of_one_import_are_its_lines_with_their_owners_and_tags() -> None:
    made = make_charges(
        {"resource": "a", "billed": "1.10"},
        {"resource": "b", "billed": "2.20", "pi": "Bob@Example.edu", "project": "proj-b"},
        {"resource": "c", "billed": "0.000000001", "pi": None},
        pi="ada@example.edu",
        project="proj-a",
        fund_org="NSF-BIO-2024",
    )
    assert [c.line_number for c in made] == [2, 3, 4]
    assert len({c.import_record_id for c in made}) == 1
    stored = list(Charge.objects.order_by("line_number").select_related("pi", "project__pi"))
    assert [(c.pi and c.pi.email, c.project and c.project.project_id) for c in stored] == [
        ("ada@example.edu", "proj-a"),
        ("bob@example.edu", "proj-b"),
        (None, "proj-a"),
    ]
    assert stored[1].project is not None
    assert stored[1].project.pi == stored[1].pi  # a new project is its first row's PI's
    assert stored[2].tags == {"pi_email": "", "project_id": "proj-a", "fund_org": "NSF-BIO-2024"}
    assert sum(s.billed_total for s in ChargeSummary.objects.all()) == Decimal("3.300000001")
