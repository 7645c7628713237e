"""django-q2 task entry points for uploads: small, id-based, safe to run twice
(each claims its file first; a file claimed by another run is left alone)."""

from __future__ import annotations

from billing.audit import Actor
from ingest.uploads import jobs
from openchargeback.logging import logged_job


@logged_job
def preview_upload(upload_id: int) -> None:
    jobs.upload_run_preview(upload_id)


@logged_job
def import_upload(upload_id: int, actor: str, user_id: int | None = None) -> None:
    jobs.upload_run_import(upload_id, actor=Actor(name=actor, channel="job", user_id=user_id))


@logged_job
def import_upload_delivery(upload_ids: list[int], actor: str, user_id: int | None = None) -> None:
    jobs.upload_run_import_delivery(
        upload_ids, actor=Actor(name=actor, channel="job", user_id=user_id)
    )
