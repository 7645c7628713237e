"""Reading statements and their emails: what generating or sending would do,
who would get what, what stops finalizing, and the admin's counts. Nothing
here writes: ``statements.services`` and ``statements.emailing`` decide from
these answers, and the admin shows them before anything is done."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.urls import reverse
from django.utils import timezone

from billing.basis import category_label, difference_kind
from billing.blockers import Blocker
from billing.errors import BillingError
from billing.models import PI, BillingPeriod, Charge, InstitutionSettings, Project, Source
from billing.ratecard import rate_card_sources
from statements.building import (
    DETAIL_LIMIT,
    ChargeDigest,
    Conversion,
    Institution,
    StatementData,
    build_credits,
    build_lines,
    build_resources,
)
from statements.models import EmailLog, EmailStatement, Statement

if TYPE_CHECKING:
    from django_q.models import Failure

APPROVED = Charge.ReviewState.APPROVED
GroupKey = tuple[int, int | None]  # (pi_id, project_id)
Status = EmailLog.Status


# --- Statements ----------------------------------------------------------------


def institution() -> Institution:
    s = InstitutionSettings.load()
    return Institution(
        name=s.name,
        contact_email=s.contact_email,
        contact_phone=s.contact_phone,
        address=s.address,
        currency=s.currency,
        thousands_separator=s.thousands_separator,
        decimal_separator=s.decimal_separator,
    )


def statement_data(
    charges: QuerySet[Charge], *, period: str, inst: Institution
) -> dict[GroupKey, StatementData]:
    """StatementData for every (PI, project) among `charges` (approved, attributed)."""
    rate_card = rate_card_sources()
    # (source, service, category) -> [charges, list, billed], per group; the
    # ChargeCategory as written (any letter case) is merged by its label.
    sums: dict[GroupKey, dict[tuple[str, str, str], list[Any]]] = defaultdict(dict)
    for row in charges.values(
        "pi_id", "project_id", "source__slug", "service_name", "charge_category"
    ).annotate(n=Count("id"), lst=Sum("list_cost"), billed=Sum("billed_cost")):
        key = (row["pi_id"], row["project_id"])
        line = (row["source__slug"], row["service_name"], category_label(row["charge_category"]))
        entry = sums[key].setdefault(line, [0, Decimal(0), Decimal(0)])
        entry[0] += row["n"]
        entry[1] += row["lst"]
        entry[2] += row["billed"]
    lines: dict[GroupKey, list[tuple[str, str, int, Decimal, Decimal, str, str]]] = {
        key: [
            (
                source,
                service,
                n,
                lst,
                billed,
                category,
                difference_kind(rate_card=source in rate_card),
            )
            for (source, service, category), (n, lst, billed) in group.items()
        ]
        for key, group in sums.items()
    }
    resource_sums: dict[GroupKey, dict[tuple[str, str, str, str], list[Any]]] = defaultdict(dict)
    for row in charges.values(
        "pi_id", "project_id", "resource_id", "resource_name", "service_name", "charge_category"
    ).annotate(n=Count("id"), lst=Sum("list_cost"), billed=Sum("billed_cost")):
        item = (
            row["resource_id"],
            row["resource_name"],
            row["service_name"],
            category_label(row["charge_category"]),
        )
        entry = resource_sums[(row["pi_id"], row["project_id"])].setdefault(
            item, [0, Decimal(0), Decimal(0)]
        )
        entry[0] += row["n"]
        entry[1] += row["lst"]
        entry[2] += row["billed"]
    resources: dict[GroupKey, list[tuple[str, str, str, int, Decimal, Decimal, str]]] = {
        key: [
            (rid, rname, service, n, lst, billed, category)
            for (rid, rname, service, category), (n, lst, billed) in group.items()
        ]
        for key, group in resource_sums.items()
    }
    bases: dict[GroupKey, set[tuple[str, str]]] = defaultdict(set)
    for pi_id, project_id, slug, basis in charges.values_list(
        "pi_id", "project_id", "source__slug", "cost_basis"
    ).distinct():
        bases[(pi_id, project_id)].add((slug, basis))
    fund_orgs: dict[GroupKey, set[str]] = defaultdict(set)
    for pi_id, project_id, fund_org in charges.values_list(
        "pi_id", "project_id", "fund_org"
    ).distinct():
        if fund_org:
            fund_orgs[(pi_id, project_id)].add(fund_org)
    digests: dict[GroupKey, ChargeDigest] = defaultdict(ChargeDigest)
    for charge_id, pi_id, project_id in charges.values_list("id", "pi_id", "project_id").iterator(
        chunk_size=20_000
    ):
        digests[(pi_id, project_id)].add(charge_id)

    conversions = _conversions(charges)
    names = dict(
        Source.objects.filter(
            slug__in={line[0] for group in lines.values() for line in group}
        ).values_list("slug", "name")
    )
    pis = PI.objects.in_bulk({key[0] for key in lines})
    projects = Project.objects.in_bulk({key[1] for key in lines if key[1] is not None})
    result = {}
    for key, group_lines in lines.items():
        pi, project = pis[key[0]], projects.get(key[1]) if key[1] else None
        shown, remainder = build_resources(resources[key], DETAIL_LIMIT)
        credits, more_credits = build_credits(resources[key])
        digest = digests[key]
        result[key] = StatementData(
            period=period,
            pi_email=pi.email,
            pi_name=pi.name,
            project_id=project.project_id if project else "",
            project_title=project.title if project else "",
            fund_orgs=tuple(sorted(fund_orgs[key])),
            lines=build_lines(group_lines),
            resources=shown,
            remainder=remainder,
            charge_ids_digest=digest.hexdigest(),
            charge_count=len(digest),
            institution=inst,
            credits=credits,
            more_credits=more_credits,
            bases=tuple(sorted(bases[key])),
            conversions=tuple(conversions.get(key, ())),
            source_names=tuple(
                sorted((slug, names.get(slug, slug)) for slug in {line[0] for line in group_lines})
            ),
        )
    return result


_CONVERSION_KEY = (
    "pi_id",
    "project_id",
    "source__slug",
    "service_name",
    "billing_currency",
    "exchange_rate",
)


def _conversions(charges: QuerySet[Charge]) -> dict[GroupKey, list[Conversion]]:
    """Per PI project: the converted charges' original amounts per line, currency and rate."""
    result: dict[GroupKey, list[Conversion]] = defaultdict(list)
    rows = (
        charges.exclude(exchange_rate="")
        .values(*_CONVERSION_KEY)
        .annotate(original=Sum("original_billed_cost"))
        .order_by("source__slug", "service_name", "billing_currency", "exchange_rate")
    )
    for row in rows:
        result[(row["pi_id"], row["project_id"])].append(
            Conversion(
                source=row["source__slug"],
                service=row["service_name"],
                currency=row["billing_currency"],
                rate=row["exchange_rate"],
                original_billed=row["original"] or Decimal(0),
            )
        )
    return result


@dataclass
class Planned:
    key: GroupKey
    data: StatementData
    current: Statement | None

    @cached_property
    def content_hash(self) -> str:
        return self.data.content_hash()

    @property
    def changed(self) -> bool:
        return (
            self.current is None
            or self.current.content_hash != self.content_hash
            or self.current.status == Statement.Status.FAILED
        )


@dataclass
class Plan:
    period: BillingPeriod
    statements: list[Planned]
    withdrawn: list[Statement]  # current statements whose charges are all gone
    pending: int
    pending_billed: Decimal
    # PI projects whose approved charges are all $0.00 list and billed: no statement.
    empty: list[StatementData] = field(default_factory=list)


def plan(period: BillingPeriod) -> Plan:
    """What generating statements for `period` would do now (reads only)."""
    charges = Charge.objects.filter(period=period)
    unattributed = charges.filter(review_state=APPROVED, pi=None).count()
    if unattributed:
        raise BillingError(
            f"{unattributed:,} approved charges of {period.period} have no PI and cannot go on "
            "a statement: fix their attribution first (admin: Charges, filter “Missing PI”; "
            f"or `openchargeback review list --period {period.period} --reason missing_pi`)"
        )
    pending = charges.filter(review_state=Charge.ReviewState.PENDING).aggregate(
        n=Count("id"), billed=Sum("billed_cost")
    )
    data = statement_data(
        charges.filter(review_state=APPROVED), period=period.period, inst=institution()
    )
    empty = [data.pop(key) for key in [k for k, d in data.items() if d.is_empty]]
    current = {
        (s.pi_id, s.project_id): s
        for s in Statement.objects.filter(period=period, superseded_at=None)
    }
    planned = [
        Planned(key, data[key], current.get(key))
        for key in sorted(data, key=lambda k: (data[k].pi_email, data[k].project_id))
    ]
    withdrawn = [s for key, s in current.items() if key not in data]
    return Plan(
        period=period,
        statements=planned,
        withdrawn=withdrawn,
        pending=pending["n"],
        pending_billed=pending["billed"] or Decimal(0),
        empty=empty,
    )


def missing_statements(period: BillingPeriod) -> list[Blocker]:
    """Finalize guard: every billable PI project has a current, rendered statement."""
    try:
        planned = plan(period)
    except BillingError as exc:
        return [Blocker(str(exc))]
    problems = []
    stale = [p for p in planned.statements if p.changed]
    if stale:
        problems.append(
            Blocker(
                f"{len(stale):,} PI projects have no current statement for their approved charges",
                cli=f"openchargeback generate --period {period.period}",
                url=reverse("admin:statements_statement_generate") + f"?period={period.period}",
                link_text="generate the statements",
            )
        )
    not_ready = Statement.objects.filter(period=period, superseded_at=None).exclude(
        status=Statement.Status.READY
    )
    count = not_ready.count()
    if count:
        problems.append(
            Blocker(
                f"{count:,} current statements have no PDF yet (rendering or failed)",
                url=reverse("admin:statements_statement_changelist")
                + f"?period__id__exact={period.pk}&version=current",
                link_text="the statements",
            )
        )
    return problems


# --- Emails ---------------------------------------------------------------------


def stuck_before(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now - timedelta(seconds=settings.OPENCHARGEBACK_EMAIL_STUCK_SECONDS)


def stuck(queryset: QuerySet[EmailLog] | None = None) -> QuerySet[EmailLog]:
    """Emails claimed so long ago that their worker must have died."""
    queryset = EmailLog.objects.all() if queryset is None else queryset
    return queryset.filter(status=Status.SENDING, claimed_at__lt=stuck_before())


def due(now: datetime | None = None) -> QuerySet[EmailLog]:
    """Emails a sender may claim now: new ones and failures whose wait is over."""
    now = now or timezone.now()
    return EmailLog.objects.filter(
        Q(status=Status.PENDING) | Q(status=Status.FAILED, next_attempt_at__lte=now)
    )


def unsent_statements(current: QuerySet[Statement]) -> QuerySet[Statement]:
    """Among current statements, those rendered and in no email yet (copies aside)."""
    return (
        current.filter(status=Statement.Status.READY)
        .exclude(deliveries__resend=False)
        .select_related("pi", "project")
        .order_by("pi__email", "number")
    )


def statements_by_pi(statements: QuerySet[Statement]) -> dict[int, list[Statement]]:
    """One email's worth per PI, in the order of `statements`."""
    by_pi: dict[int, list[Statement]] = defaultdict(list)
    for statement in statements:
        by_pi[statement.pi_id].append(statement)
    return by_pi


@dataclass
class PlannedEmail:
    """One email `emails_queue` would record: a PI and their statements."""

    period: BillingPeriod
    statements: list[Statement]
    to: str = ""  # the address, when already recorded (else the PI's)

    @property
    def pi(self) -> PI:
        return self.statements[0].pi

    @property
    def address(self) -> str:
        return self.to or self.pi.email

    @property
    def total(self) -> Decimal:
        return sum((s.billed_total for s in self.statements), Decimal(0))


@dataclass
class SendPlan:
    """What sending `statements` would do, before anything is written."""

    emails: list[PlannedEmail] = field(default_factory=list)
    skipped: list[tuple[Statement, str]] = field(default_factory=list)  # (statement, why)

    @property
    def total(self) -> Decimal:
        return sum((e.total for e in self.emails), Decimal(0))

    @property
    def statements(self) -> int:
        return sum(len(e.statements) for e in self.emails)

    @property
    def periods(self) -> list[str]:
        return sorted({e.period.period for e in self.emails})

    def fingerprint(self) -> str:
        """Which statement goes to which address: changes if anything would be sent differently."""
        import hashlib

        text = ";".join(
            f"{e.address}:{','.join(str(s.pk) for s in e.statements)}" for e in self.emails
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def emails_plan(*, statements: QuerySet[Statement]) -> SendPlan:
    """The emails `emails_queue` would record for `statements` (per period,
    statement_ids), and the statements it would leave out and why. Reads only."""
    send_plan = SendPlan()
    chosen = statements.select_related("period", "pi", "project", "superseded_by")
    emailed = {
        row["statement_id"]: Status(row["email__status"]).label.lower()
        for row in EmailStatement.objects.filter(
            statement__in=chosen.values("pk"), resend=False
        ).values("statement_id", "email__status")
    }
    unsent_ids: set[int] = set()
    periods = BillingPeriod.objects.filter(pk__in=chosen.values("period_id")).order_by("period")
    for period in periods:
        current = chosen.filter(period=period, superseded_at=None)
        if period.status == BillingPeriod.Status.OPEN:
            continue  # each is listed below: the period is open
        unsent = unsent_statements(current)
        unsent_ids.update(s.pk for s in unsent)
        groups = statements_by_pi(unsent).values()
        send_plan.emails += [PlannedEmail(period, group) for group in groups]
    for s in chosen.order_by("period__period", "number"):
        if s.pk in unsent_ids:
            continue
        if s.period.status == BillingPeriod.Status.OPEN:
            why = f"period {s.period.period} is open: statements are sent after it is closed"
        elif s.superseded_at is not None:
            why = (
                f"superseded by {s.superseded_by.number}"
                if s.superseded_by
                else "withdrawn: nothing left to bill"
            )
        elif s.status != Statement.Status.READY:
            why = "rendering failed" if s.status == Statement.Status.FAILED else "no PDF yet"
        else:  # current and rendered, so already in an email
            state = emailed.get(s.pk, "pending")
            why = "already emailed" if state == "sent" else f"already in an email ({state})"
        send_plan.skipped.append((s, why))
    return send_plan


def resend_plan(statements: QuerySet[Statement]) -> tuple[list[PlannedEmail], list[str]]:
    """The copies `emails_resend` would send (one per period and PI), and
    what stops it (every problem, one line each). Reads only."""
    chosen = list(
        statements.select_related("pi", "period", "project").order_by(
            "period__period", "pi__email", "number"
        )
    )
    problems = [
        f"{s.number} is superseded by a newer version"
        for s in chosen
        if s.superseded_at is not None
    ] + [f"{s.number} has no PDF" for s in chosen if s.status != Statement.Status.READY]
    emailed = set(
        EmailStatement.objects.filter(
            statement__in=[s.pk for s in chosen], resend=False
        ).values_list("statement_id", flat=True)
    )
    problems += [
        f"{s.number} was never emailed: send it rather than resend it"
        for s in chosen
        if s.pk not in emailed
    ]
    groups: dict[tuple[int, int], list[Statement]] = defaultdict(list)
    for s in chosen:
        groups[(s.period_id, s.pi_id)].append(s)
    return [PlannedEmail(group[0].period, group) for group in groups.values()], problems


# --- The admin's pages ----------------------------------------------------------


def with_email_status(statements: QuerySet[Statement]) -> QuerySet[Statement]:
    """`statements`, each with ``email_status``: the state of its latest email (or None)."""
    last_email = EmailStatement.objects.filter(statement=OuterRef("pk")).order_by("-email_id")
    return statements.annotate(email_status=Subquery(last_email.values("email__status")[:1]))


def statement_deliveries(statement: Statement) -> QuerySet[EmailStatement]:
    """Every email that carried `statement`, first first."""
    return (
        EmailStatement.objects.filter(statement=statement)
        .select_related("email")
        .order_by("email_id")
    )


def statement_versions(statement: Statement) -> QuerySet[Statement]:
    """Every version of `statement` (its period and sequence), newest first."""
    return Statement.objects.filter(
        period=statement.period_id, sequence=statement.sequence
    ).order_by("-version")


@dataclass
class RecipientStatement:
    number: str  # or "new statement", "new version of NUMBER" before it is generated
    project_id: str  # "" for no project
    due: Decimal


@dataclass
class Recipient:
    """One PI a "generate and send" would email, and the statements they would get."""

    name: str
    to: str
    statements: list[RecipientStatement] = field(default_factory=list)

    @property
    def due(self) -> Decimal:
        return sum((s.due for s in self.statements), Decimal(0))


def generate_recipients(
    *, period: BillingPeriod, would_create: list[StatementData], unchanged: list[Statement]
) -> list[Recipient]:
    """Who a "generate and send" would email, from its dry run (the statements
    it `would_create` and those it leaves `unchanged`): every PI with a statement
    not emailed yet once it is generated — the new versions and the current
    statements left unchanged that were never emailed (as emails_queue picks
    them after rendering). By address."""
    current = {
        (s.pi.email, s.project.project_id if s.project else ""): s
        for s in Statement.objects.filter(period=period, superseded_at=None).select_related(
            "pi", "project"
        )
    }
    emailed = set(
        EmailStatement.objects.filter(statement__period=period, resend=False).values_list(
            "statement_id", flat=True
        )
    )
    by_pi: dict[str, Recipient] = {}

    def add(email: str, name: str, number: str, project: str, due: Decimal) -> None:
        recipient = by_pi.setdefault(email, Recipient(name=name, to=email))
        recipient.statements.append(RecipientStatement(number, project, due))

    for data in would_create:
        old = current.get((data.pi_email, data.project_id))
        number = f"new version of {old.number}" if old else "new statement"
        add(data.pi_email, data.pi_name, number, data.project_id, data.billed_total)
    unsent = [s.pk for s in unchanged if s.pk not in emailed]
    for statement in (
        Statement.objects.filter(pk__in=unsent).select_related("pi", "project").order_by("number")
    ):
        project = statement.project.project_id if statement.project else ""
        add(
            statement.pi.email, statement.pi.name, statement.number, project, statement.billed_total
        )
    return [by_pi[email] for email in sorted(by_pi)]


@dataclass
class JobStatus:
    """A period's statements and emails by state, and the background queue."""

    period: BillingPeriod
    statements: list[tuple[str, int]]  # (status label, current statements)
    emails: list[tuple[str, int]]  # (status label, emails)
    stuck: int
    unsent: int  # current statements rendered and in no email yet
    queued: int  # jobs waiting in the queue (every kind)
    failures: QuerySet[Failure]  # the last five failed statement jobs


def job_status(period_pk: str | None) -> JobStatus | None:
    """The status of the period `period_pk` (a primary key from the list's
    filter), else of the latest period with statements; None if there is none."""
    from django_q.models import Failure, OrmQ

    period = (
        BillingPeriod.objects.filter(pk=period_pk).first()
        if period_pk and period_pk.isdigit()
        else BillingPeriod.objects.filter(statements__isnull=False).order_by("-period").first()
    )
    if period is None:
        return None
    current = Statement.objects.filter(period=period, superseded_at=None)
    statements = dict(current.values_list("status").annotate(n=Count("id")).order_by())
    emails = EmailLog.objects.filter(period=period)
    email_counts = dict(emails.values_list("status").annotate(n=Count("id")).order_by())
    failures = Failure.objects.filter(
        Q(group__startswith=f"statements-{period.period}") | Q(func__startswith="statements.tasks")
    ).order_by("-stopped")[:5]
    return JobStatus(
        period=period,
        statements=[(label, statements.get(value, 0)) for value, label in Statement.Status.choices],
        emails=[(label, email_counts.get(value, 0)) for value, label in EmailLog.Status.choices],
        stuck=stuck(emails).count(),
        unsent=current.filter(status=Statement.Status.READY)
        .exclude(deliveries__resend=False)
        .count(),
        queued=OrmQ.objects.count(),
        failures=failures,
    )
