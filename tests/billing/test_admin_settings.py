"""Queue filters typed into a box, and settings whose regexes are tried before saving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from billing.audit import Actor
from billing.models import Charge, FundOrgPattern, PatternRule, Source
from billing.roles import BILLING_ADMIN, VIEWER
from ingest.focus.services import file_import
from tests.conftest import focus_row, role_client

pytestmark = pytest.mark.django_db
QUEUE = "/admin/billing/charge/"


@pytest.fixture
def charges(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> None:
    rows = [
        focus_row(resource="vm-1", pi="ada@example.edu", project="proj-a", fund_org="NSF-BIO-2024"),
        focus_row(resource="vm-2", pi="ada@example.edu", project="proj-b", fund_org="NIH-GEN-2023"),
        focus_row(
            resource="gpu-1", pi="bob@example.edu", project="proj-c", fund_org="NSF-CHE-2022"
        ),
        focus_row(resource="bucket-x", service="Amazon S3", billed="4.50", fund_org="bogus"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)


def _listed(client: Client, query: str) -> set[str]:
    response = client.get(QUEUE + query)
    assert response.status_code == 200
    return {charge.resource_id for charge in response.context["cl"].result_list}


def test_queue_filters_by_pi_project_and_fund_org(charges: None) -> None:
    viewer = role_client(VIEWER)
    assert _listed(viewer, "?pi=bob@example.edu") == {"gpu-1"}
    assert _listed(viewer, "?pi=ADA@example.edu") == {"vm-1", "vm-2", "bucket-x"}
    assert _listed(viewer, "?pi=bob") == {"gpu-1"}  # part of an email or a name
    assert _listed(viewer, "?project=proj-b") == {"vm-2"}
    assert _listed(viewer, "?project=proj") == {"vm-1", "vm-2", "gpu-1", "bucket-x"}
    assert _listed(viewer, "?fund_org=NSF-") == {"vm-1", "gpu-1"}
    # Filters combine, and the filter box keeps the others as hidden fields.
    page = viewer.get(QUEUE + "?pi=ada@example.edu&fund_org=NIH")
    assert {c.resource_id for c in page.context["cl"].result_list} == {"vm-2"}
    assert b'name="fund_org" value="NIH"' in page.content
    assert b'type="hidden" name="pi" value="ada@example.edu"' in page.content


def test_a_bad_regex_is_refused_on_save(defaults: None) -> None:
    admin = role_client(BILLING_ADMIN)
    response = admin.post(
        "/admin/billing/patternrule/add/",
        {"name": "broken", "pattern": "(unclosed", "target": "any", "enabled": "on"},
    )
    assert response.status_code == 200
    assert b"Not a valid regular expression" in response.content
    assert not PatternRule.objects.filter(name="broken").exists()


def test_pattern_preview_counts_matches_in_the_current_period(charges: None) -> None:
    admin = role_client(BILLING_ADMIN)
    form = admin.get("/admin/billing/patternrule/add/")
    assert b"Test against the current period" in form.content
    before = PatternRule.objects.count()
    # The change form's button posts its unsaved fields; the preview itself is a GET.
    posted = admin.post(
        "/admin/billing/patternrule/preview/",
        {"name": "gpus", "pattern": r"^gpu-", "target": "resource_id", "enabled": "on"},
    )
    assert posted.status_code == 303
    assert posted["Location"] == (
        "/admin/billing/patternrule/preview/?pattern=%5Egpu-&target=resource_id"
    )
    response = admin.get(posted["Location"])
    assert response.status_code == 200
    result = response.context["result"]
    assert (result.period, result.scanned, result.matched) == ("2025-01", 4, 1)
    assert [row["resource_id"] for row in result.sample] == ["gpu-1"]
    assert b"$10.00" in response.content
    assert PatternRule.objects.count() == before  # nothing saved


def test_pattern_preview_reports_a_bad_regex(charges: None) -> None:
    response = role_client(VIEWER).get("/admin/billing/patternrule/preview/?pattern=%28oops")
    assert response.status_code == 200
    assert "result" not in response.context
    assert b"Not a valid regular expression" in response.content


def test_fund_org_preview_shows_what_would_be_flagged(charges: None) -> None:
    FundOrgPattern.objects.all().delete()
    other = FundOrgPattern.objects.create(pattern=r"NIH-[A-Z]{3}-\d{4}")
    response = role_client(BILLING_ADMIN).get(
        "/admin/billing/fundorgpattern/preview/", {"pattern": r"NSF-[A-Z]{3}-\d{4}"}
    )
    rows = {row.fund_org: (row.matches, row.valid) for row in response.context["result"].values}
    assert rows == {
        "NSF-BIO-2024": (True, True),
        "NSF-CHE-2022": (True, True),
        "NIH-GEN-2023": (False, True),  # valid through the other pattern
        "bogus": (False, False),
    }
    # Editing the other pattern itself: its saved version does not count.
    response = role_client(VIEWER).get(
        "/admin/billing/fundorgpattern/preview/",
        {"pattern": "NIH-.*", "exclude": str(other.pk), "period": "2025-01"},
    )
    rows = {row.fund_org: row.valid for row in response.context["result"].values}
    assert rows["NSF-BIO-2024"] is False
    assert Charge.objects.count() == 4


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{4294967296}", "a repetition count above 1000 ({4294967296})"),
        ("x{2,5000}", "a repetition count above 1000 ({2,5000})"),
    ],
)
def test_an_absurd_repetition_count_is_refused_not_a_500(
    charges: None, pattern: str, message: str
) -> None:
    from urllib.parse import quote

    response = role_client(VIEWER).get(
        "/admin/billing/patternrule/preview/?pattern=" + quote(pattern)
    )
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["pattern"])
    with pytest.raises(ValidationError, match=r"repetition count above 1000"):
        PatternRule(name="huge", pattern=pattern).full_clean()
    PatternRule(name="fine", pattern=r"^[a-z]{1000}\{9999\}$").full_clean()
