"""FOCUS import: parse, attribute, flag and insert a delivery's charges (one
file, or a month's part files) in one transaction. Safe to re-run: rows
already imported for the source are skipped, so the same file (or
overlapping content) never counts twice."""

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
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from billing.models import PI, AuditEvent, BillingPeriod, Charge, Project, Source
from billing.patterns import MemoSearch, UserPattern
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
    log_audit,
    period_open,
    validate_period,
)
from billing.triggers import CHARGE_INSERT_TRIGGER, CHARGE_INSERT_TRIGGER_SQL
from ingest.focus import basis as cost_basis
from ingest.focus.cloud_accounts import (
    CloudMappings,
    CloudOwner,
    charge_day,
    cloud_mappings,
    merge_owner,
    unmapped_label,
)
from ingest.focus.limits import ingest_limits
from ingest.focus.parsers import FocusReader, IngestError, open_focus
from ingest.focus.rows import (
    B_BILLED,
    B_CATEGORY,
    B_COMMITMENT_ID,
    B_COMMITMENT_STATUS,
    B_CURRENCY,
    B_EFFECTIVE,
    B_LIST,
    B_RESOURCE_ID,
    B_RESOURCE_NAME,
    B_SERVICE,
    BASE_COLUMNS,
    CONFORMANCE_RULES,
    FINGERPRINT_VERSION,
    PARALLEL_MIN_BYTES,
    Occurrences,
    PreparedChunk,
    RowPreparer,
    missing_columns,
    prepared_chunks,
)
from ingest.models import Import
from openchargeback.files import fsync_dir
from openchargeback.money import from_nanos, money_str

logger = logging.getLogger(__name__)

__all__ = [
    "DeliveryFile",
    "DeliveryResult",
    "ImportResult",
    "IngestError",
    "import_delivery",
    "import_file",
]

# Fingerprints per existence query (well under SQLite's variable limit).
_EXISTS_BATCH = 500
_ATTRIBUTION_CACHE_LIMIT = 200_000
# Row values the cloud account mappings look at (billing account: once parsed).
_B_SUB_ACCOUNT = BASE_COLUMNS.index("sub_account_id")
_B_SUB_ACCOUNT_NAME = BASE_COLUMNS.index("sub_account_name")
_B_CHARGE_START = BASE_COLUMNS.index("charge_period_start")
_B_BILLING_ACCOUNT = (
    BASE_COLUMNS.index("billing_account_id") if "billing_account_id" in BASE_COLUMNS else None
)


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
    # InvoiceId -> Σ BilledCost of the file's rows (exact text); "" = no InvoiceId.
    invoice_totals: dict[str, str] = field(default_factory=dict)
    # FOCUS rules the file breaks: {"rule", "message", "rows", "lines"}.
    conformance: list[dict[str, Any]] = field(default_factory=list)
    # Origin rows of FOCUS 1.3 split allocations, not billed (their allocated rows are).
    allocation_origins: int = 0
    delivery: str = ""  # the UUID shared by the imports of its delivery
    cost_basis: str = cost_basis.BILLED
    # Under the amortised basis: commitment rows sent to the central project or excluded.
    commitment: dict[str, int] = field(default_factory=dict)
    commitment_project: str = ""
    # Saved patterns RE2 cannot run, skipped (billing.selectors.load_ruleset).
    skipped_patterns: list[str] = field(default_factory=list)

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
            "invoice_totals": dict(self.invoice_totals),
            "conformance": list(self.conformance),
            "allocation_origins": self.allocation_origins,
            "delivery": self.delivery,
            "cost_basis": self.cost_basis,
            "commitment": dict(sorted(self.commitment.items())),
            "commitment_project": self.commitment_project,
            "skipped_patterns": list(self.skipped_patterns),
        }


@dataclass
class DeliveryResult:
    """What a delivery (the files imported together in one transaction) did."""

    status: str  # imported | already_imported | dry_run
    source: str
    delivery: str | None  # the UUID its imports share (None unless written)
    files: list[ImportResult]

    @property
    def charges_created(self) -> int:
        return sum(r.charges_created for r in self.files)

    @property
    def duplicates_skipped(self) -> int:
        return sum(r.duplicates_skipped for r in self.files)

    @property
    def charges_removed(self) -> int:
        return sum(r.charges_removed for r in self.files)

    @property
    def billed_total(self) -> Decimal:
        return sum((r.billed_total for r in self.files), Decimal("0.00"))

    @property
    def periods(self) -> list[str]:
        return sorted({p for r in self.files for p in r.periods})

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "source": self.source,
            "delivery": self.delivery,
            "files": [r.file for r in self.files],
            "import_ids": [r.import_id for r in self.files if r.import_id],
            "rows_read": sum(r.rows_read for r in self.files),
            "charges_created": self.charges_created,
            "duplicates_skipped": self.duplicates_skipped,
            "charges_removed": self.charges_removed,
            "flagged": sum(r.flagged for r in self.files),
            "billed_total": money_str(self.billed_total),
            "periods": self.periods,
        }


@dataclass
class DeliveryFile:
    """One file of a delivery.

    ``providers``: keep only the rows whose provider (ServiceProviderName, else
    ProviderName), lower-cased, is in the set (a multi-provider file routed to
    sources, see ingest.focus.routing); None keeps every row.
    """

    path: str | os.PathLike[str]
    display_name: str | None = None
    progress: Callable[[int, int], None] | None = None
    providers: frozenset[str] | None = None


_LARGE_BIT = flag_bits.BIT["large_charge"]


def _pattern_screen(ruleset: RuleSet) -> list[tuple[Callable[[str], bool], int]]:
    """(search, base column) pairs: could a review pattern match this row? One
    search per column, for all the patterns that read it, remembering the
    values it has seen (billing.patterns.MemoSearch)."""
    if "pattern_match" not in ruleset.enabled:
        return []
    fields = {
        "service_name": (B_SERVICE,),
        "resource_id": (B_RESOURCE_ID,),
        "resource_name": (B_RESOURCE_NAME,),
        "any": (B_SERVICE, B_RESOURCE_ID, B_RESOURCE_NAME),
    }
    by_column: dict[int, list[UserPattern]] = {}
    for spec in ruleset.patterns:
        for index in fields[spec.target]:
            by_column.setdefault(index, []).append(spec.regex)
    return [(MemoSearch(found), index) for index, found in by_column.items()]


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
    """Import one FOCUS file into ``source`` (a delivery of one file).

    Hard errors (unreadable file, missing column, bad number or date, a row in
    a closed or finalized period) raise :class:`IngestError` and write
    nothing. Attribution problems never reject: the charge is flagged with
    every reason that applies and waits in the review queue.
    """
    delivery = import_delivery(
        files=[DeliveryFile(path=path, display_name=display_name, progress=progress)],
        source=source,
        actor=actor,
        expected_period=expected_period,
        dry_run=dry_run,
        replace=replace,
    )
    return delivery.files[0]


def import_delivery(
    *,
    files: Sequence[DeliveryFile],
    source: Source,
    actor: Actor,
    expected_period: str | None = None,
    dry_run: bool = False,
    replace: bool = False,
) -> DeliveryResult:
    """Import the files of one delivery (a month's part files) into ``source``
    in one transaction: all or nothing.

    Each file keeps its own import record (file, SHA-256, kept copy, line
    numbers), the records share one ``delivery`` UUID, and occurrences of
    identical rows are counted across the files. With ``replace`` the
    source's charges for the delivery's months become exactly the union of
    its rows; the files of such a delivery must all cover the same months
    (and ``expected_period``, if given). An error in any file refuses the
    whole delivery.
    """
    if not files:
        raise IngestError("no file to import")
    if expected_period:
        expected_period = validate_period(expected_period)
    readers: list[FocusReader] = []
    for item in files:
        reader = open_focus(
            item.path,
            display_name=item.display_name,
            chunk_rows=settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS,
            max_file_bytes=settings.OPENCHARGEBACK_INGEST_MAX_FILE_BYTES,
            limits=ingest_limits(),
            progress=item.progress,
        )
        if item.providers is not None:
            from ingest.focus.routing import routed_reader

            reader = routed_reader(reader, item.providers)
        readers.append(reader)
    shared = _Delivery(
        source=source,
        actor=actor,
        expected_period=expected_period or None,
        dry_run=dry_run,
        replace=replace,
    )
    importers: list[_Importer] = []
    first_by_sha: dict[str, str] = {}
    for reader in readers:
        sha256 = _sha256(reader.path)
        if sha256 in first_by_sha:
            raise IngestError(
                f"{reader.display_name}: the same file as {first_by_sha[sha256]} "
                "(same SHA-256); give each part file once; nothing was imported"
            )
        first_by_sha[sha256] = reader.display_name
        importers.append(_Importer(reader=reader, delivery=shared, sha256=sha256))
    # Rows are acyclic; the cyclic garbage collector only slows a bulk load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _sqlite_bulk_settings():
            return shared.run_dry(importers) if dry_run else shared.run(importers)
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


class _Delivery:
    """What the files of one delivery share: the transaction, the occurrence
    counts, the caches of periods, PIs, projects and attributions, and the
    --replace scope."""

    def __init__(
        self,
        *,
        source: Source,
        actor: Actor,
        expected_period: str | None,
        dry_run: bool,
        replace: bool,
    ) -> None:
        self.source = source
        self.actor = actor
        self.expected_period = expected_period
        self.dry_run = dry_run
        self.replace = replace
        self.uuid = uuid.uuid4()
        self.occurrences = Occurrences()
        self.ruleset: RuleSet | None = None
        # Caches, all bounded by the number of distinct values, not rows.
        self.period_ids: dict[str, int] = {}
        # Keyed by the Tags text; with cloud account mappings by (Tags, mapping, sub-account).
        self.attr_cache: dict[Any, _Who] = {}
        self.cloud: CloudMappings | None = None  # None: the source has no cloud mappings
        # Periods with charges fingerprinted by version 1 (see _Importer._existing).
        self.legacy_periods: frozenset[str] = frozenset()
        # Tags mapped by _register_owners() and not yet through _attribution().
        self.mapped: dict[str, Attribution] = {}
        self.pis: dict[str, int] = {}
        self.projects: dict[str, tuple[int, int | None]] = {}
        self.pi_email_by_id: dict[int, str] = {}
        self.fake_id = -1
        self.periods_with_data: set[str] = set()
        # --replace: imports whose charges moved to this delivery's records.
        self.moved_from: set[int] = set()

    def result(self, importers: list[_Importer], status: str) -> DeliveryResult:
        written = status == "imported" and any(i.import_record for i in importers)
        return DeliveryResult(
            status=status,
            source=self.source.slug,
            delivery=str(self.uuid) if written else None,
            files=[i.result for i in importers],
        )

    # -- entry points --------------------------------------------------------
    def run_dry(self, importers: list[_Importer]) -> DeliveryResult:
        for importer in importers:
            importer._prepare()
            for chunk in importer._prepared_chunks():
                importer._consume(chunk)
            importer._finish_stats()
        self._check_months(importers)
        if self.replace:
            matched = sum(i.matched_total for i in importers)
            importers[0].result.charges_removed = self._replace_scope(importers).count() - matched
        return self.result(importers, "dry_run")

    def run(self, importers: list[_Importer]) -> DeliveryResult:
        copiers: list[_Copier] = []
        stored: list[Path] = []
        try:
            with transaction.atomic():
                # One import per source at a time: on PostgreSQL this row lock
                # queues concurrent imports; SQLite's IMMEDIATE transactions
                # already serialise writers.
                Source.objects.select_for_update().filter(pk=self.source.pk).first()
                priors = [importer._prior_import() for importer in importers]
                if all(prior is not None for prior in priors):
                    for importer, prior in zip(importers, priors, strict=True):
                        assert prior is not None
                        importer._already(prior)
                    return self.result(importers, "already_imported")
                # New charges get ids above this one (ids only grow).
                last_id = Charge.objects.aggregate(last=Max("id"))["last"] or 0
                with _insert_trigger_suspended():
                    for importer in importers:
                        importer._prepare()
                        copier = _Copier(importer.reader)
                        copiers.append(copier)
                        copier.start()
                        importer._create_record()
                        for chunk in importer._prepared_chunks():
                            importer._consume(chunk)
                        importer._finish_stats()
                        if importer.basis is not None:
                            assert importer.import_record is not None
                            importer.basis.record_excluded(importer.import_record, self.actor)
                        stored.append(copier.finish())
                self._check_months(importers)
                if self.replace:
                    self._apply_replace(importers)
                created = sum(i.result.charges_created for i in importers)
                removed = sum(i.result.charges_removed for i in importers)
                if created == 0 and removed == 0:
                    raise _NothingNew
                records = []
                for importer, prior in zip(importers, priors, strict=True):
                    if self.replace or importer.result.charges_created:
                        records.append(importer.import_record)
                    else:
                        # A part that added nothing to the delivery leaves no record.
                        assert importer.import_record is not None
                        importer.import_record.delete()
                        importer.import_record = None
                        importer._nothing_new(prior)
                if self.replace:  # charges removed and moved too: recount the periods
                    summaries.rebuild(self.period_ids.values())
                else:
                    summaries.add(Charge.objects.filter(pk__gt=last_id, import_record__in=records))
                # Charges in another currency: converted if their month has a rate.
                charges_convert(
                    charges=Charge.objects.filter(pk__gt=last_id, import_record__in=records),
                    actor=self.actor,
                )
                for importer, tmp in zip(importers, stored, strict=True):
                    if importer.import_record is not None:
                        importer._record(tmp)
        except _NothingNew:
            for importer in importers:
                importer.import_record = None
                importer._nothing_new(None)
            return self.result(importers, "already_imported")
        finally:
            for copier in copiers:
                copier.cleanup()
        return self.result(importers, "imported")

    def _check_months(self, importers: list[_Importer]) -> None:
        """A --replace delivery of several files is one month set: refuse a file that differs."""
        if not self.replace or len(importers) < 2:
            return
        first = importers[0]
        wanted = {self.expected_period} if self.expected_period else set(first.periods_in_file)
        for importer in importers:
            months = set(importer.periods_in_file)
            if months and months != wanted:
                other = (
                    f"--period {self.expected_period}"
                    if self.expected_period
                    else f"{first.reader.display_name} has {', '.join(sorted(wanted))}"
                )
                raise IngestError(
                    f"{importer.reader.display_name}: rows in {', '.join(sorted(months))} but "
                    f"{other}; a --replace delivery is one source and one month: import "
                    "the months separately; nothing was imported"
                )

    # -- --replace -------------------------------------------------------------
    def _replace_periods(self, importers: list[_Importer]) -> set[str]:
        periods = {p for importer in importers for p in importer.periods_in_file}
        if self.expected_period:
            periods.add(self.expected_period)
        return periods

    def _replace_scope(self, importers: list[_Importer]) -> Any:
        ids = [self.period_ids[p] for p in self._replace_periods(importers) if p in self.period_ids]
        scope = Charge.objects.filter(source=self.source, period_id__in=ids)
        records = [i.import_record.pk for i in importers if i.import_record is not None]
        if records:
            scope = scope.exclude(import_record__in=records)
        return scope

    def _apply_replace(self, importers: list[_Importer]) -> None:
        records = [i.import_record for i in importers if i.import_record is not None]
        scope = self._replace_scope(importers)
        earlier = set(scope.values_list("import_record_id", flat=True).distinct())
        removed, _ = scope.delete()
        importers[0].result.charges_removed = removed
        earlier |= self.moved_from
        earlier -= {record.pk for record in records}
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
        names = ", ".join(i.reader.display_name for i in importers)
        for prior in Import.objects.filter(pk__in=earlier).exclude(pk__in=still_used):
            prior.status = Import.Status.SUPERSEDED
            prior.save(update_fields=["status"])
            audit(
                actor=self.actor,
                action="import.supersede",
                obj=prior,
                before={"status": "imported"},
                after={
                    "status": "superseded",
                    "by_import": records[0].pk,
                    "by_imports": [record.pk for record in records],
                    "delivery": str(self.uuid),
                },
                reason=f"replaced by {names}",
            )


class _Importer:
    """One file of a delivery: its reader, record and counts."""

    def __init__(self, *, reader: FocusReader, delivery: _Delivery, sha256: str) -> None:
        self.reader = reader
        self.delivery = delivery
        self.source = delivery.source
        self.actor = delivery.actor
        self.expected_period = delivery.expected_period
        self.dry_run = delivery.dry_run
        self.replace = delivery.replace
        self.sha256 = sha256
        self.result = ImportResult(
            status="dry_run" if delivery.dry_run else "imported",
            file=reader.display_name,
            source=delivery.source.slug,
        )
        self.ruleset: RuleSet
        self.import_record: Import | None = None
        # The delivery's caches (shared by its files).
        self.period_ids = delivery.period_ids
        self.attr_cache = delivery.attr_cache
        # Tags mapped by _register_owners() and not yet through _attribution().
        self.mapped = delivery.mapped
        self.pis = delivery.pis
        self.projects = delivery.projects
        self.pi_email_by_id = delivery.pi_email_by_id
        self.periods_with_data = delivery.periods_with_data
        # This file's.
        self.periods_in_file: set[str] = set()
        self.mask_counts: Counter[int] = Counter()
        self.billed_nanos = 0
        self.matched_ids: list[int] = []
        self.matched_total = 0
        self.invoice_nanos: dict[str, int] = {}
        self.conformance: dict[str, list[Any]] = {}
        self.screen: list[tuple[Callable[[str], bool], int]] | None = None  # first chunk's
        self.cloud: CloudMappings | None = None  # the delivery's (set by _prepare)
        self.legacy_periods: frozenset[str] = frozenset()
        self.basis: _CostBasis | None = None  # None under the billed basis (set by _prepare)

    @property
    def fake_id(self) -> int:
        """Dry runs: ids for periods, PIs and projects not created (unique in the delivery)."""
        return self.delivery.fake_id

    @fake_id.setter
    def fake_id(self, value: int) -> None:
        self.delivery.fake_id = value

    def _create_record(self) -> None:
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
            delivery=self.delivery.uuid,
            fingerprint_version=FINGERPRINT_VERSION,
        )

    def _nothing_new(self, prior: Import | None) -> None:
        """This file added nothing (the delivery, or this part of it)."""
        if prior is not None:
            self._already(prior)
            return
        self.result.status = "already_imported"
        self.result.import_id = None
        self.result.message = (
            f"{self.reader.display_name}: every row is already imported for source "
            f"{self.source.slug}; nothing changed"
        )

    # -- setup -----------------------------------------------------------------
    def _prepared_chunks(self) -> Iterator[PreparedChunk]:
        preparer = RowPreparer(
            self.reader,
            connection.ops.adapt_datetimefield_value,
            self.delivery.occurrences,
            legacy_periods=self.legacy_periods,
        )
        preparer.scan_allocations()
        for chunk in prepared_chunks(preparer, parallel=self.reader.size >= PARALLEL_MIN_BYTES):
            self.periods_in_file.update(chunk.periods)
            self.result.allocation_origins += chunk.origins
            for invoice, nanos in chunk.invoice_nanos.items():
                self.invoice_nanos[invoice] = self.invoice_nanos.get(invoice, 0) + nanos
            for rule, (rows, lines) in chunk.conformance.items():
                entry = self.conformance.setdefault(rule, [0, []])
                entry[0] += rows
                entry[1] = (entry[1] + lines)[:3]
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
        delivery = self.delivery
        if delivery.ruleset is not None:  # an earlier file of the delivery loaded it all
            self.ruleset = delivery.ruleset
            self.cloud = delivery.cloud
            self.legacy_periods = delivery.legacy_periods
            self.result.skipped_patterns = list(self.ruleset.skipped)
            self._prepare_basis()
            return
        self.ruleset = delivery.ruleset = load_ruleset()
        self.result.skipped_patterns = list(self.ruleset.skipped)
        self.cloud = delivery.cloud = cloud_mappings(self.source) or None
        self._prepare_basis()
        for pi_id, email in PI.objects.values_list("pk", "email"):
            self.pis[email] = pi_id
            self.pi_email_by_id[pi_id] = email
        for proj_pk, code, pi_id in Project.objects.values_list("pk", "project_id", "pi_id"):
            self.projects[code] = (proj_pk, pi_id)
        for periods in Import.objects.filter(
            source=self.source, status=Import.Status.IMPORTED
        ).values_list("periods", flat=True):
            self.periods_with_data.update(periods)
        # Charges keep the fingerprint they were imported with; those of a
        # version 1 import can have moved to a later import (--replace), so
        # every version 1 import's periods count, whatever its status.
        self.legacy_periods = delivery.legacy_periods = frozenset(
            p
            for periods in Import.objects.filter(
                source=self.source, fingerprint_version__lt=FINGERPRINT_VERSION
            ).values_list("periods", flat=True)
            for p in periods
        )
        if self.expected_period:
            self._period(self.expected_period, line=None)

    def _prepare_basis(self) -> None:
        self.basis = _CostBasis.for_source(self.source, self.reader.display_name, self.ruleset)
        self.result.cost_basis = self.source.cost_basis

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
                "nothing was imported",
                web=f"{where}: period {period} is closed; reopen it first (Reopen, on the "
                "period's page, with a reason); nothing was imported",
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
        cloud = self.cloud
        pending, approved = Charge.ReviewState.PENDING.value, Charge.ReviewState.APPROVED.value
        currency_ok = {"", ruleset.currency}
        large = ruleset.large_charge_nanos if "large_charge" in ruleset.enabled else None
        # The usual row: expected period, home currency, no pattern hit. Only
        # the others go through line_flags() for their reasons and details.
        if self.screen is None:  # built once, so that its searches remember across chunks
            self.screen = _pattern_screen(ruleset)
        screen = self.screen
        periods, tags, lines = chunk.periods, chunk.tags, chunk.lines
        basis = self.basis  # None under the billed basis
        self._register_owners(tags)

        for i, base in enumerate(chunk.bases):
            period = periods[i]
            period_id = period_ids.get(period) or self._period(period, lines[i])
            raw = tags[i]
            if cloud is None:
                who = attr_cache.get(raw) or attribution_for(raw)
            else:
                who = self._cloud_attribution(raw, base, period)
            tail: tuple[str, int | None] = _BILLED_TAIL
            state = None
            if basis is not None:
                base, who, tail, state = basis.apply(base, who)
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
                    state or (pending if mask else approved),
                    *tail,
                )
            )
        self.result.rows_read += chunk.rows
        self.result.values_rounded += chunk.rounded
        self._store(rows, periods, chunk.legacy)

    def _store(
        self,
        rows: list[tuple[Any, ...]],
        periods: list[str],
        legacy: list[tuple[str, int] | None] | None = None,
    ) -> None:
        """Drop rows already imported for the source, insert the rest.

        A row matches an existing charge by its (fingerprint, occurrence), or,
        in a period imported with fingerprint version 1, by its version 1 key.
        """
        existing = self._existing(rows, periods, legacy)
        if existing:
            fresh = []
            for i, row in enumerate(rows):
                hit = existing.get((row[R_FINGERPRINT], row[R_OCCURRENCE]))
                if hit is None and legacy is not None and legacy[i] is not None:
                    hit = existing.get(legacy[i])  # type: ignore[arg-type]
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
            if row[R_STATE] != _REJECTED:  # excluded commitment (ingest.focus.basis): in no total
                self.billed_nanos += row[R_BILLED]
        self.result.charges_created += len(fresh)
        self._flush_matched()
        if self.dry_run or not fresh:
            return
        assert self.import_record is not None
        _bulk_insert(fresh, source_id=self.source.pk, import_id=self.import_record.pk)

    def _existing(
        self,
        rows: list[tuple[Any, ...]],
        periods: list[str],
        legacy: list[tuple[str, int] | None] | None = None,
    ) -> dict[tuple[str, int], int]:
        """(fingerprint, occurrence) -> charge id for rows the source already has."""
        with_data = self.periods_with_data | self.legacy_periods
        wanted = {
            row[R_FINGERPRINT]
            for row, period in zip(rows, periods, strict=True)
            if period in with_data
        }
        if legacy is not None:
            wanted.update(key[0] for key in legacy if key is not None)
        candidates = sorted(wanted)
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
            batch = Charge.objects.filter(pk__in=self.matched_ids[start : start + _EXISTS_BATCH])
            self.delivery.moved_from.update(
                batch.values_list("import_record_id", flat=True).distinct()
            )
            batch.update(import_record=self.import_record)
        self.matched_ids = []

    # -- helpers -------------------------------------------------------------
    def _cloud_attribution(self, raw: str, base: tuple[Any, ...], period: str) -> _Who:
        """Tags completed by the source's cloud account mappings (ingest.focus.cloud_accounts).

        Cached per (Tags text, mapping); rows no mapping covers also per
        sub-account, which their unmapped_account flag names.
        """
        cloud = self.cloud
        assert cloud is not None
        sub_account = base[_B_SUB_ACCOUNT]
        owner = cloud.resolve(
            resource_id=base[B_RESOURCE_ID],
            sub_account_id=sub_account,
            billing_account_id=base[_B_BILLING_ACCOUNT] if _B_BILLING_ACCOUNT is not None else "",
            day=lambda: charge_day(base[_B_CHARGE_START], period),
        )
        key = (raw, owner.mapping_id, "") if owner else (raw, 0, sub_account)
        who = self.attr_cache.get(key)
        if who is None:
            unmapped = ""
            if owner is None and sub_account:
                unmapped = unmapped_label(sub_account, base[_B_SUB_ACCOUNT_NAME])
            who = self._attribution(raw, key=key, owner=owner, unmapped=unmapped)
        return who

    def _attribution(
        self,
        raw: str,
        *,
        key: Any = None,
        owner: CloudOwner | None = None,
        unmapped: str = "",
    ) -> _Who:
        """Tags -> PI, project, fund/org and their flags; cached per distinct Tags text
        (or per ``key``, with a cloud account mapping ``owner`` completing the tags).

        Safe to cache: a project's owner, once known, does not change during an
        import, so the same Tags text always resolves the same way.
        """
        key = raw if key is None else key
        who = self.attr_cache.get(key)
        if who is not None:
            return who
        attribution = self.mapped.pop(raw, None) or map_tags(raw, self.ruleset)
        values = merge_owner(attribution.values, owner)
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
            unmapped=unmapped_account(attribution.tags) or unmapped,
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
        self.attr_cache[key] = who
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
        result.invoice_totals = {
            invoice: money_str(from_nanos(nanos))
            for invoice, nanos in sorted(self.invoice_nanos.items())
        }
        missing = missing_columns(self.reader)
        if missing:
            self.conformance["missing_columns"] = [result.rows_read, [], missing]
        result.conformance = [
            {
                "rule": rule,
                "message": CONFORMANCE_RULES[rule],
                "rows": entry[0],
                "lines": entry[1],
                **({"columns": entry[2]} if len(entry) > 2 else {}),
            }
            for rule, entry in sorted(self.conformance.items())
        ]
        if self.basis is not None:
            result.commitment = dict(self.basis.counts)
            result.commitment_project = self.basis.project_code

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
        record.invoice_totals = result.invoice_totals
        record.conformance = result.conformance
        record.save()
        result.import_id = record.pk
        result.delivery = str(self.delivery.uuid)
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


class _CostBasis:
    """The amortised basis for one import (ingest.focus.basis): each row bills its
    EffectiveCost; commitment purchases and unused commitment go to the
    source's central commitment project, or are stored rejected (excluded)."""

    def __init__(self, *, handling: str, central: tuple[Any, ...] | None, ruleset: RuleSet):
        self.handling = handling
        self.central = central  # WHO_COLUMNS but the tags, for central handling
        self.project_code = central[-2] if central is not None else ""
        self.central_flags: tuple[int, dict[str, Any], str] = (0, {}, "{}")
        if central is not None:
            mask, details = attribution_flags(
                ruleset,
                pi_email=central[-1],
                project_id=central[-2],
                fund_org=central[2],
            )
            self.central_flags = (mask, details, json.dumps(details) if details else "{}")
            self.central = central[:-2]
        self.counts: Counter[str] = Counter()

    @classmethod
    def for_source(cls, source: Source, name: str, ruleset: RuleSet) -> _CostBasis | None:
        # As stored now (the caller's object may be older than a `sources set`).
        source.refresh_from_db(
            fields=[
                "cost_basis",
                "commitment_handling",
                "commitment_project",
                "commitment_fund_org",
            ]
        )
        if source.cost_basis != cost_basis.AMORTISED:
            return None
        if source.commitment_handling != cost_basis.CENTRAL:
            return cls(handling=cost_basis.EXCLUDE, central=None, ruleset=ruleset)
        project = None
        if source.commitment_project_id is not None:
            project = (
                Project.objects.select_related("pi").filter(pk=source.commitment_project_id).first()
            )
        if project is None:
            raise IngestError(
                f"{name}: source {source.slug} bills the amortised cost and sends commitment "
                "charges to a central project, but has no commitment project: set one with "
                f"`openchargeback sources set {source.slug} --commitment-project PROJECT`; "
                "nothing was imported"
            )
        fund_org = (source.commitment_fund_org or project.default_fund_org)[:100]
        central = (
            project.pi_id,
            project.pk,
            fund_org,
            "",
            "",
            "",
            "",
            project.project_id,
            project.pi.email if project.pi else "",
        )
        return cls(handling=cost_basis.CENTRAL, central=central, ruleset=ruleset)

    def apply(
        self, base: tuple[Any, ...], who: _Who
    ) -> tuple[tuple[Any, ...], _Who, tuple[str, int | None], str | None]:
        """(base, who, basis columns, forced review state) of one row."""
        listed, billed, invoiced = cost_basis.amortised(
            category=base[B_CATEGORY],
            list_nanos=base[B_LIST],
            billed_nanos=base[B_BILLED],
            effective_nanos=base[B_EFFECTIVE],
        )
        if listed != base[B_LIST] or billed != base[B_BILLED]:
            row = list(base)
            row[B_LIST], row[B_BILLED] = listed, billed
            base = tuple(row)
        tail = (cost_basis.AMORTISED, invoiced)
        kind = cost_basis.commitment_kind(
            base[B_CATEGORY], base[B_COMMITMENT_ID], base[B_COMMITMENT_STATUS]
        )
        if not kind:
            return base, who, tail, None
        self.counts[f"{self.handling} {kind}"] += 1
        if self.central is None:
            return base, who, tail, Charge.ReviewState.REJECTED.value
        mask, details, details_json = self.central_flags
        # The purchaser's tags stay on the charge for reference.
        central = _Who((*self.central, who.values[-1]), mask, details, details_json)
        return base, central, tail, None

    def record_excluded(self, record: Import, actor: Actor) -> None:
        """Note why on the charges this import excluded, and audit each one."""
        if not any(key.startswith(cost_basis.EXCLUDE) for key in self.counts):
            return
        excluded = Charge.objects.filter(
            import_record=record, review_state=Charge.ReviewState.REJECTED
        )
        rows = list(
            excluded.values_list(
                "pk",
                "period_id",
                "billed_cost",
                "charge_category",
                "commitment_discount_id",
                "commitment_discount_status",
            )
        )
        now = timezone.now()
        by_kind: dict[str, list[int]] = {}
        events = []
        for pk, period_id, billed, category, commitment_id, status in rows:
            kind = cost_basis.commitment_kind(category, commitment_id, status)
            by_kind.setdefault(kind, []).append(pk)
            events.append(
                AuditEvent(
                    created_at=now,
                    actor=actor.name,
                    channel=actor.channel,
                    user_id=actor.user_id,
                    action="charge.exclude_commitment",
                    object_type="billing.charge",
                    object_id=str(pk),
                    object_repr=f"Charge {pk}",
                    period_id=period_id,
                    after={"review_state": "rejected", "billed_cost": str(billed)},
                    reason=cost_basis.EXCLUDE_NOTES.get(kind, ""),
                )
            )
        for kind, ids in by_kind.items():
            for start in range(0, len(ids), _EXISTS_BATCH):
                Charge.objects.filter(pk__in=ids[start : start + _EXISTS_BATCH]).update(
                    reviewed_by=actor.name,
                    reviewed_at=now,
                    review_note=cost_basis.EXCLUDE_NOTES.get(kind, ""),
                )
        AuditEvent.objects.bulk_create(events, batch_size=2000)
        log_audit(actor, "charge.exclude_commitment", count=len(events))


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
# The cost basis of a row (ingest.focus.basis) and the
# file's BilledCost when it bills another amount.
BASIS_COLUMNS = ("cost_basis", "invoiced_cost")
_BILLED_TAIL = (cost_basis.BILLED, None)
# One prepared charge row: period, base columns, attribution, flags, basis.
ROW_COLUMNS = (
    "period_id",
    *BASE_COLUMNS,
    *WHO_COLUMNS,
    "flags",
    "flag_details",
    "review_state",
    *BASIS_COLUMNS,
)
R_FINGERPRINT = ROW_COLUMNS.index("fingerprint")
R_OCCURRENCE = ROW_COLUMNS.index("occurrence")
R_BILLED = ROW_COLUMNS.index("billed_cost")
R_FLAGS = ROW_COLUMNS.index("flags")
R_STATE = ROW_COLUMNS.index("review_state")
_REJECTED = Charge.ReviewState.REJECTED.value
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
