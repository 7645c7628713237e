"""The Content-Security-Policy header, and pages that need nothing it forbids:
no inline script, style element, style attribute, event-handler attribute or
javascript: link on any admin page (tests/browser/test_browser_csp.py checks the same
pages in a browser)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client

from billing.audit import Actor
from journals.services import journal_export
from statements.models import Statement
from statements.services import statements_generate
from tests.site.test_admin_matrix import _jobs

pytestmark = pytest.mark.django_db

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(response: Any) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


class _Inline(HTMLParser):
    """What a strict policy would block, as `tag attribute` strings."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "style":
            self.found.append("<style>")
        if tag == "script" and not a.get("src") and a.get("type") != "application/json":
            self.found.append("<script> without src")
        for name, value in attrs:
            if name == "style":
                self.found.append(f"<{tag} style={value!r}>")
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}=javascript:...>")


def inline(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.found


def test_the_finder_finds() -> None:
    html = (
        '<style>p{}</style><script>x()</script><p style="color: red" onclick="x()">'
        '<a href="javascript:x()">'
        '<script id="data" type="application/json">{}</script><script src="/s.js"></script>'
    )
    assert inline(html) == [
        "<style>",
        "<script> without src",
        "<p style='color: red'>",
        "<p onclick=...>",
        "<a href=javascript:...>",
    ]


def test_every_page_has_the_policy_and_no_inline_code(
    client: Client, month: str, actor: Actor
) -> None:
    _jobs()  # django-q2's records, so their pages have something to show
    statements_generate(period=month, actor=actor, sync=True)
    journal_export(period=month, format="gl", actor=actor)
    root = get_user_model().objects.create_superuser("root", "root@example.edu", "x")
    client.force_login(root)
    statement = Statement.objects.exclude(pdf="").order_by("pk").first()
    assert statement is not None
    urls = [
        "/admin/",
        f"/admin/?period={month}",
        "/admin/ingest/import/upload/",
        "/admin/statements/statement/generate/",
        f"/admin/journals/journalexport/export/?period={month}&format=gl&preview=1",
        "/admin/billing/patternrule/preview/?pattern=vm",
        "/admin/help/review/",
        "/admin/password_change/",
    ]
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        urls += [base, base + "add/"]
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls += [f"{base}{obj.pk}/change/", f"{base}{obj.pk}/history/"]
    problems: dict[str, Any] = {}
    checked = 0
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:
            continue  # an add page of a read-only record: refused, and no page
        checked += 1
        if _policy(response) != POLICY:
            problems[url] = _policy(response)
        if found := inline(response.content.decode()):
            problems[url] = found
    assert problems == {}
    assert checked > 60


def test_the_login_page_too(client: Client) -> None:
    response = client.get("/admin/login/")
    assert _policy(response) == POLICY
    assert inline(response.content.decode()) == []


def test_only_the_statement_pdf_may_be_framed_and_only_by_the_site(
    client: Client, month: str, actor: Actor
) -> None:
    from billing.roles import VIEWER
    from tests.conftest import role_client

    statements_generate(period=month, actor=actor, sync=True)
    statement = Statement.objects.exclude(pdf="").order_by("pk").first()
    assert statement is not None
    viewer = role_client(VIEWER)
    pdf = viewer.get(f"/admin/statements/statement/{statement.pk}/pdf/")
    assert pdf.status_code == 200
    assert _policy(pdf) == {**POLICY, "frame-ancestors": "'self'"}
    assert pdf["X-Frame-Options"] == "SAMEORIGIN"
    page = viewer.get(f"/admin/statements/statement/{statement.pk}/change/")
    assert _policy(page)["frame-ancestors"] == "'none'"
    assert page["X-Frame-Options"] == "DENY"
