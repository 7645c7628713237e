"""Files uploaded through the admin: stage, preview (a dry run), import,
discard. Previews and imports always run on a django-q2 worker, never in
the web request (a file's shape, not its size, decides how long it takes
and how much memory it needs); the batch page follows their progress.
Previewed files of one source and period imported together ("import
all") are one delivery: one transaction, rows repeated across the files kept.
Safe to re-run: a job only acts on a file it claims, and importing is
idempotent (a second import of the same file adds nothing)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import Source
from billing.periods import parse_period, period_in_name
from billing.selectors import detect_source
from ingest.focus.parsers import IngestError
from ingest.focus.services import DeliveryFile, import_delivery, import_file
from ingest.models import Upload
from ingest.uploads.staging import Progress, ProgressFile, read_progress
from openchargeback.money import money_str

logger = logging.getLogger(__name__)

S = Upload.Status
RUNNING = (S.PREVIEWING, S.IMPORTING)
# Key of Upload.preview: the file is routed to sources by provider.
ROUTE = "route_by_provider"
# Seconds a job may wait in the queue before the page asks whether a worker runs.
QUEUED_TOO_LONG = 60


def is_routed(upload: Upload) -> bool:
    return bool(upload.preview.get(ROUTE))


def stale_before() -> datetime:
    """A job that claimed a file before this was killed (django-q2's timeout)."""
    return timezone.now() - timedelta(seconds=int(settings.Q_CLUSTER["timeout"]))


def staged_path(upload: Upload) -> Path | None:
    return Path(settings.MEDIA_ROOT) / upload.stored_file if upload.stored_file else None


def is_running(upload: Upload) -> bool:
    """A preview or import is queued or under way (and not stalled)."""
    if upload.status not in RUNNING:
        return False
    return upload.job_started_at is None or upload.job_started_at >= stale_before()


def is_stalled(upload: Upload) -> bool:
    """Claimed by a job longer ago than any job may run: its worker died."""
    return (
        upload.status in RUNNING
        and upload.job_started_at is not None
        and upload.job_started_at < stale_before()
    )


def is_editable(upload: Upload) -> bool:
    """May be previewed again or discarded: not imported, and no job working on it
    (queued work may be replaced; a stalled job's file may be taken back)."""
    if upload.status in (S.IMPORTED, S.DISCARDED):
        return False
    if upload.status in RUNNING and upload.job_started_at is not None:
        return is_stalled(upload)
    return True


def progress_of(upload: Upload) -> Progress | None:
    """How far the running job has read the file, or None (queued, done, or nothing reported)."""
    path = staged_path(upload)
    if path is None or not is_running(upload) or upload.job_started_at is None:
        return None
    return read_progress(path)


def waiting_for_worker(upload: Upload) -> bool:
    """Queued longer than a worker takes to pick a job up: is one running?"""
    return (
        upload.status in RUNNING
        and upload.job_started_at is None
        and upload.updated_at < timezone.now() - timedelta(seconds=QUEUED_TOO_LONG)
    )


# --- Staging -------------------------------------------------------------------------


def upload_stage(
    *,
    batch: uuid.UUID,
    file_name: str,
    stored_file: str,
    size: int,
    source: Source | None,
    period: str,
    actor: Actor,
) -> Upload:
    """Record a staged file with the source and period detected from its name
    (or those chosen for the whole batch)."""
    detected_source = detect_source(file_name)
    detected_period = period_in_name(file_name) or ""
    chosen = source or detected_source
    upload = Upload.objects.create(
        batch=batch,
        file_name=file_name[:255],
        stored_file=stored_file,
        file_size=size,
        actor=actor.name,
        user_id=actor.user_id,
        source=chosen,
        period=period or detected_period,
        detected_source=detected_source,
        detected_period=detected_period,
    )
    if chosen is None:
        upload.error = f"{upload.file_name}: cannot tell the source from the file name; choose one"
        upload.save(update_fields=["error"])
    return upload


# --- Preview ---------------------------------------------------------------------------


def upload_preview(
    *, upload: Upload, source: Source | None, period: str, actor: Actor, route: bool = False
) -> Upload:
    """Set the file's source and period and queue its preview (a dry run) for
    a worker. Refuses a file being worked on.

    ``route``: a multi-provider file, split by provider into the sources that
    claim each (no source of its own; see ingest.focus.routing)."""
    name = upload.file_name
    if route:
        source = None
    elif source is None:
        raise BillingError(f"{name}: cannot tell the source from the file name; choose one")
    if source is not None and not source.enabled:
        raise BillingError(f"{name}: source {source.slug!r} is disabled; enable it first")
    try:
        period = parse_period(period) if period.strip() else ""
    except BillingError as exc:
        raise BillingError(f"{name}: {exc}") from None
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        _check_editable(locked)
        locked.source = source
        locked.period = period
        locked.status = S.PREVIEWING
        locked.job_started_at = None
        # Read by the preview and, once previewed, by the import.
        locked.preview = {ROUTE: True} if route else {}
        locked.result = {}
        locked.error = ""
        locked.updated_at = timezone.now()
        locked.save()
        transaction.on_commit(lambda: _enqueue("preview_upload", locked.pk))
    logger.info("upload preview queued", extra={"upload_id": locked.pk, "actor": actor.name})
    return locked


def upload_run_preview(upload_id: int) -> None:
    """The worker's side of a preview: claim the file, run the dry run."""
    claimed_at = _claim(upload_id, S.PREVIEWING)
    if claimed_at is not None:
        _run(upload_id, step="preview", claimed_at=claimed_at, actor=None)


# --- Import ------------------------------------------------------------------------------


def upload_import(*, upload: Upload, actor: Actor) -> Upload:
    """Queue the import of a previewed file for a worker."""
    now = timezone.now()
    # The conditional update is the claim: a second click, or a second
    # person, finds the file no longer "previewed".
    claimed = Upload.objects.filter(pk=upload.pk, status=S.PREVIEWED).update(
        status=S.IMPORTING, job_started_at=None, error="", updated_at=now
    )
    if not claimed:
        upload.refresh_from_db()
        raise BillingError(_not_importable(upload))
    transaction.on_commit(lambda: _enqueue("import_upload", upload.pk, actor.name, actor.user_id))
    logger.info("upload import queued", extra={"upload_id": upload.pk, "actor": actor.name})
    upload.refresh_from_db()
    return upload


def upload_run_import(upload_id: int, *, actor: Actor) -> None:
    """The worker's side of an import: claim the file, import it."""
    claimed_at = _claim(upload_id, S.IMPORTING)
    if claimed_at is not None:
        _run(upload_id, step="import", claimed_at=claimed_at, actor=actor)


def delivery_groups(uploads: list[Upload]) -> list[list[Upload]]:
    """The files grouped as "import all" imports them: one delivery per source and
    expected period, in upload order (files without a source stay alone)."""
    groups: dict[tuple[int, str] | int, list[Upload]] = {}
    for upload in uploads:
        key: tuple[int, str] | int = (
            (upload.source_id, upload.period) if upload.source_id is not None else -upload.pk
        )
        groups.setdefault(key, []).append(upload)
    return list(groups.values())


def upload_import_delivery(*, uploads: list[Upload], actor: Actor) -> list[Upload]:
    """Queue the import of previewed files of one source and period as one
    delivery (a month's part files): one worker job keeps them together.
    All of them or none."""
    if len(uploads) == 1:
        return [upload_import(upload=uploads[0], actor=actor)]
    ids = [u.pk for u in uploads]
    if len({(u.source_id, u.period) for u in uploads}) != 1:
        raise BillingError(
            f"{uploads[-1].file_name}: a delivery is one source and one period; "
            "import the files separately"
        )
    now = timezone.now()
    with transaction.atomic():
        claimed = Upload.objects.filter(pk__in=ids, status=S.PREVIEWED).update(
            status=S.IMPORTING, job_started_at=None, error="", updated_at=now
        )
        if claimed != len(ids):
            for upload in uploads:
                upload.refresh_from_db()
                if upload.status != S.PREVIEWED:
                    raise BillingError(_not_importable(upload))  # rolls the claim back
        transaction.on_commit(
            lambda: _enqueue("import_upload_delivery", ids, actor.name, actor.user_id)
        )
    found = {u.pk: u for u in Upload.objects.filter(pk__in=ids)}
    return [found[pk] for pk in ids]


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
        delivery = import_delivery(
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
            _delete_staged(staged_path(upload))


def _not_importable(upload: Upload) -> str:
    name = upload.file_name
    if upload.status == S.IMPORTED:
        return f"{name}: already imported"
    if upload.status == S.IMPORTING:
        return f"{name}: is being imported"
    if upload.status == S.PREVIEWING:
        return f"{name}: wait for the preview to finish"
    if upload.status == S.DISCARDED:
        return f"{name}: was discarded"
    return f"{name}: preview it (successfully) before importing"


# --- Discard ------------------------------------------------------------------------------


def upload_discard(*, upload: Upload, actor: Actor) -> Upload:
    """Forget a file that is not imported and not being worked on; its staged copy is deleted."""
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        _check_editable(locked)
        locked.status = S.DISCARDED
        locked.updated_at = timezone.now()
        path = staged_path(locked)
        locked.stored_file = ""
        locked.save()
    _delete_staged(path)
    logger.info("upload discarded", extra={"upload_id": locked.pk, "actor": actor.name})
    return locked


def _check_editable(upload: Upload) -> None:
    """Queued work may be replaced or dropped; running work and imports may not."""
    if is_editable(upload):
        return
    name = upload.file_name
    if upload.status == S.IMPORTED:
        raise BillingError(f"{name}: already imported")
    if upload.status == S.DISCARDED:
        raise BillingError(f"{name}: was discarded")
    if upload.status in RUNNING:
        step = "preview" if upload.status == S.PREVIEWING else "import"
        raise BillingError(f"{name}: the {step} is running; wait for it to finish")


# --- Running a step -----------------------------------------------------------------------


def _enqueue(task: str, *args: Any) -> None:
    from django_q.tasks import async_task

    async_task(f"ingest.tasks.{task}", *args, group="ingest-uploads")


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
            result = import_file(
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
        _delete_staged(path)


def _import_routed(
    upload: Upload, path: Path, *, actor: Actor, dry_run: bool, progress: ProgressFile
) -> tuple[dict[str, Any], int | None]:
    """A multi-provider file imported (or previewed) into the sources claiming
    its providers, all or none: the combined result and the first import id."""
    from ingest.focus.routing import route_by_provider

    routes = route_by_provider(path=path, display_name=upload.file_name)

    def run() -> list[Any]:
        return [
            import_delivery(
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


def _delete_staged(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
        ProgressFile(path, "").remove()


def uploads_purge(*, older_than: timedelta, actor: Actor, dry_run: bool = False) -> list[Upload]:
    """Discard the uploads nobody imported or discarded, untouched for `older_than`
    (their staged copies are deleted); uploads being worked on are left alone.
    With `dry_run`, the uploads that would be discarded; nothing changes."""
    before = timezone.now() - older_than
    waiting = Upload.objects.exclude(status__in=[S.IMPORTED, S.DISCARDED]).filter(
        updated_at__lt=before
    )
    purged = []
    for upload in waiting:
        if is_editable(upload):
            purged.append(upload if dry_run else upload_discard(upload=upload, actor=actor))
    return purged
