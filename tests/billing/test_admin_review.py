"""The review queue in the admin: who may act, and what each action does."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command

from billing import flags
from billing.models import PI, AuditEvent, Charge
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from tests.conftest import role_client
from tests.factories import FOCUS_ROW_OWNER, make_charges, make_pi, make_project

pytestmark = pytest.mark.django_db
URL = "/admin/billing/charge/"


@pytest.fixture
def queue(defaults: None) -> list[int]:
    """Three charges of proj-a with no PI (pending, missing_pi) and a fine one of ada's."""
    make_project("proj-a", pi=make_pi("ada@example.edu"))
    pending = {"pi": None, "review_state": "pending", "flags": flags.to_mask(["missing_pi"])}
    make_charges(
        *[{"resource": f"odd-{i}", "billed": f"{i}.00", **pending} for i in range(1, 4)],
        {"resource": "fine", "billed": "9.00"},
        **FOCUS_ROW_OWNER,
    )
    return list(
        Charge.objects.filter(review_state="pending").order_by("pk").values_list("pk", flat=True)
    )


@pytest.fixture
def checkable(queue: list[int]) -> list[int]:
    """Two large charges: flagged for a look, but who pays is right (approvable)."""
    large = {"review_state": "pending", "flags": flags.to_mask(["large_charge"])}
    make_charges(
        *[{"resource": f"big-{i}", "billed": f"1200{i}.00", **large} for i in range(1, 3)],
        **FOCUS_ROW_OWNER,
    )
    big = Charge.objects.filter(resource_id__startswith="big-").order_by("pk")
    assert all(c.flag_reasons == ["large_charge"] for c in big)
    return list(big.values_list("pk", flat=True))


def test_viewer_sees_the_queue_without_actions(queue: list[int]) -> None:
    viewer = role_client(VIEWER)
    response = viewer.get(URL + "?review_state__exact=pending")
    assert response.status_code == 200
    assert b"Approve selected charges" not in response.content
    denied = viewer.post(
        URL, {"action": "approve", helpers.ACTION_CHECKBOX_NAME: queue, "index": 0}
    )
    assert denied.status_code in {200, 302, 403}
    assert Charge.objects.filter(review_state="pending").count() == 3


@pytest.mark.parametrize("role", [REVIEWER, BILLING_ADMIN])
def test_reviewer_approves_from_the_queue(checkable: list[int], role: str) -> None:
    client = role_client(role)
    assert b"Approve selected charges" in client.get(URL).content
    selection = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: checkable}
    # Two charges: a confirmation first, the action bar's note carried to it.
    page = client.post(URL, {**selection, "index": 0, "note": "checked with the PI"})
    assert page.status_code == 200
    assert b">\nchecked with the PI</textarea>" in page.content
    assert b'value="Approve 2 charges"' in page.content
    assert not Charge.objects.filter(pk__in=checkable, review_state="approved").exists()
    response = client.post(URL, {**selection, "apply": "1", "note": "checked with the PI"})
    assert response.status_code == 302
    approved = Charge.objects.filter(review_state="approved", pk__in=checkable)
    assert approved.count() == 2
    assert {c.review_note for c in approved} == {"checked with the PI"}
    events = AuditEvent.objects.filter(action="charge.approve")
    assert events.count() == 2
    assert {(e.channel, e.reason) for e in events} == {("admin", "checked with the PI")}


def test_reject_goes_through_a_confirmation_page_with_a_note(queue: list[int]) -> None:
    client = role_client(REVIEWER)
    page = client.post(
        URL,
        {"action": "reject", helpers.ACTION_CHECKBOX_NAME: queue, "index": 0, "note": "tests"},
    )
    assert page.status_code == 200
    assert b"Rejected charges leave every total" in page.content
    assert b">\ntests</textarea>" in page.content  # the action bar's note, to confirm
    assert Charge.objects.filter(review_state="rejected").count() == 0

    done = client.post(
        URL,
        {
            "action": "reject",
            helpers.ACTION_CHECKBOX_NAME: queue,
            "apply": "1",
            "note": "test resources, not billable",
        },
    )
    assert done.status_code == 302
    rejected = Charge.objects.filter(review_state="rejected")
    assert rejected.count() == 3
    assert set(rejected.values_list("review_note", flat=True)) == {"test resources, not billable"}


def test_everything_matching_the_filter_is_reviewed_without_a_cap(checkable: list[int]) -> None:
    client = role_client(REVIEWER)
    selection = {
        "action": "approve",
        helpers.ACTION_CHECKBOX_NAME: checkable[:1],
        "select_across": "1",
    }
    page = client.post(URL + "?reason=large_charge", {**selection, "index": 0})
    assert page.status_code == 200  # "all N matching" is confirmed, even from one box
    assert "Will be approved: 2 charges" in page.content.decode()
    response = client.post(URL + "?reason=large_charge", {**selection, "apply": "1"})
    assert response.status_code == 302
    assert response["Location"] == URL + "?reason=large_charge"
    assert Charge.objects.filter(pk__in=checkable, review_state="approved").count() == 2
    assert Charge.objects.get(resource_id="fine").reviewed_by == ""  # not part of the filter


def test_approving_charges_whose_attribution_is_wrong_leaves_them_pending_with_a_link(
    checkable: list[int], queue: list[int]
) -> None:
    client = role_client(REVIEWER)
    selection = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: [*queue[:3], *checkable]}
    page = client.post(URL, {**selection, "index": 0})
    details = page.context["details"]
    assert [html.unescape(re.sub(r"<[^>]+>", "", str(line))) for line in details] == [
        "Will be approved: 2 charges, billed $24,003.00, list $24,003.00.",
        "Stay pending: 3 charges need their attribution fixed (3 Missing PI): fix or reject "
        "them ($6.00 billed). Show them.",
    ]
    assert not AuditEvent.objects.filter(action="charge.approve").exists()
    response = client.post(URL, {**selection, "apply": "1"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0] == "Approved 2 charges."
    assert messages[1].startswith(
        "Left pending: 3 charges need their attribution fixed (3 Missing PI): fix or reject them"
    )
    link = re.search(r'href="([^"]+)"', messages[1])
    assert link is not None
    listed = client.get(html.unescape(link.group(1))).context["cl"].result_list
    assert sorted(c.pk for c in listed) == sorted(queue[:3])
    assert Charge.objects.filter(pk__in=queue[:3], review_state="pending").count() == 3
    assert AuditEvent.objects.filter(action="charge.approve").count() == 2
    # All of them blocked: nothing approved, and said once.
    again = client.post(
        URL, {"action": "approve", helpers.ACTION_CHECKBOX_NAME: queue[:3], "index": 0}, follow=True
    )
    messages = [str(m) for m in again.context["messages"]]
    assert len(messages) == 1
    assert messages[0].startswith("Nothing was approved: 3 charges need")


def test_review_approve_on_the_command_line_says_what_it_left(
    checkable: list[int], queue: list[int], capsys: Any
) -> None:
    call_command("review", "approve", "--period", "2025-01", "--user", "ops")
    out = capsys.readouterr().out.strip()
    assert out == (
        "Approve: 2 charges changed. Left pending: 3 charges need their attribution fixed "
        "(3 Missing PI): fix or reject them (openchargeback review list --period 2025-01 "
        "--reason blocking)."
    )
    listed = Charge.objects.filter(review_state="pending")
    assert sorted(listed.values_list("pk", flat=True)) == sorted(queue[:3])
    with pytest.raises(CommandError) as caught:
        call_command("review", "approve", "--period", "2025-01", "--reason", "blocking")
    assert caught.value.returncode == 1
    assert str(caught.value) == (
        "3 charges need their attribution fixed (3 Missing PI): fix or reject them; "
        "nothing was approved"
    )


def test_reason_filter_lists_only_matching_charges(queue: list[int]) -> None:
    response = role_client(VIEWER).get(URL + "?reason=missing_pi")
    assert response.status_code == 200
    listed = response.context["cl"].result_list
    assert len(listed) == 3
    assert all("missing_pi" in charge.flag_reasons for charge in listed)


def test_fix_attribution_from_the_queue(queue: list[int]) -> None:
    client = role_client(REVIEWER)
    page = client.post(
        URL, {"action": "fix_attribution", helpers.ACTION_CHECKBOX_NAME: queue, "index": 0}
    )
    assert page.status_code == 200
    assert b"Fix attribution" in page.content
    empty = client.post(
        URL,
        {"action": "fix_attribution", helpers.ACTION_CHECKBOX_NAME: queue, "apply": "1"},
    )
    assert b"Fill in at least one" in empty.content
    assert not AuditEvent.objects.filter(action="charge.fix_attribution").exists()
    done = client.post(
        URL,
        {
            "action": "fix_attribution",
            helpers.ACTION_CHECKBOX_NAME: queue,
            "apply": "1",
            "pi": PI.objects.get(email="ada@example.edu").pk,
            "note": "owner confirmed by email",
        },
    )
    assert done.status_code == 302
    assert set(Charge.objects.filter(pk__in=queue).values_list("pi__email", "review_state")) == {
        ("ada@example.edu", "approved")
    }
    assert AuditEvent.objects.filter(action="charge.fix_attribution").count() == 3


def test_viewer_cannot_fix_attribution(queue: list[int]) -> None:
    client = role_client(VIEWER)
    assert b"Fix attribution" not in client.get(URL).content
    client.post(
        URL,
        {
            "action": "fix_attribution",
            helpers.ACTION_CHECKBOX_NAME: queue,
            "apply": "1",
            "pi_email": "ada@example.edu",
        },
    )
    assert not Charge.objects.filter(pk__in=queue, pi__email="ada@example.edu").exists()


def test_approving_all_matching_shows_count_and_amounts_and_cancel_keeps_the_filters(
    checkable: list[int], queue: list[int]
) -> None:
    client = role_client(REVIEWER)
    listing = URL + "?review_state__exact=pending&o=-9"
    selection = {
        "action": "approve",
        helpers.ACTION_CHECKBOX_NAME: checkable[:1],
        "select_across": "1",  # "Select all 5 charges"
    }
    page = client.post(listing, {**selection, "index": 0, "note": "month end"})
    assert page.status_code == 200
    assert page.context["summary"] == (
        "Selected: 5 charges, billed total $24,009.00, list total $24,009.00."
    )
    assert b'value="Approve 2 charges"' in page.content
    assert page.context["cancel_url"] == listing
    assert (
        f'href="{html.escape(listing)}" class="button cancel-link">Cancel' in page.content.decode()
    )
    assert page.context["select_across"] == "1"
    assert not AuditEvent.objects.filter(action="charge.approve").exists()
    assert Charge.objects.filter(review_state="pending").count() == 5

    done = client.post(listing, {**selection, "apply": "1", "note": "month end"}, follow=True)
    assert done.redirect_chain == [(listing, 302)]
    assert Charge.objects.filter(pk__in=checkable, review_state="approved").count() == 2
    assert set(Charge.objects.filter(pk__in=queue).values_list("review_state", flat=True)) == {
        "pending"
    }
    assert {e.reason for e in AuditEvent.objects.filter(action="charge.approve")} == {"month end"}


def test_one_charge_is_approved_at_once_and_cancel_keeps_the_filters(
    checkable: list[int], queue: list[int]
) -> None:
    client = role_client(REVIEWER)
    listing = URL + "?reason=large_charge"
    one = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: checkable[:1], "index": 0}
    assert client.post(listing, one).status_code == 302
    assert Charge.objects.get(pk=checkable[0]).review_state == "approved"

    reject = {"action": "reject", helpers.ACTION_CHECKBOX_NAME: checkable, "index": 0}
    page = client.post(listing, reject)
    assert page.context["summary"] == (
        "Selected: 2 charges, billed total $24,003.00, list total $24,003.00."
    )
    assert page.context["cancel_url"] == listing
    assert b'value="Reject 2 charges"' in page.content
    assert not Charge.objects.filter(review_state="rejected").exists()
    fix = {"action": "fix_attribution", helpers.ACTION_CHECKBOX_NAME: checkable, "index": 0}
    assert client.post(listing, fix).context["cancel_url"] == listing
