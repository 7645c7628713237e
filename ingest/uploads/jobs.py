"""The worker's side of an upload's preview or import (the django-q2 tasks
of ingest.tasks call these): claim the file, so a job runs once whoever
queued it twice; run the dry run or the import; record the outcome only if
the file is still as claimed (nobody discarded it or asked for another
preview meanwhile). What queues the jobs is ingest.uploads.services."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.audit import Actor
from billing.errors import BillingError
from ingest.focus.errors import IngestError
from ingest.focus.services import DeliveryFile, delivery_import, file_import
from ingest.models import Upload
from ingest.uploads.selectors import ROUTE, is_routed, staged_path, stale_before
from ingest.uploads.staging import ProgressFile, delete_staged
from openchargeback.money import money_str

logger = logging.getLogger(__name__)

S = Upload.Status


def upload_run_preview(upload_id: int) -> None:
    """The worker's side of a preview: claim the file, run the dry run."""
    claimed_at = _claim(upload_id, S.PREVIEWING)
    if claimed_at is not None:
        _run(upload_id, step="preview", claimed_at=claimed_at, actor=None)


def upload_run_import(upload_id: int, *, actor: Actor) -> None:
    """The worker's side of an import: claim the file, import it."""
    claimed_at = _claim(upload_id, S.IMPORTING)
    if claimed_at is not None:
        _run(upload_id, step="import", claimed_at=claimed_at, actor=actor)


def upload_run_import_delivery(upload_ids: list[int], *, actor: Actor) -> None:
    """The worker's side of a delivery's import: claim every file, import them."""
    now = timezone.now()
    with transaction.atomic():
        claimable = (
            Upload.objects.select_for_update()
            .filter(pk__in=upload_ids, status=S.IMPORTING)
            .filter(Q(job_started_at=None) | Q(job_started_at__lt=stale_before()))
        )
        if len(list(claimable)) != len(upload_ids):
            return  # another job has (some of) them, or they moved on
        Upload.objects.filter(pk__in=upload_ids).update(job_started_at=now, updated_at=now)
    _run_delivery(upload_ids, claimed_at=now, actor=actor)


def _run_delivery(upload_ids: list[int], *, claimed_at: datetime, actor: Actor) -> None:
    """Import claimed files as one delivery and record each file's outcome."""
    files = list(Upload.objects.select_related("source").filter(pk__in=upload_ids).order_by("pk"))
    progress: list[ProgressFile] = []
    updates: dict[int, dict[str, Any]] = {}
    try:
        items = []
        for upload in files:
            path = staged_path(upload)
            if path is None or not path.is_file():
                raise IngestError(f"{upload.file_name}: the uploaded file is gone; upload it again")
            progress.append(ProgressFile(path, "import"))
            progress[-1].write(0, 1)
            items.append(
                DeliveryFile(path=path, display_name=upload.file_name, progress=progress[-1])
            )
        source = files[0].source
        if source is None:
            raise BillingError(f"{files[0].file_name}: choose a source")
        if not source.enabled:
            raise BillingError(
                f"{files[0].file_name}: source {source.slug!r} is disabled; enable it first"
            )
        delivery = delivery_import(
            files=items,
            source=source,
            actor=actor,
            expected_period=files[0].period or None,
        )
    except (IngestError, BillingError) as exc:
        updates = {u.pk: {"status": S.FAILED, "error": str(exc)} for u in files}
    except Exception as exc:
        logger.exception("upload delivery import failed", extra={"upload_ids": upload_ids})
        error = (
            f"{files[0].file_name}: the import failed unexpectedly "
            f"({type(exc).__name__}: {exc}); see the server log"
        )
        updates = {u.pk: {"status": S.FAILED, "error": error} for u in files}
    else:
        summary = delivery.as_dict()
        for upload, result in zip(files, delivery.files, strict=True):
            updates[upload.pk] = {
                "status": S.IMPORTED,
                "result": {
                    **result.as_dict(),
                    "expected_period": upload.period,
                    "delivery_summary": summary,
                },
                "import_record_id": result.import_id,
                "stored_file": "",
            }
    finally:
        for item in progress:
            item.remove()
    for upload in files:
        update = {**updates[upload.pk], "updated_at": timezone.now()}
        written = Upload.objects.filter(
            pk=upload.pk, status=S.IMPORTING, job_started_at=claimed_at
        ).update(**update)
        if written and update["status"] == S.IMPORTED:
            delete_staged(staged_path(upload))


def _claim(upload_id: int, status: str) -> datetime | None:
    """Take a queued (or stalled) file for this worker; None if another has it or it moved on."""
    now = timezone.now()
    claimed = (
        Upload.objects.filter(pk=upload_id, status=status)
        .filter(Q(job_started_at=None) | Q(job_started_at__lt=stale_before()))
        .update(job_started_at=now, updated_at=now)
    )
    return now if claimed else None


def _run(upload_id: int, *, step: str, claimed_at: datetime, actor: Actor | None) -> None:
    """Preview or import a claimed file and record the outcome.

    The outcome is written only if the file is still in the claimed state
    (nobody discarded it or asked for another preview meanwhile). Every
    failure ends as status "failed" with its reason.
    """
    upload = Upload.objects.select_related("source").get(pk=upload_id)
    path = staged_path(upload)
    running = S.PREVIEWING if step == "preview" else S.IMPORTING
    progress = ProgressFile(path, step) if path is not None else None
    update: dict[str, Any]
    try:
        if path is None or not path.is_file():
            raise IngestError(f"{upload.file_name}: the uploaded file is gone; upload it again")
        routed = is_routed(upload)
        if upload.source is None and not routed:
            raise BillingError(f"{upload.file_name}: choose a source")
        if upload.source is not None and not upload.source.enabled:
            raise BillingError(
                f"{upload.file_name}: source {upload.source.slug!r} is disabled; enable it first"
            )
        assert progress is not None
        progress.write(0, 1)
        who = actor or Actor(name=upload.actor, channel="job", user_id=upload.user_id)
        if routed:
            data, import_id = _import_routed(
                upload, path, actor=who, dry_run=step == "preview", progress=progress
            )
        else:
            assert upload.source is not None
            result = file_import(
                path=path,
                source=upload.source,
                actor=who,
                expected_period=upload.period or None,
                dry_run=step == "preview",
                display_name=upload.file_name,
                progress=progress,
            )
            data, import_id = result.as_dict(), result.import_id
    except (IngestError, BillingError) as exc:
        update = {"status": S.FAILED, "error": str(exc)}
    except Exception as exc:
        logger.exception("upload %s failed", step, extra={"upload_id": upload_id})
        update = {
            "status": S.FAILED,
            "error": f"{upload.file_name}: the {step} failed unexpectedly "
            f"({type(exc).__name__}: {exc}); see the server log",
        }
    else:
        data = {**data, "expected_period": upload.period}
        if step == "preview":
            update = {"status": S.PREVIEWED, "preview": data}
        else:
            update = {
                "status": S.IMPORTED,
                "result": data,
                "import_record_id": import_id,
                "stored_file": "",
            }
    finally:
        if progress is not None:
            progress.remove()
    update["updated_at"] = timezone.now()
    written = Upload.objects.filter(pk=upload_id, status=running, job_started_at=claimed_at).update(
        **update
    )
    if written and update["status"] == S.IMPORTED:
        # The import keeps its own copy of the file.
        delete_staged(path)


def _import_routed(
    upload: Upload, path: Path, *, actor: Actor, dry_run: bool, progress: ProgressFile
) -> tuple[dict[str, Any], int | None]:
    """A multi-provider file imported (or previewed) into the sources claiming
    its providers, all or none: the combined result and the first import id."""
    from ingest.focus.routing import route_by_provider

    routes = route_by_provider(path=path, display_name=upload.file_name)

    def run() -> list[Any]:
        return [
            delivery_import(
                files=[
                    DeliveryFile(
                        path=path,
                        display_name=upload.file_name,
                        progress=progress,
                        providers=providers,
                    )
                ],
                source=source,
                actor=actor,
                expected_period=upload.period or None,
                dry_run=dry_run,
            )
            for source, providers in routes
        ]

    if dry_run:
        deliveries = run()  # writes nothing: no transaction (SQLite's write lock)
    else:
        with transaction.atomic():
            deliveries = run()
    results = [r for d in deliveries for r in d.files]
    flags: dict[str, int] = {}
    for r in results:
        for reason, count in r.flags.items():
            flags[reason] = flags.get(reason, 0) + count
    statuses = {d.status for d in deliveries}
    status = "dry_run" if dry_run else "imported" if "imported" in statuses else "already_imported"
    slugs = ", ".join(d.source for d in deliveries)
    data: dict[str, Any] = {
        ROUTE: True,
        "status": status,
        "file": upload.file_name,
        "source": slugs,
        "import_id": next((r.import_id for r in results if r.import_id), None),
        "rows_read": sum(r.rows_read for r in results),
        "charges_created": sum(r.charges_created for r in results),
        "duplicates_skipped": sum(r.duplicates_skipped for r in results),
        "charges_removed": 0,
        "flagged": sum(r.flagged for r in results),
        "flags": dict(sorted(flags.items())),
        "billed_total": money_str(sum((d.billed_total for d in deliveries), Decimal(0))),
        "periods": sorted({p for r in results for p in r.periods}),
        "new_periods": sorted({p for r in results for p in r.new_periods}),
        "values_rounded": sum(r.values_rounded for r in results),
        "skipped_patterns": sorted({s for r in results for s in r.skipped_patterns}),
        "message": (
            f"{upload.file_name}: every row is already imported for {slugs}; nothing changed"
            if status == "already_imported"
            else ""
        ),
        "routed": [d.as_dict() for d in deliveries],
    }
    return data, data["import_id"]
