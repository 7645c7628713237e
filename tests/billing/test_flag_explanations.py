"""The charge page's words for every flag reason: the value at fault, the
fallback when the value is unknown, and the fix, exactly."""

from __future__ import annotations

from billing import flags
from billing.explain import ChargeFacts, Explanation, explain_flags
from billing.patterns import compile_user_pattern
from billing.rules import RuleSet

EVERY_REASON = [*flags.REASONS, "not_a_reason"]
RULES = RuleSet(
    mapping={
        "pi_email": ("pi_email", "owner"),
        "project_id": ("project_id",),
        "fund_org": ("fund_org",),
    },
    fund_org_patterns=(compile_user_pattern(r"[A-Z]{3}-\d{4}"), compile_user_pattern(r"GR-\d+")),
    currency="CAD",
)
FIXES = {
    "missing_pi": "Fix attribution: pick the PI who pays for this resource.",
    "invalid_pi_email": (
        "Fix attribution: pick the PI from the registry (or correct the tag at source)."
    ),
    "missing_project": "Fix attribution: pick the project this usage belongs to.",
    "missing_fund_org": "Fix attribution: enter the fund/org to charge.",
    "invalid_fund_org": (
        "Fix attribution: enter a fund/org that matches (or correct the pattern in Settings "
        "if the fund/org is right)."
    ),
    "pattern_match": "Check the charge: approve it if it is right, reject it if not.",
    "period_mismatch": "Approve it if the late line belongs here, reject it otherwise.",
    "currency_mismatch": (
        "Record the EUR exchange rate for the month; the charge is then converted."
    ),
    "large_charge": "Check it with the PI or the source: approve if it is right.",
    "project_pi_mismatch": "Fix attribution: pick the right PI or the right project.",
    "invalid_tags": "Fix attribution: set the PI, project and fund/org by hand.",
    "unmapped_account": "Add an account mapping for it, or fix attribution of this charge.",
    "not_a_reason": "Check the charge.",
}


def test_every_reason_names_the_value_at_fault_and_the_fix() -> None:
    said = explain_flags(
        ChargeFacts(
            reasons=EVERY_REASON,
            pi_email="bob@example.edu",
            project_id="proj-a",
            project_owner_email="ada@example.edu",
            fund_org="TBD",
            tags={"owner": "yuki@"},
            details={
                "project_pi_mismatch": {"project_pi": "other@example.edu"},
                "unmapped_account": "AWS account 1234",
                "invalid_tags": "{" + "x" * 200,
                "pattern_match": ["gpu", "egress"],
                "period_mismatch": {"expected": "2025-02", "found": "2025-01"},
                "currency_mismatch": "EUR",
            },
            period="2025-03",
            currency="GBP",
            billed="$9,000.00",
            large_limit="$5,000.00",
        ),
        RULES,
    )
    assert [e.reason for e in said] == EVERY_REASON  # one each, in the charge's order
    assert [e.label for e in said] == [flags.LABEL.get(r, r) for r in EVERY_REASON]
    assert {e.reason: e.fix for e in said} == FIXES
    assert {e.reason: e.text for e in said} == {
        "missing_pi": "No PI: the tags name no PI email (tag keys looked for: pi_email, owner).",
        # The tag's value, found through the mapping's second key, before the registry's.
        "invalid_pi_email": "PI email “yuki@” is not an address.",
        "missing_project": (
            "No project: the tags name no project (tag keys looked for: project_id)."
        ),
        "missing_fund_org": (
            "No fund/org: the tags name none and the project has no default fund/org."
        ),
        "invalid_fund_org": (
            "Fund/org “TBD” does not match the pattern “[A-Z]{3}-\\d{4}” or “GR-\\d+”."
        ),
        "pattern_match": "The service or resource matches the review pattern gpu, egress.",
        "period_mismatch": "The line is for 2025-01, but the file was imported for 2025-02.",
        "currency_mismatch": "Billed in EUR, not in CAD.",
        "large_charge": "The billed amount $9,000.00 is large (the threshold is $5,000.00).",
        # The registry's owner wins over the one recorded at import.
        "project_pi_mismatch": (
            "Project “proj-a” belongs to PI ada@example.edu, but the charge names PI "
            "bob@example.edu."
        ),
        "invalid_tags": "The tags are not a JSON object: “{" + "x" * 119 + "”.",
        "unmapped_account": "AWS account 1234 has no account mapping, so nobody is billed for it.",
        "not_a_reason": "not_a_reason.",
    }


def test_every_reason_has_words_when_its_value_is_unknown() -> None:
    said = explain_flags(
        ChargeFacts(
            reasons=EVERY_REASON,
            tags="not an object",
            details={"project_pi_mismatch": {"project_pi": "other@example.edu"}},
            period="2025-03",
            currency="GBP",
        ),
        RuleSet(mapping={}),
    )
    assert [e.reason for e in said] == EVERY_REASON
    assert {e.reason: e.fix for e in said} == {
        **FIXES,
        "currency_mismatch": (
            "Record the GBP exchange rate for the month; the charge is then converted."
        ),
    }
    assert {e.reason: e.text for e in said} == {
        "missing_pi": "No PI: the tags name no PI email (tag keys looked for: none).",
        "invalid_pi_email": "The PI email is not an address.",
        "missing_project": "No project: the tags name no project (tag keys looked for: none).",
        "missing_fund_org": (
            "No fund/org: the tags name none and the project has no default fund/org."
        ),
        "invalid_fund_org": "Fund/org “” does not match the pattern the fund/org patterns.",
        "pattern_match": "The service or resource matches the review pattern a review pattern.",
        "period_mismatch": "The line is for 2025-03, but the file was imported for another month.",
        "currency_mismatch": "Billed in GBP, not in USD.",
        "large_charge": "The billed amount  is large.",
        # No owner in the registry: the one recorded at import.
        "project_pi_mismatch": (
            "Project “” belongs to PI other@example.edu, but the charge names PI ."
        ),
        "invalid_tags": "The tags are not a JSON object.",
        "unmapped_account": "this account has no account mapping, so nobody is billed for it.",
        "not_a_reason": "not_a_reason.",
    }


def test_the_registry_pi_is_named_when_no_tag_gives_an_email() -> None:
    (said,) = explain_flags(
        ChargeFacts(reasons=["invalid_pi_email"], pi_email="bob@"), RuleSet(mapping={})
    )
    assert said == Explanation(
        "invalid_pi_email",
        "Invalid PI email",
        "PI email “bob@” is not an address.",
        FIXES["invalid_pi_email"],
    )
