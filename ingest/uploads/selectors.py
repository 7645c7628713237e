"""What the upload pages and the worker ask about uploads, without changing
them: whether a file's job runs, stalled or waits for a worker, how far it
has read, which files "import all" keeps together, the batches still open.
The writes are ingest.uploads.services; both agree on a stalled job through
`stale_before`, the one definition of django-q2's timeout here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from billing.models import Source
from ingest.models import Upload
from ingest.uploads.staging import Progress, read_progress

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


def enabled_sources() -> QuerySet[Source]:
    """The sources a file may be imported into, as the pages list them."""
    return Source.objects.filter(enabled=True).order_by("slug")


def batch_uploads(batch: uuid.UUID) -> list[Upload] | None:
    """A batch's files not discarded, in upload order; None if there is no such batch
    (a batch whose every file was discarded is an empty list)."""
    found = list(
        Upload.objects.filter(batch=batch)
        .select_related("source", "detected_source", "import_record")
        .order_by("pk")
    )
    if not found:
        return None
    return [u for u in found if u.status != S.DISCARDED]


@dataclass(frozen=True)
class WaitingBatch:
    """An earlier upload with files neither imported nor discarded."""

    batch: uuid.UUID
    files: int
    failed: int
    first: datetime
    last: datetime


def waiting_batches(*, limit: int = 20) -> list[WaitingBatch]:
    """The most recent uploads still waiting for someone, newest first."""
    rows = (
        Upload.objects.exclude(status__in=[S.IMPORTED, S.DISCARDED])
        .values("batch")
        .annotate(
            files=Count("pk"),
            failed=Count("pk", filter=Q(status=S.FAILED)),
            first=Min("created_at"),
            last=Max("updated_at"),
        )
        .order_by("-first")[:limit]
    )
    return [WaitingBatch(**row) for row in rows]
