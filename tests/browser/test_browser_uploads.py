"""The batch page of an upload in a real browser while its previews run on a
worker: each file's progress (bytes read of the file) follows the job by
polling, a queued file says so, and the page reloads itself when the work
is done. Screenshots at 1400x900 and 800 px wide, light and dark."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from billing.audit import Actor
from billing.models import Source
from billing.roles import BILLING_ADMIN, roles_sync
from ingest.models import Upload
from ingest.uploads import jobs, selectors
from ingest.uploads import services as uploads
from ingest.uploads.staging import ProgressFile, upload_root
from tests.browser import axe_problems, login, page, shots, stray_connections_closed
from tests.conftest import focus_row, seed_with_accounting, write_focus

pytestmark = pytest.mark.browser
__all__ = ["page", "shots", "stray_connections_closed"]  # fixtures used by name

S = Upload.Status


@pytest.fixture
def site(live_db: None) -> None:
    seed_with_accounting()
    roles_sync()  # the roles are data: a transactional test starts from an empty database


def _stage(batch: uuid.UUID, name: str, rows: int) -> Upload:
    root = upload_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{uuid.uuid4().hex}.csv"
    write_focus(path, [focus_row(resource=f"vm-{i}", period="2025-03") for i in range(rows)])
    return uploads.upload_stage(
        batch=batch,
        file_name=name,
        stored_file=str(path.relative_to(Path(settings.MEDIA_ROOT))),
        size=path.stat().st_size,
        source=None,
        period="",
        actor=Actor("billing_admin", "admin"),
    )


def test_the_upload_batch_page_follows_its_workers(
    live_server: Any, page: Any, site: None, shots: Callable[[Any, str], Path]
) -> None:
    batch = uuid.uuid4()
    running = _stage(batch, "aws_2025-03.csv", 400)
    queued = _stage(batch, "azure_2025_03.csv", 50)
    # A file's preview under way on a worker, 40% read; another waiting for one.
    now = timezone.now()
    aws, azure = Source.objects.get(slug="aws"), Source.objects.get(slug="azure")
    Upload.objects.filter(pk=running.pk).update(
        source=aws, period="2025-03", status=S.PREVIEWING, job_started_at=now, updated_at=now
    )
    Upload.objects.filter(pk=queued.pk).update(
        source=azure, period="2025-03", status=S.PREVIEWING, job_started_at=None, updated_at=now
    )
    path = selectors.staged_path(running)
    assert path is not None
    progress = ProgressFile(path, "preview")
    size = running.file_size
    progress.write(-(-size * 4 // 10), size)  # 40% of the file

    login(page, live_server.url, BILLING_ADMIN)
    page.goto(f"{live_server.url}/admin/ingest/import/upload/{batch}/")
    card = page.locator("section.ocb-upload", has_text="aws_2025-03.csv")
    other = page.locator("section.ocb-upload", has_text="azure_2025_03.csv")
    assert card.locator(".ocb-state").inner_text() == "Previewing…"
    assert card.locator("progress").get_attribute("value") == "40"
    assert re.fullmatch(r"[\d.]+ KB of [\d.]+ KB read", card.locator(".ocb-read").inner_text())
    assert other.locator(".ocb-state").inner_text() == "Preview queued: waiting for a worker"
    assert other.locator(".ocb-percent").inner_text() == "queued"
    assert page.locator("#ocb-busy").is_visible()

    for width, suffix in ((1400, ""), (800, "-800")):
        page.set_viewport_size({"width": width, "height": 900})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, (width, scroll)
            shots(page, f"import-progress{suffix}{'' if scheme == 'light' else '-dark'}")
            if width == 1400:
                assert axe_problems(page) == [], scheme
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1440, "height": 900})

    # The worker reads on: the page follows without reloading.
    progress.write(-(-size * 8 // 10), size)
    # (a locator wait: a predicate string would need 'unsafe-eval', which the policy refuses)
    from playwright.sync_api import expect

    expect(page.locator(f"#u{running.pk}-progress")).to_have_attribute(
        "value", "80", timeout=10_000
    )
    assert card.locator(".ocb-percent").inner_text() == "80%"

    # Both previews finish (the worker's side of the job): the page reloads
    # itself and shows what importing would do.
    Upload.objects.filter(pk=running.pk).update(job_started_at=None)
    for upload in (running, queued):
        jobs.upload_run_preview(upload.pk)
    assert set(Upload.objects.values_list("status", flat=True)) == {S.PREVIEWED}
    page.wait_for_selector("table.ocb-preview", timeout=10_000)
    assert page.locator("table.ocb-preview").count() == 2
    assert not page.locator("#ocb-busy").count()
    preview = card.locator("table.ocb-preview").inner_text()
    assert re.search(r"Rows read\s+400\b", preview), preview
    page.get_by_role("button", name=re.compile(r"Import all previewed \(2\)")).click()
    page.wait_for_load_state()
    # Queued, run by the (inline, in tests) worker: the cards show the result.
    page.wait_for_selector("p.ocb-result", timeout=10_000)
    assert set(Upload.objects.values_list("status", flat=True)) == {S.IMPORTED}
