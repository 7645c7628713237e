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
