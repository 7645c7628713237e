"""The batch page's actions as a service (ingest.uploads.services.uploads_batch):
which files an action takes, which it refuses and why, and that "import all"
queues one job per delivery once the transaction commits. The pages around
it are tests/ingest/test_admin_import.py."""

from __future__ import annotations

import uuid
from typing import Any
from unittest import mock

import pytest
from django.test import TestCase

from billing.audit import Actor
from billing.models import Source
from ingest.models import Upload
from ingest.uploads.services import UploadChoice, uploads_batch

pytestmark = pytest.mark.django_db

S = Upload.Status


@pytest.fixture
def batch(defaults: None) -> uuid.UUID:
    return uuid.uuid4()


def upload(batch: uuid.UUID, name: str, *, source: str, period: str, status: str) -> Upload:
    return Upload.objects.create(
        batch=batch,
        file_name=name,
        stored_file=f"uploads/{name}",
        file_size=10,
        actor="tester",
        source=Source.objects.get(slug=source),
        period=period,
        status=status,
        preview={"status": "dry_run"} if status == S.PREVIEWED else {},
    )


def as_previewed(*files: Upload) -> dict[int, UploadChoice]:
    return {u.pk: UploadChoice(source=u.source, period=u.period) for u in files}


def run(
    files: list[Upload], action: str, choices: dict[int, UploadChoice], target: str = ""
) -> Any:
    """The action, with the jobs it queued once its transaction committed."""
    with (
        mock.patch("django_q.tasks.async_task") as queue,
        TestCase.captureOnCommitCallbacks(execute=True) as callbacks,
    ):
        result = uploads_batch(
            uploads=files,
            action=action,
            target=target,
            choices=choices,
            actor=Actor(name="tester", channel="admin"),
        )
        assert not queue.called  # nothing is queued before the commit
    assert len(callbacks) == queue.call_count
    jobs = [(c.args[0], c.args[1]) for c in queue.call_args_list]
    return [(n.level, n.text) for n in result.notes], jobs


def test_import_all_queues_one_job_per_delivery(batch: uuid.UUID) -> None:
    part1 = upload(batch, "aws_2025_01_a.csv", source="aws", period="2025-01", status=S.PREVIEWED)
    part2 = upload(batch, "aws_2025_01_b.csv", source="aws", period="2025-01", status=S.PREVIEWED)
    other = upload(batch, "azure_2025_01.csv", source="azure", period="2025-01", status=S.PREVIEWED)
    staged = upload(batch, "aws_2025_02.csv", source="aws", period="2025-02", status=S.STAGED)
    files = [part1, part2, other, staged]

    notes, jobs = run(files, "import-all", as_previewed(*files))

    assert notes == []
    assert jobs == [
        ("ingest.tasks.import_upload_delivery", [part1.pk, part2.pk]),
        ("ingest.tasks.import_upload", other.pk),
    ]
    statuses = dict(Upload.objects.values_list("pk", "status"))
    assert [statuses[u.pk] for u in files] == [S.IMPORTING, S.IMPORTING, S.IMPORTING, S.STAGED]


def test_a_changed_or_refused_choice_is_not_imported(batch: uuid.UUID) -> None:
    changed = upload(batch, "aws_2025_01.csv", source="aws", period="2025-01", status=S.PREVIEWED)
    refused = upload(batch, "aws_2025_03.csv", source="aws", period="2025-03", status=S.PREVIEWED)
    choices = {
        changed.pk: UploadChoice(source=changed.source, period="2025-02"),
        refused.pk: UploadChoice(error="Enter a valid period"),
    }

    notes, jobs = run([changed, refused], "import-all", choices)

    assert notes == [
        (
            "error",
            "aws_2025_01.csv: the source or period was changed; preview again before importing",
        ),
        ("error", "aws_2025_03.csv: Enter a valid period"),
    ]
    assert jobs == []
    assert set(Upload.objects.values_list("status", flat=True)) == {S.PREVIEWED}


def test_apply_previews_only_the_files_whose_choice_changed(batch: uuid.UUID) -> None:
    same = upload(batch, "aws_2025_01.csv", source="aws", period="2025-01", status=S.PREVIEWED)
    moved = upload(batch, "aws_2025_02.csv", source="aws", period="2025-02", status=S.PREVIEWED)
    done = upload(batch, "aws_2025_03.csv", source="aws", period="2025-03", status=S.IMPORTED)
    choices = as_previewed(same, moved, done)
    choices[moved.pk] = UploadChoice(source=moved.source, period="2025-04")
    choices[done.pk] = UploadChoice(source=done.source, period="2025-05")

    notes, jobs = run([same, moved, done], "apply", choices)

    assert notes == []
    assert jobs == [("ingest.tasks.preview_upload", moved.pk)]
    moved.refresh_from_db()
    assert (moved.status, moved.period) == (S.PREVIEWING, "2025-04")

    notes, jobs = run([same], "apply", as_previewed(same))
    assert (notes, jobs) == ([("info", "Nothing was changed.")], [])


def test_discard_all_marks_the_callers_files(batch: uuid.UUID) -> None:
    staged = upload(batch, "aws_2025_01.csv", source="aws", period="2025-01", status=S.STAGED)
    done = upload(batch, "aws_2025_02.csv", source="aws", period="2025-02", status=S.IMPORTED)

    notes, jobs = run([staged, done], "discard-all", as_previewed(staged, done))

    assert (notes, jobs) == ([("info", "aws_2025_01.csv: discarded.")], [])
    assert (staged.status, done.status) == (S.DISCARDED, S.IMPORTED)


def test_an_unknown_file_or_action_changes_nothing(batch: uuid.UUID) -> None:
    one = upload(batch, "aws_2025_01.csv", source="aws", period="2025-01", status=S.PREVIEWED)
    choices = as_previewed(one)

    assert run([one], "import", choices, target="0") == (
        [("error", "That file is not part of this upload any more.")],
        [],
    )
    assert run([one], "publish", choices) == ([("error", "Unknown action.")], [])
    assert run([], "import-all", {}) == (
        [("warning", "No previewed file is waiting to be imported.")],
        [],
    )
    one.refresh_from_db()
    assert one.status == S.PREVIEWED
