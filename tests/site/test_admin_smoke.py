"""The admin pages that exist so far render for a superuser and refuse anonymous users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.audit import Actor
from billing.models import Source
from ingest.focus.services import file_import
from tests.conftest import focus_row

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/",
    "/admin/billing/charge/",
    "/admin/billing/charge/?review_state__exact=pending",
    "/admin/ingest/import/",
    "/admin/billing/billingperiod/",
    "/admin/billing/auditevent/",
    "/admin/billing/project/",
    "/admin/billing/pi/",
    "/admin/billing/source/",
    "/admin/billing/tagmapping/",
    "/admin/billing/flagrule/",
]


@pytest.fixture
def with_charges(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> None:
    rows = [focus_row(resource=f"r-{i}") for i in range(3)] + [focus_row(resource="x", pi="")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)


@pytest.mark.parametrize("url", PAGES)
def test_admin_page_renders_for_a_superuser(with_charges: None, client: Client, url: str) -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.edu", "pw")
    client.force_login(admin)
    response = client.get(url)
    assert response.status_code == 200
    assert b"OpenChargeback" in response.content


@pytest.mark.parametrize("url", PAGES)
def test_admin_page_sends_anonymous_users_to_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_charges_cannot_be_added_in_the_admin(with_charges: None, client: Client) -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.edu", "pw")
    client.force_login(admin)
    assert client.get("/admin/billing/charge/add/").status_code == 403
