"""Plain-word explanations for the charge page: why a charge is flagged and
what fixes it, and what each audit event about it did. Pure: no ORM, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from billing import flags
from billing.rules import RuleSet, map_tags


@dataclass(frozen=True)
class Explanation:
    reason: str
    label: str
    text: str  # what is wrong, naming the offending value
    fix: str  # what would fix it


@dataclass(frozen=True)
class ChargeFacts:
    """The values of one charge the explanations name."""

    reasons: list[str]
    pi_email: str = ""  # the charge's PI in the registry ("" when none)
    project_id: str = ""
    project_owner_email: str = ""
    fund_org: str = ""
    tags: Any = None
    details: Mapping[str, Any] | None = None
    period: str = ""
    currency: str = ""
    billed: str = ""  # formatted
    large_limit: str = ""  # formatted threshold


def _quote(value: str) -> str:
    return f"“{value}”"


def explain_flags(facts: ChargeFacts, ruleset: RuleSet) -> list[Explanation]:
    """One sentence per flag reason of a charge, with the value at fault and the fix."""
    details = dict(facts.details or {})
    tags = facts.tags if isinstance(facts.tags, dict) else {}
    tagged = map_tags(json.dumps(tags), ruleset).values if tags else {}
    patterns = [p.pattern for p in ruleset.fund_org_patterns]
    keys = {field: ", ".join(ruleset.mapping.get(field, ())) or "none" for field in ruleset.mapping}
    out: list[Explanation] = []

    def add(reason: str, text: str, fix: str) -> None:
        out.append(Explanation(reason, flags.LABEL.get(reason, reason), text, fix))

    for reason in facts.reasons:
        if reason == "missing_pi":
            add(
                reason,
                "No PI: the tags name no PI email "
                f"(tag keys looked for: {keys.get('pi_email', 'none')}).",
                "Fix attribution: pick the PI who pays for this resource.",
            )
        elif reason == "invalid_pi_email":
            raw = tagged.get("pi_email") or facts.pi_email
            add(
                reason,
                f"PI email {_quote(raw)} is not an address."
                if raw
                else "The PI email is not an address.",
                "Fix attribution: pick the PI from the registry (or correct the tag at source).",
            )
        elif reason == "missing_project":
            add(
                reason,
                "No project: the tags name no project "
                f"(tag keys looked for: {keys.get('project_id', 'none')}).",
                "Fix attribution: pick the project this usage belongs to.",
            )
        elif reason == "project_pi_mismatch":
            owner = facts.project_owner_email or str(
                (details.get(reason) or {}).get("project_pi", "")
            )
            add(
                reason,
                f"Project {_quote(facts.project_id)} belongs to PI {owner}, but the charge names "
                f"PI {facts.pi_email}.",
                "Fix attribution: pick the right PI or the right project.",
            )
        elif reason == "missing_fund_org":
            add(
                reason,
                "No fund/org: the tags name none and the project has no default fund/org.",
                "Fix attribution: enter the fund/org to charge.",
            )
        elif reason == "invalid_fund_org":
            rule = " or ".join(_quote(p) for p in patterns) or "the fund/org patterns"
            add(
                reason,
                f"Fund/org {_quote(facts.fund_org)} does not match the pattern {rule}.",
                "Fix attribution: enter a fund/org that matches (or correct the pattern in "
                "Settings if the fund/org is right).",
            )
        elif reason == "unmapped_account":
            account = str(details.get(reason, "")) or "this account"
            add(
                reason,
                f"{account} has no account mapping, so nobody is billed for it.",
                "Add an account mapping for it, or fix attribution of this charge.",
            )
        elif reason == "invalid_tags":
            raw = str(details.get(reason, ""))
            add(
                reason,
                f"The tags are not a JSON object: {_quote(raw[:120])}."
                if raw
                else "The tags are not a JSON object.",
                "Fix attribution: set the PI, project and fund/org by hand.",
            )
        elif reason == "pattern_match":
            names = ", ".join(str(n) for n in details.get(reason, [])) or "a review pattern"
            add(
                reason,
                f"The service or resource matches the review pattern {names}.",
                "Check the charge: approve it if it is right, reject it if not.",
            )
        elif reason == "period_mismatch":
            info = details.get(reason) or {}
            add(
                reason,
                f"The line is for {info.get('found', facts.period)}, but the file was imported "
                f"for {info.get('expected', 'another month')}.",
                "Approve it if the late line belongs here, reject it otherwise.",
            )
        elif reason == "currency_mismatch":
            code = str(details.get(reason, facts.currency))
            add(
                reason,
                f"Billed in {code}, not in {ruleset.currency}.",
                f"Record the {code} exchange rate for the month; the charge is then converted.",
            )
        elif reason == "large_charge":
            limit = f" (the threshold is {facts.large_limit})" if facts.large_limit else ""
            add(
                reason,
                f"The billed amount {facts.billed} is large{limit}.",
                "Check it with the PI or the source: approve if it is right.",
            )
        else:
            add(reason, flags.LABEL.get(reason, reason) + ".", "Check the charge.")
    return out


_ACTIONS = {
    "charge.approve": "Approved",
    "charge.reject": "Rejected",
    "charge.reset": "Reset to pending review",
    "charge.fix_attribution": "Attribution fixed",
    "charge.reapply_rules": "Flag rules re-applied",
    "charge.convert": "Converted to the home currency",
}
_FIELDS = {"pi": "PI", "project": "project", "fund_org": "fund/org"}


def _reasons_text(value: Any) -> str:
    if not value:
        return "no flag"
    return ", ".join(flags.LABEL.get(str(r), str(r)) for r in value)


def describe_event(
    action: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    state_label: Callable[[str], str] = lambda s: s,
) -> str:
    """'Attribution fixed: PI none → ada@example.edu; flags Missing PI → no flag.'"""
    words = _ACTIONS.get(action, action.replace("charge.", "").replace("_", " ").capitalize())
    before, after = dict(before or {}), dict(after or {})
    changes = []
    for key, name in _FIELDS.items():
        if key in after and before.get(key) != after.get(key):
            changes.append(f"{name} {before.get(key) or 'none'} → {after.get(key) or 'none'}")
    if "flags" in after and before.get("flags") != after.get("flags"):
        changes.append(
            f"flags {_reasons_text(before.get('flags'))} → {_reasons_text(after.get('flags'))}"
        )
    if (
        "review_state" in after
        and before.get("review_state") != after.get("review_state")
        and action not in {"charge.approve", "charge.reject", "charge.reset"}
    ):
        changes.append(
            f"now {state_label(str(after['review_state']))}" if after.get("review_state") else ""
        )
    changes = [c for c in changes if c]
    return f"{words}: {'; '.join(changes)}." if changes else f"{words}."
