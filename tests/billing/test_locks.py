"""Finalized periods and the audit trail are protected below the ORM (triggers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod, Charge, Source
from billing.review import charges_review
from billing.services import period_close, period_finalize
from ingest.focus.services import file_import
from tests.conftest import focus_row

pytestmark = pytest.mark.django_db


@contextmanager
def refused(match: str) -> Iterator[None]:
    with pytest.raises(DatabaseError, match=match), transaction.atomic():
        yield


@pytest.fixture
def finalized(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> BillingPeriod:
    rows = [focus_row(resource="a", billed="5.00"), focus_row(resource="b", billed="6.00")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    charges_review(charges=Charge.objects.all(), action="reject", actor=actor, note="test data")
    period_close(period="2025-01", actor=actor)
    return period_finalize(period="2025-01", actor=actor)


def test_queryset_update_of_finalized_charges_is_refused(finalized: BillingPeriod) -> None:
    with refused("finalized period"):
        Charge.objects.filter(period=finalized).update(billed_cost=Decimal("1.00"))
    assert Charge.objects.get(resource_id="a").billed_cost == Decimal("5.00")


def test_queryset_delete_of_finalized_charges_is_refused(finalized: BillingPeriod) -> None:
    with refused("finalized period"):
        Charge.objects.filter(period=finalized).delete()
    assert Charge.objects.count() == 2


def test_raw_sql_on_finalized_charges_is_refused(finalized: BillingPeriod) -> None:
    with refused("finalized period"), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_charge SET review_state = 'approved'")
    with refused("finalized period"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_charge")
    assert set(Charge.objects.values_list("review_state", flat=True)) == {"rejected"}


def test_new_charges_cannot_be_added_to_a_finalized_period(finalized: BillingPeriod) -> None:
    template = Charge.objects.get(resource_id="a")
    template.pk = None
    template.fingerprint = "f" * 32
    with refused("finalized period"):
        template.save()


def test_a_bulk_insert_touching_a_finalized_period_is_refused_whole(
    finalized: BillingPeriod,
) -> None:
    """One statement copying both charges again (as COPY or a bulk insert would):
    refused, nothing added (PostgreSQL checks once per statement)."""
    fields = [
        f.column for f in Charge._meta.concrete_fields if f.column not in ("id", "occurrence")
    ]
    columns = ", ".join(fields)
    with refused("finalized period"), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO billing_charge ({columns}, occurrence) "  # noqa: S608 - fixed names
            f"SELECT {columns}, occurrence + 1 FROM billing_charge"
        )
    assert Charge.objects.count() == 2


def test_a_finalized_period_cannot_be_reopened_or_deleted(finalized: BillingPeriod) -> None:
    with refused("permanent"):
        BillingPeriod.objects.filter(pk=finalized.pk).update(status="open")
    with refused("permanent"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_billingperiod WHERE status = 'finalized'")
    assert BillingPeriod.objects.get(pk=finalized.pk).status == "finalized"


def test_notes_of_a_finalized_period_can_still_be_appended(finalized: BillingPeriod) -> None:
    BillingPeriod.objects.filter(pk=finalized.pk).update(notes=finalized.notes + "\nlater note")
    assert BillingPeriod.objects.get(pk=finalized.pk).notes.endswith("later note")


def test_open_period_charges_can_still_change(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    file_import(path=focus_file([focus_row()]), source=Source.objects.get(slug="aws"), actor=actor)
    assert Charge.objects.update(review_note="checked") == 1


def test_audit_events_cannot_be_changed_or_deleted(finalized: BillingPeriod) -> None:
    count = AuditEvent.objects.count()
    with refused("append-only"):
        AuditEvent.objects.update(actor="someone else")
    with refused("append-only"):
        AuditEvent.objects.all().delete()
    with refused("append-only"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_auditevent")
    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(actor="someone else").exists()


def _sqlite_triggers() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-specific trigger handling")
def test_ingest_leaves_the_insert_trigger_in_place(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    before = _sqlite_triggers()
    assert "charge_finalized_insert" in before
    file_import(path=focus_file([focus_row()]), source=Source.objects.get(slug="aws"), actor=actor)
    assert _sqlite_triggers() == before


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-specific trigger handling")
def test_failed_ingest_leaves_the_insert_trigger_in_place(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    from ingest.focus.services import IngestError

    before = _sqlite_triggers()
    bad = [focus_row(), focus_row(resource="x", billed="abc")]
    with pytest.raises(IngestError):
        file_import(path=focus_file(bad), source=Source.objects.get(slug="aws"), actor=actor)
    assert _sqlite_triggers() == before
