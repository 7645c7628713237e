"""The admin's import page: drop several files, check each file's detected
source and period and its dry-run preview, change them, import; previews and
imports on a worker (never in the request) with progress; size limits; bad
files; who may do it.

Django-q2 runs a task inline in tests (``Q_CLUSTER["sync"]``) once it is
queued, and a job is queued when the request's transaction commits: the
helpers below run the queued jobs after the request returned, as a worker
would, unless told not to (``jobs=False``)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, TestCase

from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod, Charge, InstitutionSettings, Source
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from ingest.models import Import, Upload
from ingest.uploads import selectors
from ingest.uploads import services as uploads
from ingest.uploads.staging import ProgressFile, size_text
from tests.conftest import focus_row, role_client
from tests.ingest_helpers import focus_lines, join_lines, replace_field, rows_for

pytestmark = pytest.mark.django_db

UPLOAD = "/admin/ingest/import/upload/"
S = Upload.Status


# --- helpers -------------------------------------------------------------------------------------


def csv_bytes(rows: Sequence[dict[str, str]]) -> bytes:
    return join_lines(focus_lines(rows)).encode()


def focus_upload(name: str, rows: Sequence[dict[str, str]]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_bytes(rows), content_type="text/csv")


def post_files(client: Client, *files: SimpleUploadedFile, jobs: bool = True, **fields: str) -> Any:
    """Upload files; then (``jobs``) the worker runs the previews the request queued."""
    with TestCase.captureOnCommitCallbacks(execute=jobs):
        return client.post(UPLOAD, {"files": list(files), **fields})


def post_batch(client: Client, upload: Upload, data: dict[str, str], *, jobs: bool = True) -> Any:
    """Press a button of the batch page; (``jobs``) the worker runs what it
    queued; then the page the browser is sent to (with the request's messages)."""
    with TestCase.captureOnCommitCallbacks(execute=jobs):
        response = client.post(batch_url(upload), data)
    assert response.status_code == 302, response.status_code
    return client.get(response["Location"])


def batch_url(upload: Upload) -> str:
    return f"{UPLOAD}{upload.batch}/"


def notes(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def staged_files(settings: Any) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "uploads"
    return sorted(p for p in root.iterdir() if p.is_file()) if root.exists() else []


def slug(source: Source | None) -> str:
    return source.slug if source is not None else ""


def choice(upload: Upload, *, source: str, period: str) -> dict[str, str]:
    return {f"u{upload.pk}-source": source, f"u{upload.pk}-period": period}


def act(client: Client, upload: Upload, action: str, **data: str) -> Any:
    """Press a button of the batch page, posting the file's current choice
    (as the browser does) unless other values are given."""
    form = choice(upload, source=slug(upload.source), period=upload.period)
    form.update(data)
    return post_batch(client, upload, {**form, "action": action})


def act_queued(client: Client, upload: Upload, action: str) -> Any:
    """As ``act``, with the jobs the button queued left in the queue."""
    form = choice(upload, source=slug(upload.source), period=upload.period)
    return post_batch(client, upload, {**form, "action": action}, jobs=False)


@pytest.fixture
def admin_client(defaults: None) -> Client:
    return role_client(BILLING_ADMIN)


# --- upload and detection ------------------------------------------------------------------------


def test_several_files_are_staged_with_detected_source_and_period(
    admin_client: Client, settings: Any
) -> None:
    response = post_files(
        admin_client,
        focus_upload("aws_2025-01.csv", rows_for(3, period="2025-01")),
        focus_upload("IT_Storage_2025_02.csv", rows_for(2, period="2025-02")),
        focus_upload("slurm-usage-202503.csv", rows_for(4, period="2025-03")),
    )

    files = list(Upload.objects.order_by("pk"))
    assert response.status_code == 302
    assert response["Location"] == batch_url(files[0])
    assert len({u.batch for u in files}) == 1
    detected = [(u.file_name, slug(u.detected_source), u.detected_period) for u in files]
    # "it[_-]?storage" is longer than "storage": the longest pattern wins.
    assert detected == [
        ("aws_2025-01.csv", "aws", "2025-01"),
        ("IT_Storage_2025_02.csv", "it_storage", "2025-02"),
        ("slurm-usage-202503.csv", "hpc", "2025-03"),
    ]
    assert [(slug(u.source), u.period) for u in files] == [
        ("aws", "2025-01"),
        ("it_storage", "2025-02"),
        ("hpc", "2025-03"),
    ]
    # Previewed by the worker; the preview writes nothing.
    assert [u.status for u in files] == [S.PREVIEWED] * 3
    assert [u.preview["charges_created"] for u in files] == [3, 2, 4]
    assert Charge.objects.count() == 0
    assert Import.objects.count() == 0
    assert not BillingPeriod.objects.exists()
    # Staged under random names, never the client's.
    stored = staged_files(settings)
    assert len(stored) == 3
    assert {p.suffix for p in stored} == {".csv"}
    assert not any("aws" in p.name or "storage" in p.name for p in stored)

    page = admin_client.get(batch_url(files[0]))
    html = page.content.decode()
    assert page.status_code == 200
    for upload in files:
        assert upload.file_name in html
        form = next(r["form"] for r in page.context["rows"] if r["upload"].pk == upload.pk)
        assert form["source"].value() == slug(upload.source)
        assert form["period"].value() == upload.period
        assert f'name="u{upload.pk}-period" value="{upload.period}"' in html
    assert "Import all previewed (3)" in html


def test_one_source_and_period_for_every_file_override_detection(admin_client: Client) -> None:
    post_files(
        admin_client,
        focus_upload("aws_2025-01.csv", rows_for(1)),
        focus_upload("export.csv", rows_for(1, resource_prefix="x")),
        source="azure",
        period="2025-02",
    )
    files = list(Upload.objects.order_by("pk"))
    assert [(slug(u.source), u.period) for u in files] == [("azure", "2025-02")] * 2
    assert slug(files[0].detected_source) == "aws"
    # rows of 2025-01 with an expected 2025-02 are flagged
    assert files[0].preview["flags"] == {"period_mismatch": 1}


def test_a_file_with_no_detectable_source_waits_for_a_choice(admin_client: Client) -> None:
    response = post_files(admin_client, focus_upload("usage-export.csv", rows_for(2)))
    upload = Upload.objects.get()
    assert upload.status == S.STAGED
    assert upload.source is None
    assert upload.period == ""
    assert notes(response) == []
    page = admin_client.get(batch_url(upload)).content.decode()
    assert "Waiting for a source" in page
    assert "usage-export.csv: cannot tell the source from the file name; choose one" in page
    assert "Import all previewed" not in page

    # Preview without choosing: refused, saying why.
    done = act(admin_client, upload, f"preview:{upload.pk}")
    assert "usage-export.csv: cannot tell the source from the file name; choose one" in notes(done)

    act(admin_client, upload, f"preview:{upload.pk}", **choice(upload, source="gcp", period=""))
    upload = Upload.objects.get()
    assert upload.status == S.PREVIEWED
    assert slug(upload.source) == "gcp"
    assert upload.preview["source"] == "gcp"
    assert upload.preview["charges_created"] == 2


def test_changing_source_and_period_then_previewing_again(admin_client: Client) -> None:
    rows = [*rows_for(2, period="2025-01"), *rows_for(1, period="2025-02", resource_prefix="f")]
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows))
    upload = Upload.objects.get()
    assert upload.preview["flags"] == {"period_mismatch": 1}
    assert upload.preview["periods"] == ["2025-01", "2025-02"]

    act(admin_client, upload, f"preview:{upload.pk}", **choice(upload, source="gcp", period=""))
    upload.refresh_from_db()
    assert (slug(upload.source), upload.period) == ("gcp", "")
    assert upload.preview["source"] == "gcp"
    assert upload.preview["flags"] == {}
    assert upload.preview["expected_period"] == ""

    # Enter in a field presses the form's first button: every changed file is previewed.
    act(admin_client, upload, "apply", **choice(upload, source="gcp", period="2025-02"))
    upload.refresh_from_db()
    assert upload.period == "2025-02"
    assert upload.preview["flags"] == {"period_mismatch": 2}


def test_a_changed_choice_is_not_imported_without_a_new_preview(admin_client: Client) -> None:
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(2)))
    upload = Upload.objects.get()
    done = act(admin_client, upload, f"import:{upload.pk}", **{f"u{upload.pk}-period": "2025-02"})
    assert notes(done) == [
        "aws_2025-01.csv: the source or period was changed; preview again before importing"
    ]
    upload.refresh_from_db()
    assert upload.status == S.PREVIEWED
    assert not Charge.objects.exists()


def test_wrong_period_and_disabled_source_are_refused_naming_the_file(
    admin_client: Client,
) -> None:
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(1)))
    upload = Upload.objects.get()
    done = act(admin_client, upload, f"preview:{upload.pk}", **{f"u{upload.pk}-period": "2025-13"})
    assert notes(done) == ["aws_2025-01.csv: period '2025-13' is not a month in the form YYYY-MM"]
    Source.objects.filter(slug="openai").update(enabled=False)
    done = act(admin_client, upload, f"preview:{upload.pk}", **{f"u{upload.pk}-source": "openai"})
    assert len(notes(done)) == 1
    assert notes(done)[0].startswith("aws_2025-01.csv: Select a valid choice.")
    upload.refresh_from_db()
    assert (slug(upload.source), upload.period, upload.status) == ("aws", "2025-01", S.PREVIEWED)

    # A source disabled after the preview is no longer offered; the import
    # itself refuses it too (a worker may run it much later).
    Source.objects.filter(slug="aws").update(enabled=False)
    done = act(admin_client, upload, f"import:{upload.pk}")
    assert notes(done)[0].startswith("aws_2025-01.csv: Select a valid choice.")
    upload.refresh_from_db()
    assert upload.status == S.PREVIEWED
    with TestCase.captureOnCommitCallbacks(execute=True):
        uploads.upload_import(upload=upload, actor=Actor(name="someone", channel="admin"))
    upload.refresh_from_db()
    assert upload.status == S.FAILED
    assert upload.error == "aws_2025-01.csv: source 'aws' is disabled; enable it first"
    page = admin_client.get(batch_url(upload)).content.decode()
    assert "aws_2025-01.csv: source &#x27;aws&#x27; is disabled; enable it first" in page
    assert not Charge.objects.exists()
    assert not Import.objects.exists()


# --- preview = the command line's dry run --------------------------------------------------------


def test_preview_numbers_equal_the_command_line_dry_run(
    admin_client: Client, tmp_path: Path
) -> None:
    rows = [
        *rows_for(3, billed="1.105"),
        focus_row(resource="no-pi", pi="", billed="2.50"),
        focus_row(resource="big", billed="250000.00"),
        focus_row(resource="later", period="2025-02", billed="0.001"),
        focus_row(resource="precise", billed="0.0000000015"),
    ]
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(csv_bytes(rows))
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows))
    upload = Upload.objects.get()

    out = io.StringIO()
    call_command(
        "ingest", str(path), "--source", "aws", "--period", "2025-01", "--dry-run", "--json",
        stdout=out,
    )  # fmt: skip
    cli = json.loads(out.getvalue())["files"][0]

    keys = [
        "status", "source", "rows_read", "charges_created", "duplicates_skipped", "flagged",
        "flags", "billed_total", "periods", "new_periods", "values_rounded",
    ]  # fmt: skip
    assert {k: upload.preview[k] for k in keys} == {k: cli[k] for k in keys}
    assert upload.preview["flags"]["missing_pi"] == 1
    assert upload.preview["flags"]["period_mismatch"] == 1
    assert upload.preview["values_rounded"] == 4  # the four cost columns of "precise"

    html = admin_client.get(batch_url(upload)).content.decode()
    billed = InstitutionSettings.cached().format_money(Decimal(cli["billed_total"]))
    assert billed in html
    assert "Missing PI 1" in html
    assert "Outside the expected period 1" in html


# --- import --------------------------------------------------------------------------------------


def test_import_creates_exactly_the_charges_and_links_to_them(
    admin_client: Client, settings: Any
) -> None:
    rows = [*rows_for(3), focus_row(resource="orphan", pi="", project="")]
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows))
    upload = Upload.objects.get()
    staged = staged_files(settings)
    assert len(staged) == 1

    done = act(admin_client, upload, f"import:{upload.pk}")

    upload.refresh_from_db()
    record = Import.objects.get()
    assert upload.status == S.IMPORTED
    assert upload.import_record == record
    assert notes(done) == []  # the file's card says what happened
    assert "Imported <strong>4</strong> charges" in done.content.decode()
    assert Charge.objects.filter(import_record=record).count() == 4 == Charge.objects.count()
    assert record.file_name == "aws_2025-01.csv"
    assert record.source.slug == "aws"
    assert record.expected_period == "2025-01"
    # On the worker, in the name of who pressed Import.
    assert record.actor == "billing_admin"
    assert record.user_id == upload.user_id
    assert AuditEvent.objects.filter(action="import.create", channel="job").count() == 1
    # The import keeps its own copy; the staged one is gone.
    assert not staged[0].exists()
    assert staged_files(settings) == []
    assert (Path(settings.MEDIA_ROOT) / record.stored_file).is_file()

    html = done.content.decode()
    import_link = f"/admin/ingest/import/{record.pk}/change/"
    queue = "/admin/billing/charge/"
    pending_link = f"{queue}?import_record__id__exact={record.pk}&amp;review_state__exact=pending"
    assert import_link in html
    assert pending_link in html
    assert f'value="import:{upload.pk}"' not in html

    # The link opens the review queue on this import's flagged charges.
    flagged = admin_client.get(pending_link.replace("&amp;", "&"))
    assert flagged.status_code == 200
    shown = {c.resource_id for c in flagged.context["cl"].result_list}
    assert shown == {"orphan"}
    assert admin_client.get(import_link).status_code == 200


def test_importing_the_same_file_again_says_already_imported(admin_client: Client) -> None:
    rows = rows_for(3)
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows))
    first = Upload.objects.get()
    act(admin_client, first, f"import:{first.pk}")
    record = Import.objects.get()

    post_files(admin_client, focus_upload("aws_2025-01.csv", rows))
    again = Upload.objects.exclude(pk=first.pk).get()
    assert again.batch != first.batch
    assert again.preview["charges_created"] == 0
    assert again.preview["duplicates_skipped"] == 3
    page = admin_client.get(batch_url(again)).content.decode()
    assert "Every row of this file is already imported for aws: importing it adds nothing." in page

    done = act(admin_client, again, f"import:{again.pk}")
    again.refresh_from_db()
    assert again.status == S.IMPORTED
    assert again.result["status"] == "already_imported"
    assert again.import_record == record
    assert Import.objects.count() == 1
    assert Charge.objects.count() == 3
    html = done.content.decode()
    assert "Already imported: nothing new" in html
    assert f"already imported for source aws as import #{record.pk}" in html


def test_import_all_previewed_imports_every_ready_file(admin_client: Client) -> None:
    post_files(
        admin_client,
        focus_upload("aws_2025-01.csv", rows_for(2)),
        focus_upload("azure_2025-01.csv", rows_for(3, resource_prefix="az")),
        focus_upload("mystery.csv", rows_for(1)),
    )
    files = list(Upload.objects.order_by("pk"))
    form: dict[str, str] = {}
    for u in files:
        form.update(choice(u, source=slug(u.source), period=u.period))
    post_batch(admin_client, files[0], {**form, "action": "import-all"})
    statuses = {u.file_name: u.status for u in Upload.objects.all()}
    assert statuses == {
        "aws_2025-01.csv": S.IMPORTED,
        "azure_2025-01.csv": S.IMPORTED,
        "mystery.csv": S.STAGED,
    }
    assert Charge.objects.filter(source__slug="aws").count() == 2
    assert Charge.objects.filter(source__slug="azure").count() == 3


def test_discard_deletes_the_staged_file(admin_client: Client, settings: Any) -> None:
    post_files(
        admin_client,
        focus_upload("aws_2025-01.csv", rows_for(1)),
        focus_upload("gcp_2025-01.csv", rows_for(1)),
    )
    first, second = Upload.objects.order_by("pk")
    assert len(staged_files(settings)) == 2
    done = act(admin_client, first, f"discard:{first.pk}")
    first.refresh_from_db()
    assert first.status == S.DISCARDED
    assert first.stored_file == ""
    assert len(staged_files(settings)) == 1
    assert "aws_2025-01.csv" not in done.content.decode().split('id="content-main"')[1]

    done = admin_client.post(batch_url(first), {"action": "discard-all"}, follow=True)
    assert done.redirect_chain[-1][0] == UPLOAD
    assert staged_files(settings) == []
    assert not Charge.objects.exists()
    # Nothing left to do with a discarded file.
    done = act(admin_client, second, f"import:{second.pk}")
    assert notes(done) == ["That file is not part of this upload any more."]


# --- previews and imports: a background job with progress, never the request --------------------


def test_previews_and_imports_are_queued_for_a_worker_with_progress(
    admin_client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read in several blocks (progress moves); a small file all the same.
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 200
    rows = rows_for(2400)
    queued: list[tuple[str, tuple[Any, ...]]] = []
    from django_q import tasks as q_tasks

    enqueue = q_tasks.async_task

    def spy_enqueue(func: str, *args: Any, **kwargs: Any) -> Any:
        queued.append((func, args))
        return enqueue(func, *args, **kwargs)

    monkeypatch.setattr(q_tasks, "async_task", spy_enqueue)

    with TestCase.captureOnCommitCallbacks() as jobs:
        response = post_files(admin_client, focus_upload("aws_2025-01.csv", rows), jobs=False)
    # The request returned with the preview queued, not run.
    upload = Upload.objects.get()
    assert upload.file_size < 1024**2
    status_url = f"{batch_url(upload)}status/"
    assert response.status_code == 302
    assert upload.status == S.PREVIEWING
    assert upload.job_started_at is None
    assert upload.preview == {}
    assert notes(response) == []
    assert len(jobs) == 1
    assert queued == []
    page = admin_client.get(batch_url(upload)).content.decode()
    assert "Preview queued: waiting for a worker" in page
    assert 'data-busy="true"' in page
    assert admin_client.get(status_url).json() == {
        "busy": True,
        "uploads": [
            {
                "id": upload.pk,
                "status": "previewing",
                "running": True,
                "label": "Preview queued: waiting for a worker",
                "percent": None,
                "progress": "",
            }
        ],
    }

    jobs[0]()  # the commit queues the job; django-q2 runs it inline in tests
    assert queued == [("ingest.tasks.preview_upload", (upload.pk,))]
    upload.refresh_from_db()
    assert upload.status == S.PREVIEWED
    assert upload.preview["charges_created"] == 2400
    assert admin_client.get(status_url).json()["busy"] is False

    # While the import runs, the status page reads its progress from the file.
    seen: list[tuple[int | None, str]] = []
    write = ProgressFile.write

    def spy(self: ProgressFile, done: int, total: int) -> None:
        write(self, done, total)
        state = admin_client.get(status_url).json()["uploads"][0]
        assert state["label"] == "Importing…"
        seen.append((state["percent"], state["progress"]))

    monkeypatch.setattr(ProgressFile, "interval", 0)
    monkeypatch.setattr(ProgressFile, "write", spy)
    with TestCase.captureOnCommitCallbacks() as jobs:
        response = act_queued(admin_client, upload, f"import:{upload.pk}")
    html = response.content.decode()
    assert "Import queued: waiting for a worker" in html
    assert notes(response) == []
    assert not Charge.objects.exists()
    assert len(jobs) == 1
    jobs[0]()
    who = ("billing_admin", upload.user_id)
    assert queued[-1] == ("ingest.tasks.import_upload", (upload.pk, *who))

    upload.refresh_from_db()
    assert upload.status == S.IMPORTED
    assert Charge.objects.count() == 2400
    percents = [p for p, _ in seen]
    assert percents[0] == 0
    assert percents[-1] == 100
    assert any(p is not None and 0 < p < 100 for p in percents)
    assert percents == sorted(percents, key=lambda p: -1 if p is None else p)
    total = size_text(upload.file_size)
    assert seen[0][1] == "0 bytes of 1 byte read"  # before the first block: "started"
    assert seen[-1][1] == f"{total} of {total} read"
    partly = [t for _, t in seen if t.endswith(f" of {total} read") and not t.startswith(total)]
    assert partly
    assert staged_files(settings) == []
    assert AuditEvent.objects.get(action="import.create").channel == "job"
    page = admin_client.get(batch_url(upload)).content.decode()
    assert f"/admin/ingest/import/{upload.import_record_id}/change/" in page
    assert 'data-busy="false"' in page


def test_the_progress_of_a_parquet_file_counts_rows(
    admin_client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 200
    frame = pd.read_csv(io.BytesIO(csv_bytes(rows_for(600))), dtype=str, keep_default_na=False)
    data = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data, row_group_size=200)
    parquet = SimpleUploadedFile("aws_2025-01.parquet", data.getvalue())

    post_files(admin_client, parquet, jobs=False)
    upload = Upload.objects.get()
    status_url = f"{batch_url(upload)}status/"
    seen: list[str] = []
    write = ProgressFile.write

    def spy(self: ProgressFile, done: int, total: int) -> None:
        write(self, done, total)
        seen.append(admin_client.get(status_url).json()["uploads"][0]["progress"])

    monkeypatch.setattr(ProgressFile, "interval", 0)
    monkeypatch.setattr(ProgressFile, "write", spy)
    with TestCase.captureOnCommitCallbacks(execute=True):
        uploads.upload_preview(
            upload=upload, source=upload.source, period=upload.period, actor=Actor("x", "admin")
        )
    upload.refresh_from_db()
    assert upload.status == S.PREVIEWED
    assert upload.preview["rows_read"] == 600
    assert "200 of 600 rows read" in seen
    assert seen[-1] == "600 of 600 rows read"


def test_the_page_says_when_a_job_is_slow_stalled_or_never_taken(
    admin_client: Client, settings: Any
) -> None:
    import time
    from datetime import timedelta

    from django.utils import timezone

    post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(2)), jobs=False)
    upload = Upload.objects.get()
    status_url = f"{batch_url(upload)}status/"

    def state() -> dict[str, Any]:
        return dict(admin_client.get(status_url).json()["uploads"][0])

    # Queued for over a minute: is a worker running at all?
    Upload.objects.filter(pk=upload.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert state()["label"] == (
        "Preview queued: no worker has taken it yet (is openchargeback qcluster running?)"
    )

    # Claimed, half-way, then quiet for two minutes: the progress says so.
    now = timezone.now()
    Upload.objects.filter(pk=upload.pk).update(job_started_at=now, updated_at=now)
    path = selectors.staged_path(upload)
    assert path is not None
    progress = ProgressFile(path, "preview")
    progress.write(500, 1000)
    data = json.loads(progress.path.read_text())
    progress.path.write_text(json.dumps({**data, "at": time.time() - 150}))
    current = state()
    assert (current["label"], current["percent"]) == ("Previewing…", 50)
    assert current["progress"] == "500 bytes of 1000 bytes read; no progress for 2 min"
    page = admin_client.get(batch_url(upload)).content.decode()
    assert "500 bytes of 1000 bytes read; no progress for 2 min" in page

    # Claimed longer ago than any job may run: its worker died.
    before = now - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 1)
    Upload.objects.filter(pk=upload.pk).update(job_started_at=before)
    current = state()
    assert current["label"] == "Preview stalled (its worker stopped): preview again"
    assert (current["running"], current["progress"]) == (False, "")


def test_a_worker_process_imports_a_large_file_without_a_helper_process(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """django-q2 workers are daemonic: multiprocessing forbids them children,
    so the parallel parse of a large file must not be tried there."""
    import multiprocessing

    monkeypatch.setattr("ingest.focus.importer.PARALLEL_MIN_BYTES", 0)
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)  # type: ignore[attr-defined]
    assert multiprocessing.current_process().daemon
    post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(5)))
    upload = Upload.objects.get()
    assert (upload.status, upload.error) == (S.PREVIEWED, "")
    act(admin_client, upload, f"import:{upload.pk}")
    upload.refresh_from_db()
    assert (upload.status, upload.error) == (S.IMPORTED, "")
    assert Charge.objects.count() == 5


def test_a_job_runs_once_and_ignores_a_discarded_file(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    from ingest import tasks

    post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(2)))
    upload = Upload.objects.get()
    act(admin_client, upload, f"import:{upload.pk}")
    upload.refresh_from_db()
    assert upload.status == S.IMPORTED
    # At-least-once delivery: a second run finds the file taken and does nothing.
    tasks.import_upload(upload.pk, "someone")
    tasks.preview_upload(upload.pk)
    upload.refresh_from_db()
    assert upload.status == S.IMPORTED
    assert Import.objects.count() == 1

    with django_capture_on_commit_callbacks() as queued:
        post_files(admin_client, focus_upload("gcp_2025-01.csv", rows_for(2)), jobs=False)
    later = Upload.objects.get(file_name="gcp_2025-01.csv")
    act(admin_client, later, f"discard:{later.pk}")
    for callback in queued:
        callback()
    later.refresh_from_db()
    assert later.status == S.DISCARDED
    assert later.preview == {}


# --- refusals: size, type, empty, bad content ----------------------------------------------------


def test_an_upload_over_the_request_limit_is_refused_before_reading_it(
    admin_client: Client, settings: Any
) -> None:
    settings.OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES = 2000
    response = post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(20)))
    assert response.status_code == 413
    html = response.content.decode()
    assert "is larger than the limit of 2.0 KB for all files together" in html
    assert "(OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES); nothing was stored." in html
    assert not Upload.objects.exists()
    assert staged_files(settings) == []


def test_a_file_over_the_file_limit_is_refused_alone(admin_client: Client, settings: Any) -> None:
    small = focus_upload("aws_2025-01.csv", rows_for(1))
    big = focus_upload("azure_2025-01.csv", rows_for(40))
    settings.OPENCHARGEBACK_UPLOAD_MAX_BYTES = len(small.read()) + 10
    small.seek(0)

    response = post_files(admin_client, small, big)

    limit = size_text(settings.OPENCHARGEBACK_UPLOAD_MAX_BYTES)
    assert notes(response) == [
        f"azure_2025-01.csv: larger than the upload limit of {limit} "
        "(OPENCHARGEBACK_UPLOAD_MAX_BYTES); nothing was stored"
    ]
    assert [u.file_name for u in Upload.objects.all()] == ["aws_2025-01.csv"]
    assert len(staged_files(settings)) == 1  # the big file left nothing behind


def test_other_file_types_and_empty_files_are_refused_with_reasons(
    admin_client: Client, settings: Any
) -> None:
    response = post_files(
        admin_client,
        SimpleUploadedFile("notes.txt", b"hello"),
        SimpleUploadedFile("aws_2025-01.csv", b""),
    )
    assert response.status_code == 302
    assert response["Location"] == UPLOAD
    assert notes(response) == [
        "notes.txt: not a FOCUS file type; upload .csv, .csv.gz or .parquet files",
        "aws_2025-01.csv: the file is empty; nothing was stored",
    ]
    assert not Upload.objects.exists()
    assert staged_files(settings) == []

    nothing = admin_client.post(UPLOAD, {"source": ""})
    assert nothing.status_code == 400
    assert "Choose at least one file." in nothing.content.decode()

    wrong = post_files(admin_client, focus_upload("aws_2025-01.csv", rows_for(1)), period="2025-13")
    assert wrong.status_code == 400
    assert wrong.context["form"].errors == {
        "period": ["period '2025-13' is not a month in the form YYYY-MM"]
    }
    assert not Upload.objects.exists()
    assert staged_files(settings) == []


def test_a_bad_file_shows_the_line_and_writes_nothing(admin_client: Client) -> None:
    lines = focus_lines(rows_for(3))
    lines[3] = replace_field(lines[3], 6, "12.5O")  # BilledCost of the third row
    before = (AuditEvent.objects.count(), BillingPeriod.objects.count())
    response = post_files(
        admin_client,
        SimpleUploadedFile("aws_2025-01.csv", join_lines(lines).encode()),
        focus_upload("gcp_2025-01.csv", rows_for(1)),
    )
    bad = Upload.objects.get(file_name="aws_2025-01.csv")
    assert bad.status == S.FAILED
    assert bad.error.startswith("aws_2025-01.csv, line 4, column 7 (BilledCost)")
    assert notes(response) == []
    assert Upload.objects.get(file_name="gcp_2025-01.csv").status == S.PREVIEWED

    page = admin_client.get(batch_url(bad)).content.decode()
    assert "aws_2025-01.csv, line 4, column 7 (BilledCost)" in page
    assert f'value="import:{bad.pk}"' not in page
    assert "Import all previewed (1)" in page

    done = act(admin_client, bad, f"import:{bad.pk}")
    assert notes(done) == ["aws_2025-01.csv: preview it (successfully) before importing"]
    assert not Charge.objects.exists()
    assert not Import.objects.exists()
    assert (AuditEvent.objects.count(), BillingPeriod.objects.count()) == before


def test_a_closed_period_is_refused_at_preview(admin_client: Client, month: str) -> None:
    post_files(admin_client, focus_upload("azure_2025-01.csv", rows_for(1)))
    upload = Upload.objects.get()
    assert upload.status == S.FAILED
    assert "period 2025-01 is closed; reopen it first" in upload.error


# --- who may import ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [VIEWER, REVIEWER])
def test_only_importers_may_upload(defaults: None, role: str, settings: Any) -> None:
    importer = role_client(BILLING_ADMIN)
    post_files(importer, focus_upload("aws_2025-01.csv", rows_for(1)))
    upload = Upload.objects.get()
    assert "Upload files…" in importer.get("/admin/ingest/import/").content.decode()

    client = role_client(role)
    changelist = client.get("/admin/ingest/import/")
    assert changelist.status_code == 200
    assert UPLOAD not in changelist.content.decode()
    assert client.get(UPLOAD).status_code == 403
    refused = post_files(client, focus_upload("gcp_2025-01.csv", rows_for(1)))
    assert refused.status_code == 403
    assert client.get(batch_url(upload)).status_code == 403
    assert client.get(f"{batch_url(upload)}status/").status_code == 403
    forbidden = client.post(batch_url(upload), {"action": f"import:{upload.pk}"})
    assert forbidden.status_code == 403
    assert Upload.objects.count() == 1
    assert len(staged_files(settings)) == 1
    assert not Charge.objects.exists()

    anonymous = Client().get(UPLOAD)
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_upload_without_a_csrf_token_is_refused_and_leaves_nothing(
    defaults: None, settings: Any
) -> None:
    from tests.conftest import user_in

    client = Client(enforce_csrf_checks=True)
    client.force_login(user_in(BILLING_ADMIN))
    response = post_files(client, focus_upload("aws_2025-01.csv", rows_for(1)))
    assert response.status_code == 403
    assert not Upload.objects.exists()
    assert staged_files(settings) == []


def test_the_upload_page_has_a_labelled_drop_zone(admin_client: Client) -> None:
    page = admin_client.get(UPLOAD)
    html = page.content.decode()
    assert page.status_code == 200
    assert '<label for="ocb-files"' in html
    assert 'type="file" name="files" id="ocb-files" multiple' in html
    assert 'enctype="multipart/form-data"' in html
    assert "ingest/upload.js" in html
    assert "Up to 1.0" in html  # the limits are stated
