"""Flag rules and tag mapping: pure functions over one charge's values.

No ORM and no I/O here; :func:`billing.selectors.load_ruleset` builds a
:class:`RuleSet` from the database, ingest and review call :func:`evaluate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from billing import flags

if TYPE_CHECKING:
    from billing.patterns import UserPattern

MAPPED_FIELDS = (
    "pi_email",
    "project_id",
    "fund_org",
    "cost_center",
    "account_code",
    "reference_1",
    "reference_2",
)

# The tag the Slurm and storage converters put on usage of an account with no
# account mapping; its value names the account ("Slurm account chem-lab").
UNMAPPED_ACCOUNT_TAG = "openchargeback:unmapped_account"
# Defaults of OPENCHARGEBACK_INGEST_MAX_TAGS_DEPTH / _CHARS.
TAGS_MAX_DEPTH = 32
TAGS_MAX_CHARS = 32 * 1024
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;.]+$")


@dataclass(frozen=True)
class PatternSpec:
    name: str
    regex: UserPattern  # billing.patterns.compile_user_pattern
    target: str  # any | service_name | resource_id | resource_name


@dataclass(frozen=True)
class RuleSet:
    """Everything needed to attribute and flag a charge, loaded once per import."""

    mapping: Mapping[str, tuple[str, ...]]
    enabled: frozenset[str] = frozenset(flags.BIT)
    patterns: tuple[PatternSpec, ...] = ()
    fund_org_patterns: tuple[UserPattern, ...] = ()
    large_charge_nanos: int | None = None
    currency: str = "USD"
    # Tags nested deeper or longer than this are invalid (never parsed).
    tags_max_depth: int = TAGS_MAX_DEPTH
    tags_max_chars: int = TAGS_MAX_CHARS
    # Saved patterns RE2 cannot run, skipped (one line each, for the import's summary).
    skipped: tuple[str, ...] = ()
    # An enabled fund/org pattern was skipped: fund/orgs are still checked
    # (against the others), never waved through because none could run.
    fund_org_skipped: bool = False
    _lookup: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # key -> (field, rank); the lowest rank (first candidate) wins.
        for fld, keys in self.mapping.items():
            for rank, key in enumerate(keys):
                self._lookup.setdefault(key, (fld, rank))

    @property
    def checks_fund_org(self) -> bool:
        return bool(self.fund_org_patterns) or self.fund_org_skipped


@dataclass(frozen=True)
class Attribution:
    """Tag-derived fields of a charge; ``tags`` is the parsed object to store."""

    values: dict[str, str]
    tags: dict[str, Any]
    tags_invalid: bool
    raw_invalid: str = ""


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# A JSON string, escapes included (linear: each character matches one way).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


def tags_too_deep(text: str, max_depth: int) -> bool:
    """Objects and arrays nested more than ``max_depth`` deep (outside strings).

    Checked before parsing, so no text makes the parser recurse past it.
    """
    if text.count("{") + text.count("[") <= max_depth:
        return False
    depth = 0
    for char in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def parse_tags(
    raw: str, *, max_depth: int = TAGS_MAX_DEPTH, max_chars: int = TAGS_MAX_CHARS
) -> tuple[dict[str, Any], bool]:
    """Parse a Tags cell. Returns ``(tags, invalid)``.

    Empty, ``NULL`` and ``{}`` give no tags (not invalid); anything that is not
    a JSON object (bad JSON, a list, a string, NaN) is invalid and gives no tags,
    as is text longer than ``max_chars`` or nested deeper than ``max_depth``.
    Numbers keep their exact text (``12.50`` stays ``"12.50"``).
    """
    text = raw.strip()
    if not text or text.upper() == "NULL":
        return {}, False
    if len(text) > max_chars or tags_too_deep(text, max_depth):
        return {}, True
    try:
        value = json.loads(text, parse_float=str, parse_int=str, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return {}, True
    if not isinstance(value, dict):
        return {}, True
    return value, False


def map_tags(raw: str, ruleset: RuleSet) -> Attribution:
    """Apply the tag mapping: first candidate key present (ignoring case/space) wins.

    A tag value that is an object or an array makes the tags invalid and is
    never used (a JSON array is not a project id).
    """
    tags, invalid = parse_tags(
        raw, max_depth=ruleset.tags_max_depth, max_chars=ruleset.tags_max_chars
    )
    values: dict[str, str] = {}
    ranks: dict[str, int] = {}
    lookup = ruleset._lookup
    for key, value in tags.items():
        if isinstance(value, dict | list):
            invalid = True
            continue
        hit = lookup.get(str(key).strip().lower())
        if hit is None:
            continue
        fld, rank = hit
        text = _stringify(value)
        if not text:
            continue
        if fld not in ranks or rank < ranks[fld]:
            values[fld] = text
            ranks[fld] = rank
    if "pi_email" in values:
        values["pi_email"] = values["pi_email"].lower()
    return Attribution(values, tags, invalid, raw.strip()[:500] if invalid else "")


def evaluate(
    ruleset: RuleSet,
    *,
    pi_email: str,
    project_id: str,
    fund_org: str,
    service_name: str = "",
    resource_id: str = "",
    resource_name: str = "",
    period: str = "",
    expected_period: str | None = None,
    currency: str = "",
    billed_nanos: int = 0,
    tags_invalid: bool = False,
    project_owner_email: str | None = None,
    unmapped: str = "",
) -> tuple[int, dict[str, Any]]:
    """Every flag reason that applies to one charge, as ``(bitmask, details)``."""
    mask, details = attribution_flags(
        ruleset,
        pi_email=pi_email,
        project_id=project_id,
        fund_org=fund_org,
        tags_invalid=tags_invalid,
        project_owner_email=project_owner_email,
        unmapped=unmapped,
    )
    row_mask, row_details = line_flags(
        ruleset,
        service_name=service_name,
        resource_id=resource_id,
        resource_name=resource_name,
        period=period,
        expected_period=expected_period,
        currency=currency,
        billed_nanos=billed_nanos,
    )
    if row_details:
        details = {**details, **row_details}
    return mask | row_mask, details


def unmapped_account(tags: Any) -> str:
    """The on-premises account a converter could not map, from a charge's tags ("" if none)."""
    if not isinstance(tags, dict):
        return ""
    return _stringify(tags.get(UNMAPPED_ACCOUNT_TAG))


def attribution_flags(
    ruleset: RuleSet,
    *,
    pi_email: str,
    project_id: str,
    fund_org: str,
    tags_invalid: bool = False,
    project_owner_email: str | None = None,
    unmapped: str = "",
) -> tuple[int, dict[str, Any]]:
    """Reasons that depend on who pays: PI, project, fund/org, tags.

    ``unmapped`` names the Slurm account or storage quota a converter found no
    account mapping for; it stays a reason until the charge has a PI and a
    project (a reviewer's attribution fix resolves it).
    """
    reasons: list[str] = []
    details: dict[str, Any] = {}
    on = ruleset.enabled
    if unmapped and not (pi_email and project_id) and "unmapped_account" in on:
        reasons.append("unmapped_account")
        details["unmapped_account"] = unmapped
    if tags_invalid and "invalid_tags" in on:
        reasons.append("invalid_tags")
    if not pi_email:
        if "missing_pi" in on:
            reasons.append("missing_pi")
    elif not EMAIL_RE.match(pi_email) and "invalid_pi_email" in on:
        reasons.append("invalid_pi_email")
    if not project_id and "missing_project" in on:
        reasons.append("missing_project")
    if not fund_org:
        if "missing_fund_org" in on:
            reasons.append("missing_fund_org")
    elif (
        ruleset.checks_fund_org
        and "invalid_fund_org" in on
        and not any(p.fullmatch(fund_org) for p in ruleset.fund_org_patterns)
    ):
        reasons.append("invalid_fund_org")
    if (
        project_owner_email
        and pi_email
        and project_owner_email != pi_email
        and "project_pi_mismatch" in on
    ):
        reasons.append("project_pi_mismatch")
        details["project_pi_mismatch"] = {"project_pi": project_owner_email}
    return flags.to_mask(reasons), details


def line_flags(
    ruleset: RuleSet,
    *,
    service_name: str = "",
    resource_id: str = "",
    resource_name: str = "",
    period: str = "",
    expected_period: str | None = None,
    currency: str = "",
    billed_nanos: int = 0,
) -> tuple[int, dict[str, Any] | None]:
    """Reasons that depend on the line itself: patterns, period, currency, size."""
    mask = 0
    details: dict[str, Any] | None = None
    on = ruleset.enabled
    if ruleset.patterns and "pattern_match" in on:
        matched = [
            spec.name
            for spec in ruleset.patterns
            if pattern_hits(spec, service_name, resource_id, resource_name)
        ]
        if matched:
            mask |= flags.BIT["pattern_match"]
            details = {"pattern_match": matched}
    if expected_period and period != expected_period and "period_mismatch" in on:
        mask |= flags.BIT["period_mismatch"]
        details = details or {}
        details["period_mismatch"] = {"expected": expected_period, "found": period}
    if currency and currency.upper() != ruleset.currency and "currency_mismatch" in on:
        mask |= flags.BIT["currency_mismatch"]
        details = details or {}
        details["currency_mismatch"] = currency
    if (
        ruleset.large_charge_nanos is not None
        and abs(billed_nanos) > ruleset.large_charge_nanos
        and "large_charge" in on
    ):
        mask |= flags.BIT["large_charge"]
    return mask, details


def pattern_hits(spec: PatternSpec, service: str, rid: str, rname: str) -> bool:
    if spec.target == "service_name":
        return bool(spec.regex.search(service))
    if spec.target == "resource_id":
        return bool(spec.regex.search(rid))
    if spec.target == "resource_name":
        return bool(spec.regex.search(rname))
    return bool(spec.regex.search(service) or spec.regex.search(rid) or spec.regex.search(rname))
