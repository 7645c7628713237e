"""The admin index: the current period at a glance, read from the charge
summaries so it stays fast on millions of charges."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, Q, Sum

from billing.models import BillingPeriod, Charge, ChargeSummary
from billing.selectors import current_period
from ingest.basis import DIFFERENCE_LABELS, difference_kind
from ingest.models import Import
from ingest.ratecard import rate_card_sources
from openchargeback.cycle import Cycle, period_cycle

REJECTED = Charge.ReviewState.REJECTED
HISTORY = 12
TOP_PROJECTS = 10


@dataclass(frozen=True)
class Dashboard:
    period: BillingPeriod | None
    cycle: Cycle | None
    # last HISTORY periods, oldest first; source (display name) -> [(list, billed)] per period
    periods: list[str]
    by_source: dict[str, list[tuple[Decimal, Decimal]]]
    top_projects: list[tuple[str, Decimal]]
    # list minus billed per source by display name, labelled "Amazon Web Services:
    # provider discount" or "HPC cluster: institutional subsidy" (ingest.ratecard)
    subsidy_by_source: list[tuple[str, Decimal]]
    recent_imports: list[Import]


def history(periods: list[BillingPeriod]) -> dict[str, list[tuple[Decimal, Decimal]]]:
    """(list, billed) per source for each of `periods`, rejected charges left out."""
    index = {p.pk: i for i, p in enumerate(periods)}
    rows = (
        ChargeSummary.objects.filter(period__in=periods)
        .exclude(review_state=REJECTED)
        .values("period_id", "source__slug", "source__name")
        .annotate(listed=Sum("list_total"), billed=Sum("billed_total"))
    )
    zero = (Decimal(0), Decimal(0))
    series: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(lambda: [zero] * len(periods))
    for row in rows:
        name = _name(row["source__slug"], row["source__name"])
        pairs = series[name]
        listed, billed = pairs[index[row["period_id"]]]
        pairs[index[row["period_id"]]] = (listed + row["listed"], billed + row["billed"])
    return dict(sorted(series.items()))


def _name(slug: str, name: str) -> str:
    """What a chart calls a source: its display name (the slug when it has none)."""
    return name or slug


def build(user: Any) -> Dashboard:
    period = current_period()
    if period is None:
        return Dashboard(
            None, None, [], {}, [], [], list(Import.objects.select_related("source")[:8])
        )
    recent = list(
        BillingPeriod.objects.filter(period__lte=period.period).order_by("-period")[:HISTORY]
    )
    recent.reverse()
    included = ChargeSummary.objects.filter(period=period).exclude(review_state=REJECTED)
    top = (
        included.filter(~Q(project=None))
        .values(name=F("project__project_id"))
        .annotate(billed=Sum("billed_total"))
        .order_by("-billed", "name")[:TOP_PROJECTS]
    )
    subsidy = (
        included.values("source__slug", "source__name")
        .annotate(listed=Sum("list_total"), billed=Sum("billed_total"))
        .order_by("source__name", "source__slug")
    )
    rate_card = rate_card_sources()
    return Dashboard(
        period=period,
        cycle=period_cycle(period, user),
        periods=[p.period for p in recent],
        by_source=history(recent),
        top_projects=[(r["name"], r["billed"]) for r in top],
        subsidy_by_source=[
            (
                f"{_name(r['source__slug'], r['source__name'])}: "
                f"{_difference(r['source__slug'], rate_card)}",
                r["listed"] - r["billed"],
            )
            for r in subsidy
        ],
        recent_imports=list(Import.objects.select_related("source")[:8]),
    )


def _difference(slug: str, rate_card: frozenset[str]) -> str:
    kind = difference_kind(rate_card=slug in rate_card)
    return DIFFERENCE_LABELS[kind].lower()


def charts(board: Dashboard) -> dict[str, Any]:
    """The dashboard's three charts (server-rendered SVG with data tables)."""
    from billing.models import InstitutionSettings
    from openchargeback import charts as svg

    if board.period is None:
        return {}
    fmt = InstitutionSettings.cached().format_money
    period = board.period.period
    return {
        "history": svg.period_bars(
            board.periods,
            board.by_source,
            fmt,
            title=f"List price and billed by source, {board.periods[0]} to {period}",
            id="chart-history",
        ),
        "top_projects": svg.hbars(
            board.top_projects,
            fmt,
            title=f"Top projects by billed, {period}",
            id="chart-top",
            label_header="Project",
            value_header="Billed",
        ),
        "subsidy": svg.hbars(
            board.subsidy_by_source,
            fmt,
            title=f"Provider discount and institutional subsidy (list minus billed) by source, "
            f"{period}",
            id="chart-subsidy",
            label_header="Source",
            value_header="List minus billed",
        ),
    }
