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


@dataclass(frozen=True)
class _Context:
    """What the sentences about one charge draw on, worked out once per charge."""

    facts: ChargeFacts
    details: dict[str, Any]  # reason -> what the rules recorded about it
    tagged: dict[str, str]  # field -> the value its tags give
    keys: dict[str, str]  # field -> the tag keys looked for ("none" when none)
    patterns: list[str]  # the fund/org patterns, as written
    currency: str  # the home currency

    @classmethod
    def of(cls, facts: ChargeFacts, ruleset: RuleSet) -> _Context:
        tags = facts.tags if isinstance(facts.tags, dict) else {}
        return cls(
            facts=facts,
            details=dict(facts.details or {}),
            tagged=map_tags(json.dumps(tags), ruleset).values if tags else {},
            keys={f: ", ".join(ruleset.mapping.get(f, ())) or "none" for f in ruleset.mapping},
            patterns=[p.pattern for p in ruleset.fund_org_patterns],
            currency=ruleset.currency,
        )


# What is wrong (naming the value at fault) and what fixes it.
_Words = tuple[str, str]


def _missing_pi(c: _Context) -> _Words:
    return (
        "No PI: the tags name no PI email "
        f"(tag keys looked for: {c.keys.get('pi_email', 'none')}).",
        "Fix attribution: pick the PI who pays for this resource.",
    )


def _invalid_pi_email(c: _Context) -> _Words:
    """The tag's value first, else the PI in the registry."""
    raw = c.tagged.get("pi_email") or c.facts.pi_email
    return (
        f"PI email {_quote(raw)} is not an address." if raw else "The PI email is not an address.",
        "Fix attribution: pick the PI from the registry (or correct the tag at source).",
    )


def _missing_project(c: _Context) -> _Words:
    return (
        "No project: the tags name no project "
        f"(tag keys looked for: {c.keys.get('project_id', 'none')}).",
        "Fix attribution: pick the project this usage belongs to.",
    )


def _project_pi_mismatch(c: _Context) -> _Words:
    """The project's owner in the registry first, else the one recorded at import."""
    recorded = c.details.get("project_pi_mismatch") or {}
    owner = c.facts.project_owner_email or str(recorded.get("project_pi", ""))
    return (
        f"Project {_quote(c.facts.project_id)} belongs to PI {owner}, but the charge names "
        f"PI {c.facts.pi_email}.",
        "Fix attribution: pick the right PI or the right project.",
    )


def _missing_fund_org(_c: _Context) -> _Words:
    return (
        "No fund/org: the tags name none and the project has no default fund/org.",
        "Fix attribution: enter the fund/org to charge.",
    )


def _invalid_fund_org(c: _Context) -> _Words:
    rule = " or ".join(_quote(p) for p in c.patterns) or "the fund/org patterns"
    return (
        f"Fund/org {_quote(c.facts.fund_org)} does not match the pattern {rule}.",
        "Fix attribution: enter a fund/org that matches (or correct the pattern in "
        "Settings if the fund/org is right).",
    )


def _unmapped_account(c: _Context) -> _Words:
    account = str(c.details.get("unmapped_account", "")) or "this account"
    return (
        f"{account} has no account mapping, so nobody is billed for it.",
        "Add an account mapping for it, or fix attribution of this charge.",
    )


def _invalid_tags(c: _Context) -> _Words:
    """The unreadable text, cut to what a sentence can show."""
    raw = str(c.details.get("invalid_tags", ""))
    return (
        f"The tags are not a JSON object: {_quote(raw[:120])}."
        if raw
        else "The tags are not a JSON object.",
        "Fix attribution: set the PI, project and fund/org by hand.",
    )


def _pattern_match(c: _Context) -> _Words:
    names = ", ".join(str(n) for n in c.details.get("pattern_match", [])) or "a review pattern"
    return (
        f"The service or resource matches the review pattern {names}.",
        "Check the charge: approve it if it is right, reject it if not.",
    )


def _period_mismatch(c: _Context) -> _Words:
    info = c.details.get("period_mismatch") or {}
    return (
        f"The line is for {info.get('found', c.facts.period)}, but the file was imported "
        f"for {info.get('expected', 'another month')}.",
        "Approve it if the late line belongs here, reject it otherwise.",
    )


def _currency_mismatch(c: _Context) -> _Words:
    code = str(c.details.get("currency_mismatch", c.facts.currency))
    return (
        f"Billed in {code}, not in {c.currency}.",
        f"Record the {code} exchange rate for the month; the charge is then converted.",
    )


def _large_charge(c: _Context) -> _Words:
    limit = f" (the threshold is {c.facts.large_limit})" if c.facts.large_limit else ""
    return (
        f"The billed amount {c.facts.billed} is large{limit}.",
        "Check it with the PI or the source: approve if it is right.",
    )


# reason -> its sentences; a reason not listed gets its label and "Check the charge."
_EXPLAIN: dict[str, Callable[[_Context], _Words]] = {
    "missing_pi": _missing_pi,
    "invalid_pi_email": _invalid_pi_email,
    "missing_project": _missing_project,
    "project_pi_mismatch": _project_pi_mismatch,
    "missing_fund_org": _missing_fund_org,
    "invalid_fund_org": _invalid_fund_org,
    "unmapped_account": _unmapped_account,
    "invalid_tags": _invalid_tags,
    "pattern_match": _pattern_match,
    "period_mismatch": _period_mismatch,
    "currency_mismatch": _currency_mismatch,
    "large_charge": _large_charge,
}


def explain_flags(facts: ChargeFacts, ruleset: RuleSet) -> list[Explanation]:
    """One sentence per flag reason of a charge, with the value at fault and the fix."""
    context = _Context.of(facts, ruleset)
    out: list[Explanation] = []
    for reason in facts.reasons:
        label = flags.LABEL.get(reason, reason)
        explain = _EXPLAIN.get(reason)
        text, fix = explain(context) if explain else (label + ".", "Check the charge.")
        out.append(Explanation(reason, label, text, fix))
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
