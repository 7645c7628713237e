"""Reads: rule sets, period summaries, rule previews. Return querysets or small dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum

from billing import flags
from billing.models import (
    BillingPeriod,
    Charge,
    FlagRule,
    FundOrgPattern,
    InstitutionSettings,
    PatternRule,
    TagMapping,
)
from billing.rules import PatternSpec, RuleSet, pattern_hits
from openchargeback.money import to_nanos


def load_ruleset() -> RuleSet:
    """The tag mapping and flag rules as configured in the admin."""
    mapping = {m.field: tuple(m.keys) for m in TagMapping.objects.all()}
    disabled = set(FlagRule.objects.filter(enabled=False).values_list("reason", flat=True))
    patterns = tuple(
        PatternSpec(name=p.name or p.pattern, regex=re.compile(p.pattern), target=p.target)
        for p in PatternRule.objects.filter(enabled=True)
    )
    fund_org = tuple(re.compile(p.pattern) for p in FundOrgPattern.objects.filter(enabled=True))
    institution = InstitutionSettings.load()
    return RuleSet(
        mapping=mapping,
        enabled=frozenset(set(flags.BIT) - disabled),
        patterns=patterns,
        fund_org_patterns=fund_org,
        large_charge_nanos=to_nanos(institution.large_charge_threshold),
        currency=institution.currency,
        tags_max_depth=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_DEPTH,
        tags_max_chars=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_CHARS,
    )


@dataclass(frozen=True)
class PeriodSummary:
    period: str
    status: str
    charges: int
    pending: int
    rejected: int
    billed_total: Decimal  # excluding rejected charges
    list_total: Decimal  # excluding rejected charges


def period_summaries() -> list[PeriodSummary]:
    """Every period with its charge counts and totals (rejected charges excluded)."""
    included = ~Q(charges__review_state=Charge.ReviewState.REJECTED)
    rows = BillingPeriod.objects.annotate(
        n_charges=Count("charges"),
        n_pending=Count("charges", filter=Q(charges__review_state=Charge.ReviewState.PENDING)),
        n_rejected=Count("charges", filter=Q(charges__review_state=Charge.ReviewState.REJECTED)),
        billed=Sum("charges__billed_cost", filter=included),
        listed=Sum("charges__list_cost", filter=included),
    ).order_by("period")
    return [
        PeriodSummary(
            period=p.period,
            status=p.status,
            charges=p.n_charges,
            pending=p.n_pending,
            rejected=p.n_rejected,
            billed_total=p.billed if p.billed is not None else Decimal("0.00"),
            list_total=p.listed if p.listed is not None else Decimal("0.00"),
        )
        for p in rows
    ]


@dataclass(frozen=True)
class ChargeLine:
    """Charges of one PI in one period, grouped by project, source and service."""

    project: str
    source: str
    service: str
    charges: int
    list_total: Decimal
    billed_total: Decimal
    pending: int

    @property
    def discount(self) -> Decimal:
        return self.list_total - self.billed_total


def pi_period_lines(*, email: str, period: str) -> list[ChargeLine]:
    """A PI's charges in a period (rejected ones left out), exact totals per line."""
    rows = (
        Charge.objects.filter(pi__email=email.strip().lower(), period__period=period)
        .exclude(review_state=Charge.ReviewState.REJECTED)
        .values("project__project_id", "source__slug", "service_name")
        .annotate(
            n=Count("id"),
            listed=Sum("list_cost"),
            billed=Sum("billed_cost"),
            n_pending=Count("id", filter=Q(review_state=Charge.ReviewState.PENDING)),
        )
        .order_by("project__project_id", "source__slug", "service_name")
    )
    return [
        ChargeLine(
            project=r["project__project_id"] or "",
            source=r["source__slug"],
            service=r["service_name"],
            charges=r["n"],
            list_total=r["listed"],
            billed_total=r["billed"],
            pending=r["n_pending"],
        )
        for r in rows
    ]


# --- Previews of a rule before it is saved ------------------------------------------

_PREVIEW_SAMPLE = 20


def current_period() -> BillingPeriod | None:
    """The period people are working on: the latest open one, else the latest."""
    periods = BillingPeriod.objects.order_by("-period")
    return periods.filter(status=BillingPeriod.Status.OPEN).first() or periods.first()


@dataclass(frozen=True)
class PatternPreview:
    """What a review pattern would flag in a period."""

    period: str
    scanned: int
    matched: int
    billed_total: Decimal
    sample: list[dict[str, object]]


def pattern_preview(*, pattern: str, target: str, period: BillingPeriod) -> PatternPreview:
    """Run a review pattern over every charge of `period` (the pattern must compile)."""
    spec = PatternSpec(name="preview", regex=re.compile(pattern), target=target)
    rows = (
        Charge.objects.filter(period=period)
        .values_list("pk", "service_name", "resource_id", "resource_name", "billed_cost")
        .order_by("pk")
    )
    scanned = matched = 0
    total = Decimal(0)
    sample: list[dict[str, object]] = []
    for pk, service, rid, rname, billed in rows.iterator(chunk_size=5000):
        scanned += 1
        if not pattern_hits(spec, service, rid, rname):
            continue
        matched += 1
        total += billed
        if len(sample) < _PREVIEW_SAMPLE:
            sample.append(
                {
                    "pk": pk,
                    "service_name": service,
                    "resource_id": rid,
                    "resource_name": rname,
                    "billed_cost": billed,
                }
            )
    return PatternPreview(period.period, scanned, matched, total, sample)


@dataclass(frozen=True)
class FundOrgValue:
    fund_org: str
    charges: int
    billed_total: Decimal
    matches: bool  # by the pattern under test
    valid: bool  # by the pattern under test or any other enabled pattern


def fund_org_preview(
    *, pattern: str, period: BillingPeriod, exclude_pk: int | None = None
) -> list[FundOrgValue]:
    """Every fund/org used in `period`: does the pattern accept it, is it valid overall?"""
    regex = re.compile(pattern)
    enabled = FundOrgPattern.objects.filter(enabled=True)
    if exclude_pk is not None:
        enabled = enabled.exclude(pk=exclude_pk)
    others = [re.compile(p.pattern) for p in enabled]
    rows = (
        Charge.objects.filter(period=period)
        .exclude(fund_org="")
        .values("fund_org")
        .annotate(n=Count("id"), billed=Sum("billed_cost"))
        .order_by("fund_org")
    )
    values = []
    for row in rows:
        value = row["fund_org"]
        hit = bool(regex.fullmatch(value))
        values.append(
            FundOrgValue(
                fund_org=value,
                charges=row["n"],
                billed_total=row["billed"],
                matches=hit,
                valid=hit or any(o.fullmatch(value) for o in others),
            )
        )
    return values


# --- PI and project pages -------------------------------------------------------


@dataclass(frozen=True)
class PeriodLine:
    """A PI's or project's charges in one period (rejected ones left out)."""

    period_id: int
    period: str
    status: str
    charges: int
    pending: int
    list_total: Decimal
    billed_total: Decimal

    @property
    def discount(self) -> Decimal:
        return self.list_total - self.billed_total


@dataclass(frozen=True)
class FundOrgUse:
    fund_org: str
    first: str  # first and last period it was charged to
    last: str
    charges: int
    billed_total: Decimal


@dataclass(frozen=True)
class History:
    periods: list[PeriodLine]  # newest first
    fund_orgs: list[FundOrgUse]  # most recently used first

    @property
    def billed_total(self) -> Decimal:
        return sum((p.billed_total for p in self.periods), Decimal(0))

    @property
    def list_total(self) -> Decimal:
        return sum((p.list_total for p in self.periods), Decimal(0))


def history(**owner: Any) -> History:
    """Per-period totals and fund/org history of a PI (``pi=``) or a project
    (``project=``), from the charge summaries."""
    from billing.models import ChargeSummary

    rows = ChargeSummary.objects.filter(**owner).exclude(review_state=Charge.ReviewState.REJECTED)
    periods = [
        PeriodLine(
            period_id=r["period_id"],
            period=r["period__period"],
            status=r["period__status"],
            charges=r["n"],
            pending=r["n_pending"] or 0,
            list_total=r["listed"],
            billed_total=r["billed"],
        )
        for r in rows.values("period_id", "period__period", "period__status")
        .annotate(
            n=Sum("charges"),
            n_pending=Sum("charges", filter=Q(review_state=Charge.ReviewState.PENDING)),
            listed=Sum("list_total"),
            billed=Sum("billed_total"),
        )
        .order_by("-period__period")
    ]
    uses = [
        FundOrgUse(
            fund_org=r["fund_org"],
            first=r["first"],
            last=r["last"],
            charges=r["n"],
            billed_total=r["billed"],
        )
        for r in rows.values("fund_org")
        .annotate(
            first=Min("period__period"),
            last=Max("period__period"),
            n=Sum("charges"),
            billed=Sum("billed_total"),
        )
        .order_by("-last", "fund_org")
    ]
    return History(periods, uses)
