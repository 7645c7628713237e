"""Reads: rule sets, period summaries. Return querysets or small dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum

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
from billing.rules import PatternSpec, RuleSet
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
