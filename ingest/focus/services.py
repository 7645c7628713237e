"""FOCUS import: parse, attribute, flag and insert a delivery's charges (one
file, or a month's part files) in one transaction. Safe to re-run: rows
already imported for the source are skipped, so the same file (or
overlapping content) never counts twice.

This module holds the entry points and what the files of a delivery share
(the transaction, --replace); one file's way through is
ingest.focus.importer, the database side of a bulk load ingest.focus.bulk,
the kept copy ingest.focus.kept (docs/architecture.md, "ingest")."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from billing import summaries
from billing.audit import Actor, audit
from billing.exchange import charges_convert
from billing.models import Charge, Source
from billing.periods import parse_period
from ingest.focus.attribution import Attributor
from ingest.focus.bulk import bulk_load, insert_trigger_suspended
from ingest.focus.errors import IngestError
from ingest.focus.fingerprints import Occurrences
from ingest.focus.importer import FileImporter
from ingest.focus.kept import Copier, sha256_of
from ingest.focus.limits import ingest_limits
from ingest.focus.parsers import FocusReader, open_focus
from ingest.focus.results import DeliveryFile, DeliveryResult, ImportResult
from ingest.models import Import

__all__ = [
    "DeliveryFile",
    "DeliveryResult",
    "ImportResult",
    "IngestError",
    "delivery_import",
    "file_import",
]


class _NothingNew(Exception):
    """Raised inside the transaction to roll back an import that added nothing."""


def file_import(
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
    delivery = delivery_import(
        files=[DeliveryFile(path=path, display_name=display_name, progress=progress)],
        source=source,
        actor=actor,
        expected_period=expected_period,
        dry_run=dry_run,
        replace=replace,
    )
    return delivery.files[0]


def delivery_import(
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
        expected_period = parse_period(expected_period)
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
    shared = Delivery(
        source=source,
        actor=actor,
        expected_period=expected_period or None,
        dry_run=dry_run,
        replace=replace,
    )
    importers: list[FileImporter] = []
    first_by_sha: dict[str, str] = {}
    for reader in readers:
        sha256 = sha256_of(reader.path)
        if sha256 in first_by_sha:
            raise IngestError(
                f"{reader.display_name}: the same file as {first_by_sha[sha256]} "
                "(same SHA-256); give each part file once; nothing was imported"
            )
        first_by_sha[sha256] = reader.display_name
        importers.append(FileImporter(reader=reader, delivery=shared, sha256=sha256))
    with bulk_load():
        return shared.run_dry(importers) if dry_run else shared.run(importers)


class Delivery:
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
        # The rules, cloud mappings, PIs, projects and attributions (set by the
        # first file's FileImporter.prepare).
        self.owners: Attributor | None = None
        # Caches, all bounded by the number of distinct values, not rows.
        self.period_ids: dict[str, int] = {}
        # Periods with charges fingerprinted by version 1 (see FileImporter._existing).
        self.legacy_periods: frozenset[str] = frozenset()
        self.fake_id = -1
        self.periods_with_data: set[str] = set()
        # --replace: imports whose charges moved to this delivery's records.
        self.moved_from: set[int] = set()

    def next_fake_id(self) -> int:
        """Dry runs: ids for periods, PIs and projects not created (unique in the delivery)."""
        self.fake_id -= 1
        return self.fake_id

    def result(self, importers: list[FileImporter], status: str) -> DeliveryResult:
        written = status == "imported" and any(i.import_record for i in importers)
        return DeliveryResult(
            status=status,
            source=self.source.slug,
            delivery=str(self.uuid) if written else None,
            files=[i.result for i in importers],
        )

    # -- entry points --------------------------------------------------------
    def run_dry(self, importers: list[FileImporter]) -> DeliveryResult:
        for importer in importers:
            importer.prepare()
            for chunk in importer.prepared_chunks():
                importer.consume(chunk)
            importer.finish_stats()
        self._check_months(importers)
        if self.replace:
            matched = sum(i.matched_total for i in importers)
            importers[0].result.charges_removed = self._replace_scope(importers).count() - matched
        return self.result(importers, "dry_run")

    def run(self, importers: list[FileImporter]) -> DeliveryResult:
        copiers: list[Copier] = []
        stored: list[Path] = []
        try:
            with transaction.atomic():
                # One import per source at a time: on PostgreSQL this row lock
                # queues concurrent imports; SQLite's IMMEDIATE transactions
                # already serialise writers.
                Source.objects.select_for_update().filter(pk=self.source.pk).first()
                priors = [importer.prior_import() for importer in importers]
                if all(prior is not None for prior in priors):
                    for importer, prior in zip(importers, priors, strict=True):
                        assert prior is not None
                        importer.already_imported(prior)
                    return self.result(importers, "already_imported")
                # New charges get ids above this one (ids only grow).
                last_id = Charge.objects.aggregate(last=Max("id"))["last"] or 0
                with insert_trigger_suspended():
                    for importer in importers:
                        importer.prepare()
                        copier = Copier(importer.reader)
                        copiers.append(copier)
                        copier.start()
                        importer.create_record()
                        for chunk in importer.prepared_chunks():
                            importer.consume(chunk)
                        importer.finish_stats()
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
                        importer.nothing_new(prior)
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
                        importer.write_record(tmp)
        except _NothingNew:
            for importer in importers:
                importer.import_record = None
                importer.nothing_new(None)
            return self.result(importers, "already_imported")
        finally:
            for copier in copiers:
                copier.cleanup()
        return self.result(importers, "imported")

    def _check_months(self, importers: list[FileImporter]) -> None:
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
    def _replace_periods(self, importers: list[FileImporter]) -> set[str]:
        periods = {p for importer in importers for p in importer.periods_in_file}
        if self.expected_period:
            periods.add(self.expected_period)
        return periods

    def _replace_scope(self, importers: list[FileImporter]) -> Any:
        ids = [self.period_ids[p] for p in self._replace_periods(importers) if p in self.period_ids]
        scope = Charge.objects.filter(source=self.source, period_id__in=ids)
        records = [i.import_record.pk for i in importers if i.import_record is not None]
        if records:
            scope = scope.exclude(import_record__in=records)
        return scope

    def _apply_replace(self, importers: list[FileImporter]) -> None:
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
