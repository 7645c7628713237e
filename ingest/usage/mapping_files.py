"""Account mapping files (CSV, one mapping a line): importing one creates or
updates the mappings it names (and their missing PIs and projects), audited
per change, all or nothing; mappings not in the file are left alone, and
importing the same file again changes nothing (safe to re-run). Exporting
writes the file an import reads back. (A little over 600 lines: the checks
of one all-or-nothing import, read in the order they run.)"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models.functions import Lower

from billing.audit import Actor, audit, audit_change
from billing.errors import BillingError
from billing.models import PI, Project, Source
from billing.owners import pis_create, projects_create
from billing.rules import EMAIL_RE
from ingest.models import AccountMapping
from ingest.usage.mappings import (
    CLOUD_COLUMNS,
    KIND_WORDS,
    MAPPING_COLUMNS,
    account_mapping_clean,
    day_text,
    mapping_values,
    overlaps,
    window_text,
)
from openchargeback.csvfile import CsvWriter
from openchargeback.spreadsheet import restore
from openchargeback.text import count

__all__ = [
    "MappingImportResult",
    "MappingLine",
    "account_mapping_export",
    "account_mapping_import",
]


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
    """The file's lines as the mappings wanted; the first problem found (and
    how many more there are) refuses the whole file."""
    reader = csv.reader(io.StringIO(_file_text(path, display), newline=""))
    lines = _Lines(_header(reader, display), display)
    previous_end = 1
    try:
        for cells in reader:
            line, previous_end = previous_end + 1, reader.line_num
            lines.add(line, cells)
    except csv.Error as exc:
        lines.errors.append(f"{display} line {previous_end + 1}: not CSV ({exc})")
    _raise_first(lines.errors)
    return lines.wanted


def _file_text(path: Path, display: str) -> str:
    """The file as text (UTF-8, with or without a byte order mark)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise BillingError(f"{display}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BillingError(f"{display}: not UTF-8 text") from None


def _header(reader: Any, display: str) -> list[str]:
    """The header's column names, lower-cased; refuses a missing, unknown or
    repeated column."""
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
    return names


class _Lines:
    """The data lines of a mapping file, checked one at a time: the mappings
    wanted, and the problems (line and column named) in file order."""

    def __init__(self, names: list[str], display: str) -> None:
        self.names = names
        self.display = display
        allowed = (*MAPPING_COLUMNS, *CLOUD_COLUMNS)
        self.index = {name: names.index(name) for name in allowed if name in names}
        self.sources = {s.slug: s for s in Source.objects.all()}
        self.errors: list[str] = []
        self.wanted: list[_Wanted] = []
        # (kind, source, name[, start]) -> the line that has it first.
        self.seen: dict[tuple[Any, ...], int] = {}
        # Cloud mappings by (kind, source, name), to refuse overlapping dates.
        self.windows: dict[tuple[str, int, str], list[_Wanted]] = {}

    def add(self, line: int, cells: list[str]) -> None:
        """One line: blank lines are skipped, a line with problems is noted."""
        if not any(c.strip() for c in cells):
            return
        where = f"{self.display} line {line}"
        if len(cells) != len(self.names):
            self.errors.append(f"{where}: {len(cells)} fields, expected {len(self.names)}")
            return
        row = {name: _cell(cells[i]) for name, i in self.index.items()}
        for name in CLOUD_COLUMNS:
            row.setdefault(name, "")
        problems = _row_problems(row)
        kind, name = row["kind"].lower(), row["name"]
        source, start, end = _cloud_cells(row, kind, self.sources, problems)
        if not problems.keys() & {"kind", "name", "source", "effective_from"}:
            self._note_first(line, kind, name, source, start, problems)
        if problems:
            self.errors.extend(f"{where}, column {col}: {text}" for col, text in problems.items())
            return
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
        if kind in AccountMapping.CLOUD_KINDS and self._overlapping(item, where):
            return
        self.wanted.append(item)

    def _note_first(
        self,
        line: int,
        kind: str,
        name: str,
        source: Source | None,
        start: date | None,
        problems: dict[str, str],
    ) -> None:
        """Remember the line that maps this account first; a later one is a problem."""
        key: tuple[Any, ...] = (kind, source.pk if source else 0, _name_key(kind, name))
        if kind in AccountMapping.CLOUD_KINDS:
            key = (*key, start)
        if key in self.seen:
            problems["name"] = f"{name!r} is already on line {self.seen[key]}"
        else:
            self.seen[key] = line

    def _overlapping(self, item: _Wanted, where: str) -> bool:
        """Whether a cloud mapping's dates overlap an earlier line's for the same
        account (noted as a problem); else it is remembered."""
        assert item.source is not None
        same = self.windows.setdefault(
            (item.kind, item.source.pk, _name_key(item.kind, item.name)), []
        )
        start, end = item.start, item.end
        clash = next((w for w in same if overlaps((start, end), (w.start, w.end))), None)
        if clash is not None:
            self.errors.append(
                f"{where}, column effective_from: {window_text(start, end)} overlaps "
                f"line {clash.line} ({window_text(clash.start, clash.end)}) for the same "
                f"{KIND_WORDS[item.kind]}"
            )
            return True
        same.append(item)
        return False


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
    stored, existing = _stored_mappings(wanted)
    errors = _owner_errors(wanted, projects, display)
    errors += _overlap_errors(wanted, stored, existing, display)
    errors.sort(key=lambda item: item[0])
    _raise_first([text for _line, text in errors])

    result = MappingImportResult(file=display, dry_run=dry_run)
    result.pis_created = len(emails - set(pis))
    result.projects_created = len(project_codes - set(projects))
    if not dry_run:
        _create_owners(wanted, emails, pis, projects, actor=actor, display=display)

    # Updates first: a line may move an end date out of the way of a new line.
    order = sorted(wanted, key=lambda w: (w.key not in existing, w.line))
    outcomes: dict[int, str] = {}
    for w in order:
        outcomes[w.line] = _apply_line(
            w, existing.get(w.key), projects, actor=actor, display=display, dry_run=dry_run
        )
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
                effective_from=day_text(w.start),
                effective_to=day_text(w.end),
            )
        )
    return result


def _stored_mappings(
    wanted: list[_Wanted],
) -> tuple[list[AccountMapping], dict[tuple[Any, ...], AccountMapping]]:
    """The stored mappings of the file's names, and those by the key a line updates."""
    stored: list[AccountMapping] = list(
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
    return stored, existing


def _owner_errors(
    wanted: list[_Wanted], projects: dict[str, Project], display: str
) -> list[tuple[int, str]]:
    """Lines that give a project to another PI than its own: its PI, else the
    first line naming it."""
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
    return errors


def _overlap_errors(
    wanted: list[_Wanted],
    stored: list[AccountMapping],
    existing: dict[tuple[Any, ...], AccountMapping],
    display: str,
) -> list[tuple[int, str]]:
    """Dated cloud lines against the stored mappings of the same account that the
    file does not update (those it updates take the file's dates)."""
    errors: list[tuple[int, str]] = []
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
            if overlaps((w.start, w.end), (m.effective_from, m.effective_to)):
                errors.append(
                    (
                        w.line,
                        f"{display} line {w.line}, column effective_from: "
                        f"{window_text(w.start, w.end)} overlaps mapping #{m.pk} of "
                        f"{KIND_WORDS[w.kind]} {m.name!r} "
                        f"({window_text(m.effective_from, m.effective_to)}); change or delete "
                        "that mapping first",
                    )
                )
    return errors


def _create_owners(
    wanted: list[_Wanted],
    emails: set[str],
    pis: dict[str, PI],
    projects: dict[str, Project],
    *,
    actor: Actor,
    display: str,
) -> None:
    """Create the PIs and projects the file names that do not exist yet, and
    give an unowned project its PI (each audited); ``pis`` and ``projects``
    gain them."""
    reason = f"account mapping import {display}"
    for pi in pis_create(emails=sorted(emails - set(pis)), actor=actor, reason=reason):
        pis[pi.email] = pi
    for w in wanted:
        project = projects.get(w.project_id)
        if project is None:
            owner = {w.project_id: (pis[w.pi_email].pk, w.pi_email)}
            [project] = projects_create(owners=owner, actor=actor, reason=reason)
            project.pi = pis[w.pi_email]
            projects[w.project_id] = project
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


def _apply_line(
    w: _Wanted,
    mapping: AccountMapping | None,
    projects: dict[str, Project],
    *,
    actor: Actor,
    display: str,
    dry_run: bool,
) -> str:
    """Create or update the line's mapping (audited; nothing in a dry run):
    'created', 'updated' or 'unchanged'."""
    reason = f"account mapping import {display} line {w.line}"
    if mapping is None:
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
            account_mapping_clean(created)
            created.save()
            audit(
                actor=actor,
                action="accountmapping.create",
                obj=created,
                after=mapping_values(created),
                reason=reason,
            )
        return "created"
    if (
        mapping.name,
        mapping.project.project_id,
        mapping.fund_org,
        mapping.effective_to,
    ) == (w.name, w.project_id, w.fund_org, w.end):
        return "unchanged"
    if not dry_run:
        before = mapping_values(mapping)
        mapping.name, mapping.fund_org = w.name, w.fund_org
        mapping.project = projects[w.project_id]
        mapping.effective_to = w.end
        account_mapping_clean(mapping)
        mapping.save()
        after = mapping_values(mapping)
        audit_change(
            actor=actor,
            action="accountmapping.change",
            obj=mapping,
            before=before,
            after=after,
            reason=reason,
        )
    return "updated"


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
            values += [slug, day_text(m.effective_from), day_text(m.effective_to)]
        writer.writerow(values)
    return buffer.getvalue()
