"""The cost basis a source bills on and what a difference from list price is
called: the words statements, journals and the dashboard print. Pure: no ORM, no I/O.

A source bills either the FOCUS ``BilledCost`` (``billed``, the default: what
the provider invoices, month by month) or the ``EffectiveCost``
(``amortised``: commitment purchases spread over the usage they cover, the
FinOps practice for chargeback of reservations and savings plans). Under the
amortised basis, commitment purchases and unused commitment go to the
source's central commitment project (``central``) or are excluded
(``exclude``), by the source's ``commitment_handling``; how the import
applies that to rows is ingest's (``ingest.focus.basis``). See
docs/decisions/0006-cost-basis.md.

The difference between list price and billed amount is named by where the
price comes from: the site's own rate card (:mod:`billing.ratecard`) takes off
an *institutional subsidy*; a provider's FOCUS export shows the provider's
*discount* (negotiated rates, commitments).
"""

from __future__ import annotations

from collections.abc import Iterable

BILLED = "billed"
AMORTISED = "amortised"

CENTRAL = "central"
EXCLUDE = "exclude"

_LABELS = {BILLED: "billed cost", AMORTISED: "amortised cost (EffectiveCost)"}

# The names of statement and dashboard amounts.
SUBSIDY = "subsidy"
PROVIDER_DISCOUNT = "discount"
DIFFERENCE_LABELS = {SUBSIDY: "Institutional subsidy", PROVIDER_DISCOUNT: "Provider discount"}

# ChargeCategory values shown as such on statements (Usage is the ordinary line).
CATEGORIES = ("Purchase", "Tax", "Credit", "Adjustment")
_CATEGORY = {c.lower(): c for c in CATEGORIES}


def label(basis: str) -> str:
    """'billed cost' or 'amortised cost (EffectiveCost)'."""
    return _LABELS.get(basis, _LABELS[BILLED])


def describe(bases: Iterable[tuple[str, str]]) -> str:
    """(source, basis) pairs -> 'billed cost' when all agree, else per source:
    'aws amortised cost (EffectiveCost); hpc billed cost'."""
    pairs = sorted(set(bases))
    kinds = {basis for _source, basis in pairs}
    if len(kinds) <= 1:
        return label(next(iter(kinds), BILLED))
    return "; ".join(f"{source} {label(basis)}" for source, basis in pairs)


def category_label(category: str) -> str:
    """'Credit', 'Tax', 'Adjustment' or 'Purchase'; '' for usage (and anything else)."""
    return _CATEGORY.get(category.strip().lower(), "")


def difference_kind(*, rate_card: bool) -> str:
    """'subsidy' for a rate-card source, 'discount' for a provider's export."""
    return SUBSIDY if rate_card else PROVIDER_DISCOUNT
