"""Where a period stands in the month-end cycle, step by step, for the
dashboard and the period page: import -> review -> close -> generate -> send
-> export -> finalize.

Reads only, and cheaply: totals come from the charge summaries, statements
and journal exports from their own small tables. The finalize button still
runs the exact checks (billing.services.finalize_blockers); this module only
says which page to go to next.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.urls import reverse

from billing.models import BillingPeriod, Charge, ChargeSummary, InstitutionSettings
from billing.periods import previous_month
from billing.ratecard import rate_card_sources
from ingest.models import Import
from journals.models import JournalExport
from journals.selectors import current_data_hash
from statements.models import EmailLog, EmailStatement, Statement

APPROVED = Charge.ReviewState.APPROVED
PENDING = Charge.ReviewState.PENDING
REJECTED = Charge.ReviewState.REJECTED


@dataclass(frozen=True)
class Totals:
    """A period's charges added up (rejected ones counted apart, not in the money)."""

    charges: int = 0
    list_total: Decimal = Decimal(0)
    billed_total: Decimal = Decimal(0)
    pending: int = 0
    pending_billed: Decimal = Decimal(0)
    flagged: int = 0
    rejected: int = 0
    # list minus billed, split by where the price comes from (billing.ratecard)
    provider_discount: Decimal = Decimal(0)
    subsidy: Decimal = Decimal(0)

    @property
    def discount_total(self) -> Decimal:
        return self.list_total - self.billed_total


def period_totals(period: BillingPeriod) -> Totals:
    rejected, pending = Q(review_state=REJECTED), Q(review_state=PENDING)
    kept = ~rejected
    # (the aggregates are named apart from the summary's own fields)
    rows = ChargeSummary.objects.filter(period=period).aggregate(
        t_charges=Sum("charges", filter=kept),
        t_list_total=Sum("list_total", filter=kept),
        t_billed_total=Sum("billed_total", filter=kept),
        t_pending=Sum("charges", filter=pending),
        t_pending_billed=Sum("billed_total", filter=pending),
        t_flagged=Sum("flagged", filter=kept),
        t_rejected=Sum("charges", filter=rejected),
    )
    values = {key[2:]: value for key, value in rows.items() if value is not None}
    rate_card = rate_card_sources()
    split: dict[str, Any] = {"provider_discount": Decimal(0), "subsidy": Decimal(0)}
    for row in (
        ChargeSummary.objects.filter(period=period)
        .exclude(review_state=REJECTED)
        .values(slug=F("source__slug"))
        .annotate(listed=Sum("list_total"), billed=Sum("billed_total"))
    ):
        kind = "subsidy" if row["slug"] in rate_card else "provider_discount"
        split[kind] += row["listed"] - row["billed"]
    return Totals(**values, **split)


@dataclass(frozen=True)
class StatementProgress:
    current: int  # current statements (not superseded)
    ready: int  # of which rendered
    expected: int  # PI projects with approved charges
    up_to_date: bool  # the current statements cover exactly the approved charges
    unsent: int  # current statements never emailed (resends aside)
    failed_emails: int
    pending_emails: int
    billed_total: Decimal  # amount due on the current statements (rounded lines)


def statement_progress(period: BillingPeriod) -> StatementProgress:
    """Statements against the approved charges, per PI project: same count of
    charges and same exact total means the statement is current (the
    generate command checks the charges themselves)."""
    wanted = {
        (r["pi_id"], r["project_id"]): (r["n"], r["billed"])
        for r in ChargeSummary.objects.filter(period=period, review_state=APPROVED)
        .values("pi_id", "project_id")
        .annotate(n=Sum("charges"), billed=Sum("billed_total"))
    }
    current = Statement.objects.filter(period=period, superseded_at=None)
    have = {
        (s["pi_id"], s["project_id"]): (s["charge_count"], s["exact_billed"])
        for s in current.values("pi_id", "project_id", "charge_count", "exact_billed")
    }
    sent = Exists(
        EmailStatement.objects.filter(statement=OuterRef("pk"), email__status=EmailLog.Status.SENT)
    )
    counts = current.aggregate(
        n=Count("id"),
        ready=Count("id", filter=Q(status=Statement.Status.READY)),
        due=Sum("billed_total"),
    )
    counts["unsent"] = current.filter(~sent).count()
    emails = EmailLog.objects.filter(period=period, resend=False).aggregate(
        failed=Count("id", filter=Q(status=EmailLog.Status.FAILED)),
        pending=Count("id", filter=Q(status=EmailLog.Status.PENDING)),
    )
    return StatementProgress(
        current=counts["n"],
        ready=counts["ready"],
        expected=len(wanted),
        up_to_date=have == wanted and counts["ready"] == counts["n"],
        unsent=counts["unsent"],
        failed_emails=emails["failed"],
        pending_emails=emails["pending"],
        billed_total=counts["due"] or Decimal(0),
    )


def latest_export(period: BillingPeriod) -> JournalExport | None:
    return (
        JournalExport.objects.filter(period=period, include_pending=False)
        .order_by("-created_at", "-id")
        .first()
    )


def export_is_current(period: BillingPeriod, export: JournalExport | None) -> bool:
    """Charges cannot change while a period is closed: an export made since the
    last close is current; an older one is compared by its data hash."""
    if export is None:
        return False
    closed = period.status != BillingPeriod.Status.OPEN  # (reopened: compare the data)
    if closed and period.closed_at and export.created_at >= period.closed_at:
        return True
    return export.data_hash == current_data_hash(period)


@dataclass(frozen=True)
class SourceCheck:
    """The sources a month is expected to hear from (those that delivered
    charges the month before, disabled ones aside) against those it has."""

    previous: str  # the month before, "YYYY-MM"
    expected: list[str]  # display names
    delivered: list[str]  # display names, expected or not
    missing: list[str]  # expected and not delivered


def source_check(period: BillingPeriod) -> SourceCheck:
    before = previous_month(period.period)
    seen: dict[str, set[tuple[str, str, bool]]] = {period.period: set(), before: set()}
    rows = (
        ChargeSummary.objects.filter(period__period__in=[period.period, before])
        .values_list("period__period", "source__slug", "source__name", "source__enabled")
        .distinct()
    )
    for month, slug, name, enabled in rows:
        seen[month].add((slug, name or slug, enabled))
    delivered = {slug: name for slug, name, _ in seen[period.period]}
    expected = {slug: name for slug, name, enabled in seen[before] if enabled}
    return SourceCheck(
        previous=before,
        expected=sorted(expected.values()),
        delivered=sorted(delivered.values()),
        missing=sorted(name for slug, name in expected.items() if slug not in delivered),
    )


@dataclass(frozen=True)
class Step:
    slug: str
    title: str
    url: str
    done: bool
    detail: str
    permission: str
    allowed: bool = False  # may the person looking take this step?
    next: bool = False


@dataclass(frozen=True)
class Cycle:
    period: BillingPeriod
    totals: Totals
    statements: StatementProgress
    export: JournalExport | None
    imports: int
    steps: list[Step]
    sources: SourceCheck | None = None

    @property
    def next_step(self) -> Step | None:
        return next((s for s in self.steps if s.next), None)


def _admin(name: str, *args: Any, **query: Any) -> str:
    url = reverse(f"admin:{name}", args=args)
    return f"{url}?{urlencode(query)}" if query else url


def _pending_detail(period: BillingPeriod, pending: int) -> str:
    """Of the pending charges (few, and indexed by period and state): how many
    need their attribution fixed, how many an exchange rate, before approval."""
    if not pending:
        return ""
    from billing import flags
    from billing.exchange import home_currency, needs_rate

    row = (
        Charge.objects.filter(period=period, review_state=PENDING)
        .alias(blocking=F("flags").bitand(flags.BLOCKING_MASK))
        .aggregate(
            blocked=Count("id", filter=~Q(blocking=0)),
            rate=Count("id", filter=needs_rate(home_currency())),
        )
    )
    parts = []
    if row["blocked"]:
        parts.append(f"{row['blocked']:,} need their attribution fixed")
    if row["rate"]:
        parts.append(f"{row['rate']:,} need an exchange rate")
    return "; " + ", ".join(parts) if parts else ""


def period_cycle(period: BillingPeriod, user: Any = None) -> Cycle:
    money = InstitutionSettings.cached().format_money
    totals = period_totals(period)
    progress = statement_progress(period)
    export = latest_export(period)
    imports = imports_of(period).filter(status=Import.Status.IMPORTED).count()
    sources = source_check(period)
    status = period.status
    after_close = status != BillingPeriod.Status.OPEN
    statements_done = after_close and progress.up_to_date
    sent = statements_done and progress.current > 0 and progress.unsent == 0
    no_statements_needed = after_close and progress.expected == 0 and progress.current == 0
    exported = after_close and export_is_current(period, export)
    closed_on = f"{period.closed_at:%Y-%m-%d} by {period.closed_by}" if period.closed_at else ""
    steps = [
        Step(
            "import",
            "Import usage",
            _admin("ingest_import_upload"),
            # Not done while a source that delivered last month has not this month.
            done=totals.charges + totals.rejected > 0 and not sources.missing,
            detail=f"{totals.charges + totals.rejected:,} charges from {imports:,} "
            f"import{'s' if imports != 1 else ''}"
            + (
                f"; {len(sources.expected) - len(sources.missing)} of "
                f"{len(sources.expected)} expected sources, missing: " + ", ".join(sources.missing)
                if sources.missing
                else ""
            ),
            permission="ingest.import_focus",
        ),
        Step(
            "review",
            "Review flagged charges",
            _admin(
                "billing_charge_changelist",
                period__id__exact=period.pk,
                review_state__exact="pending",
            ),
            done=totals.charges + totals.rejected > 0 and totals.pending == 0,
            detail=f"{totals.pending:,} pending ({money(totals.pending_billed)}), "
            f"{totals.rejected:,} rejected" + _pending_detail(period, totals.pending),
            permission="billing.review_charge",
        ),
        Step(
            "close",
            "Close the month",
            _admin("billing_billingperiod_change", period.pk),
            done=after_close,
            detail=f"closed {closed_on}" if after_close and closed_on else status,
            permission="billing.close_billingperiod",
        ),
        Step(
            "generate",
            "Generate statements",
            _admin("statements_statement_generate") + f"?period={period.period}",
            done=statements_done or no_statements_needed,
            detail=(
                f"{progress.current:,} current statements for {progress.expected:,} PI projects"
                + ("" if progress.up_to_date else " (out of date)")
                if progress.current
                else f"{progress.expected:,} PI projects to bill"
            ),
            permission="statements.generate_statement",
        ),
        Step(
            "send",
            "Send statements",
            _admin("statements_statement_changelist", period__id__exact=period.pk, email="unsent"),
            done=sent or no_statements_needed,
            detail=f"{progress.current - progress.unsent:,} of {progress.current:,} emailed"
            + (f", {progress.failed_emails:,} failed" if progress.failed_emails else "")
            + (f", {progress.pending_emails:,} queued" if progress.pending_emails else ""),
            permission="statements.send_statement",
        ),
        Step(
            "export",
            "Export the journal",
            _admin("journals_journalexport_export") + f"?period={period.period}",
            done=exported,
            detail=(
                f"{export.format} {'XLSX' if export.xlsx else 'CSV'} "
                f"{export.created_at:%Y-%m-%d %H:%M}" + ("" if exported else " (out of date)")
            )
            if export
            else "not exported yet",
            permission="journals.export_journal",
        ),
        Step(
            "finalize",
            "Finalize",
            _admin("billing_billingperiod_change", period.pk),
            done=status == BillingPeriod.Status.FINALIZED,
            detail=f"finalized {period.finalized_at:%Y-%m-%d} by {period.finalized_by}"
            if period.finalized_at
            else "permanent: locks the period",
            permission="billing.finalize_billingperiod",
        ),
    ]
    first_open = next((i for i, s in enumerate(steps) if not s.done), None)
    steps = [
        replace(
            s,
            allowed=bool(user is not None and user.has_perm(s.permission)),
            next=i == first_open,
        )
        for i, s in enumerate(steps)
    ]
    return Cycle(period, totals, progress, export, imports, steps, sources)


def imports_of(period: BillingPeriod) -> Any:
    """The imports with rows in `period` (a few hundred a year: filtered here,
    as JSON containment is not portable to SQLite)."""
    ids = [
        pk
        for pk, periods in Import.objects.values_list("pk", "periods")
        if period.period in periods
    ]
    return Import.objects.filter(pk__in=ids)


# --- Figures that reconcile: billed, statements, journal ------------------------------


@dataclass(frozen=True)
class Figure:
    label: str
    amount: Decimal
    explanation: str  # one line: why it is what it is, against the line above


@dataclass(frozen=True)
class Reconciliation:
    figures: list[Figure]
    state: str  # "reconciles", "incomplete" (no statements or journal yet) or "stale"


def reconciliation(period: BillingPeriod, *, cycle: Cycle | None = None) -> Reconciliation:
    """The month's billed, statement and journal figures side by side, each
    difference explained in one line (SPEC §2: statements round per line; the
    GL books a net credit on the other side, which grosses up both columns).

    Reads what the period's `cycle` already read, when given."""
    money = InstitutionSettings.cached().format_money
    cycle = cycle or period_cycle(period)
    totals, progress, export = cycle.totals, cycle.statements, cycle.export
    approved = totals.billed_total - totals.pending_billed  # (rejected ones are left out)
    figures = [
        Figure(
            "Approved charges, exact",
            approved,
            "The sum of every approved charge's billed cost, before any rounding"
            + (
                f"; {totals.pending:,} charges pending review ({money(totals.pending_billed)}) "
                "are not in it."
                if totals.pending
                else "."
            ),
        )
    ]
    stale = False
    if progress.current:
        # Up to date, the statements cover exactly the approved charges.
        rounding = progress.billed_total - approved
        if not progress.up_to_date:
            stale = True
            why = "The charges changed since these statements: generate them again."
        elif rounding:
            why = (
                "Each statement line (PI, project, source, service) is rounded to the "
                f"cent; the roundings add up to {money(rounding)}."
            )
        else:
            why = "Equal to the approved charges: no rounding difference."
        figures.append(
            Figure(
                f"Statements ({progress.current:,} current), amount due", progress.billed_total, why
            )
        )
    if export is not None:
        gross_up = export.debit_total - progress.billed_total
        if not export_is_current(period, export):
            stale = True
            why = "The charges changed since this export: export the journal again."
        elif not progress.up_to_date:
            why = "Made from the charges as they are; the statements are not: generate them."
        elif gross_up:
            why = (
                f"Debits = credits. They exceed the statements by {money(gross_up)}: a net "
                "credit (a negative line) is booked on the other side of the ledger, which "
                "adds the same amount to both columns; debits less those credits = the "
                f"statements ({export.format}, {export.created_at:%Y-%m-%d})."
            )
        else:
            why = (
                "Debits = credits = the rounded statement lines, booked by fund/org "
                f"({export.format}, {export.created_at:%Y-%m-%d})."
            )
        figures.append(Figure("Journal debits", export.debit_total, why))
    if stale:
        state = "stale"
    elif progress.current and export is not None and progress.up_to_date:
        state = "reconciles"
    else:
        state = "incomplete"
    return Reconciliation(figures, state)
