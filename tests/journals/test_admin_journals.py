"""The journals pages of the admin: preview, export, history, download."""

from __future__ import annotations

import hashlib

import pytest

from billing.audit import Actor
from billing.roles import BILLING_ADMIN, VIEWER
from billing.services import source_set
from journals.models import JournalExport, JournalSettings
from statements.services import statements_generate
from tests.conftest import role_client

pytestmark = pytest.mark.django_db

BASE = "/admin/journals/journalexport/"


def test_problems_are_listed_on_the_form(month: str, actor: Actor) -> None:
    # Accounting settings changed after the month was closed (closing checked them).
    source_set(slug="aws", actor=actor, credit_fund_org="")
    JournalSettings.objects.filter(pk=1).update(default_account="")
    page = role_client(VIEWER).post(
        BASE + "export/", {"period": month, "format": "gl", "preview": "1"}
    )
    errors = " ".join(page.context["form"].non_field_errors())
    assert "source aws has no credit fund/org" in errors
    assert "no account code" in errors
    assert page.context["preview"] is None


def test_preview_then_export_then_download(month: str, actor: Actor) -> None:
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=month, actor=actor, sync=True)
    viewer = role_client(VIEWER)
    page = viewer.post(BASE + "export/", {"period": month, "format": "banner", "preview": "1"})
    preview = page.context["preview"]
    assert preview["lines"] == 2
    assert preview["charged"] == "$94.09"
    assert preview["headers"][:3] == ["Doc Code", "Seq Num", "Rule Class"]
    html = page.content.decode()
    assert "The first 2 of 2 lines" in html
    assert "Export banner" not in html

    admin = role_client(BILLING_ADMIN)
    done = admin.post(
        BASE + "export/",
        {"period": month, "format": "gl", "xlsx": "on", "export": "1"},
        follow=True,
    )
    export = JournalExport.objects.get()
    assert export.xlsx
    assert export.debit_total == export.credit_total
    assert "Download journal-2025-01-gl-" in done.content.decode()
    download = viewer.get(f"{BASE}{export.pk}/download/")
    body = b"".join(download.streaming_content)  # type: ignore[attr-defined]
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert download["Content-Type"].startswith("application/vnd.openxmlformats")
    listing = viewer.get(BASE)
    assert list(listing.context["cl"].result_list) == [export]


def test_the_form_opens_filled_in_and_without_errors(month: str) -> None:
    """The month-end cycle links here with the period only: no "This field is required"."""
    page = role_client(VIEWER).get(BASE + "export/?period=" + month)
    form = page.context["form"]
    assert page.status_code == 200
    assert not form.is_bound
    assert "This field is required" not in page.content.decode()
    assert form["period"].value() == month
    assert page.context["preview"] is None
