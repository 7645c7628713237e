"""Flag reasons: stable bit values stored in ``Charge.flags``.

The bits are part of the database format: never renumber one, only add.
"""

from __future__ import annotations

from collections.abc import Iterable

# reason -> (bit, label)
REASONS: dict[str, tuple[int, str]] = {
    "missing_pi": (1 << 0, "Missing PI"),
    "invalid_pi_email": (1 << 1, "Invalid PI email"),
    "missing_project": (1 << 2, "Missing project"),
    "missing_fund_org": (1 << 3, "Missing fund/org"),
    "invalid_fund_org": (1 << 4, "Invalid fund/org"),
    "pattern_match": (1 << 5, "Matches a review pattern"),
    "period_mismatch": (1 << 6, "Outside the expected period"),
    "currency_mismatch": (1 << 7, "Other currency"),
    "large_charge": (1 << 8, "Large charge"),
    "project_pi_mismatch": (1 << 9, "Project belongs to another PI"),
    "invalid_tags": (1 << 10, "Tags are not a JSON object"),
    "unmapped_account": (1 << 11, "Unmapped account"),
}

BIT = {reason: bit for reason, (bit, _label) in REASONS.items()}
LABEL = {reason: label for reason, (_bit, label) in REASONS.items()}
CHOICES = [(reason, label) for reason, (_bit, label) in REASONS.items()]


def to_mask(reasons: Iterable[str]) -> int:
    mask = 0
    for reason in reasons:
        mask |= BIT[reason]
    return mask


def from_mask(mask: int) -> list[str]:
    """Reasons in a bitmask, in declaration order."""
    return [reason for reason, bit in BIT.items() if mask & bit]


# Attribution reasons: who pays is unknown or wrong. A charge with one of these
# cannot be approved as it is; it is fixed (which re-evaluates its flags) or
# rejected. The other reasons ask a reviewer to look, and approving says "I did".
BLOCKING: frozenset[str] = frozenset(
    {
        "missing_pi",
        "invalid_pi_email",
        "missing_project",
        "missing_fund_org",
        "invalid_fund_org",
        "project_pi_mismatch",
        "unmapped_account",
    }
)
BLOCKING_MASK = to_mask(sorted(BLOCKING))
# A pseudo reason for filters and links: any attribution reason.
NEEDS_ATTRIBUTION = "blocking"


def blocks_approval(reason: str) -> bool:
    """Whether a charge flagged `reason` must be fixed or rejected, not approved."""
    return reason in BLOCKING
