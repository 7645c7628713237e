"""Charge summaries: a period's charges added up by source, PI, project,
fund/org and review state (billing.models.ChargeSummary).

Every service that writes charges calls :func:`rebuild` for the periods it
touched, inside its own transaction, so a summary is never behind its
charges. Readers (dashboard, period, PI and project pages) add summary rows
up; the totals are exact (integer nano-units summed by the database).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from billing.models import Charge, ChargeSummary

_COLUMNS = "period_id, source_id, pi_id, project_id, fund_org, review_state"


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
