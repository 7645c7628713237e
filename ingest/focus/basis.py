"""Cost basis and what a difference from list price is called. Pure: no ORM, no I/O.

A source bills either the FOCUS ``BilledCost`` (``billed``, the default: what
the provider invoices, month by month) or the ``EffectiveCost``
(``amortised``: commitment purchases spread over the usage they cover, the
FinOps practice for chargeback of reservations and savings plans).

Under the amortised basis two kinds of rows are not the purchaser's to pay
(see docs/decisions/0006-cost-basis.md):

- a **commitment purchase** (``ChargeCategory=Purchase`` with a
  ``CommitmentDiscountId``): its EffectiveCost is 0 because its cost reaches
  PIs through the usage rows it covers;
- **unused commitment** (``CommitmentDiscountStatus=Unused``): the share of
  the commitment nobody used.

Both go to the source's central commitment project (or are excluded), by the
source's ``commitment_handling``.

The difference between list price and billed amount is named by where the
price comes from: the site's own rate card (the Slurm and storage
converters) takes off an *institutional subsidy*; a provider's FOCUS export
shows the provider's *discount* (negotiated rates, commitments).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

BILLED = "billed"
AMORTISED = "amortised"

CENTRAL = "central"
EXCLUDE = "exclude"

PURCHASE = "purchase"
UNUSED = "unused"

_LABELS = {BILLED: "billed cost", AMORTISED: "amortised cost (EffectiveCost)"}

# Why an excluded commitment charge was rejected (stored as its review note).
EXCLUDE_NOTES = {
    PURCHASE: "commitment purchase under the amortised cost basis: its cost reaches PIs "
    "through the usage it covers (source set to exclude commitment charges)",
    UNUSED: "unused commitment under the amortised cost basis: excluded by the source's "
    "commitment handling",
}

# The names of statement and dashboard amounts.
SUBSIDY = "subsidy"
PROVIDER_DISCOUNT = "discount"
DIFFERENCE_LABELS = {SUBSIDY: "Institutional subsidy", PROVIDER_DISCOUNT: "Provider discount"}

# ChargeCategory values shown as such on statements (Usage is the ordinary line).
CATEGORIES = ("Purchase", "Tax", "Credit", "Adjustment")
_CATEGORY = {c.lower(): c for c in CATEGORIES}

# The file names the Slurm and storage converters import their FOCUS rows under
# (ingest.usage.converters.conversion_import): the mark of a rate-card source.
_CONVERSION_NAME = re.compile(r"^(slurm|storage)-usage-\d{4}-\d{2}\.csv$")


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


def commitment_kind(category: str, commitment_id: str, status: str) -> str:
    """'purchase', 'unused' or '' for an ordinary row."""
    if commitment_id and category.lower() == "purchase":
        return PURCHASE
    if status.lower() == "unused":
        return UNUSED
    return ""


def amortised(
    *, category: str, list_nanos: int, billed_nanos: int, effective_nanos: int
) -> tuple[int, int, int | None]:
    """(list, billed, invoiced) of a row under the amortised basis, in nano-units.

    The billed amount is the EffectiveCost; ``invoiced`` keeps the file's
    BilledCost when it differs (None when equal). A ListCost that is absent
    (the importer then has it equal to BilledCost) is taken as the
    EffectiveCost, so covered usage does not show a negative discount. A
    purchase amortised into later usage (EffectiveCost 0) lists 0 as well:
    its list price reaches PIs through the usage rows' own ListCost.
    """
    invoiced = billed_nanos if billed_nanos != effective_nanos else None
    if category.lower() == "purchase" and effective_nanos == 0:
        listed = 0
    elif list_nanos == billed_nanos:
        listed = effective_nanos
    else:
        listed = list_nanos
    return listed, effective_nanos, invoiced


def category_label(category: str) -> str:
    """'Credit', 'Tax', 'Adjustment' or 'Purchase'; '' for usage (and anything else)."""
    return _CATEGORY.get(category.strip().lower(), "")


def is_conversion(file_name: str) -> bool:
    """Was this import made by the Slurm or storage converter (a rate card)?"""
    return _CONVERSION_NAME.match(file_name) is not None


def conversion_name(kind: str, period: str) -> str:
    """The file name a converter's month is imported under."""
    return f"{kind}-usage-{period}.csv"


def difference_kind(*, rate_card: bool) -> str:
    """'subsidy' for a rate-card source, 'discount' for a provider's export."""
    return SUBSIDY if rate_card else PROVIDER_DISCOUNT
