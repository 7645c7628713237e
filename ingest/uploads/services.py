"""Files uploaded through the admin: stage, preview (a dry run), import,
discard. Previews and imports always run on a django-q2 worker, never in
the web request (a file's shape, not its size, decides how long it takes
and how much memory it needs); the batch page follows their progress.
Previewed files of one source and period imported together ("import
all") are one delivery: one transaction, rows repeated across the files kept.
Safe to re-run: a job only acts on a file it claims (ingest.uploads.jobs, the
worker's side), and importing is idempotent (a second import of the same
file adds nothing)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from billing.audit import Actor
from billing.errors import BillingError, web_text
from billing.models import Source
from billing.periods import parse_period, period_in_name
from billing.selectors import detect_source
from ingest.models import Upload
from ingest.uploads.selectors import (
    ROUTE,
    RUNNING,
    delivery_groups,
    is_editable,
    is_routed,
    staged_path,
)
from ingest.uploads.staging import delete_staged

logger = logging.getLogger(__name__)

S = Upload.Status


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
    delete_staged(path)
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


# --- Queueing -----------------------------------------------------------------------------


def _enqueue(task: str, *args: Any) -> None:
    from django_q.tasks import async_task

    async_task(f"ingest.tasks.{task}", *args, group="ingest-uploads")


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


# --- A batch page's actions ------------------------------------------------------------


@dataclass(frozen=True)
class UploadChoice:
    """A file's source and expected period as posted on the batch page; `error`
    says why the posted values were refused (then the others are unset)."""

    source: Source | None = None
    period: str = ""
    route: bool = False
    error: str = ""

    def differs(self, upload: Upload) -> bool:
        """Whether this is not what the file was previewed with."""
        if self.error:
            return True
        if self.route != is_routed(upload):
            return True
        if self.route:
            return self.period != upload.period
        return self.source != upload.source or self.period != upload.period


@dataclass(frozen=True)
class BatchNote:
    level: Literal["info", "warning", "error"]
    text: str


@dataclass
class BatchResult:
    """What a batch action did, file by file, in the words the page shows."""

    notes: list[BatchNote] = field(default_factory=list)

    def add(self, level: Literal["info", "warning", "error"], text: str) -> None:
        self.notes.append(BatchNote(level, text))


def uploads_batch(
    *,
    uploads: list[Upload],
    action: str,
    target: str,
    choices: Mapping[int, UploadChoice],
    actor: Actor,
) -> BatchResult:
    """One action of the batch page on its files: preview, import or discard one
    file (`target`, its id), import every previewed file ("import-all": the files
    of one source and period as one delivery), discard every file that may be,
    or preview again every file whose posted choice changed ("apply").

    `choices` is each file's posted source and period. Nothing runs here: the
    previews and imports are worker jobs, queued once this transaction commits
    (upload_preview, upload_import, upload_import_delivery). A discarded file's
    status is set on the caller's object too, so the page knows what is left."""
    result = BatchResult()
    chosen = _batch_targets(uploads, action, target, choices, result)
    if chosen is None:
        return result
    kind, targets = chosen
    ready: list[Upload] = []
    for upload in targets:
        choice = choices[upload.pk]
        if kind == "preview":
            if choice.error:
                result.add("error", f"{upload.file_name}: {choice.error}")
                continue
            _batch_step(
                result,
                partial(
                    upload_preview,
                    upload=upload,
                    source=choice.source,
                    period=choice.period,
                    actor=actor,
                    route=choice.route,
                ),
            )
        elif kind in ("import", "import-all"):
            if choice.error:
                result.add("error", f"{upload.file_name}: {choice.error}")
            elif choice.differs(upload):
                result.add(
                    "error",
                    f"{upload.file_name}: the source or period was changed; "
                    "preview again before importing",
                )
            elif kind == "import-all":
                ready.append(upload)
            else:
                _batch_step(result, partial(upload_import, upload=upload, actor=actor))
        else:
            try:
                upload_discard(upload=upload, actor=actor)
            except BillingError as exc:
                result.add("error", web_text(exc))
            else:
                upload.status = S.DISCARDED
                result.add("info", f"{upload.file_name}: discarded.")
    # Import all: the files of one source and period are one delivery.
    for group in delivery_groups(ready):
        if len(group) == 1:
            _batch_step(result, partial(upload_import, upload=group[0], actor=actor))
        else:
            _batch_step(result, partial(upload_import_delivery, uploads=group, actor=actor))
    return result


def _batch_targets(
    uploads: list[Upload],
    action: str,
    target: str,
    choices: Mapping[int, UploadChoice],
    result: BatchResult,
) -> tuple[str, list[Upload]] | None:
    """The step an action takes and the files it takes it on; None for an action
    that names no file of the batch (the reason is noted)."""
    if action in ("preview", "import", "discard"):
        by_id = {str(u.pk): u for u in uploads}
        if target not in by_id:
            result.add("error", "That file is not part of this upload any more.")
            return None
        return action, [by_id[target]]
    if action == "import-all":
        targets = [u for u in uploads if u.status == S.PREVIEWED]
        if not targets:
            result.add("warning", "No previewed file is waiting to be imported.")
        return action, targets
    if action == "discard-all":
        return action, [u for u in uploads if is_editable(u)]
    if action == "apply":
        # Enter pressed in a field: preview every file whose choice changed.
        targets = [u for u in uploads if is_editable(u) and choices[u.pk].differs(u)]
        if not targets:
            result.add("info", "Nothing was changed.")
        return "preview", targets
    result.add("error", "Unknown action.")
    return None


def _batch_step(result: BatchResult, step: Callable[[], object]) -> None:
    """Queue one job; a refusal is the file's note, the batch goes on."""
    try:
        step()
    except BillingError as exc:
        result.add("error", web_text(exc))
