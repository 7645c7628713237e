"""FOCUS import: parse, attribute, flag and insert one file's charges in one
transaction. Safe to re-run: rows already imported for the source are
skipped, so the same file (or overlapping content) never counts twice."""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing import flags as flag_bits
from billing import summaries
from billing.models import PI, BillingPeriod, Charge, Project, Source
from billing.rules import (
    EMAIL_RE,
    Attribution,
    RuleSet,
    attribution_flags,
    line_flags,
    map_tags,
    unmapped_account,
)
from billing.selectors import load_ruleset
from billing.services import (
    Actor,
    audit,
    audit_created,
    charges_convert,
    period_open,
    validate_period,
)
from billing.triggers import CHARGE_INSERT_TRIGGER, CHARGE_INSERT_TRIGGER_SQL
from ingest.models import Import
from ingest.parsers import FocusReader, IngestError, open_focus
from ingest.rows import (
    B_BILLED,
    B_CURRENCY,
    B_RESOURCE_ID,
    B_RESOURCE_NAME,
    B_SERVICE,
    BASE_COLUMNS,
    PARALLEL_MIN_BYTES,
    PreparedChunk,
    RowPreparer,
    prepared_chunks,
)
from openchargeback.files import fsync_dir
from openchargeback.money import from_nanos, money_str

logger = logging.getLogger(__name__)

__all__ = ["ImportResult", "IngestError", "import_file"]

# Fingerprints per existence query (well under SQLite's variable limit).
_EXISTS_BATCH = 500
_ATTRIBUTION_CACHE_LIMIT = 200_000


@dataclass
class ImportResult:
    """What an import did (or, for a dry run, would do)."""

    status: str  # imported | already_imported | dry_run
    file: str
    source: str
    import_id: int | None = None
    rows_read: int = 0
    charges_created: int = 0
    duplicates_skipped: int = 0
    charges_removed: int = 0
    flagged: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    billed_total: Decimal = Decimal("0.00")
    periods: list[str] = field(default_factory=list)
    new_periods: list[str] = field(default_factory=list)
    values_rounded: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "file": self.file,
            "source": self.source,
            "import_id": self.import_id,
            "rows_read": self.rows_read,
            "charges_created": self.charges_created,
            "duplicates_skipped": self.duplicates_skipped,
            "charges_removed": self.charges_removed,
            "flagged": self.flagged,
            "flags": dict(sorted(self.flags.items())),
            "billed_total": money_str(self.billed_total),
            "periods": self.periods,
            "new_periods": self.new_periods,
            "values_rounded": self.values_rounded,
            "message": self.message,
        }


_LARGE_BIT = flag_bits.BIT["large_charge"]


def _pattern_screen(ruleset: RuleSet) -> list[tuple[Callable[[str], Any], int]]:
    """(regex search, base column) pairs: could a review pattern match this row?"""
    if "pattern_match" not in ruleset.enabled:
        return []
    fields = {
        "service_name": (B_SERVICE,),
        "resource_id": (B_RESOURCE_ID,),
        "resource_name": (B_RESOURCE_NAME,),
        "any": (B_SERVICE, B_RESOURCE_ID, B_RESOURCE_NAME),
    }
    return [(spec.regex.search, i) for spec in ruleset.patterns for i in fields[spec.target]]


@dataclass(frozen=True)
class _Who:
    """A Tags value resolved: who pays, and the attribution flags."""

    values: tuple[Any, ...]  # WHO_COLUMNS, in order
    mask: int
    details: dict[str, Any]
    details_json: str


class _NothingNew(Exception):
    """Raised inside the transaction to roll back an import that added nothing."""


def import_file(
    *,
    path: str | os.PathLike[str],
    source: Source,
    actor: Actor,
    expected_period: str | None = None,
    dry_run: bool = False,
    replace: bool = False,
    display_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import one FOCUS file into ``source``.

    Hard errors (unreadable file, missing column, bad number or date, a row in
    a closed or finalized period) raise :class:`IngestError` and write
    nothing. Attribution problems never reject: the charge is flagged with
    every reason that applies and waits in the review queue.
    """
    if expected_period:
        expected_period = validate_period(expected_period)
    reader = open_focus(
        path,
        display_name=display_name,
        chunk_rows=settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS,
        max_file_bytes=settings.OPENCHARGEBACK_INGEST_MAX_FILE_BYTES,
        max_uncompressed=settings.OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES,
        progress=progress,
    )
    sha256 = _sha256(reader.path)
    importer = _Importer(
        reader=reader,
        source=source,
        actor=actor,
        expected_period=expected_period or None,
        dry_run=dry_run,
        replace=replace,
        sha256=sha256,
    )
    # Rows are acyclic; the cyclic garbage collector only slows a bulk load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _sqlite_bulk_settings():
            return importer.run_dry() if dry_run else importer.run()
    finally:
        if gc_was_enabled:
            gc.enable()


@contextmanager
def _sqlite_bulk_settings() -> Iterator[None]:
    """A bigger SQLite page cache while importing.

    Inserting into the (random) fingerprint index of a large table thrashes
    SQLite's default 2 MB cache; the cache is restored afterwards.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA cache_size = -{settings.OPENCHARGEBACK_SQLITE_IMPORT_CACHE_KIB:d}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(previous):d}")


@contextmanager
def _insert_trigger_suspended() -> Iterator[None]:
    """SQLite only: drop the per-row finalized-period insert trigger for this
    transaction and put it back before commit (see billing/triggers.py).

    The importer checks that every period it writes to is open, under
    SQLite's single write lock; the trigger guards every other writer.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {CHARGE_INSERT_TRIGGER}")
    yield
    with connection.cursor() as cursor:
        cursor.execute(CHARGE_INSERT_TRIGGER_SQL)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Importer:
    def __init__(
        self,
        *,
        reader: FocusReader,
        source: Source,
        actor: Actor,
        expected_period: str | None,
        dry_run: bool,
        replace: bool,
        sha256: str,
    ) -> None:
        self.reader = reader
        self.source = source
        self.actor = actor
        self.expected_period = expected_period
        self.dry_run = dry_run
        self.replace = replace
        self.sha256 = sha256
        self.result = ImportResult(
            status="dry_run" if dry_run else "imported",
            file=reader.display_name,
            source=source.slug,
        )
        self.ruleset: RuleSet
        self.import_record: Import | None = None
        # Caches, all bounded by the number of distinct values, not rows.
        self.period_ids: dict[str, int] = {}
        self.periods_in_file: set[str] = set()
        self.attr_cache: dict[str, _Who] = {}
        # Tags mapped by _register_owners() and not yet through _attribution().
        self.mapped: dict[str, Attribution] = {}
        self.pis: dict[str, int] = {}
        self.projects: dict[str, tuple[int, int | None]] = {}
        self.pi_email_by_id: dict[int, str] = {}
        self.fake_id = -1
        self.mask_counts: Counter[int] = Counter()
        self.billed_nanos = 0
        self.periods_with_data: set[str] = set()
        self.matched_ids: list[int] = []
        self.matched_total = 0

    # -- entry points --------------------------------------------------------
    def run_dry(self) -> ImportResult:
        self._prepare()
        for chunk in self._prepared_chunks():
            self._consume(chunk)
        self._finish_stats()
        if self.replace:
            self.result.charges_removed = self._replace_scope().count() - self.matched_total
        return self.result

    def run(self) -> ImportResult:
        stored_tmp: Path | None = None
        copier: _Copier | None = None
        try:
            with transaction.atomic():
                # One import per source at a time: on PostgreSQL this row lock
                # queues concurrent imports; SQLite's IMMEDIATE transactions
                # already serialise writers.
                Source.objects.select_for_update().filter(pk=self.source.pk).first()
                prior = self._prior_import()
                if prior is not None:
                    return self._already(prior)
                # New charges get ids above this one (ids only grow).
                last_id = Charge.objects.aggregate(last=Max("id"))["last"] or 0
                self._prepare()
                copier = _Copier(self.reader)
                copier.start()
                self.import_record = Import.objects.create(
                    file_name=self.reader.display_name[:255],
                    sha256=self.sha256,
                    stored_file="",
                    file_size=self.reader.size,
                    source=self.source,
                    expected_period=self.expected_period or "",
                    actor=self.actor.name,
                    user_id=self.actor.user_id,
                    replace=self.replace,
                )
                with _insert_trigger_suspended():
                    for chunk in self._prepared_chunks():
                        self._consume(chunk)
                self._finish_stats()
                if self.replace:
                    self._apply_replace()
                if self.result.charges_created == 0 and self.result.charges_removed == 0:
                    raise _NothingNew
                if self.replace:  # charges removed and moved too: recount the periods
                    summaries.rebuild(self.period_ids.values())
                else:
                    summaries.add(
                        Charge.objects.filter(pk__gt=last_id, import_record=self.import_record)
                    )
                # Charges in another currency: converted if their month has a rate.
                charges_convert(
                    charges=Charge.objects.filter(pk__gt=last_id, import_record=self.import_record),
                    actor=self.actor,
                )
                stored_tmp = copier.finish()
                self._record(stored_tmp)
        except _NothingNew:
            self.result.status = "already_imported"
            self.result.import_id = None
            self.result.message = (
                f"{self.reader.display_name}: every row is already imported for source "
                f"{self.source.slug}; nothing changed"
            )
            return self.result
        finally:
            if copier is not None:
                copier.cleanup()
        return self.result

    # -- setup -----------------------------------------------------------------
    def _prepared_chunks(self) -> Iterator[PreparedChunk]:
        preparer = RowPreparer(self.reader, connection.ops.adapt_datetimefield_value)
        for chunk in prepared_chunks(preparer, parallel=self.reader.size >= PARALLEL_MIN_BYTES):
            self.periods_in_file.update(chunk.periods)
            yield chunk

    def _prior_import(self) -> Import | None:
        if self.replace:
            return None
        return (
            Import.objects.filter(
                source=self.source, sha256=self.sha256, status=Import.Status.IMPORTED
            )
            .order_by("pk")
            .first()
        )

    def _already(self, prior: Import) -> ImportResult:
        result = self.result
        result.status = "already_imported"
        result.import_id = prior.pk
        result.periods = list(prior.periods)
        result.duplicates_skipped = prior.rows_read
        result.message = (
            f"{self.reader.display_name}: already imported for source {self.source.slug} "
            f"as import #{prior.pk} on {prior.started_at:%Y-%m-%d %H:%M}; nothing changed"
        )
        return result

    def _prepare(self) -> None:
        self.ruleset = load_ruleset()
        for pi_id, email in PI.objects.values_list("pk", "email"):
            self.pis[email] = pi_id
            self.pi_email_by_id[pi_id] = email
        for proj_pk, code, pi_id in Project.objects.values_list("pk", "project_id", "pi_id"):
            self.projects[code] = (proj_pk, pi_id)
        for periods in Import.objects.filter(
            source=self.source, status=Import.Status.IMPORTED
        ).values_list("periods", flat=True):
            self.periods_with_data.update(periods)
        if self.expected_period:
            self._period(self.expected_period, line=None)

    def _period(self, period: str, line: int | None) -> int:
        """The period's id, creating it open on first sight; locked ones refuse the file."""
        if period in self.period_ids:
            return self.period_ids[period]
        obj = BillingPeriod.objects.filter(period=period).first()
        if obj is not None and obj.status != BillingPeriod.Status.OPEN:
            where = (
                self.reader.where(line, "BillingPeriodStart")
                if line is not None
                else self.reader.display_name
            )
            if obj.status == BillingPeriod.Status.FINALIZED:
                raise IngestError(
                    f"{where}: period {period} is finalized and permanently locked; "
                    "nothing was imported"
                )
            raise IngestError(
                f"{where}: period {period} is closed; reopen it first with "
                f'`openchargeback periods reopen {period} --reason "..."`; '
                "nothing was imported"
            )
        if obj is None:
            self.result.new_periods.append(period)
            if self.dry_run:
                self.fake_id -= 1
                self.period_ids[period] = self.fake_id
                return self.fake_id
            obj = period_open(period=period, actor=self.actor, note="first import")
        self.period_ids[period] = obj.pk
        return obj.pk

    # -- per chunk -------------------------------------------------------------
    def _consume(self, chunk: PreparedChunk) -> None:
        """Attribute and flag prepared rows, then store them."""
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        expected = self.expected_period
        ruleset = self.ruleset
        period_ids = self.period_ids
        attr_cache = self.attr_cache
        attribution_for = self._attribution
        pending, approved = Charge.ReviewState.PENDING.value, Charge.ReviewState.APPROVED.value
        currency_ok = {"", ruleset.currency}
        large = ruleset.large_charge_nanos if "large_charge" in ruleset.enabled else None
        # The usual row: expected period, home currency, no pattern hit. Only
        # the others go through line_flags() for their reasons and details.
        screen = _pattern_screen(ruleset)
        periods, tags, lines = chunk.periods, chunk.tags, chunk.lines
        self._register_owners(tags)

        for i, base in enumerate(chunk.bases):
            period = periods[i]
            period_id = period_ids.get(period) or self._period(period, lines[i])
            raw = tags[i]
            who = attr_cache.get(raw) or attribution_for(raw)
            billed = base[B_BILLED]
            usual = (expected is None or period == expected) and base[B_CURRENCY] in currency_ok
            if usual:
                for search, index in screen:
                    if search(base[index]):
                        usual = False
                        break
            if usual:
                mask = who.mask
                if large is not None and (billed > large or -billed > large):
                    mask |= _LARGE_BIT
                details_json = who.details_json
            else:
                line_mask, line_details = line_flags(
                    ruleset,
                    service_name=base[B_SERVICE],
                    resource_id=base[B_RESOURCE_ID],
                    resource_name=base[B_RESOURCE_NAME],
                    period=period,
                    expected_period=expected,
                    currency=base[B_CURRENCY],
                    billed_nanos=billed,
                )
                mask = who.mask | line_mask
                details_json = (
                    json.dumps({**who.details, **line_details})
                    if line_details
                    else who.details_json
                )
            append(
                (
                    period_id,
                    *base,
                    *who.values,
                    mask,
                    details_json,
                    pending if mask else approved,
                )
            )
        self.result.rows_read += chunk.rows
        self.result.values_rounded += chunk.rounded
        self._store(rows, periods)

    def _store(self, rows: list[tuple[Any, ...]], periods: list[str]) -> None:
        """Drop rows already imported for the source, insert the rest."""
        existing = self._existing(rows, periods)
        if existing:
            fresh = []
            for row in rows:
                hit = existing.get((row[R_FINGERPRINT], row[R_OCCURRENCE]))
                if hit is None:
                    fresh.append(row)
                elif self.replace:
                    self.matched_ids.append(hit)
            self.matched_total += len(rows) - len(fresh) if self.replace else 0
            self.result.duplicates_skipped += len(rows) - len(fresh)
        else:
            fresh = rows
        mask_counts = self.mask_counts
        for row in fresh:
            mask_counts[row[R_FLAGS]] += 1
            self.billed_nanos += row[R_BILLED]
        self.result.charges_created += len(fresh)
        self._flush_matched()
        if self.dry_run or not fresh:
            return
        assert self.import_record is not None
        _bulk_insert(fresh, source_id=self.source.pk, import_id=self.import_record.pk)

    def _existing(
        self, rows: list[tuple[Any, ...]], periods: list[str]
    ) -> dict[tuple[str, int], int]:
        """(fingerprint, occurrence) -> charge id for rows the source already has."""
        with_data = self.periods_with_data
        candidates = sorted(
            {
                row[R_FINGERPRINT]
                for row, period in zip(rows, periods, strict=True)
                if period in with_data
            }
        )
        found: dict[tuple[str, int], int] = {}
        if not candidates:
            return found
        table = Charge._meta.db_table
        with connection.cursor() as cursor:
            for start in range(0, len(candidates), _EXISTS_BATCH):
                batch = candidates[start : start + _EXISTS_BATCH]
                marks = ", ".join(["%s"] * len(batch))
                cursor.execute(
                    f"SELECT fingerprint, occurrence, id FROM {table} "  # noqa: S608 - fixed names
                    f"WHERE source_id = %s AND fingerprint IN ({marks})",
                    [self.source.pk, *batch],
                )
                for fingerprint, occurrence, pk in cursor.fetchall():
                    found[(fingerprint, occurrence)] = pk
        return found

    def _flush_matched(self) -> None:
        """With --replace, rows present again move to the new import (decisions kept)."""
        if self.dry_run or not self.matched_ids:
            self.matched_ids = []
            return
        assert self.import_record is not None
        for start in range(0, len(self.matched_ids), _EXISTS_BATCH):
            Charge.objects.filter(pk__in=self.matched_ids[start : start + _EXISTS_BATCH]).update(
                import_record=self.import_record
            )
        self.matched_ids = []

    # -- helpers -------------------------------------------------------------
    def _attribution(self, raw: str) -> _Who:
        """Tags -> PI, project, fund/org and their flags; cached per distinct Tags text.

        Safe to cache: a project's owner, once known, does not change during an
        import, so the same Tags text always resolves the same way.
        """
        who = self.attr_cache.get(raw)
        if who is not None:
            return who
        attribution = self.mapped.pop(raw, None) or map_tags(raw, self.ruleset)
        values = attribution.values
        pi_email = values.get("pi_email", "")
        project_code = values.get("project_id", "")
        pi_id = self._pi(pi_email)
        project_id, owner_email = self._project(project_code, pi_id)
        mask, details = attribution_flags(
            self.ruleset,
            pi_email=pi_email,
            project_id=project_code,
            fund_org=values.get("fund_org", ""),
            tags_invalid=attribution.tags_invalid,
            project_owner_email=owner_email,
            unmapped=unmapped_account(attribution.tags),
        )
        if attribution.tags_invalid:
            details["invalid_tags"] = attribution.raw_invalid
        who = _Who(
            values=(
                pi_id,
                project_id,
                values.get("fund_org", "")[:100],
                values.get("cost_center", "")[:100],
                values.get("reference_1", "")[:200],
                values.get("reference_2", "")[:200],
                values.get("account_code", "")[:40],
                json.dumps(attribution.tags, ensure_ascii=False) if attribution.tags else "{}",
            ),
            mask=mask,
            details=details,
            details_json=json.dumps(details) if details else "{}",
        )
        if len(self.attr_cache) > _ATTRIBUTION_CACHE_LIMIT:
            self.attr_cache.clear()
        self.attr_cache[raw] = who
        return who

    def _register_owners(self, raw_tags: list[str]) -> None:
        """Create a chunk's new PIs and projects with one insert each (and their audit events).

        Row by row, each first sight would cost a round trip or two to the
        database. Same outcome as :meth:`_pi` and :meth:`_project` met in row
        order: a new project belongs to the first PI named with it in the
        chunk (if none is, it stays without one until a later row names one).
        """
        if self.dry_run:
            return
        new_pis: dict[str, None] = {}
        new_projects: dict[str, str] = {}  # code -> first valid PI email seen with it
        for raw in dict.fromkeys(raw_tags):
            if raw in self.attr_cache or raw in self.mapped:
                continue
            attribution = map_tags(raw, self.ruleset)
            self.mapped[raw] = attribution
            email = attribution.values.get("pi_email", "")
            valid = bool(email) and EMAIL_RE.match(email) is not None
            if valid and email not in self.pis:
                new_pis[email] = None
            code = attribution.values.get("project_id", "")[:200]
            if code and code not in self.projects:
                if valid and not new_projects.get(code):
                    new_projects[code] = email
                else:
                    new_projects.setdefault(code, "")
        if new_pis:
            created = PI.objects.bulk_create([PI(email=email) for email in new_pis])
            for pi in created:
                self.pis[pi.email] = pi.pk
                self.pi_email_by_id[pi.pk] = pi.email
            audit_created(
                actor=self.actor,
                action="pi.create",
                records=[(pi, {"email": pi.email}) for pi in created],
            )
        if new_projects:
            projects = Project.objects.bulk_create(
                [
                    Project(project_id=code, pi_id=self.pis[email] if email else None)
                    for code, email in new_projects.items()
                ]
            )
            for project in projects:
                self.projects[project.project_id] = (project.pk, project.pi_id)
            audit_created(
                actor=self.actor,
                action="project.create",
                records=[
                    (
                        project,
                        {"project_id": project.project_id, "pi": new_projects[project.project_id]},
                    )
                    for project in projects
                ],
            )

    def _pi(self, email: str) -> int | None:
        if not email or not EMAIL_RE.match(email):
            return None
        pi_id = self.pis.get(email)
        if pi_id is None:
            if self.dry_run:
                self.fake_id -= 1
                pi_id = self.fake_id
            else:
                pi = PI.objects.create(email=email)
                audit(actor=self.actor, action="pi.create", obj=pi, after={"email": email})
                pi_id = pi.pk
            self.pis[email] = pi_id
            self.pi_email_by_id[pi_id] = email
        return pi_id

    def _project(self, code: str, pi_id: int | None) -> tuple[int | None, str | None]:
        """(project id, email of the PI it already belongs to)."""
        if not code:
            return None, None
        code = code[:200]
        hit = self.projects.get(code)
        if hit is None:
            if self.dry_run:
                self.fake_id -= 1
                proj_id = self.fake_id
            else:
                project = Project.objects.create(project_id=code, pi_id=pi_id)
                audit(
                    actor=self.actor,
                    action="project.create",
                    obj=project,
                    after={"project_id": code, "pi": self.pi_email_by_id.get(pi_id or 0, "")},
                )
                proj_id = project.pk
            self.projects[code] = (proj_id, pi_id)
            return proj_id, None
        proj_id, owner_id = hit
        if owner_id is None and pi_id is not None:
            # First time the project is seen with a PI: it becomes the owner.
            if not self.dry_run:
                Project.objects.filter(pk=proj_id).update(pi_id=pi_id)
                audit(
                    actor=self.actor,
                    action="project.assign_pi",
                    object_type="billing.project",
                    object_id=str(proj_id),
                    object_repr=code,
                    before={"pi": None},
                    after={"pi": self.pi_email_by_id[pi_id]},
                )
            self.projects[code] = (proj_id, pi_id)
            return proj_id, None
        return proj_id, self.pi_email_by_id.get(owner_id) if owner_id is not None else None

    def _finish_stats(self) -> None:
        result = self.result
        result.flagged = sum(count for mask, count in self.mask_counts.items() if mask)
        totals: Counter[str] = Counter()
        for mask, count in self.mask_counts.items():
            for reason in flag_bits.from_mask(mask):
                totals[reason] += count
        result.flags = dict(totals)
        result.billed_total = from_nanos(self.billed_nanos)
        result.periods = sorted(self.periods_in_file)

    # -- --replace -------------------------------------------------------------
    def _replace_periods(self) -> set[str]:
        periods = set(self.periods_in_file)
        if self.expected_period:
            periods.add(self.expected_period)
        return periods

    def _replace_scope(self) -> Any:
        ids = [self.period_ids[p] for p in self._replace_periods() if p in self.period_ids]
        scope = Charge.objects.filter(source=self.source, period_id__in=ids)
        if self.import_record is not None:
            scope = scope.exclude(import_record=self.import_record)
        return scope

    def _apply_replace(self) -> None:
        assert self.import_record is not None
        scope = self._replace_scope()
        earlier = set(scope.values_list("import_record_id", flat=True).distinct())
        removed, _ = scope.delete()
        self.result.charges_removed = removed
        # Earlier imports with nothing left are superseded. Their charges can
        # only be in the periods they covered (read through the period index).
        covered = {
            p
            for ps in Import.objects.filter(pk__in=earlier).values_list("periods", flat=True)
            for p in ps
        }
        still_used = Charge.objects.filter(
            period__period__in=covered, source=self.source, import_record_id__in=earlier
        ).values("import_record_id")
        for prior in Import.objects.filter(pk__in=earlier).exclude(pk__in=still_used):
            prior.status = Import.Status.SUPERSEDED
            prior.save(update_fields=["status"])
            audit(
                actor=self.actor,
                action="import.supersede",
                obj=prior,
                before={"status": "imported"},
                after={"status": "superseded", "by_import": self.import_record.pk},
                reason=f"replaced by {self.reader.display_name}",
            )

    # -- the record --------------------------------------------------------------
    def _record(self, stored_tmp: Path) -> None:
        record = self.import_record
        assert record is not None
        result = self.result
        relative = (
            Path("imports") / self.source.slug / f"{self.sha256}{_stored_suffix(self.reader.kind)}"
        )
        final = Path(settings.MEDIA_ROOT) / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stored_tmp, final)
        fsync_dir(final.parent)
        record.stored_file = str(relative)
        record.finished_at = timezone.now()
        record.periods = result.periods
        record.rows_read = result.rows_read
        record.charges_created = result.charges_created
        record.duplicates_skipped = result.duplicates_skipped
        record.charges_removed = result.charges_removed
        record.flagged_count = result.flagged
        record.flag_counts = dict(sorted(result.flags.items()))
        record.billed_total = result.billed_total
        record.values_rounded = result.values_rounded
        record.save()
        result.import_id = record.pk
        period = None
        if len(result.periods) == 1:
            period = BillingPeriod.objects.get(period=result.periods[0])
        audit(
            actor=self.actor,
            action="import.create",
            obj=record,
            period=period,
            after=result.as_dict(),
            reason="--replace" if self.replace else "",
        )
        logger.info(
            "import finished",
            extra={
                "import_id": record.pk,
                "source": self.source.slug,
                "file": record.file_name,
                "charges_created": result.charges_created,
                "duplicates_skipped": result.duplicates_skipped,
                "flagged": result.flagged,
                "actor": self.actor.name,
            },
        )


WHO_COLUMNS = (
    "pi_id",
    "project_id",
    "fund_org",
    "cost_center",
    "reference_1",
    "reference_2",
    "account_code",
    "tags",
)
# One prepared charge row: period, base columns, attribution, flags.
ROW_COLUMNS = ("period_id", *BASE_COLUMNS, *WHO_COLUMNS, "flags", "flag_details", "review_state")
R_FINGERPRINT = ROW_COLUMNS.index("fingerprint")
R_OCCURRENCE = ROW_COLUMNS.index("occurrence")
R_BILLED = ROW_COLUMNS.index("billed_cost")
R_FLAGS = ROW_COLUMNS.index("flags")
# Columns that are the same for every row of an import.
_CONSTANT_COLUMNS = ("source_id", "import_record_id", "reviewed_by", "reviewed_at", "review_note")


def _bulk_insert(rows: list[tuple[Any, ...]], *, source_id: int, import_id: int) -> None:
    """Insert charge rows: COPY on PostgreSQL, one executemany on SQLite."""
    table = Charge._meta.db_table
    columns = ", ".join((*ROW_COLUMNS, *_CONSTANT_COLUMNS))
    if connection.vendor == "postgresql":
        constants = (source_id, import_id, "", None, "")
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            copy.set_types(_copy_types())
            write_row = copy.write_row
            for row in rows:
                write_row(row + constants)
        return
    marks = ", ".join(["%s"] * len(ROW_COLUMNS))
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608 - fixed names, integer ids
        f"VALUES ({marks}, {int(source_id):d}, {int(import_id):d}, '', NULL, '')"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_PG_COPY_TYPES = {
    "IntegerField": "int4",
    "PositiveIntegerField": "int4",
    "BigIntegerField": "int8",
    "ForeignKey": "int8",
    "DateTimeField": "timestamptz",
}


@functools.cache
def _copy_types() -> list[str]:
    """The COPY column types, so psycopg dumps each value without looking its type up.

    Text and JSON columns travel as text (the JSON is already serialised).
    """
    fields = {f.attname: f for f in Charge._meta.concrete_fields}
    return [
        _PG_COPY_TYPES.get(fields[name].get_internal_type(), "text")
        for name in (*ROW_COLUMNS, *_CONSTANT_COLUMNS)
    ]


def _stored_suffix(kind: str) -> str:
    return {"parquet": ".parquet", "csv.gz": ".csv.gz"}.get(kind, ".csv.zst")


class _Copier:
    """Keeps the original file while the rows are parsed.

    A plain CSV is zstd-compressed by the parser itself as it reads the bytes
    (one pass over the file, on the parser's core); .csv.gz and Parquet are
    already compressed and are copied as they are in a thread. The copy goes
    to a temporary file that is fsynced and only renamed into place once the
    import commits.
    """

    def __init__(self, reader: FocusReader) -> None:
        self.reader = reader
        storage = Path(settings.MEDIA_ROOT) / "imports"
        storage.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=storage, prefix=".incoming-", suffix=".tmp")
        os.close(handle)
        self.tmp = Path(name)
        if reader.kind == "csv":
            self.tmp.unlink()  # the parser creates it when the copy is complete
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.reader.kind == "csv":
            self.reader.keep_copy_to = self.tmp
        else:
            self.thread = threading.Thread(target=self._copy, daemon=True)
            self.thread.start()

    def _copy(self) -> None:
        try:
            with open(self.reader.path, "rb") as src, open(self.tmp, "wb") as raw:
                shutil.copyfileobj(src, raw, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException as exc:  # re-raised in finish()
            self.error = exc

    def finish(self) -> Path:
        self._join()
        name = self.reader.display_name
        if self.error is not None:
            reason = getattr(self.error, "strerror", None) or self.error
            raise IngestError(
                f"{name}: could not keep a copy of the file: {reason}; nothing was imported"
            )
        if not self.tmp.is_file():
            reason = self.reader.keep_copy_error or "the copy is missing"
            raise IngestError(
                f"{name}: could not keep a copy of the file: {reason}; nothing was imported"
            )
        return self.tmp

    def cleanup(self) -> None:
        self._join()
        self.reader.keep_copy_to = None
        self.tmp.unlink(missing_ok=True)
        self.tmp.with_name(self.tmp.name + ".part").unlink(missing_ok=True)

    def _join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
