"""Charge summaries: a period's charges added up by source, PI, project,
fund/org and review state (billing.models.ChargeSummary).

Every service that writes charges keeps the summaries of what it touched
up to date inside its own transaction, so a summary is never behind its
charges:

- a few charges changed (review, attribution fixes): :func:`tracking` adds
  up those charges before and after the change and applies the difference;
- charges added by an import: :func:`add` applies their sums;
- anything larger (a replace import, thousands of charges re-evaluated):
  :func:`rebuild` recomputes the periods from their charges.

Readers (dashboard, period, PI and project pages) add summary rows up; the
totals are exact (integer nano-units summed by the database).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from billing.models import Charge, ChargeSummary

KEY = ("period_id", "source_id", "pi_id", "project_id", "fund_org", "review_state")
_COLUMNS = ", ".join(KEY)
# Above this many charges, recomputing their periods is cheaper than tracking.
TRACK_LIMIT = 20_000
_BATCH = 500

Key = tuple[Any, ...]
Sums = list[Any]  # [charges, flagged, list_total, billed_total]


def rebuild(period_ids: Iterable[int]) -> None:
    """Recompute the summaries of these periods from their charges."""
    ids = sorted({pk for pk in period_ids if pk is not None and pk > 0})
    if not ids:
        return
    summary, charge = ChargeSummary._meta.db_table, Charge._meta.db_table
    ChargeSummary.objects.filter(period_id__in=ids).delete()
    sql = (  # fixed table and column names
        f"INSERT INTO {summary} ({_COLUMNS}, charges, flagged, list_total, billed_total) "  # noqa: S608
        f"SELECT {_COLUMNS}, COUNT(*), SUM(CASE WHEN flags <> 0 THEN 1 ELSE 0 END), "
        f"SUM(list_cost), SUM(billed_cost) FROM {charge} WHERE period_id = %s "
        f"GROUP BY {_COLUMNS}"
    )
    with connection.cursor() as cursor:
        for pk in ids:
            # One GROUP BY per period over the (period, review_state) index.
            cursor.execute(sql, [pk])


def _sums(charges: QuerySet[Charge], into: dict[Key, Sums] | None = None) -> dict[Key, Sums]:
    totals = {} if into is None else into
    rows = charges.values(*KEY).annotate(
        n=Count("id"),
        f=Count("id", filter=~Q(flags=0)),
        listed=Sum("list_cost"),
        billed=Sum("billed_cost"),
    )
    for row in rows.order_by():
        key = tuple(row[k] for k in KEY)
        sums = totals.setdefault(key, [0, 0, Decimal(0), Decimal(0)])
        sums[0] += row["n"]
        sums[1] += row["f"]
        sums[2] += row["listed"]
        sums[3] += row["billed"]
    return totals


def _sums_of_ids(ids: Sequence[int]) -> dict[Key, Sums]:
    totals: dict[Key, Sums] = {}
    for start in range(0, len(ids), _BATCH):
        _sums(Charge.objects.filter(pk__in=ids[start : start + _BATCH]), into=totals)
    return totals


def _apply(delta: dict[Key, Sums]) -> None:
    """Add `delta` to the summary rows (creating and deleting rows as needed)."""
    delta = {key: sums for key, sums in delta.items() if any(sums)}
    if not delta:
        return
    periods = {key[0] for key in delta}
    existing = {
        tuple(getattr(row, k) for k in KEY): row
        for row in ChargeSummary.objects.filter(period_id__in=periods)
    }
    changed, created, emptied = [], [], []
    for key, (n, flagged, listed, billed) in delta.items():
        row = existing.get(key)
        if row is None:
            row = ChargeSummary(
                **dict(zip(KEY, key, strict=True)),
                charges=0,
                flagged=0,
                list_total=Decimal(0),
                billed_total=Decimal(0),
            )
            created.append(row)
        elif row.charges + n != 0:
            changed.append(row)
        row.charges += n
        row.flagged += flagged
        row.list_total += listed
        row.billed_total += billed
        if row.charges < 0 or row.flagged < 0:
            raise RuntimeError(f"charge summary {key} would go negative")
        if row.charges == 0 and row.pk is not None:
            emptied.append(row.pk)
    ChargeSummary.objects.filter(pk__in=emptied).delete()
    ChargeSummary.objects.bulk_update(
        changed, ["charges", "flagged", "list_total", "billed_total"], batch_size=1000
    )
    ChargeSummary.objects.bulk_create([row for row in created if row.charges], batch_size=1000)


def add(charges: QuerySet[Charge]) -> None:
    """New charges (already inserted): add their sums."""
    _apply(_sums(charges))


@contextmanager
def tracking(ids: Sequence[int], period_ids: Iterable[int] = ()) -> Iterator[None]:
    """Keep the summaries right across a change to the charges `ids` (whose
    periods are `period_ids`, needed only when there are too many to track)."""
    if len(ids) > TRACK_LIMIT:
        yield
        rebuild(period_ids)
        return
    before = _sums_of_ids(ids)
    yield
    after = _sums_of_ids(ids)
    delta = {key: list(sums) for key, sums in after.items()}
    for key, sums in before.items():
        into = delta.setdefault(key, [0, 0, Decimal(0), Decimal(0)])
        for i, value in enumerate(sums):
            into[i] -= value
    _apply(delta)
