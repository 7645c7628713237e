"""Blockers are caught where they arise: attribution reasons are not
approvable as they are, and closing runs every check that generating
statements, exporting the journal and finalizing would run later."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils.html import escape

from billing import flags
from billing.audit import Actor
from billing.blockers import blocked_reasons, left_blocked, period_blockers
from billing.errors import BillingError
from billing.exchange import exchange_rate_set
from billing.models import BillingPeriod, Charge, FundOrgPattern, Source
from billing.review import charges_reapply_rules, charges_review
from billing.roles import BILLING_ADMIN
from billing.services import period_close, period_finalize, source_set
from ingest.focus.services import file_import
from journals.models import JournalSettings
from journals.services import journal_export
from statements.services import statements_generate
from tests.conftest import focus_row, role_client

pytestmark = pytest.mark.django_db


def test_attribution_reasons_block_approval_and_the_others_ask_for_a_look() -> None:
    assert {
        "missing_pi",
        "invalid_pi_email",
        "missing_project",
        "missing_fund_org",
        "invalid_fund_org",
        "project_pi_mismatch",
        "unmapped_account",
    } == flags.BLOCKING
    for reason in ("pattern_match", "period_mismatch", "large_charge", "currency_mismatch"):
        assert not flags.blocks_approval(reason)
    assert flags.to_mask(sorted(flags.BLOCKING)) == flags.BLOCKING_MASK


@pytest.fixture
def mixed(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> BillingPeriod:
    """2025-01: one charge of each kind of problem, and one fine."""
    rows = [
        focus_row(resource="fine", billed="10.00"),
        focus_row(resource="no-pi", billed="1.00", pi=""),
        focus_row(resource="bad-email", billed="2.00", pi="yuki@"),
        focus_row(resource="bad-fund", billed="3.00", fund_org="TBD"),
        focus_row(resource="eur", billed="4.00", currency="EUR"),
        focus_row(resource="big", billed="12000.00"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    return BillingPeriod.objects.get(period="2025-01")


def test_approval_leaves_attribution_problems_pending_and_counts_them(
    mixed: BillingPeriod, actor: Actor
) -> None:
    charges = Charge.objects.filter(period=mixed)
    stuck = left_blocked(charges)
    assert stuck is not None
    assert stuck.charges == 3
    assert stuck.billed == Decimal("6.00")
    assert stuck.reasons == {
        "missing_pi": 1,
        "invalid_pi_email": 1,
        "invalid_fund_org": 1,
        "project_pi_mismatch": 1,  # proj-a is ada's, not yuki@'s
    }
    assert stuck.text() == (
        "3 charges need their attribution fixed (1 Missing PI, 1 Invalid PI email, "
        "1 Invalid fund/org, 1 Project belongs to another PI): fix or reject them"
    )
    changed = charges_review(charges=charges, action="approve", actor=actor)
    assert changed == 1  # "big"; "fine" was approved at import; EUR waits for a rate
    pending = set(charges.filter(review_state="pending").values_list("resource_id", flat=True))
    assert pending == {"no-pi", "bad-email", "bad-fund", "eur"}
    with pytest.raises(BillingError, match=r"^3 charges need their .*; nothing was approved$"):
        charges_review(
            charges=charges.filter(resource_id__in=["no-pi", "bad-email", "bad-fund"]),
            action="approve",
            actor=actor,
        )


def test_rejecting_and_resetting_are_never_blocked(mixed: BillingPeriod, actor: Actor) -> None:
    bad = Charge.objects.filter(resource_id="no-pi")
    assert charges_review(charges=bad, action="reject", actor=actor, note="not ours") == 1
    assert charges_review(charges=bad, action="reset", actor=actor) == 1


def test_an_approved_charge_that_loses_its_attribution_goes_back_to_the_queue(
    mixed: BillingPeriod, actor: Actor
) -> None:
    fine = Charge.objects.filter(resource_id="fine")
    assert fine.get().review_state == "approved"
    FundOrgPattern.objects.update(pattern=r"[A-Z]{3}-\d{4}")  # NSF-BIO-2024 is no longer valid
    charges_reapply_rules(charges=fine, actor=actor)
    charge = fine.get()
    assert charge.review_state == "pending"
    assert "invalid_fund_org" in charge.flag_reasons
    assert charge.review_note == "attribution problem found on re-evaluation"


def test_closing_lists_every_blocker_at_once_each_with_a_working_link(
    mixed: BillingPeriod, actor: Actor
) -> None:
    # Approved before attribution was enforced (an earlier release), and the
    # accounting not set up: every later step would refuse something.
    Charge.objects.filter(period=mixed).update(review_state="approved")
    source_set(slug="aws", actor=actor, credit_fund_org="")
    JournalSettings.objects.filter(pk=1).update(
        default_account="", fund_org_pattern=r"^(?P<fund>[A-Z]{3})-(?P<orgn>[A-Z]{3}-\d{4})$"
    )
    found = period_blockers(mixed)
    texts = [b.text for b in found]
    assert texts == [
        "3 approved charges without a valid attribution (1 Missing PI, 1 Invalid PI email, "
        "1 Invalid fund/org, 1 Project belongs to another PI)",
        "1 approved charge in another currency without an exchange rate (EUR 2025-01)",
        "source aws has no credit fund/org",
        "fund/orgs the fund/org pattern cannot split: 'TBD'",
        "charges with no account code: set one on the source (aws) or a default account",
    ]
    with pytest.raises(BillingError) as caught:
        period_close(period="2025-01", actor=actor)
    message = str(caught.value)
    assert message.startswith("period 2025-01 cannot be closed: 3 approved charges without")
    assert "(openchargeback sources set aws --credit-fund-org X)" in message
    assert "Close with" not in caught.value.web
    assert "openchargeback" not in caught.value.web
    assert BillingPeriod.objects.get(pk=mixed.pk).status == "open"

    client = role_client(BILLING_ADMIN)
    by_text = {b.text: b for b in found}
    listed = client.get(by_text[texts[0]].url).context["cl"].result_list
    assert {c.resource_id for c in listed} == {"no-pi", "bad-email", "bad-fund"}
    assert client.get(by_text[texts[1]].url).status_code == 200  # add an exchange rate
    source_page = client.get(by_text[texts[2]].url)
    assert source_page.status_code == 200
    assert source_page.context["original"].slug == "aws"
    listed = client.get(by_text[texts[3]].url).context["cl"].result_list
    assert {c.resource_id for c in listed} == {"bad-fund"}
    # The period page says the same before anyone presses Close, with the links.
    page = client.get(f"/admin/billing/billingperiod/{mixed.pk}/change/").content.decode()
    assert "Before this month can be closed:" in page
    for blocker in found:
        assert escape(blocker.text) in page
        assert escape(blocker.url) in page


def test_once_closed_generate_export_and_finalize_are_never_refused_for_data(
    mixed: BillingPeriod, actor: Actor
) -> None:
    charges = Charge.objects.filter(period=mixed)
    charges_review(
        charges=charges.filter(resource_id__in=["no-pi", "bad-email", "bad-fund"]),
        action="reject",
        actor=actor,
        note="not billable",
    )
    with pytest.raises(BillingError, match="2 charges pending review"):
        period_close(period="2025-01", actor=actor)
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.10", actor=actor)
    charges_review(charges=charges, action="approve", actor=actor)
    assert period_blockers(mixed) == []
    period_close(period="2025-01", actor=actor)
    statements_generate(period="2025-01", actor=actor, sync=True)
    export = journal_export(period="2025-01", format="gl", actor=actor)
    assert export.debit_total == export.credit_total == Decimal("12014.40")
    period_finalize(period="2025-01", actor=actor)
    assert BillingPeriod.objects.get(pk=mixed.pk).status == "finalized"


def test_blocked_reasons_count_each_reason_once_per_charge(mixed: BillingPeriod) -> None:
    charges = Charge.objects.filter(period=mixed)
    Charge.objects.filter(resource_id="no-pi").update(
        flags=flags.to_mask(["missing_pi", "missing_project", "large_charge"])
    )
    assert blocked_reasons(charges) == {
        "missing_pi": 1,
        "invalid_pi_email": 1,
        "missing_project": 1,
        "invalid_fund_org": 1,
        "project_pi_mismatch": 1,
    }


def test_one_fund_org_rule_refuses_a_journal_pattern_that_cannot_split_what_review_accepts(
    mixed: BillingPeriod,
) -> None:
    settings = JournalSettings.load()
    settings.fund_org_pattern = r"^(?P<fund>[A-Z]{3})-(?P<orgn>\d+)$"
    with pytest.raises(ValidationError) as caught:
        settings.full_clean()
    assert caught.value.message_dict["fund_org_pattern"] == [
        "this journal fund/org pattern disagrees with the fund/org patterns: review would "
        "accept fund/orgs in use that the journal cannot split ('NSF-BIO-2024'); change one "
        "so that they agree"
    ]
    settings.fund_org_pattern = r"^(?P<fund>[A-Z]+)-(?P<orgn>[A-Z]+-\d+)$"
    settings.full_clean()  # NSF-BIO-2024 splits: fine


def test_one_fund_org_rule_refuses_a_review_pattern_that_lets_through_what_cannot_split(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [focus_row(resource="geo", fund_org="nsf_geo_2025")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    assert Charge.objects.get().flag_reasons == ["invalid_fund_org"]
    widened = FundOrgPattern(pattern=r"[a-z_0-9]+", description="lower case")
    with pytest.raises(ValidationError) as caught:
        widened.full_clean()
    assert "review would accept fund/orgs in use that the journal cannot split " in str(
        caught.value
    )
    assert "'nsf_geo_2025'" in str(caught.value)
    # Disabled, it lets nothing through; and an older disagreement blocks no other edit.
    FundOrgPattern(pattern=r"[a-z_0-9]+", enabled=False).full_clean()
    existing = FundOrgPattern.objects.get()
    existing.description = "Upper case, dash-separated"
    existing.full_clean()


def test_the_admin_shows_the_one_rule_on_the_journal_settings_form(mixed: BillingPeriod) -> None:
    client = role_client(BILLING_ADMIN)
    url = f"/admin/journals/journalsettings/{JournalSettings.load().pk}/change/"
    page = client.get(url)
    data = {**page.context["adminform"].form.initial}
    data["fund_org_pattern"] = r"^(?P<fund>[A-Z]{3})-(?P<orgn>\d+)$"
    response = client.post(url, {k: v for k, v in data.items() if v is not None})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["fund_org_pattern"]
    assert errors[0].startswith("this journal fund/org pattern disagrees")
    assert JournalSettings.load().fund_org_pattern != data["fund_org_pattern"]


def test_the_review_step_says_what_approval_will_leave(mixed: BillingPeriod) -> None:
    from openchargeback.cycle import period_cycle

    review = next(s for s in period_cycle(mixed).steps if s.slug == "review")
    assert review.detail == (
        "5 pending ($12,010.00), 0 rejected; 3 need their attribution fixed, "
        "1 need an exchange rate"
    )


def test_what_stops_finalizing_is_listed_with_links_not_commands(
    mixed: BillingPeriod, actor: Actor
) -> None:
    charges = Charge.objects.filter(period=mixed)
    charges_review(
        charges=charges.exclude(resource_id__in=["fine", "big"]),
        action="reject",
        actor=actor,
        note="not billable",
    )
    charges_review(charges=charges, action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    page = role_client(BILLING_ADMIN).get(f"/admin/billing/billingperiod/{mixed.pk}/change/")
    html = page.content.decode()
    assert "Finalizing is blocked:" in html
    assert (
        "1 PI projects have no current statement for their approved charges — "
        '<a href="/admin/statements/statement/generate/?period=2025-01">generate the '
        "statements</a>"
    ) in html
    assert (
        'no journal export yet — <a href="/admin/journals/journalexport/export/?period=2025-01">'
        "export the journal</a>"
    ) in html
    assert "openchargeback generate" not in html
    assert "openchargeback export-journal" not in html
