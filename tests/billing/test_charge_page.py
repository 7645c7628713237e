"""The reviewer's charge page: who / what / how much, flags in words, buttons by role."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from billing import flags
from billing.audit import Actor
from billing.explain import ChargeFacts, describe_event, explain_flags
from billing.models import AuditEvent, Charge, Source
from billing.patterns import compile_user_pattern
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.rules import RuleSet
from ingest.focus.services import file_import
from tests.conftest import focus_row, role_client
from tests.factories import FOCUS_ROW_OWNER, make_charges, make_pi, make_project

URL = "/admin/billing/charge/{}/change/"
RULES = RuleSet(
    mapping={"pi_email": ("pi_email",), "project_id": ("project_id",), "fund_org": ("fund_org",)},
    fund_org_patterns=(compile_user_pattern(r"[A-Z]{3}-[A-Z]{3}-\d{4}"),),
)


def test_each_attribution_reason_names_the_value_and_the_fix() -> None:
    said = explain_flags(
        ChargeFacts(
            reasons=["invalid_pi_email", "invalid_fund_org", "project_pi_mismatch"],
            pi_email="bob@example.edu",
            project_id="proj-a",
            project_owner_email="ada@example.edu",
            fund_org="TBD",
            tags={"pi_email": "yuki@", "fund_org": "TBD"},
        ),
        RULES,
    )
    text = {e.reason: e.text for e in said}
    assert text["invalid_pi_email"] == "PI email “yuki@” is not an address."
    assert text["invalid_fund_org"] == (
        "Fund/org “TBD” does not match the pattern “[A-Z]{3}-[A-Z]{3}-\\d{4}”."
    )
    assert text["project_pi_mismatch"] == (
        "Project “proj-a” belongs to PI ada@example.edu, but the charge names PI bob@example.edu."
    )
    assert all(e.fix for e in said)


def test_line_reasons_in_words() -> None:
    said = explain_flags(
        ChargeFacts(
            reasons=["missing_pi", "currency_mismatch", "period_mismatch", "large_charge"],
            details={
                "currency_mismatch": "EUR",
                "period_mismatch": {"expected": "2025-02", "found": "2025-01"},
            },
            billed="$9,000.00",
            large_limit="$5,000.00",
        ),
        RULES,
    )
    text = [e.text for e in said]
    assert text[0].startswith("No PI: the tags name no PI email (tag keys looked for: pi_email)")
    assert text[1] == "Billed in EUR, not in USD."
    assert text[2] == "The line is for 2025-01, but the file was imported for 2025-02."
    assert text[3] == "The billed amount $9,000.00 is large (the threshold is $5,000.00)."


def test_history_in_words() -> None:
    assert describe_event(
        "charge.fix_attribution",
        {"pi": "", "project": "p", "flags": ["missing_pi"], "review_state": "pending"},
        {"pi": "ada@example.edu", "project": "p", "flags": [], "review_state": "approved"},
    ) == ("Attribution fixed: PI none → ada@example.edu; flags Missing PI → no flag; now approved.")
    assert describe_event("charge.approve", {"review_state": "pending"}, {}) == "Approved."


@pytest.fixture
def flagged(db: None, defaults: None) -> Charge:
    """What an import leaves of a charge tagged with a bad PI email and fund/org for
    ada's proj-a, a fine one, and a large one (but who pays is right)."""
    wrong = ["invalid_pi_email", "invalid_fund_org", "project_pi_mismatch"]
    make_project("proj-a", pi=make_pi("ada@example.edu"))
    make_charges(
        {
            "resource": "bad-email",
            "billed": "1234.50",
            "pi": None,
            "fund_org": "TBD",
            "tags": {"pi_email": "yuki@", "project_id": "proj-a", "fund_org": "TBD"},
            "review_state": "pending",
            "flags": flags.to_mask(wrong),
            "flag_details": {"project_pi_mismatch": {"project_pi": "ada@example.edu"}},
        },
        {"resource": "fine", "billed": "9.00"},
        {
            "resource": "big",
            "billed": "12000.00",
            "review_state": "pending",
            "flags": flags.to_mask(["large_charge"]),
        },
        **FOCUS_ROW_OWNER,
    )
    return Charge.objects.get(resource_id="bad-email")


@pytest.mark.django_db
def test_page_says_who_what_how_much_and_why(flagged: Charge) -> None:
    page = role_client(VIEWER).get(URL.format(flagged.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "PI email “yuki@” is not an address." in html
    assert "Fund/org “TBD” does not match the pattern" in html
    assert "$1,234.50" in html
    assert "exact 1234.50" in html
    assert "Pending review" in html
    assert f"line {flagged.line_number}" in html
    assert f"/admin/ingest/import/{flagged.import_record_id}/change/" in html
    assert "<details" in html
    assert flagged.fingerprint in html
    assert "Bitmask of flag reasons" not in html
    # A viewer sees no button.
    assert 'name="review"' not in html
    assert f"/{flagged.pk}/fix/" not in html


@pytest.mark.django_db
def test_buttons_by_role(flagged: Charge) -> None:
    big = Charge.objects.get(resource_id="big")
    reviewer = role_client(REVIEWER).get(URL.format(big.pk)).content.decode()
    assert 'value="approve"' in reviewer
    assert 'value="reject"' in reviewer
    admin = role_client(BILLING_ADMIN).get(URL.format(big.pk)).content.decode()
    assert f"/{big.pk}/fix/" in admin
    assert 'value="approve"' in admin


@pytest.mark.django_db
def test_approve_and_reject_from_the_page_and_history(flagged: Charge) -> None:
    client = role_client(REVIEWER)
    big = Charge.objects.get(resource_id="big")
    assert big.flag_reasons == ["large_charge"]
    review = f"/admin/billing/charge/{big.pk}/review/"
    assert client.get(review).status_code == 405
    client.post(review, {"review": "reject", "note": ""})
    big.refresh_from_db()
    assert big.review_state == "pending"  # a rejection needs a note
    done = client.post(review, {"review": "approve", "note": "checked with Yuki"})
    assert done.status_code == 302
    assert done["Location"] == URL.format(big.pk)
    big.refresh_from_db()
    assert big.review_state == "approved"
    assert big.review_note == "checked with Yuki"
    assert AuditEvent.objects.filter(action="charge.approve", object_id=str(big.pk)).exists()
    html = client.get(URL.format(big.pk)).content.decode()
    assert "Approved." in html
    assert "“checked with Yuki”" in html
    assert html.index("Approved.") < html.index("imported from")


@pytest.mark.django_db
def test_a_charge_with_a_wrong_attribution_offers_no_approve(flagged: Charge) -> None:
    client = role_client(REVIEWER)
    html = client.get(URL.format(flagged.pk)).content.decode()
    assert 'value="approve"' not in html
    assert 'value="reject"' in html
    assert (
        "Not approvable as it is (Invalid PI email, Invalid fund/org, Project belongs to "
        "another PI)" in html
    )
    assert "fix the attribution or reject it." in html
    # Posted by hand, approve is refused and says why, with a link to the charges.
    done = client.post(
        f"/admin/billing/charge/{flagged.pk}/review/", {"review": "approve"}, follow=True
    )
    flagged.refresh_from_db()
    assert flagged.review_state == "pending"
    messages = [str(m) for m in done.context["messages"]]
    assert len(messages) == 1
    assert messages[0].startswith(
        "Nothing was approved: 1 charge needs its attribution fixed (1 Invalid PI email, "
        "1 Invalid fund/org, 1 Project belongs to another PI): fix or reject it"
    )
    assert "reason=blocking" in messages[0]
    assert not AuditEvent.objects.filter(action="charge.approve").exists()


@pytest.mark.django_db
def test_viewer_cannot_post_a_review(flagged: Charge) -> None:
    response = role_client(VIEWER).post(
        f"/admin/billing/charge/{flagged.pk}/review/", {"review": "approve"}
    )
    assert response.status_code == 403
    flagged.refresh_from_db()
    assert flagged.review_state == "pending"


@pytest.mark.django_db
def test_charge_missing_everything_is_no_500(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [focus_row(resource="nothing", tag_text="[not json", service="")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    charge = Charge.objects.get(resource_id="nothing")
    assert charge.pi is None
    assert charge.project is None
    page = role_client(BILLING_ADMIN).get(URL.format(charge.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "No PI" in html
    assert "No project" in html
    assert "not a JSON object" in html
    assert role_client(VIEWER).get(URL.format(999999)).status_code == 404
