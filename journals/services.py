"""Exporting journals: gather a period's charges, build, write, record; and the
finalize guard (an export of the current data). The ledger check across
journals and statements is the project's (``openchargeback.ledger``)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from billing.audit import Actor, audit
from billing.basis import describe as describe_bases
from billing.blockers import Blocker, charges_url, source_url
from billing.errors import BillingError
from billing.models import BillingPeriod, Charge, Source
from billing.periods import parse_period
from journals import layouts, writers
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
from openchargeback.files import write_atomically
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


def layout_for(format: str) -> Layout:
    if format in FORMATS:
        return Layout(format, format, layouts.builtin_columns(format), None)
    template = JournalTemplate.objects.filter(slug=format, enabled=True).first()
    if template is None:
        names = [
            *FORMATS,
            *JournalTemplate.objects.filter(enabled=True).values_list("slug", flat=True),
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


def render(prepared: Prepared, out: BinaryIO, *, xlsx: bool) -> int:
    """Write the file to `out`; returns its number of data lines."""
    from billing.models import InstitutionSettings

    currency = InstitutionSettings.load().currency
    table = layouts.table(prepared.journal, prepared.layout.columns, currency=currency)
    try:
        if xlsx:
            title = f"{prepared.period.period} {prepared.layout.format}"
            exact = prepared.layout.base == "detail"
            subject = f"Cost basis: {prepared.cost_basis}" if prepared.cost_basis else ""
            return writers.write_xlsx(table, out, title=title, exact=exact, subject=subject)
        return writers.write_csv(table, out)
    except ValueError as exc:  # a template column that does not give a number
        raise BillingError(f"journal format {prepared.layout.format}: {exc}") from None


def export_journal(
    *,
    period: str,
    format: str,
    actor: Actor,
    xlsx: bool = False,
    include_pending: bool = False,
    output: Path | None = None,
    dry_run: bool = False,
) -> JournalExport:
    """Build, write and record one journal file; copy it to `output` if given.
    With `dry_run` the file is built (same checks) and neither written nor
    recorded: the export returned is not saved and has no file."""
    prepared = prepare(period=period, format=format, include_pending=include_pending)
    with tempfile.TemporaryFile() as spool:
        lines = render(prepared, spool, xlsx=xlsx)
        sha256 = _sha256(spool)
        if dry_run:
            return _unsaved(
                prepared, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor, now=timezone.now()
            )
        if output is not None:
            _write_output(output, spool)
        return _record(prepared, spool, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor)


def _sha256(fh: BinaryIO) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _unsaved(
    prepared: Prepared, *, lines: int, sha256: str, xlsx: bool, actor: Actor, now: datetime
) -> JournalExport:
    """The export's record, not saved yet and without its file."""
    journal = prepared.journal
    return JournalExport(
        period=prepared.period,
        format=prepared.layout.format,
        template=prepared.layout.template,
        xlsx=xlsx,
        sha256=sha256,
        debit_total=journal.debit_total,
        credit_total=journal.credit_total,
        exact_total=journal.exact_total,
        lines=lines,
        charge_count=journal.charge_count,
        include_pending=prepared.include_pending,
        data_hash=prepared.data_hash,
        created_at=now,
        created_by=actor.name,
        cost_basis=prepared.cost_basis[:300],
    )


def _record(
    prepared: Prepared, spool: BinaryIO, *, lines: int, sha256: str, xlsx: bool, actor: Actor
) -> JournalExport:
    format, include_pending = prepared.layout.format, prepared.include_pending
    now = timezone.now()
    suffix = "xlsx" if xlsx else "csv"
    label = prepared.period.period
    name = f"{label}/journal-{label}-{format}-{now:%Y%m%dT%H%M%S}.{suffix}"
    with transaction.atomic():
        export = _unsaved(prepared, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor, now=now)
        storage = export.file.storage
        relative = storage.get_available_name(export.file.field.generate_filename(export, name))
        target = Path(storage.path(relative))
        try:
            write_atomically(target, spool)
        except OSError as exc:  # a full disk: nothing kept, nothing recorded
            raise BillingError(
                f"could not store the journal file {relative}: {exc.strerror or exc}; "
                "nothing was recorded"
            ) from None
        export.file.name = relative
        try:
            export.save()
            audit(
                actor=actor,
                action="journal.export",
                obj=export,
                period=prepared.period,
                after=export.as_dict() | {"file": export.file.name},
                reason="charges pending review included" if include_pending else "",
            )
        except BaseException:
            target.unlink(missing_ok=True)  # not recorded: not kept
            raise
    return export


def _write_output(path: Path, source: BinaryIO) -> None:
    """Copy `source` to `--output` (atomically: never a half file); a user error
    if the path cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise BillingError(f"--output {path} is a directory; name the file")
    if not path.parent.exists():
        raise BillingError(f"--output {path}: folder {path.parent} does not exist")
    try:
        write_atomically(path, source)
    except OSError as exc:
        raise BillingError(f"--output {path}: {exc.strerror or exc}") from None


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
