"""Reading what a journal would hold: a period's charges added up by journal
key, the entries built from them, and the close and finalize guards. Nothing
here writes; ``journals.services`` writes and records the file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse

from billing.basis import describe as describe_bases
from billing.blockers import Blocker, charges_url, source_url
from billing.errors import BillingError
from billing.models import BillingPeriod, Charge, Source
from billing.periods import parse_period
from journals import layouts
from journals.builders import (
    FORMATS,
    ChargeRow,
    Journal,
    JournalConfig,
    JournalError,
    Problem,
    SourceInfo,
    build,
    problems,
    shares,
)
from journals.models import JournalExport, JournalSettings, JournalTemplate
from openchargeback.money import to_nanos
from openchargeback.text import count

APPROVED, PENDING = Charge.ReviewState.APPROVED, Charge.ReviewState.PENDING


def journal_config() -> JournalConfig:
    s = JournalSettings.load()
    return JournalConfig(
        fund_org_pattern=s.fund_org_pattern,
        default_account=s.default_account,
        account_pattern=s.account_pattern,
        description_template=s.description_template,
        description_max_length=s.description_max_length,
    )


def split_pattern() -> str:
    """The journal's fund/org split pattern (billing's one fund/org rule reads it)."""
    return JournalSettings.load().fund_org_pattern


def source_infos() -> dict[str, SourceInfo]:
    return {
        slug: SourceInfo(slug, credit, account)
        for slug, credit, account in Source.objects.values_list(
            "slug", "credit_fund_org", "account_code"
        )
    }


_KEY = (
    "source__slug",
    "service_name",
    "pi__email",
    "project__project_id",
    "fund_org",
    "account_code",
    "project__account_code",
    "reference_1",
    "reference_2",
)


def _included(period: BillingPeriod, include_pending: bool) -> QuerySet[Charge]:
    states = [APPROVED, PENDING] if include_pending else [APPROVED]
    return Charge.objects.filter(period=period, review_state__in=states)


def _row(key: tuple[Any, ...], billed: Decimal, **extra: Any) -> ChargeRow:
    source, service, pi, project, fund_org, account, project_account, r1, r2 = key
    return ChargeRow(
        source=source,
        service=service,
        pi_email=pi or "",
        project_id=project or "",
        fund_org=fund_org,
        billed=billed,
        account_code=account,
        project_account=project_account or "",
        reference_1=r1,
        reference_2=r2,
        **extra,
    )


def collect(period: BillingPeriod, *, include_pending: bool) -> tuple[list[ChargeRow], str]:
    """The included charges added up by journal key, and a hash of everything the
    journal uses.

    The database adds up charges with the same key (exactly: amounts are
    integers underneath), so a million charges become a few thousand rows.
    """
    groups = (
        _included(period, include_pending)
        .values_list(*_KEY)
        .annotate(n=Count("id"), billed=Sum("billed_cost"), ids=Sum("id"))
        .order_by(*_KEY)
    )
    digest = hashlib.sha256()
    rows = []
    for *key, n, billed, ids in groups.iterator(chunk_size=20_000):
        digest.update(
            "\x1f".join(str(v) for v in (*key, n, to_nanos(billed), ids)).encode() + b"\x1e"
        )
        rows.append(_row(tuple(key), billed, charge_id=0, count=n))
    return rows, digest.hexdigest()


def each_charge(period: BillingPeriod, *, include_pending: bool) -> Iterator[ChargeRow]:
    """Every included charge, by id, read in chunks (the detail format)."""
    charges = _included(period, include_pending).order_by("id")
    columns = ("billed_cost", "billing_currency", "original_billed_cost", "exchange_rate")
    for cid, *key, billed, currency, original, rate in charges.values_list(
        "id", *_KEY, *columns
    ).iterator(20_000):
        converted = {}
        if rate:  # converted from another currency (billing.exchange.charges_convert)
            converted = {
                "original_currency": currency,
                "original_amount": original,
                "exchange_rate": rate,
            }
        yield _row(tuple(key), billed, charge_id=cid, **converted)


def current_data_hash(period: BillingPeriod) -> str:
    return collect(period, include_pending=False)[1]


@dataclass
class Layout:
    format: str
    base: str
    columns: list[layouts.Column]
    template: JournalTemplate | None


def enabled_templates() -> QuerySet[JournalTemplate]:
    """The institution layouts a journal may be exported in."""
    return JournalTemplate.objects.filter(enabled=True)


def layout_for(format: str) -> Layout:
    if format in FORMATS:
        return Layout(format, format, layouts.builtin_columns(format), None)
    template = enabled_templates().filter(slug=format).first()
    if template is None:
        names = [
            *FORMATS,
            *enabled_templates().values_list("slug", flat=True),
        ]
        raise BillingError(f"unknown journal format {format!r}; choose one of: {', '.join(names)}")
    try:
        columns = layouts.parse_columns(template.columns)
    except ValueError as exc:
        raise BillingError(f"journal template {template.slug}: {exc}") from None
    return Layout(format, template.base, columns, template)


def _period(period: str, *, include_pending: bool) -> BillingPeriod:
    period = parse_period(period)
    obj = BillingPeriod.objects.filter(period=period).first()
    if obj is None:
        raise BillingError(f"period {period} does not exist (it is created by its first import)")
    if obj.status == BillingPeriod.Status.OPEN:
        raise BillingError(
            f"period {period} is open: close it first (openchargeback periods close {period})",
            web=f"period {period} is open: close it first (Close, on the period's page)",
        )
    counts = Charge.objects.filter(period=obj).aggregate(
        pending=Count("id", filter=Q(review_state=PENDING)),
        orphans=Count("id", filter=Q(review_state=APPROVED, pi=None)),
    )
    if counts["pending"] and not include_pending:
        raise BillingError(
            f"period {period} has {count(counts['pending'], 'charge')} pending review: "
            "review them, or pass --include-pending to put them in the journal "
            "(recorded on the export)",
            web=f"period {period} has {count(counts['pending'], 'charge')} pending review: "
            "review them, or tick “Include charges pending review” (recorded on the export)",
        )
    if counts["orphans"]:
        raise BillingError(
            f"{counts['orphans']:,} approved charges of {period} have no PI and are on no "
            "statement: fix their attribution first"
        )
    return obj


@dataclass
class Prepared:
    period: BillingPeriod
    layout: Layout
    journal: Journal
    data_hash: str
    include_pending: bool
    cost_basis: str = ""  # e.g. 'amortised cost (EffectiveCost)' (billing.basis.describe)


def prepare(*, period: str, format: str, include_pending: bool = False) -> Prepared:
    """Everything up to the file: checks, charges, entries. Raises BillingError."""
    obj = _period(period, include_pending=include_pending)
    layout = layout_for(format)
    rows, data_hash = collect(obj, include_pending=include_pending)
    try:
        journal = build(
            layout.base,
            period=obj.period,
            rows=rows,
            sources=source_infos(),
            config=journal_config(),
            charges=each_charge(obj, include_pending=include_pending),
        )
    except JournalError as exc:
        raise BillingError(str(exc)) from None
    bases = (
        _included(obj, include_pending)
        .values_list("source__slug", "cost_basis")
        .distinct()
        .order_by()
    )
    return Prepared(obj, layout, journal, data_hash, include_pending, describe_bases(bases))


# --- Checks ---------------------------------------------------------------------


def journal_blockers(period: BillingPeriod) -> list[Blocker]:
    """Close guard: what would stop the GL export of the approved charges (the
    strictest format: it also needs every source's credit fund/org)."""
    rows, _hash = collect(period, include_pending=False)
    if not rows:
        return []
    sources, config = source_infos(), journal_config()
    items, _count, _exact = shares(rows, sources, config)
    return [_blocker(period, p) for p in problems(items, sources, config, needs_credits=True)]


def _blocker(period: BillingPeriod, problem: Problem) -> Blocker:
    if problem.source:
        source = Source.objects.filter(slug=problem.source).only("pk", "name").first()
        if source is not None:
            return Blocker(
                problem.text,
                cli=problem.cli,
                url=source_url(source.pk),
                link_text=f"edit source {source.name}",
            )
    if problem.fund_orgs:
        first = problem.fund_orgs[0]
        query: dict[str, str] = {"review_state__exact": str(APPROVED)}
        if first:
            query["fund_org"] = first
        else:
            query["reason"] = "missing_fund_org"
        return Blocker(
            problem.text,
            url=charges_url(period, **query),
            link_text=f"charges with fund/org {first!r}" if first else "charges with no fund/org",
        )
    return Blocker(
        problem.text,
        cli=problem.cli,
        url=reverse("admin:journals_journalsettings_change", args=[JournalSettings.load().pk]),
        link_text="journal settings",
    )


def missing_journal_export(period: BillingPeriod) -> list[Blocker]:
    """Finalize guard: an export (without pending charges) of the current data."""
    if not Charge.objects.filter(period=period, review_state=APPROVED).exists():
        return []
    exports = JournalExport.objects.filter(period=period, include_pending=False)
    fix = {
        "cli": f"openchargeback export-journal --period {period.period} --format gl",
        "url": reverse("admin:journals_journalexport_export") + f"?period={period.period}",
        "link_text": "export the journal",
    }
    if not exports.exists():
        return [Blocker("no journal export yet", **fix)]
    if not exports.filter(data_hash=current_data_hash(period)).exists():
        return [Blocker("the charges changed since the last journal export", **fix)]
    return []
