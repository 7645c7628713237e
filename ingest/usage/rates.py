"""Writes and reads of the rate card and the account mappings that price
on-premises usage. Every change is audited. Rates in force during a finalized
month are never changed, only superseded. Importing the same mapping file
again changes nothing (safe to re-run)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField, Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Lower

from billing.models import PI, BillingPeriod, Project, Source
from billing.rules import EMAIL_RE
from billing.services import Actor, BillingError, audit, audit_change
from ingest.models import AccountMapping, Rate
from ingest.usage.pricing import Owner, RateBook, RateTerms
from openchargeback.csvfile import CsvWriter
from openchargeback.money import from_nanos, money_str, to_nanos
from openchargeback.spreadsheet import restore
from openchargeback.text import count

__all__ = [
    "CLOUD_COLUMNS",
    "MAPPING_COLUMNS",
    "MappingImportResult",
    "account_mapping_check",
    "account_mapping_create",
    "account_mapping_delete",
    "account_mapping_export",
    "account_mapping_import",
    "account_mapping_update",
    "finalized_months",
    "owners",
    "rate_book",
    "rate_check",
    "rate_create",
    "rate_delete",
    "rate_lock",
    "rate_update",
    "rates_with_windows",
]

# --- Rates -------------------------------------------------------------------------------

RATE_FIELDS = (
    "resource",
    "service",
    "qos",
    "effective_from",
    "list_rate",
    "subsidy_percent",
    "free_allowance",
    "monthly_credit",
    "monthly_cap",
    "description",
)

FinalizedMonth = tuple[str, date, date]  # "YYYY-MM", first day, last day


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _month_bounds(period: str) -> tuple[date, date]:
    year, month = int(period[:4]), int(period[5:7])
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def finalized_months() -> list[FinalizedMonth]:
    """Every finalized billing period with its first and last day, oldest first."""
    periods = (
        BillingPeriod.objects.filter(status=BillingPeriod.Status.FINALIZED)
        .order_by("period")
        .values_list("period", flat=True)
    )
    return [(p, *_month_bounds(p)) for p in periods]


def _finalized_in(start: date, end: date | None, *, lock: bool) -> list[str]:
    """Finalized months with a day in [start, end). With ``lock``, the periods
    of that window are locked until the transaction ends, so none of them can
    be finalized while a rate covering it is written."""
    periods = BillingPeriod.objects.filter(period__gte=_month(start))
    if end is not None:
        periods = periods.filter(period__lte=_month(end - timedelta(days=1)))
    if lock:
        periods = periods.select_for_update()
    rows = list(periods.order_by("period").values_list("period", "status"))
    return [p for p, status in rows if status == BillingPeriod.Status.FINALIZED]


def _next_start(
    *, resource: str, service: str, qos: str, after: date, exclude_pk: int | None = None
) -> date | None:
    """When the next rate for the same resource, service and QOS takes over."""
    later = Rate.objects.filter(
        resource=resource, service=service, qos=qos, effective_from__gt=after
    )
    if exclude_pk is not None:
        later = later.exclude(pk=exclude_pk)
    return later.order_by("effective_from").values_list("effective_from", flat=True).first()


def rate_window(rate: Rate) -> tuple[date, date | None]:
    """The days a rate is in force: [effective_from, next rate's start); None: open."""
    end = _next_start(
        resource=rate.resource,
        service=rate.service,
        qos=rate.qos,
        after=rate.effective_from,
        exclude_pk=rate.pk,
    )
    return rate.effective_from, end


def rate_lock(rate: Rate, *, lock: bool = False) -> str:
    """Why the rate can no longer change ("" if it can): the first finalized
    month it is in force in."""
    start, end = rate_window(rate)
    months = _finalized_in(start, end, lock=lock)
    if not months:
        return ""
    more = f" (and {count(len(months) - 1, 'other')})" if len(months) > 1 else ""
    return f"it is in force during finalized period {months[0]}{more}"


def _describe(resource: str, service: str, qos: str, start: date) -> str:
    unit = Rate.Resource(resource).label if resource in Rate.Resource.values else resource
    return f"{unit} rate {service!r}{f' QOS {qos!r}' if qos else ''} from {start.isoformat()}"


def rate_check(
    *, resource: str, service: str, qos: str, effective_from: date, exclude_pk: int | None = None
) -> None:
    """Refuse a rate (new, or a rate's new values) that would be in force on a
    day of a finalized month, so changing prices that were billed."""
    _check_window(
        resource=resource,
        service=service,
        qos=qos,
        start=effective_from,
        exclude_pk=exclude_pk,
        lock=False,
    )


def _check_window(
    *, resource: str, service: str, qos: str, start: date, exclude_pk: int | None, lock: bool
) -> None:
    end = _next_start(
        resource=resource, service=service, qos=qos, after=start, exclude_pk=exclude_pk
    )
    months = _finalized_in(start, end, lock=lock)
    if months:
        _first, last_day = _month_bounds(months[-1])
        raise BillingError(
            f"a {_describe(resource, service, qos, start)} would change prices of finalized "
            f"period {months[0]}{' and later' if len(months) > 1 else ''}; give it an effective "
            f"date after {last_day.isoformat()}"
        )


def _rate_values(rate: Rate) -> dict[str, str]:
    """A rate's terms as strings, for the audit trail."""
    values: dict[str, str] = {}
    for name in RATE_FIELDS:
        value = getattr(rate, name)
        if value is None:
            values[name] = ""
        elif isinstance(value, Decimal):
            # One spelling per amount (0.01 whether typed as 0.010 or read back).
            values[name] = money_str(from_nanos(to_nanos(value)))
        elif isinstance(value, date):
            values[name] = value.isoformat()
        else:
            values[name] = str(value)
    return values


def _one_line(exc: ValidationError, what: str) -> BillingError:
    if hasattr(exc, "error_dict"):
        problems = "; ".join(
            f"{'' if name == '__all__' else name + ': '}{' '.join(messages)}"
            for name, messages in exc.message_dict.items()
        )
    else:
        problems = " ".join(exc.messages)
    return BillingError(f"{what}: {problems}")


def _clean_rate(rate: Rate) -> None:
    rate.service = (rate.service or "").strip()
    rate.qos = (rate.qos or "").strip()
    rate.description = (rate.description or "").strip()
    try:
        rate.full_clean(exclude=["created_at", "created_by"])
    except ValidationError as exc:
        raise _one_line(exc, "rate") from None


@transaction.atomic
def rate_create(*, actor: Actor, **fields: Any) -> Rate:
    """Add a rate card entry (superseding the one before it from its date on).

    Refused when it would be in force on a day of a finalized month."""
    unknown = set(fields) - set(RATE_FIELDS)
    if unknown:
        raise BillingError(f"unknown rate field(s): {', '.join(sorted(unknown))}")
    rate = Rate(**fields, created_by=actor.name)
    _clean_rate(rate)
    _check_window(
        resource=rate.resource,
        service=rate.service,
        qos=rate.qos,
        start=rate.effective_from,
        exclude_pk=None,
        lock=True,
    )
    rate.save()
    audit(actor=actor, action="rate.create", obj=rate, after=_rate_values(rate))
    return rate


def _locked_rate(rate: Rate) -> Rate:
    fresh = Rate.objects.select_for_update().filter(pk=rate.pk).first()
    if fresh is None:
        raise BillingError(f"rate {rate.pk} does not exist any more")
    return fresh


@transaction.atomic
def rate_update(*, rate: Rate, actor: Actor, **changes: Any) -> Rate:
    """Change a rate that was never in force during a finalized month; a
    locked one is refused (supersede it: add a rate with a later date)."""
    unknown = set(changes) - set(RATE_FIELDS)
    if unknown:
        raise BillingError(f"unknown rate field(s): {', '.join(sorted(unknown))}")
    fresh = _locked_rate(rate)
    reason = rate_lock(fresh, lock=True)
    if reason:
        raise BillingError(
            f"{fresh} cannot be changed: {reason}; supersede it by adding a rate with a "
            "later effective date"
        )
    before = _rate_values(fresh)
    for name, value in changes.items():
        setattr(fresh, name, value)
    _clean_rate(fresh)
    after = _rate_values(fresh)
    if after == before:
        return fresh
    _check_window(
        resource=fresh.resource,
        service=fresh.service,
        qos=fresh.qos,
        start=fresh.effective_from,
        exclude_pk=fresh.pk,
        lock=True,
    )
    fresh.save()
    audit_change(actor=actor, action="rate.change", obj=fresh, before=before, after=after)
    return fresh


@transaction.atomic
def rate_delete(*, rate: Rate, actor: Actor) -> None:
    """Delete a rate that was never in force during a finalized month (the
    rate before it then applies for longer)."""
    fresh = _locked_rate(rate)
    reason = rate_lock(fresh, lock=True)
    if reason:
        raise BillingError(
            f"{fresh} cannot be deleted: {reason}; supersede it by adding a rate with a "
            "later effective date"
        )
    before = _rate_values(fresh)
    audit(actor=actor, action="rate.delete", obj=fresh, before=before)
    fresh.delete()


def _locked_condition(months: list[FinalizedMonth]) -> Q | None:
    """Rows annotated with ``next_from`` whose window has a finalized day."""
    ranges: list[list[date]] = []
    for _period, first, last in months:
        if ranges and ranges[-1][1] + timedelta(days=1) == first:
            ranges[-1][1] = last
        else:
            ranges.append([first, last])
    condition: Q | None = None
    for first, last in ranges:
        overlap = Q(effective_from__lte=last) & (Q(next_from__isnull=True) | Q(next_from__gt=first))
        condition = overlap if condition is None else condition | overlap
    return condition


def rates_with_windows(rates: QuerySet[Rate] | None = None) -> QuerySet[Rate]:
    """Rates annotated with ``next_from`` (the day the next rate takes over,
    None while none does) and ``locked`` (in force during a finalized month)."""
    rates = Rate.objects.all() if rates is None else rates
    following = Rate.objects.filter(
        resource=OuterRef("resource"),
        service=OuterRef("service"),
        qos=OuterRef("qos"),
        effective_from__gt=OuterRef("effective_from"),
    ).order_by("effective_from")
    annotated = rates.annotate(next_from=Subquery(following.values("effective_from")[:1]))
    condition = _locked_condition(finalized_months())
    if condition is None:
        return annotated.annotate(locked=Value(False, output_field=BooleanField()))
    return annotated.annotate(locked=Case(When(condition, then=Value(True)), default=Value(False)))


def rate_terms(rate: Rate) -> RateTerms:
    return RateTerms(
        rate_id=rate.pk,
        resource=rate.resource,  # type: ignore[arg-type]  # checked by a DB constraint
        service=rate.service,
        qos=rate.qos,
        effective_from=rate.effective_from,
        list_rate=rate.list_rate,
        subsidy_percent=rate.subsidy_percent,
        free_allowance=rate.free_allowance,
        monthly_credit=rate.monthly_credit,
        monthly_cap=rate.monthly_cap,
    )


def rate_book() -> RateBook:
    """The whole rate card, for pricing."""
    return RateBook(rate_terms(rate) for rate in Rate.objects.all())


# --- Account mappings ----------------------------------------------------------------

MAPPING_COLUMNS = ("kind", "name", "pi_email", "project_id", "fund_org")
# Optional columns, for cloud mappings (a file without them is all Slurm and storage).
CLOUD_COLUMNS = ("source", "effective_from", "effective_to")
_MAPPING_FIELDS = (
    "kind",
    "source",
    "name",
    "project",
    "fund_org",
    "effective_from",
    "effective_to",
    "notes",
    "active",
)
_KIND_WORDS = {
    "slurm": "Slurm account",
    "storage": "storage quota",
    "sub_account": "sub-account",
    "billing_account": "billing account",
    "resource": "resource",
}


def owners(kind: str) -> dict[str, Owner]:
    """Active mappings of one kind (slurm, storage), keyed by the lower-cased name."""
    found: dict[str, Owner] = {}
    mappings = AccountMapping.objects.filter(kind=kind, active=True).select_related("project__pi")
    for mapping in mappings:
        project = mapping.project
        found[mapping.name.lower()] = Owner(
            pi_email=project.pi.email if project.pi else "",
            project_id=project.project_id,
            fund_org=mapping.effective_fund_org,
        )
    return found


def _mapping_values(mapping: AccountMapping) -> dict[str, str]:
    project = mapping.project
    values = {
        "kind": mapping.kind,
        "name": mapping.name,
        "project": project.project_id,
        "pi": project.pi.email if project.pi else "",
        "fund_org": mapping.fund_org,
        "notes": mapping.notes,
        "active": str(mapping.active),
    }
    if mapping.is_cloud:
        values["source"] = mapping.source.slug if mapping.source else ""
        values["effective_from"] = _day(mapping.effective_from)
        values["effective_to"] = _day(mapping.effective_to)
    return values


def _day(value: date | None) -> str:
    return value.isoformat() if value else ""


def _window(start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return "with no dates"
    return f"from {_day(start) or 'the start'} to {_day(end) or 'further notice'}"


def _overlaps(a: tuple[date | None, date | None], b: tuple[date | None, date | None]) -> bool:
    """Do two day ranges (last day included; None: open) share a day?"""
    return (a[0] is None or b[1] is None or a[0] <= b[1]) and (
        b[0] is None or a[1] is None or b[0] <= a[1]
    )


def _same_name(kind: str, name: str) -> Q:
    """Mappings of the same account: resource ids match exactly, other names ignoring case."""
    return Q(name=name) if kind == AccountMapping.Kind.RESOURCE else Q(name__iexact=name)


def account_mapping_check(mapping: AccountMapping) -> None:
    """Refuse an active cloud mapping whose dates overlap another active mapping
    of the same source, kind and name (one mapping applies to a day, never two)."""
    source = mapping.source if mapping.source_id is not None else None
    if not mapping.is_cloud or not mapping.active or source is None:
        return
    others = AccountMapping.objects.filter(
        _same_name(mapping.kind, mapping.name),
        source=source,
        kind=mapping.kind,
        active=True,
    )
    if mapping.pk is not None:
        others = others.exclude(pk=mapping.pk)
    mine = (mapping.effective_from, mapping.effective_to)
    for other in others.order_by("effective_from", "pk"):
        theirs = (other.effective_from, other.effective_to)
        if _overlaps(mine, theirs):
            raise BillingError(
                f"{_KIND_WORDS[mapping.kind]} {mapping.name!r} of source {source.slug} is "
                f"already mapped {_window(*theirs)} (mapping #{other.pk}); the dates "
                f"{_window(*mine)} overlap it: end one mapping before the other starts"
            )


def _clean_mapping(mapping: AccountMapping) -> None:
    mapping.name = (mapping.name or "").strip()
    mapping.fund_org = (mapping.fund_org or "").strip()
    try:
        mapping.full_clean(exclude=["created_at", "created_by"])
    except ValidationError as exc:
        raise _one_line(exc, f"mapping {mapping.name!r}") from None
    if mapping.is_cloud and mapping.source_id is not None:
        # One writer per source at a time, so two overlapping mappings cannot
        # both pass the check (the importer takes the same lock).
        Source.objects.select_for_update().filter(pk=mapping.source_id).first()
    account_mapping_check(mapping)


@transaction.atomic
def account_mapping_create(
    *,
    actor: Actor,
    kind: str,
    name: str,
    project: Project,
    fund_org: str = "",
    notes: str = "",
    active: bool = True,
    source: Source | None = None,
    effective_from: date | None = None,
    effective_to: date | None = None,
) -> AccountMapping:
    """Map an account to a project (which must have a PI): a Slurm account or
    storage quota, or a cloud sub-account, billing account or resource of a
    source, optionally for a range of days that overlaps no other mapping of
    the same account. Applying it to charges already imported is
    :func:`ingest.focus.cloud_accounts.account_mappings_apply`."""
    mapping = AccountMapping(
        kind=kind,
        source=source,
        name=name,
        project=project,
        fund_org=fund_org,
        effective_from=effective_from,
        effective_to=effective_to,
        notes=notes,
        active=active,
        created_by=actor.name,
    )
    _clean_mapping(mapping)
    mapping.save()
    audit(actor=actor, action="accountmapping.create", obj=mapping, after=_mapping_values(mapping))
    return mapping


@transaction.atomic
def account_mapping_update(
    *, mapping: AccountMapping, actor: Actor, **changes: Any
) -> AccountMapping:
    """Change a mapping's kind, source, name, project, fund/org, dates, notes or
    active flag."""
    unknown = set(changes) - set(_MAPPING_FIELDS)
    if unknown:
        raise BillingError(f"unknown mapping field(s): {', '.join(sorted(unknown))}")
    fresh = (
        AccountMapping.objects.select_for_update(of=("self",))
        .select_related("project__pi", "source")
        .filter(pk=mapping.pk)
        .first()
    )
    if fresh is None:
        raise BillingError(f"mapping {mapping.pk} does not exist any more")
    before = _mapping_values(fresh)
    for name, value in changes.items():
        setattr(fresh, name, value)
    _clean_mapping(fresh)
    after = _mapping_values(fresh)
    if after == before:
        return fresh
    fresh.save()
    before.update({k: "" for k in after if k not in before})
    after.update({k: "" for k in before if k not in after})
    audit_change(actor=actor, action="accountmapping.change", obj=fresh, before=before, after=after)
    return fresh


@transaction.atomic
def account_mapping_delete(*, mapping: AccountMapping, actor: Actor) -> None:
    """Delete a mapping: the account is unmapped from then on (charges already
    imported keep their PI and project)."""
    fresh = (
        AccountMapping.objects.select_related("project__pi", "source").filter(pk=mapping.pk).first()
    )
    if fresh is None:
        return
    audit(actor=actor, action="accountmapping.delete", obj=fresh, before=_mapping_values(fresh))
    fresh.delete()


@dataclass(frozen=True)
class MappingLine:
    """One row of a mapping file and what importing it does (or would do)."""

    line: int
    kind: str
    name: str
    pi_email: str
    project_id: str
    fund_org: str
    outcome: str  # created, updated, unchanged
    source: str = ""
    effective_from: str = ""
    effective_to: str = ""

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.kind in AccountMapping.ON_PREMISES_KINDS:
            for name in CLOUD_COLUMNS:
                values.pop(name)
        return values


@dataclass
class MappingImportResult:
    file: str
    dry_run: bool
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pis_created: int = 0
    projects_created: int = 0
    lines: list[MappingLine] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        text = (
            f"{self.file}: {self.created:,} mapping{'s' if self.created != 1 else ''} "
            f"{verb}created, {self.updated:,} {verb}updated, {self.unchanged:,} unchanged"
        )
        extra = []
        if self.pis_created:
            extra.append(f"{count(self.pis_created, 'new PI')}")
        if self.projects_created:
            extra.append(f"{count(self.projects_created, 'new project')}")
        if extra:
            text += f" ({', '.join(extra)})"
        return ("Dry run, nothing written: " if self.dry_run else "") + text + "."

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "dry_run" if self.dry_run else "imported",
            **{k: v for k, v in asdict(self).items() if k not in ("lines", "dry_run")},
            "lines": [line.as_dict() for line in self.lines],
        }


@dataclass
class _Wanted:
    line: int
    kind: str
    name: str
    pi_email: str
    project_id: str
    fund_org: str
    source: Source | None = None
    start: date | None = None
    end: date | None = None

    @property
    def key(self) -> tuple[str, int, str, date | None]:
        """Which stored mapping a line updates: same kind, source, name and start."""
        source_id = self.source.pk if self.source else 0
        return (self.kind, source_id, _name_key(self.kind, self.name), self.start)


def _name_key(kind: str, name: str) -> str:
    return name if kind == AccountMapping.Kind.RESOURCE else name.lower()


_MAX_ERRORS_SHOWN = 1
_LIMITS = {"name": 1000, "pi_email": 254, "project_id": 200, "fund_org": 100}


def _cell(value: str) -> str:
    """A cell as typed: surrounding spaces dropped, and the apostrophe that an
    export puts before text a spreadsheet would run as a formula removed."""
    return restore(value.strip())


def _read_mapping_file(path: Path, display: str) -> list[_Wanted]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise BillingError(f"{display}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BillingError(f"{display}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    expected = ",".join(MAPPING_COLUMNS)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BillingError(f"{display} line 1: not CSV ({exc})") from None
    if not header or not any(h.strip() for h in header):
        raise BillingError(f"{display}: no header line; the first line must be {expected}")
    names = [h.strip().lower() for h in header]
    allowed = (*MAPPING_COLUMNS, *CLOUD_COLUMNS)
    missing = [c for c in MAPPING_COLUMNS if c not in names]
    unknown = [n for n in names if n not in allowed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or repeated:
        wrong = []
        if missing:
            wrong.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            wrong.append(f"unknown column(s) {', '.join(repr(n) for n in unknown)}")
        if repeated:
            wrong.append(f"repeated column(s) {', '.join(repeated)}")
        raise BillingError(
            f"{display} line 1: {'; '.join(wrong)}; the header must be {expected} "
            f"(and, for cloud mappings, {','.join(CLOUD_COLUMNS)})"
        )
    index = {name: names.index(name) for name in allowed if name in names}
    sources = {s.slug: s for s in Source.objects.all()}

    errors: list[str] = []
    wanted: list[_Wanted] = []
    seen: dict[tuple[Any, ...], int] = {}
    windows: dict[tuple[str, int, str], list[_Wanted]] = {}
    previous_end = 1
    try:
        for cells in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            where = f"{display} line {line}"
            if len(cells) != len(names):
                errors.append(f"{where}: {len(cells)} fields, expected {len(names)}")
                continue
            row = {name: _cell(cells[i]) for name, i in index.items()}
            for name in CLOUD_COLUMNS:
                row.setdefault(name, "")
            problems = _row_problems(row)
            kind, name = row["kind"].lower(), row["name"]
            source, start, end = _cloud_cells(row, kind, sources, problems)
            if not problems.keys() & {"kind", "name", "source", "effective_from"}:
                key: tuple[Any, ...] = (kind, source.pk if source else 0, _name_key(kind, name))
                if kind in AccountMapping.CLOUD_KINDS:
                    key = (*key, start)
                if key in seen:
                    problems["name"] = f"{name!r} is already on line {seen[key]}"
                else:
                    seen[key] = line
            if problems:
                errors.extend(f"{where}, column {col}: {text}" for col, text in problems.items())
                continue
            item = _Wanted(
                line=line,
                kind=kind,
                name=name,
                pi_email=row["pi_email"].lower(),
                project_id=row["project_id"],
                fund_org=row["fund_org"],
                source=source,
                start=start,
                end=end,
            )
            if kind in AccountMapping.CLOUD_KINDS:
                assert source is not None
                same = windows.setdefault((kind, source.pk, _name_key(kind, name)), [])
                clash = next((w for w in same if _overlaps((start, end), (w.start, w.end))), None)
                if clash is not None:
                    errors.append(
                        f"{where}, column effective_from: {_window(start, end)} overlaps "
                        f"line {clash.line} ({_window(clash.start, clash.end)}) for the same "
                        f"{_KIND_WORDS[kind]}"
                    )
                    continue
                same.append(item)
            wanted.append(item)
    except csv.Error as exc:
        errors.append(f"{display} line {previous_end + 1}: not CSV ({exc})")
    _raise_first(errors)
    return wanted


def _row_problems(row: dict[str, str]) -> dict[str, str]:
    problems: dict[str, str] = {}
    if row["kind"].lower() not in AccountMapping.Kind.values:
        shown = repr(row["kind"]) if row["kind"] else "empty"
        problems["kind"] = (
            f"{shown} is not a kind; use slurm, storage, sub_account, billing_account or resource"
        )
    if not row["name"]:
        cloud = row["kind"].lower() in AccountMapping.CLOUD_KINDS
        what = (
            "SubAccountId, BillingAccountId or ResourceId"
            if cloud
            else "Slurm account or quota name"
        )
        problems["name"] = f"empty; give the {what}"
    if not row["pi_email"]:
        problems["pi_email"] = "empty; give the PI's email address"
    elif not EMAIL_RE.match(row["pi_email"]):
        problems["pi_email"] = f"{row['pi_email']!r} is not an email address"
    if not row["project_id"]:
        problems["project_id"] = "empty; give the project id"
    for column, limit in _LIMITS.items():
        if column not in problems and len(row[column]) > limit:
            problems[column] = f"longer than {limit} characters"
    return problems


def _cloud_cells(
    row: dict[str, str], kind: str, sources: dict[str, Source], problems: dict[str, str]
) -> tuple[Source | None, date | None, date | None]:
    """The source and dates of a row, adding what is wrong with them to ``problems``."""
    slug = row["source"].lower()
    days: dict[str, date | None] = {}
    for column in ("effective_from", "effective_to"):
        days[column] = None
        if row[column]:
            try:
                days[column] = date.fromisoformat(row[column])
            except ValueError:
                problems[column] = f"{row[column]!r} is not a date (YYYY-MM-DD)"
    start, end = days["effective_from"], days["effective_to"]
    if kind in AccountMapping.ON_PREMISES_KINDS:
        if slug:
            problems["source"] = f"{kind} mappings have no source; leave it empty"
        if start or end:
            problems.setdefault(
                "effective_from" if start else "effective_to",
                f"{kind} mappings are not dated; leave the dates empty",
            )
        return None, None, None
    if kind not in AccountMapping.CLOUD_KINDS:
        return None, start, end
    source = sources.get(slug)
    if not slug:
        problems["source"] = f"empty; a {kind} mapping names its source"
    elif source is None:
        known = ", ".join(sorted(sources)) or "none"
        problems["source"] = f"unknown source {row['source']!r} (known: {known})"
    if start and end and end < start:
        problems["effective_to"] = f"{end.isoformat()} is before effective_from {start.isoformat()}"
    return source, start, end


def _raise_first(errors: list[str]) -> None:
    if errors:
        more = len(errors) - _MAX_ERRORS_SHOWN
        suffix = f" (and {count(more, 'more error')})" if more > 0 else ""
        raise BillingError(errors[0] + suffix)


@transaction.atomic
def account_mapping_import(
    *, path: Path | str, actor: Actor, dry_run: bool = False, display_name: str = ""
) -> MappingImportResult:
    """Create or update mappings from a CSV file (kind, name, pi_email,
    project_id, fund_org; for cloud mappings also source, effective_from,
    effective_to), creating missing PIs and projects. All or nothing: any bad
    row refuses the whole file with a one-line error naming the file, line and
    column (an unknown source or kind, a bad date, dates that overlap another
    mapping of the same account). A line updates the mapping of the same kind,
    source, name and start date. Mappings not in the file are left alone, and
    so is the active flag of those that are. Re-importing the same file
    changes nothing.
    """
    path = Path(path)
    display = display_name or path.name
    wanted = _read_mapping_file(path, display)

    project_codes = {w.project_id for w in wanted}
    emails = {w.pi_email for w in wanted}
    projects = {
        p.project_id: p
        for p in Project.objects.filter(project_id__in=project_codes).select_related("pi")
    }
    pis = {p.email: p for p in PI.objects.filter(email__in=emails)}
    stored = list(
        AccountMapping.objects.annotate(key=Lower("name"))
        .filter(key__in={w.name.lower() for w in wanted})
        .select_related("project__pi", "source")
    )
    existing: dict[tuple[Any, ...], AccountMapping] = {}
    for m in stored:
        if m.kind in AccountMapping.CLOUD_KINDS:
            existing[(m.kind, m.source_id, _name_key(m.kind, m.name), m.effective_from)] = m
        else:
            existing[(m.kind, 0, m.name.lower(), None)] = m

    # Which PI each project belongs to: its PI, else the first line naming it.
    owner_of: dict[str, tuple[str, int]] = {
        code: (p.pi.email, 0) for code, p in projects.items() if p.pi is not None
    }
    errors: list[tuple[int, str]] = []
    for w in wanted:
        owner, line = owner_of.setdefault(w.project_id, (w.pi_email, w.line))
        if owner != w.pi_email:
            where = "" if line == 0 else f" on line {line}"
            errors.append(
                (
                    w.line,
                    f"{display} line {w.line}, column project_id: project {w.project_id!r} "
                    f"belongs to {owner}{where}, not {w.pi_email}",
                )
            )
    # Dated cloud lines against the stored mappings of the same account that the file does
    # not update (those it updates take the file's dates).
    updated = {id(existing[w.key]) for w in wanted if w.key in existing}
    for w in wanted:
        if w.kind not in AccountMapping.CLOUD_KINDS or w.source is None:
            continue
        for m in stored:
            if (
                id(m) in updated
                or not m.active
                or (m.kind, m.source_id, _name_key(m.kind, m.name))
                != (w.kind, w.source.pk, _name_key(w.kind, w.name))
            ):
                continue
            if _overlaps((w.start, w.end), (m.effective_from, m.effective_to)):
                errors.append(
                    (
                        w.line,
                        f"{display} line {w.line}, column effective_from: "
                        f"{_window(w.start, w.end)} overlaps mapping #{m.pk} of "
                        f"{_KIND_WORDS[w.kind]} {m.name!r} "
                        f"({_window(m.effective_from, m.effective_to)}); change or delete "
                        "that mapping first",
                    )
                )
    errors.sort(key=lambda item: item[0])
    _raise_first([text for _line, text in errors])

    result = MappingImportResult(file=display, dry_run=dry_run)
    result.pis_created = len(emails - set(pis))
    result.projects_created = len(project_codes - set(projects))
    if not dry_run:
        reason = f"account mapping import {display}"
        for email in sorted(emails - set(pis)):
            pis[email] = PI.objects.create(email=email)
            audit(
                actor=actor,
                action="pi.create",
                obj=pis[email],
                after={"email": email},
                reason=reason,
            )
        for w in wanted:
            project = projects.get(w.project_id)
            if project is None:
                project = Project.objects.create(project_id=w.project_id, pi=pis[w.pi_email])
                projects[w.project_id] = project
                audit(
                    actor=actor,
                    action="project.create",
                    obj=project,
                    after={"project_id": w.project_id, "pi": w.pi_email},
                    reason=reason,
                )
            elif project.pi is None:
                project.pi = pis[w.pi_email]
                project.save(update_fields=["pi"])
                audit(
                    actor=actor,
                    action="project.assign_pi",
                    obj=project,
                    before={"pi": None},
                    after={"pi": w.pi_email},
                    reason=reason,
                )

    # Updates first: a line may move an end date out of the way of a new line.
    order = sorted(wanted, key=lambda w: (w.key not in existing, w.line))
    outcomes: dict[int, str] = {}
    for w in order:
        mapping = existing.get(w.key)
        if mapping is None:
            outcome = "created"
            if not dry_run:
                created = AccountMapping(
                    kind=w.kind,
                    source=w.source,
                    name=w.name,
                    project=projects[w.project_id],
                    fund_org=w.fund_org,
                    effective_from=w.start,
                    effective_to=w.end,
                    created_by=actor.name,
                )
                _clean_mapping(created)
                created.save()
                audit(
                    actor=actor,
                    action="accountmapping.create",
                    obj=created,
                    after=_mapping_values(created),
                    reason=f"account mapping import {display} line {w.line}",
                )
        elif (
            mapping.name,
            mapping.project.project_id,
            mapping.fund_org,
            mapping.effective_to,
        ) == (w.name, w.project_id, w.fund_org, w.end):
            outcome = "unchanged"
        else:
            outcome = "updated"
            if not dry_run:
                before = _mapping_values(mapping)
                mapping.name, mapping.fund_org = w.name, w.fund_org
                mapping.project = projects[w.project_id]
                mapping.effective_to = w.end
                _clean_mapping(mapping)
                mapping.save()
                after = _mapping_values(mapping)
                audit_change(
                    actor=actor,
                    action="accountmapping.change",
                    obj=mapping,
                    before=before,
                    after=after,
                    reason=f"account mapping import {display} line {w.line}",
                )
        outcomes[w.line] = outcome
    for w in wanted:
        outcome = outcomes[w.line]
        setattr(result, outcome, getattr(result, outcome) + 1)
        result.lines.append(
            MappingLine(
                line=w.line,
                kind=w.kind,
                name=w.name,
                pi_email=w.pi_email,
                project_id=w.project_id,
                fund_org=w.fund_org,
                outcome=outcome,
                source=w.source.slug if w.source else "",
                effective_from=_day(w.start),
                effective_to=_day(w.end),
            )
        )
    return result


def account_mapping_export(mappings: Iterable[AccountMapping] | None = None) -> str:
    """Mappings as the CSV that :func:`account_mapping_import` reads (a blank
    fund/org: the project's default). The source and date columns are written
    when a cloud mapping is among them. Text a spreadsheet would run as a
    formula gets an apostrophe in front, which the import removes again."""
    if mappings is None:
        mappings = AccountMapping.objects.select_related("project__pi", "source").order_by(
            "kind", "source__slug", Lower("name"), "effective_from"
        )
    rows = list(mappings)
    cloud = any(m.is_cloud for m in rows)
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=True)
    writer.writerow((*MAPPING_COLUMNS, *CLOUD_COLUMNS) if cloud else MAPPING_COLUMNS)
    for m in rows:
        pi = m.project.pi.email if m.project.pi else ""
        values = [m.kind, m.name, pi, m.project.project_id, m.fund_org]
        if cloud:
            slug = m.source.slug if m.source else ""
            values += [slug, _day(m.effective_from), _day(m.effective_to)]
        writer.writerow(values)
    return buffer.getvalue()
