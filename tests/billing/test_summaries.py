"""Charge summaries stay equal to the charges they add up, after every kind of write."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Count, Q, Sum

from billing import summaries
from billing.audit import Actor
from billing.models import BillingPeriod, Charge, ChargeSummary, Source
from billing.review import charges_fix_attribution, charges_reapply_rules, charges_review
from ingest.focus.services import file_import
from tests.conftest import focus_row

KEY = ("period_id", "source_id", "pi_id", "project_id", "fund_org", "review_state")


def live() -> dict[tuple[Any, ...], tuple[int, int, Decimal, Decimal]]:
    rows = Charge.objects.values(*KEY).annotate(
        n=Count("id"),
        f=Count("id", filter=~Q(flags=0)),
        listed=Sum("list_cost"),
        billed=Sum("billed_cost"),
    )
    return {tuple(r[k] for k in KEY): (r["n"], r["f"], r["listed"], r["billed"]) for r in rows}


def summarised() -> dict[tuple[Any, ...], tuple[int, int, Decimal, Decimal]]:
    return {
        tuple(getattr(s, k) for k in KEY): (s.charges, s.flagged, s.list_total, s.billed_total)
        for s in ChargeSummary.objects.all()
    }


def assert_in_step() -> None:
    assert summarised() == live()


@pytest.fixture
def two_months(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> Source:
    aws = Source.objects.get(slug="aws")
    rows = [
        focus_row(resource="vm-1", billed="10.005", list_cost="12.004"),
        focus_row(resource="vm-2", billed="0.000000001", list_cost="1"),
        focus_row(resource="credit", billed="-4.50", list_cost="0", project="proj-b"),
        focus_row(resource="orphan", pi="", project="", billed="5.00"),
        focus_row(resource="feb", period="2025-02", billed="7.77", pi="bob@example.edu"),
    ]
    file_import(path=focus_file(rows), source=aws, actor=actor)
    return aws


def test_import_summarises_every_period_it_touches(two_months: Source) -> None:
    assert ChargeSummary.objects.values("period").distinct().count() == 2
    assert_in_step()
    jan = ChargeSummary.objects.filter(period__period="2025-01")
    assert sum(s.billed_total for s in jan) == Decimal("10.505000001")
    assert sum(s.flagged for s in jan) == 1  # the orphan


@pytest.mark.parametrize("track_limit", [summaries.TRACK_LIMIT, 1])
def test_review_fix_and_reapply_keep_summaries_in_step(
    two_months: Source, actor: Actor, track_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small changes are tracked charge by charge, large ones recounted per period."""
    monkeypatch.setattr(summaries, "TRACK_LIMIT", track_limit)
    orphan = Charge.objects.filter(resource_id="orphan")
    charges_review(charges=orphan, action="reject", actor=actor, note="not ours")
    assert_in_step()
    charges_review(charges=orphan, action="reset", actor=actor)
    assert_in_step()
    charges_fix_attribution(
        charges=orphan,
        actor=actor,
        pi_email="cy@example.edu",
        create_pi=True,
        pi_name="Cy",
        project_id="proj-z",
        create_project=True,
    )
    assert_in_step()
    assert ChargeSummary.objects.get(project__project_id="proj-z").review_state == "approved"
    charges_reapply_rules(charges=Charge.objects.all(), actor=actor)
    assert_in_step()
    charges_review(charges=Charge.objects.all(), action="reject", actor=actor, note="all")
    assert_in_step()
    assert set(ChargeSummary.objects.values_list("review_state", flat=True)) == {"rejected"}


def test_replace_and_reimport_keep_summaries_in_step(
    two_months: Source, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [focus_row(resource="vm-1", billed="10.005", list_cost="12.004")]
    file_import(path=focus_file(rows, name="jan.csv"), source=two_months, actor=actor, replace=True)
    assert_in_step()
    assert Charge.objects.filter(period__period="2025-01").count() == 1
    # nothing new: the transaction rolls back, summaries untouched and still right
    file_import(path=focus_file(rows, name="again.csv"), source=two_months, actor=actor)
    assert_in_step()


def test_a_failed_import_leaves_summaries_alone(
    two_months: Source, focus_file: Callable[..., Path], actor: Actor
) -> None:
    before = summarised()
    BillingPeriod.objects.filter(period="2025-02").update(status="closed")
    rows = [focus_row(resource="late", period="2025-02", billed="1.00")]
    with pytest.raises(Exception, match="closed"):
        file_import(path=focus_file(rows, name="late.csv"), source=two_months, actor=actor)
    assert summarised() == before


@pytest.mark.parametrize("track_limit", [summaries.TRACK_LIMIT, 1])
def test_currency_conversion_keeps_summaries_in_step(
    defaults: None,
    focus_file: Callable[..., Path],
    actor: Actor,
    track_limit: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Converting at import, on a recorded rate and on a changed rate."""
    from billing.exchange import exchange_rate_set

    monkeypatch.setattr(summaries, "TRACK_LIMIT", track_limit)
    aws = Source.objects.get(slug="aws")
    exchange_rate_set(currency="GBP", period="2025-01", rate="1.25", actor=actor)
    rows = [
        focus_row(resource="eu-1", billed="100.00", list_cost="120", currency="EUR"),
        focus_row(resource="eu-2", billed="0.000000003", currency="EUR", project="proj-b"),
        focus_row(resource="uk", billed="10.00", currency="GBP"),
        focus_row(resource="us", billed="5.00"),
    ]
    file_import(path=focus_file(rows), source=aws, actor=actor)
    assert_in_step()
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    assert_in_step()
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    exchange_rate_set(currency="EUR", period="2025-01", rate="0.5", actor=actor)
    assert_in_step()
    billed = sum(s.billed_total for s in ChargeSummary.objects.all())
    assert billed == Decimal("50.000000002") + Decimal("12.50") + Decimal("5.00")
