"""One file of a FOCUS delivery through the importer: its rows prepared
(ingest.focus.rows), attributed (ingest.focus.attribution), priced under the
source's cost basis (ingest.focus.amortised), flagged, checked against the
charges the source already has, and inserted (ingest.focus.bulk); then its
import record and audit event. Runs inside the delivery's transaction
(ingest.focus.services)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.utils import timezone

from billing import flags as flag_bits
from billing.audit import audit
from billing.models import BillingPeriod, Charge
from billing.patterns import MemoSearch, UserPattern
from billing.rules import RuleSet, line_flags
from billing.selectors import load_ruleset
from billing.services import period_open
from ingest.focus.amortised import BILLED_TAIL, CostBasis
from ingest.focus.attribution import Attributor
from ingest.focus.bulk import (
    BATCH,
    R_BILLED,
    R_FINGERPRINT,
    R_FLAGS,
    R_OCCURRENCE,
    R_STATE,
    bulk_insert,
    existing_charges,
)
from ingest.focus.cloud_accounts import cloud_mappings
from ingest.focus.errors import IngestError
from ingest.focus.fingerprints import FINGERPRINT_VERSION
from ingest.focus.kept import keep
from ingest.focus.parsers import FocusReader
from ingest.focus.results import ImportResult
from ingest.focus.rows import (
    B_BILLED,
    B_CURRENCY,
    B_RESOURCE_ID,
    B_RESOURCE_NAME,
    B_SERVICE,
    CONFORMANCE_RULES,
    PARALLEL_MIN_BYTES,
    PreparedChunk,
    RowPreparer,
    missing_columns,
    prepared_chunks,
)
from ingest.models import Import
from openchargeback.money import from_nanos, money_str

if TYPE_CHECKING:
    from ingest.focus.services import Delivery

logger = logging.getLogger(__name__)

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


class FileImporter:
    """One file of a delivery: its reader, record and counts."""

    def __init__(self, *, reader: FocusReader, delivery: Delivery, sha256: str) -> None:
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
        self.owners: Attributor  # the delivery's (set by prepare)
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
        self.legacy_periods: frozenset[str] = frozenset()
        self.basis: CostBasis | None = None  # None under the billed basis (set by prepare)

    def create_record(self) -> None:
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

    def nothing_new(self, prior: Import | None) -> None:
        """This file added nothing (the delivery, or this part of it)."""
        if prior is not None:
            self.already_imported(prior)
            return
        self.result.status = "already_imported"
        self.result.import_id = None
        self.result.message = (
            f"{self.reader.display_name}: every row is already imported for source "
            f"{self.source.slug}; nothing changed"
        )

    # -- setup -----------------------------------------------------------------
    def prepared_chunks(self) -> Iterator[PreparedChunk]:
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

    def prior_import(self) -> Import | None:
        if self.replace:
            return None
        return (
            Import.objects.filter(
                source=self.source, sha256=self.sha256, status=Import.Status.IMPORTED
            )
            .order_by("pk")
            .first()
        )

    def already_imported(self, prior: Import) -> ImportResult:
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

    def prepare(self) -> None:
        delivery = self.delivery
        if delivery.owners is not None:  # an earlier file of the delivery loaded it all
            self.owners = delivery.owners
            self.ruleset = self.owners.ruleset
            self.legacy_periods = delivery.legacy_periods
            self.result.skipped_patterns = list(self.ruleset.skipped)
            self._prepare_basis()
            return
        self.ruleset = load_ruleset()
        self.result.skipped_patterns = list(self.ruleset.skipped)
        cloud = cloud_mappings(self.source) or None
        self._prepare_basis()
        self.owners = delivery.owners = Attributor(
            ruleset=self.ruleset,
            cloud=cloud,
            actor=self.actor,
            dry_run=self.dry_run,
            next_fake_id=delivery.next_fake_id,
        )
        self.owners.load_owners()
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
        self.basis = CostBasis.for_source(self.source, self.reader.display_name, self.ruleset)
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
                fake_id = self.delivery.next_fake_id()
                self.period_ids[period] = fake_id
                return fake_id
            obj = period_open(period=period, actor=self.actor, note="first import")
        self.period_ids[period] = obj.pk
        return obj.pk

    # -- per chunk -------------------------------------------------------------
    def consume(self, chunk: PreparedChunk) -> None:
        """Attribute and flag prepared rows, then store them."""
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        expected = self.expected_period
        ruleset = self.ruleset
        period_ids = self.period_ids
        owners = self.owners
        attr_cache = owners.cache
        attribution_for = owners.attribution
        cloud = owners.cloud
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
        owners.register_owners(tags)

        for i, base in enumerate(chunk.bases):
            period = periods[i]
            period_id = period_ids.get(period) or self._period(period, lines[i])
            raw = tags[i]
            if cloud is None:
                who = attr_cache.get(raw) or attribution_for(raw)
            else:
                who = owners.cloud_attribution(raw, base, period)
            tail: tuple[str, int | None] = BILLED_TAIL
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
        bulk_insert(fresh, source_id=self.source.pk, import_id=self.import_record.pk)

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
        return existing_charges(source_id=self.source.pk, fingerprints=sorted(wanted))

    def _flush_matched(self) -> None:
        """With --replace, rows present again move to the new import (decisions kept)."""
        if self.dry_run or not self.matched_ids:
            self.matched_ids = []
            return
        assert self.import_record is not None
        for start in range(0, len(self.matched_ids), BATCH):
            batch = Charge.objects.filter(pk__in=self.matched_ids[start : start + BATCH])
            self.delivery.moved_from.update(
                batch.values_list("import_record_id", flat=True).distinct()
            )
            batch.update(import_record=self.import_record)
        self.matched_ids = []

    def finish_stats(self) -> None:
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
    def write_record(self, stored_tmp: Path) -> None:
        record = self.import_record
        assert record is not None
        result = self.result
        record.stored_file = keep(
            stored_tmp, source_slug=self.source.slug, sha256=self.sha256, kind=self.reader.kind
        )
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


_REJECTED = Charge.ReviewState.REJECTED.value
