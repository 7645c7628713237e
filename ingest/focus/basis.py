"""What the import does under a source's cost basis. Pure: no ORM, no I/O.

The basis itself and the words for it are billing's (:mod:`billing.basis`,
imported from there by every module): a source bills either the FOCUS
``BilledCost`` (``billed``) or the ``EffectiveCost`` (``amortised``).

Under the amortised basis two kinds of rows are not the purchaser's to pay
(see docs/decisions/0006-cost-basis.md):

- a **commitment purchase** (``ChargeCategory=Purchase`` with a
  ``CommitmentDiscountId``): its EffectiveCost is 0 because its cost reaches
  PIs through the usage rows it covers;
- **unused commitment** (``CommitmentDiscountStatus=Unused``): the share of
  the commitment nobody used.

Both go to the source's central commitment project (or are excluded), by the
source's ``commitment_handling``.

The converters' file names mark a source as priced by the site's own rate
card (:func:`is_conversion`, :mod:`ingest.usage.ratecard`).
"""

from __future__ import annotations

import re

__all__ = [
    "EXCLUDE_NOTES",
    "PURCHASE",
    "UNUSED",
    "amortised",
    "commitment_kind",
    "conversion_name",
    "is_conversion",
]

PURCHASE = "purchase"
UNUSED = "unused"

# Why an excluded commitment charge was rejected (stored as its review note).
EXCLUDE_NOTES = {
    PURCHASE: "commitment purchase under the amortised cost basis: its cost reaches PIs "
    "through the usage it covers (source set to exclude commitment charges)",
    UNUSED: "unused commitment under the amortised cost basis: excluded by the source's "
    "commitment handling",
}

# The file names the Slurm and storage converters import their FOCUS rows under
# (ingest.usage.converters.conversion_import): the mark of a rate-card source.
_CONVERSION_NAME = re.compile(r"^(slurm|storage)-usage-[0-9]{4}-[0-9]{2}\.csv$")


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


def is_conversion(file_name: str) -> bool:
    """Was this import made by the Slurm or storage converter (a rate card)?"""
    return _CONVERSION_NAME.match(file_name) is not None


def conversion_name(kind: str, period: str) -> str:
    """The file name a converter's month is imported under."""
    return f"{kind}-usage-{period}.csv"
