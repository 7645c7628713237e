"""The built-in help: a page per step of the cycle, linked from every admin page."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.roles import VIEWER
from openchargeback.admin import HELP_STEPS, help_step_for
from tests.conftest import role_client

pytestmark = pytest.mark.django_db


def test_every_step_has_a_page_with_its_neighbours() -> None:
    client = role_client(VIEWER)
    overview = client.get("/admin/help/")
    assert overview.status_code == 200
    assert "Help: the month-end cycle" in overview.content.decode()
    for index, (slug, title, _prefix) in enumerate(HELP_STEPS):
        page = client.get(f"/admin/help/{slug}/")
        html = page.content.decode()
        assert page.status_code == 200, slug
        assert f"<h2>{title}</h2>" in html, slug
        assert f'<strong aria-current="page">{title}</strong>' in html
        if index + 1 < len(HELP_STEPS):
            assert f"{HELP_STEPS[index + 1][1]} &rarr;" in html
    assert client.get("/admin/help/nope/").status_code == 404


def test_help_needs_a_login() -> None:
    response = Client().get("/admin/help/review/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    ("path", "step"),
    [
        ("/admin/", ""),
        ("/admin/billing/charge/", "review"),
        ("/admin/billing/charge/12/change/", "review"),
        ("/admin/billing/billingperiod/3/change/", "close"),
        ("/admin/ingest/import/", "import"),
        ("/admin/statements/emaillog/", "statements"),
        ("/admin/journals/journalexport/export/", "journal"),
        ("/admin/billing/source/", "settings"),
    ],
)
def test_each_page_links_to_the_help_of_its_step(path: str, step: str) -> None:
    assert help_step_for(path) == step


def test_the_help_link_is_in_the_header() -> None:
    html = role_client(VIEWER).get("/admin/billing/charge/").content.decode()
    assert '<a href="/admin/help/review/" class="ocb-help-link">Help</a>' in html
