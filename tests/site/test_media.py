"""Stored files (statement PDFs and line items, journal exports, the kept
copies of imported files) are reached only through the admin's views, which
check the login and the role: MEDIA_URL is not served, not even with DEBUG
on, and no page links to it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import clear_url_caches

import openchargeback.urls
from billing.audit import Actor
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import source_set
from ingest.models import Import
from journals.models import JournalExport
from journals.services import journal_export
from statements.models import Statement
from statements.services import statements_generate
from tests.conftest import role_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_urls(settings: Any) -> Iterator[None]:
    """The URLconf as a development server (DEBUG=true) builds it."""
    settings.DEBUG = True
    importlib.reload(openchargeback.urls)
    clear_url_caches()
    yield
    settings.DEBUG = False
    importlib.reload(openchargeback.urls)
    clear_url_caches()


@pytest.fixture
def files(imported_month: str, actor: Actor) -> dict[str, tuple[str, str]]:
    """Each kind of stored file: (its path under MEDIA_ROOT, the view that serves it)."""
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=imported_month, actor=actor, sync=True)
    statement = Statement.objects.exclude(pdf="").order_by("pk").first()
    journal = journal_export(period=imported_month, format="gl", actor=actor)
    kept = Import.objects.order_by("pk").first()
    assert statement is not None
    assert kept is not None
    found = {
        "statement": (statement.pdf.name, f"/admin/statements/statement/{statement.pk}/pdf/"),
        "journal": (
            JournalExport.objects.get(pk=journal.pk).file.name,
            f"/admin/journals/journalexport/{journal.pk}/download/",
        ),
        "import": (kept.stored_file, f"/admin/ingest/import/{kept.pk}/original/"),
    }
    for relative, _view in found.values():
        assert (Path(django_settings.MEDIA_ROOT) / relative).is_file(), relative
    return found


def _no_role() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("staff", password="x", is_staff=True))
    return client


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


KINDS = ["statement", "journal", "import"]


@pytest.mark.parametrize("kind", KINDS)
def test_media_url_serves_nothing_with_debug_on(
    debug_urls: None, files: dict[str, tuple[str, str]], kind: str
) -> None:
    relative, _view = files[kind]
    url = django_settings.MEDIA_URL + relative
    assert Client().get(url).status_code == 404  # anonymous
    assert role_client(BILLING_ADMIN).get(url).status_code == 404  # nor signed in


@pytest.mark.parametrize("kind", KINDS)
def test_the_views_serve_each_file_to_a_role_only(
    debug_urls: None, files: dict[str, tuple[str, str]], kind: str
) -> None:
    relative, view = files[kind]
    on_disk = (Path(django_settings.MEDIA_ROOT) / relative).read_bytes()
    served = role_client(VIEWER).get(view)
    assert served.status_code == 200
    assert _body(served) == on_disk
    assert "attachment" in served["Content-Disposition"] or kind == "statement"

    assert _no_role().get(view).status_code == 403
    anonymous = Client().get(view)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")


def test_the_kept_copy_downloads_under_the_files_own_name(
    files: dict[str, tuple[str, str]],
) -> None:
    relative, view = files["import"]
    response = role_client(VIEWER).get(view)
    name = Import.objects.get(stored_file=relative).file_name
    expected = name + ".zst" if relative.endswith(".zst") else name
    assert f'filename="{expected}"' in response["Content-Disposition"]


def test_a_missing_kept_copy_is_a_404(files: dict[str, tuple[str, str]]) -> None:
    relative, view = files["import"]
    (Path(django_settings.MEDIA_ROOT) / relative).unlink()
    assert role_client(VIEWER).get(view).status_code == 404


def test_a_kept_path_outside_the_media_root_is_never_served(
    files: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not a stored file")
    relative, view = files["import"]
    Import.objects.filter(stored_file=relative).update(stored_file="../secret.txt")
    assert role_client(VIEWER).get(view).status_code == 404


@pytest.mark.parametrize("role", [VIEWER, REVIEWER, BILLING_ADMIN])
def test_no_page_links_to_media_url(
    files: dict[str, tuple[str, str]], role: str, imported_month: str
) -> None:
    """The pages that show a stored file link to its view, never to MEDIA_URL."""
    client = role_client(role)
    statement = Statement.objects.exclude(pdf="").order_by("pk").first()
    journal = JournalExport.objects.get()
    kept = Import.objects.order_by("pk").first()
    assert statement is not None
    assert kept is not None
    pages = {
        f"/admin/statements/statement/{statement.pk}/change/": files["statement"][1],
        "/admin/journals/journalexport/": files["journal"][1],
        f"/admin/journals/journalexport/{journal.pk}/change/": files["journal"][1],
        f"/admin/ingest/import/{kept.pk}/change/": files["import"][1],
        f"/admin/billing/billingperiod/{statement.period_id}/change/": files["journal"][1],
    }
    for url, view in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert django_settings.MEDIA_URL not in text, url
        assert f'href="{view}' in text, (url, view)
