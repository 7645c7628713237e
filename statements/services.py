"""Generating statements: from the plan (``statements.selectors.plan``), version, render.

``statements_generate`` decides, under the period's lock, which PI projects
need a new statement version (their content hash changed), records those
versions with their totals and exact charges, and renders their PDFs —
inline (``sync``) or as one django-q2 task per statement, queued when the
transaction commits. Rendering is idempotent: a statement that already has
its PDF is left alone.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.audit import Actor, audit
from billing.errors import BillingError
from billing.models import BillingPeriod, Charge
from billing.periods import parse_period
from billing.services import period_locked
from openchargeback.csvfile import CsvWriter
from openchargeback.files import remove_stale_temporaries, write_atomically
from openchargeback.text import count
from statements import emailing, pdf
from statements.building import StatementData
from statements.models import Statement, StatementCharge
from statements.selectors import Planned, institution, plan, statement_data

log = logging.getLogger(__name__)

APPROVED = Charge.ReviewState.APPROVED


@dataclass
class GenerateResult:
    period: str
    created: list[Statement] = field(default_factory=list)
    unchanged: list[Statement] = field(default_factory=list)
    withdrawn: list[Statement] = field(default_factory=list)
    would_create: list[StatementData] = field(default_factory=list)
    pending_excluded: int = 0
    pending_billed: Decimal = Decimal(0)
    job_group: str = ""
    dry_run: bool = False
    send: bool = False
    emails: list[emailing.SendOutcome] = field(default_factory=list)
    emails_queued: int = 0
    not_ready: list[str] = field(default_factory=list)
    skipped_empty: int = 0  # PI projects with nothing to bill ($0.00 list and due)

    @property
    def emails_sent(self) -> int:
        return sum(1 for o in self.emails if o.status == "sent")

    @property
    def emails_failed(self) -> int:
        return sum(1 for o in self.emails if o.status == "failed")


def _check_period(period: BillingPeriod, *, allow_pending: bool, pending: int) -> None:
    if period.status == BillingPeriod.Status.OPEN:
        raise BillingError(
            f"period {period.period} is open: close it first "
            f"(openchargeback periods close {period.period})",
            web=f"period {period.period} is open: close it first (Close, on the period's page)",
        )
    if period.status == BillingPeriod.Status.FINALIZED:
        raise BillingError(f"period {period.period} is finalized: its statements are permanent")
    if pending and not allow_pending:
        raise BillingError(
            f"period {period.period} has {count(pending, 'charge')} pending review: "
            "review them, or pass --allow-pending to leave them out of the statements",
            web=f"period {period.period} has {count(pending, 'charge')} pending review: "
            "review them, or tick “Leave charges pending review out”",
        )


def statements_generate(
    *,
    period: str,
    actor: Actor,
    allow_pending: bool = False,
    dry_run: bool = False,
    sync: bool = False,
    send: bool = False,
) -> GenerateResult:
    """New statement versions for every PI project whose content changed.

    With `send`, every PI with a current statement not emailed yet gets one
    email (after rendering): inline with `sync`, else one job per PI.
    """
    period = parse_period(period)
    if dry_run:
        obj = BillingPeriod.objects.filter(period=period).first()
        if obj is None:
            raise BillingError(
                f"period {period} does not exist (it is created by its first import)"
            )
        planned = plan(obj)
        _check_period(obj, allow_pending=allow_pending, pending=planned.pending)
        return GenerateResult(
            period=period,
            would_create=[p.data for p in planned.statements if p.changed],
            unchanged=[p.current for p in planned.statements if not p.changed and p.current],
            withdrawn=planned.withdrawn,
            pending_excluded=planned.pending,
            pending_billed=planned.pending_billed,
            dry_run=True,
            send=send,
            skipped_empty=len(planned.empty),
        )
    rendered: list[tuple[Statement, StatementData]] = []
    with transaction.atomic():
        obj = period_locked(period)
        planned = plan(obj)
        _check_period(obj, allow_pending=allow_pending, pending=planned.pending)
        result = GenerateResult(
            period=period,
            pending_excluded=planned.pending,
            pending_billed=planned.pending_billed,
            send=send,
            skipped_empty=len(planned.empty),
        )
        now = timezone.now()
        next_sequence = (
            Statement.objects.filter(period=obj).aggregate(m=Max("sequence"))["m"] or 0
        ) + 1
        for item in planned.statements:
            if not item.changed:
                assert item.current is not None
                result.unchanged.append(item.current)
                if item.current.status != Statement.Status.READY:
                    rendered.append((item.current, item.data))  # failed before: again
                continue
            statement = _new_version(obj, item, actor=actor, now=now, sequence=next_sequence)
            if item.current is None:
                next_sequence += 1
            result.created.append(statement)
            rendered.append((statement, item.data))
        _link_charges(obj, result.created)
        for old in planned.withdrawn:
            Statement.objects.filter(pk=old.pk).update(superseded_at=now)
            audit(
                actor=actor,
                action="statement.withdraw",
                obj=old,
                period=obj,
                reason="nothing left to bill for this PI project (no approved charges, or "
                "all $0.00)",
            )
            result.withdrawn.append(old)
        if not sync:
            jobs = _jobs(obj, rendered, send=send)
            if jobs:
                result.job_group = f"statements-{period}-{now:%Y%m%dT%H%M%S}"
                group = result.job_group
                transaction.on_commit(lambda: _enqueue(jobs, group, period, actor))
    if sync:
        for statement, data in rendered:
            statement_render(statement.pk, data=data)
        if send:
            queued = emailing.emails_queue(period=period, actor=actor)
            result.emails_queued = len(queued.emails)
            result.not_ready = queued.not_ready
            result.emails = [emailing.email_send(e.pk) for e in queued.emails]
    # As stored now (PDF, status), with PI and project: one query, same order.
    stored = Statement.objects.select_related("pi", "project").in_bulk(
        [s.pk for s in result.created]
    )
    result.created = [stored[s.pk] for s in result.created]
    return result


# A job: (task, pi_id or None, statement ids)
Job = tuple[str, int | None, list[int]]


def _jobs(
    period: BillingPeriod, rendered: list[tuple[Statement, StatementData]], *, send: bool
) -> list[Job]:
    """One render job per new statement; with `send`, one render-and-email job per PI."""
    if not send:
        return [("render", None, [s.pk]) for s, _ in rendered]
    by_pi: dict[int, list[int]] = defaultdict(list)
    for s, _ in rendered:
        by_pi[s.pi_id].append(s.pk)
    unsent = (
        Statement.objects.filter(period=period, superseded_at=None)
        .exclude(deliveries__resend=False)
        .values_list("pi_id", flat=True)
        .distinct()
    )
    for pi_id in unsent:
        by_pi.setdefault(pi_id, [])
    return [("render_and_email", pi_id, ids) for pi_id, ids in sorted(by_pi.items())]


def _enqueue(jobs: list[Job], group: str, period: str, actor: Actor) -> None:
    from django_q.tasks import async_task

    for kind, pi_id, ids in jobs:
        if kind == "render":
            async_task("statements.tasks.render_statement", ids[0], group=group)
        else:
            async_task(
                "statements.tasks.render_and_email",
                period,
                pi_id,
                ids,
                actor.name,
                actor.user_id,
                group=group,
            )


def _new_version(
    period: BillingPeriod, item: Planned, *, actor: Actor, now: Any, sequence: int
) -> Statement:
    old = item.current
    version = old.version + 1 if old else 1
    seq = old.sequence if old else sequence
    data = item.data
    if old is not None:
        Statement.objects.filter(pk=old.pk).update(superseded_at=now)
    statement = Statement.objects.create(
        period=period,
        pi_id=item.key[0],
        project_id=item.key[1],
        sequence=seq,
        version=version,
        number=f"{period.period}-{seq:04d}-v{version}",
        fund_org=data.fund_org[:200],
        list_total=data.list_total,
        discount_total=data.discount_total,
        billed_total=data.billed_total,
        exact_billed=data.exact_billed,
        charge_count=data.charge_count,
        content_hash=item.content_hash,
        generated_at=now,
        generated_by=actor.name,
    )
    if old is not None:
        Statement.objects.filter(pk=old.pk).update(superseded_by=statement)
    audit(
        actor=actor,
        action="statement.generate",
        obj=statement,
        period=period,
        before={"number": old.number, "billed_total": str(old.billed_total)} if old else None,
        after={
            "number": statement.number,
            "billed_total": str(statement.billed_total),
            "charges": statement.charge_count,
        },
    )
    return statement


def _link_charges(period: BillingPeriod, statements: list[Statement]) -> None:
    """Record the exact charges of new statements: one INSERT ... SELECT per 500
    statements, server-side (no charge id passes through Python)."""
    charge, link = Charge._meta.db_table, StatementCharge._meta.db_table
    table = Statement._meta.db_table
    for start in range(0, len(statements), 500):
        ids = [s.pk for s in statements[start : start + 500]]
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {link} (statement_id, charge_id) "  # noqa: S608
                f"SELECT s.id, c.id FROM {charge} c JOIN {table} s "
                "ON s.pi_id = c.pi_id AND COALESCE(s.project_id, 0) = COALESCE(c.project_id, 0) "
                f"WHERE c.period_id = %s AND c.review_state = %s AND s.id IN ({marks})",
                [period.pk, APPROVED.value, *ids],
            )


def statement_render(statement_id: int, *, data: StatementData | None = None) -> None:
    """Render and store a statement's PDF (and CSV of line items). Safe to run twice."""
    statement = Statement.objects.select_related("period").get(pk=statement_id)
    if statement.status == Statement.Status.READY and statement.pdf:
        return
    if data is None:
        charges = Charge.objects.filter(
            pk__in=StatementCharge.objects.filter(statement=statement).values("charge_id")
        )
        found = statement_data(charges, period=statement.period.period, inst=institution())
        data = found[(statement.pi_id, statement.project_id)]
    try:
        content = pdf.render(
            data,
            number=statement.number,
            generated_at=statement.generated_at,
            revision=statement.revision(),
        )
    except Exception as exc:  # a rendering bug must not stop the other statements
        log.exception("statement %s failed to render", statement.number)
        Statement.objects.filter(pk=statement.pk).update(
            status=Statement.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return
    base = f"{statement.period.period}/{statement.number}"
    # The queue hands a job out again only Q_RETRY (> Q_TIMEOUT) seconds after
    # it was taken: a render this long after generation may be the retry of a
    # worker killed while writing, whose temporary files are still there.
    retry = timezone.now() - statement.generated_at > _job_timeout()
    try:
        _store(statement.pdf, f"{base}.pdf", content, retry=retry)
        if data.remainder is not None:
            csv_bytes = line_items_csv(statement)
            _store(statement.line_items, f"{base}-line-items.csv", csv_bytes, retry=retry)
    except OSError as exc:  # a full disk: nothing half-written is kept; run again later
        log.error("statement %s could not be stored: %s", statement.number, exc)
        Statement.objects.filter(pk=statement.pk).update(
            status=Statement.Status.FAILED,
            error=f"could not store the PDF: {exc.strerror or exc}"[:2000],
        )
        return
    Statement.objects.filter(pk=statement.pk).update(
        pdf=statement.pdf.name,
        line_items=statement.line_items.name or "",
        pdf_sha256=hashlib.sha256(content).hexdigest(),
        status=Statement.Status.READY,
        error="",
    )


def _job_timeout() -> timedelta:
    return timedelta(seconds=settings.Q_CLUSTER["timeout"])


def _store(field: Any, name: str, content: bytes, *, retry: bool) -> None:
    """Write under exactly `name` (statements/PERIOD/NUMBER.pdf), atomically,
    replacing a file an earlier run left there: a statement version's content
    never changes. On a `retry`, first remove the temporaries of `name` a
    killed run left; only those older than the job timeout, since a second
    job for the same statement (queued by a second `generate`) may be writing."""
    relative = field.field.generate_filename(field.instance, name)
    target = Path(field.storage.path(relative))
    if retry:
        removed = remove_stale_temporaries(target, older_than=_job_timeout().total_seconds())
        if removed:
            log.warning("%s: removed %d temporary files a killed render left", relative, removed)
    write_atomically(target, content)
    field.name = relative


# Line-item CSV: (header, charge field).
_CSV_COLUMNS = [
    ("charge_id", "id"),
    ("source", "source__slug"),
    ("service_name", "service_name"),
    ("resource_id", "resource_id"),
    ("resource_name", "resource_name"),
    ("charge_period_start", "charge_period_start"),
    ("charge_period_end", "charge_period_end"),
    ("consumed_quantity", "consumed_quantity"),
    ("consumed_unit", "consumed_unit"),
    ("fund_org", "fund_org"),
    ("list_cost", "list_cost"),
    ("billed_cost", "billed_cost"),
    ("charge_category", "charge_category"),
    ("cost_basis", "cost_basis"),
    ("invoiced_cost", "invoiced_cost"),
]


def _csv_cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def line_items_csv(statement: Statement) -> bytes:
    """Every charge of a statement at full precision, for the CSV attachment.

    Text that a spreadsheet would run as a formula is neutralised; amounts
    are exact decimal strings."""
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=True)
    writer.writerow([header for header, _ in _CSV_COLUMNS])
    charges = (
        Charge.objects.filter(
            pk__in=StatementCharge.objects.filter(statement=statement).values("charge_id")
        )
        .order_by("id")
        .values_list(*(field for _, field in _CSV_COLUMNS))
    )
    for values in charges.iterator(chunk_size=5000):
        writer.writerow([_csv_cell(v) for v in values])
    return buffer.getvalue().encode("utf-8")
