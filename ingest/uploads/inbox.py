"""The inbox: FOCUS files dropped into a folder per source are imported, then
moved to ``done/`` or ``failed/`` (with a ``.reason.txt`` beside them).

    OPENCHARGEBACK_INBOX_DIR/
        aws/aws_2026-09.csv          <- dropped here (by a sync job, scp, ...)
        aws/done/aws_2026-09.csv     <- imported (or nothing new in it)
        aws/failed/bad.csv           <- refused; bad.csv.reason.txt says why

A file is claimed by renaming it into the source's ``.processing/`` folder
first, so two runs at once (two workers, or cron overlapping) never import
the same file twice; importing is idempotent anyway. Files modified in the
last ``OPENCHARGEBACK_INBOX_SETTLE_SECONDS`` are left for the next run (they
may still be being written); a claim older than an hour (its run died) is
taken up again.

The files of one source folder waiting together with the same month in
their names (a month's part files) are imported as one delivery
(docs/decisions/0005-deliveries.md): all of them or none, rows repeated
across them kept. Sync a month's parts completely before the run picks them
up.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import Source
from billing.periods import period_in_name
from ingest.focus.errors import IngestError
from ingest.focus.services import DeliveryFile, delivery_import
from openchargeback.money import money_str

SUFFIXES = (".csv", ".csv.gz", ".parquet")
PROCESSING, DONE, FAILED = ".processing", "done", "failed"
STALE_CLAIM_SECONDS = 3600


@dataclass
class InboxOutcome:
    source: str
    file: str
    status: str  # imported | already_imported | failed | dry_run
    moved_to: str
    message: str = ""
    import_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def inbox_root() -> Path:
    return Path(settings.OPENCHARGEBACK_INBOX_DIR)


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, with a time stamp added if that name is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.exists():
        return target
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
    return folder / f"{stamp}-{name}"


def _waiting(folder: Path, settle: int) -> list[Path]:
    now = time.time()
    found = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if not path.name.lower().endswith(SUFFIXES):
            continue
        if now - path.stat().st_mtime < settle:
            continue  # perhaps still being written
        found.append(path)
    claims = folder / PROCESSING
    if claims.is_dir():
        found += [
            p
            for p in sorted(claims.iterdir())
            if p.is_file() and now - p.stat().st_mtime > STALE_CLAIM_SECONDS
        ]
    return found


def _claim(path: Path) -> Path | None:
    """Move the file into .processing/ (atomic); None if another run took it."""
    claims = path.parent if path.parent.name == PROCESSING else path.parent / PROCESSING
    claims.mkdir(exist_ok=True)
    claimed = claims / path.name
    try:
        if path != claimed:
            os.rename(path, claimed)
        os.utime(claimed)  # the claim's time: a stale claim is taken up again
    except FileNotFoundError:
        return None
    return claimed


def _finish(claimed: Path, source_dir: Path, folder: str, note: str | None) -> Path:
    target = _free_name(source_dir / folder, claimed.name)
    os.rename(claimed, target)
    if note is not None:
        target.with_name(target.name + ".reason.txt").write_text(note + "\n", encoding="utf-8")
    return target


def inbox_process(*, actor: Actor, dry_run: bool = False) -> list[InboxOutcome]:
    """Import every file waiting in the inbox; one outcome per file. With
    `dry_run`, each delivery is checked by the importer's dry run and no file
    is claimed, moved or written (`moved_to` is empty)."""
    root = inbox_root()
    if not root.is_dir():
        return []
    settle = int(settings.OPENCHARGEBACK_INBOX_SETTLE_SECONDS)
    outcomes = []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if source_dir.name.startswith("."):
            continue
        source = Source.objects.filter(slug=source_dir.name.lower()).first()
        # Files with the same month in their names are one delivery.
        groups: dict[str, list[Path]] = {}
        for path in _waiting(source_dir, settle):
            claimed = path if dry_run else _claim(path)
            if claimed is not None:
                groups.setdefault(period_in_name(claimed.name) or "", []).append(claimed)
        for period, claimed_files in groups.items():
            outcomes += _import_delivery(
                claimed_files, period, source_dir, source, actor, dry_run=dry_run
            )
    return outcomes


def _import_delivery(
    claimed: list[Path],
    period: str,
    source_dir: Path,
    source: Source | None,
    actor: Actor,
    *,
    dry_run: bool = False,
) -> list[InboxOutcome]:
    try:
        if source is None:
            raise BillingError(
                f"no source named {source_dir.name!r}: the folder's name must be a source's "
                "slug (openchargeback sources list)"
            )
        if not source.enabled:
            raise BillingError(f"source {source.slug!r} is disabled")
        delivery = delivery_import(
            files=[DeliveryFile(path=path, display_name=path.name) for path in claimed],
            source=source,
            actor=actor,
            expected_period=period or None,
            dry_run=dry_run,
        )
    except (IngestError, BillingError) as exc:
        outcomes = []
        for path in claimed:
            if dry_run:
                outcomes.append(InboxOutcome(source_dir.name, path.name, "failed", "", str(exc)))
                continue
            target = _finish(path, source_dir, FAILED, str(exc))
            outcomes.append(
                InboxOutcome(source_dir.name, path.name, "failed", str(target), str(exc))
            )
        return outcomes
    outcomes = []
    for path, result in zip(claimed, delivery.files, strict=True):
        if dry_run:
            would = (
                f"{result.charges_created:,} charges into {', '.join(result.periods) or '-'}, "
                f"billed {money_str(result.billed_total)}; "
                f"{result.duplicates_skipped:,} duplicates skipped"
            )
            outcomes.append(
                InboxOutcome(source_dir.name, path.name, result.status, "", result.message or would)
            )
            continue
        note = json.dumps(result.as_dict(), indent=2)
        target = _finish(path, source_dir, DONE, None)
        target.with_name(target.name + ".result.json").write_text(note + "\n", encoding="utf-8")
        outcomes.append(
            InboxOutcome(
                source_dir.name,
                path.name,
                result.status,
                str(target),
                result.message,
                result.import_id,
            )
        )
    return outcomes
