"""Reads: rule sets, period summaries, rule previews, the source of a file name.
Return querysets or small dataclasses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Substr

from billing import flags
from billing.models import (
    BillingPeriod,
    Charge,
    FlagRule,
    FundOrgPattern,
    InstitutionSettings,
    PatternRule,
    Source,
    TagMapping,
)
from billing.patterns import PatternError, UserPattern, compile_user_pattern
from billing.rules import PatternSpec, RuleSet, pattern_hits
from openchargeback.money import to_nanos


def load_ruleset() -> RuleSet:
    """The tag mapping and flag rules as configured in the admin.

    A saved pattern RE2 cannot run (saved before patterns ran on RE2, or
    written to the database directly) is skipped, and says so in
    ``RuleSet.skipped``; closing the month is blocked until it is fixed
    (billing.blockers.pattern_blockers)."""
    mapping = {m.field: tuple(m.keys) for m in TagMapping.objects.all()}
    disabled = set(FlagRule.objects.filter(enabled=False).values_list("reason", flat=True))
    patterns: list[PatternSpec] = []
    fund_org: list[UserPattern] = []
    skipped: list[str] = []
    fund_org_skipped = False
    for rule in PatternRule.objects.filter(enabled=True):
        try:
            regex = compile_user_pattern(rule.pattern)
        except PatternError as exc:
            skipped.append(f"review pattern {rule.name or rule.pattern!r} skipped: {exc}")
            continue
        name = rule.name or rule.pattern
        patterns.append(PatternSpec(name=name, regex=regex, target=rule.target))
    for shape in FundOrgPattern.objects.filter(enabled=True):
        try:
            fund_org.append(compile_user_pattern(shape.pattern))
        except PatternError as exc:
            skipped.append(f"fund/org pattern {shape.pattern!r} skipped (matches nothing): {exc}")
            fund_org_skipped = True
    institution = InstitutionSettings.load()
    return RuleSet(
        mapping=mapping,
        enabled=frozenset(set(flags.BIT) - disabled),
        patterns=tuple(patterns),
        fund_org_patterns=tuple(fund_org),
        large_charge_nanos=to_nanos(institution.large_charge_threshold),
        currency=institution.currency,
        tags_max_depth=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_DEPTH,
        tags_max_chars=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_CHARS,
        skipped=tuple(skipped),
        fund_org_skipped=fund_org_skipped,
    )


@dataclass(frozen=True)
class BrokenPattern:
    """A saved pattern that RE2 cannot run (see load_ruleset)."""

    what: str  # "review pattern 'Marketplace'", "source aws's file-name pattern"
    reason: str  # PatternError's line
    admin_url_name: str  # the admin page that fixes it ...
    pk: int  # ... for this object
    screens_charges: bool  # a review or fund/org pattern (not a file-name pattern)

    def text(self) -> str:
        return f"{self.what} cannot run: {self.reason}"


def broken_patterns() -> list[BrokenPattern]:
    """Enabled saved patterns (review, fund/org, source file names) RE2 refuses."""
    found: list[BrokenPattern] = []

    def check(what: str, text: str, model: str, pk: int, *, charges: bool = True) -> None:
        try:
            compile_user_pattern(text, ignore_case=not charges)
        except PatternError as exc:
            url_name = f"admin:billing_{model}_change"
            found.append(BrokenPattern(what, str(exc), url_name, pk, charges))

    for rule in PatternRule.objects.filter(enabled=True).order_by("pk"):
        check(f"review pattern {rule.name or rule.pattern!r}", rule.pattern, "patternrule", rule.pk)
    for shape in FundOrgPattern.objects.filter(enabled=True).order_by("pk"):
        check(f"fund/org pattern {shape.pattern!r}", shape.pattern, "fundorgpattern", shape.pk)
    sources = Source.objects.filter(enabled=True).exclude(filename_pattern="").order_by("pk")
    for source in sources:
        what = f"source {source.slug}'s file-name pattern"
        check(what, source.filename_pattern, "source", source.pk, charges=False)
    return found


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
# A preview is a GET any viewer may make: it reads at most this many charges
# (fund/orgs), matches each value's first PREVIEW_VALUE_CHARS characters, and
# stops after PREVIEW_SECONDS; the page says when it stopped short
# (docs/security.md, "Patterns").
PREVIEW_MAX_CHARGES = 100_000
PREVIEW_MAX_FUND_ORGS = 5_000
PREVIEW_VALUE_CHARS = 1_000
PREVIEW_SECONDS = 3.0


def current_period() -> BillingPeriod | None:
    """The period people are working on: the latest open one, else the latest."""
    periods = BillingPeriod.objects.order_by("-period")
    return periods.filter(status=BillingPeriod.Status.OPEN).first() or periods.first()


@dataclass(frozen=True)
class PreviewLimits:
    """Where a preview stopped short of the whole period, for the page to say."""

    total: int = 0  # the rows (charges, fund/orgs) there are, when not all were scanned
    cut: int = 0  # values longer than PREVIEW_VALUE_CHARS, matched on their start only
    timed_out: bool = False  # stopped after PREVIEW_SECONDS


@dataclass(frozen=True)
class PatternPreview:
    """What a review pattern would flag in a period (within the preview's limits)."""

    period: str
    scanned: int
    matched: int
    billed_total: Decimal
    sample: list[dict[str, object]]
    limits: PreviewLimits = PreviewLimits()


class _Budget:
    """The preview's clock: true once PREVIEW_SECONDS have passed."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + PREVIEW_SECONDS
        self.expired = False

    def over(self) -> bool:
        self.expired = self.expired or time.monotonic() > self.deadline
        return self.expired


def _clip(value: str) -> tuple[str, bool]:
    if len(value) > PREVIEW_VALUE_CHARS:
        return value[:PREVIEW_VALUE_CHARS], True
    return value, False


def pattern_preview(*, pattern: str, target: str, period: BillingPeriod) -> PatternPreview:
    """Run a review pattern over the charges of `period`: at most
    PREVIEW_MAX_CHARGES of them, each value's first PREVIEW_VALUE_CHARS
    characters, for at most PREVIEW_SECONDS (the result says where it stopped).
    PatternError if the pattern cannot run."""
    spec = PatternSpec(name="preview", regex=compile_user_pattern(pattern), target=target)
    # One more character than is matched, to know a value was cut.
    head = {
        f"{name}_head": Substr(name, 1, PREVIEW_VALUE_CHARS + 1)
        for name in ("service_name", "resource_id", "resource_name")
    }
    charges = Charge.objects.filter(period=period)
    rows = (
        charges.annotate(**head)
        .values_list(*head, "pk", "billed_cost")
        .order_by("pk")[: PREVIEW_MAX_CHARGES + 1]
    )
    budget = _Budget()
    scanned = matched = cut = 0
    more = False
    total = Decimal(0)
    sample: list[dict[str, object]] = []
    for service, rid, rname, pk, billed in rows.iterator(chunk_size=2000):
        if scanned == PREVIEW_MAX_CHARGES:
            more = True
            break
        if budget.over():
            break
        scanned += 1
        (service, a), (rid, b), (rname, c) = _clip(service), _clip(rid), _clip(rname)
        cut += a or b or c
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
    limits = PreviewLimits(
        total=charges.count() if more or budget.expired else 0,
        cut=cut,
        timed_out=budget.expired,
    )
    return PatternPreview(period.period, scanned, matched, total, sample, limits)


@dataclass(frozen=True)
class FundOrgValue:
    fund_org: str
    charges: int
    billed_total: Decimal
    matches: bool  # by the pattern under test
    valid: bool  # by the pattern under test or any other enabled pattern


@dataclass(frozen=True)
class FundOrgPreview:
    """The fund/orgs of a period against a fund/org pattern (within the preview's limits)."""

    values: list[FundOrgValue]
    limits: PreviewLimits = PreviewLimits()


def fund_org_preview(
    *, pattern: str, period: BillingPeriod, exclude_pk: int | None = None
) -> FundOrgPreview:
    """The fund/orgs used in `period` (at most PREVIEW_MAX_FUND_ORGS of them, for
    at most PREVIEW_SECONDS): does the pattern accept each, is it valid overall?
    Other enabled patterns that cannot run count as matching nothing.
    PatternError if the pattern under test cannot run."""
    regex = compile_user_pattern(pattern)
    enabled = FundOrgPattern.objects.filter(enabled=True)
    if exclude_pk is not None:
        enabled = enabled.exclude(pk=exclude_pk)
    others = []
    for other in enabled:
        try:
            others.append(compile_user_pattern(other.pattern))
        except PatternError:
            continue  # reported by broken_patterns (close is blocked until fixed)
    used = Charge.objects.filter(period=period).exclude(fund_org="")
    rows = (
        used.values("fund_org")
        .annotate(n=Count("id"), billed=Sum("billed_cost"))
        .order_by("fund_org")[: PREVIEW_MAX_FUND_ORGS + 1]
    )
    budget = _Budget()
    values: list[FundOrgValue] = []
    more = False
    for row in rows:
        if len(values) == PREVIEW_MAX_FUND_ORGS:
            more = True
            break
        if budget.over():
            break
        value = row["fund_org"]  # at most 100 characters (Charge.fund_org)
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
    total = used.values("fund_org").distinct().count() if more or budget.expired else 0
    return FundOrgPreview(values, PreviewLimits(total=total, timed_out=budget.expired))


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


def detect_source(filename: str) -> Source | None:
    """The enabled source whose filename pattern matches, the longest pattern winning."""
    best: tuple[int, Source] | None = None
    for source in Source.objects.filter(enabled=True).exclude(filename_pattern=""):
        try:
            pattern = compile_user_pattern(source.filename_pattern, ignore_case=True)
        except PatternError:
            continue  # `openchargeback check --database default` names it
        hit = pattern.search(filename)
        if hit and (best is None or len(source.filename_pattern) > best[0]):
            best = (len(source.filename_pattern), source)
    return best[1] if best else None
