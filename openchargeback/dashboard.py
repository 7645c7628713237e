"""The admin index: the current period at a glance, read from the charge
summaries so it stays fast on millions of charges."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import F, Q, Sum

from billing.models import BillingPeriod, Charge, ChargeSummary
from ingest.focus.basis import DIFFERENCE_LABELS, difference_kind
from ingest.models import Import
from ingest.usage.ratecard import rate_card_sources
from openchargeback.cycle import Cycle, period_cycle

REJECTED = Charge.ReviewState.REJECTED
HISTORY = 12
TOP_PROJECTS = 10


@dataclass(frozen=True)
class Month:
    """A month in the dashboard's switcher."""

    period: BillingPeriod
    pending: int  # charges waiting for review
    selected: bool


@dataclass(frozen=True)
class Dashboard:
    period: BillingPeriod | None
    cycle: Cycle | None
    # last HISTORY periods, oldest first; source (display name) -> [(list, billed)] per period
    periods: list[str]
    by_source: dict[str, list[tuple[Decimal, Decimal]]]
    top_projects: list[tuple[str, Decimal]]
    # list minus billed per source by display name, labelled "Amazon Web Services:
    # provider discount" or "HPC cluster: institutional subsidy" (ingest.usage.ratecard)
    subsidy_by_source: list[tuple[str, Decimal]]
    recent_imports: list[Import]
    # every month not finalized (and the one shown), oldest first
    months: list[Month] = field(default_factory=list)
    # a ?period= that names no period (the default month is shown instead)
    unknown_period: str = ""


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


def default_period(unfinished: list[BillingPeriod]) -> BillingPeriod | None:
    """The month the dashboard opens on: the oldest open month; else the oldest
    closed one not finalized; else (every month finalized) the latest month."""
    for status in (BillingPeriod.Status.OPEN, BillingPeriod.Status.CLOSED):
        found = [p for p in unfinished if p.status == status]
        if found:
            return found[0]
    return BillingPeriod.objects.order_by("-period").first()


def months(unfinished: list[BillingPeriod], shown: BillingPeriod) -> list[Month]:
    """The switcher: every month not finalized, with its pending count (the
    month shown is listed too when it is finalized)."""
    periods = sorted({*unfinished, shown}, key=lambda p: p.period)
    pending = dict(
        ChargeSummary.objects.filter(period__in=periods, review_state=Charge.ReviewState.PENDING)
        .values("period_id")
        .annotate(n=Sum("charges"))
        .values_list("period_id", "n")
    )
    return [Month(p, pending.get(p.pk, 0), p.pk == shown.pk) for p in periods]


def build(user: Any, requested: str = "") -> Dashboard:
    """The dashboard of the month `requested` ("YYYY-MM", from ?period=), or of
    the default month (default_period)."""
    unfinished = list(
        BillingPeriod.objects.exclude(status=BillingPeriod.Status.FINALIZED).order_by("period")
    )
    period = BillingPeriod.objects.filter(period=requested).first() if requested else None
    unknown = requested if requested and period is None else ""
    period = period or default_period(unfinished)
    if period is None:
        return Dashboard(
            None,
            None,
            [],
            {},
            [],
            [],
            list(Import.objects.select_related("source")[:8]),
            unknown_period=unknown,
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
        months=months(unfinished, period),
        unknown_period=unknown,
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
