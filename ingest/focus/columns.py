"""The FOCUS columns the importer recognises (and the spellings older
exporters write, and those fingerprint version 1 hashed), a file's header
resolved to them, and a cell's text cleaned. Pure; both readers of
ingest.focus.parsers resolve their header here."""

from __future__ import annotations

from typing import Any

from ingest.focus.errors import IngestError

# Canonical FOCUS column -> accepted header spellings (normalised: stripped,
# lowercased). FOCUS 1.0-1.3 names first, then the 1.0-preview and 0.5 names
# some exporters still write; when a file has both, the current name wins and
# the older one is an unrecognised column.
COLUMNS: dict[str, tuple[str, ...]] = {
    "BillingPeriodStart": ("billingperiodstart",),
    "BillingPeriodEnd": ("billingperiodend",),
    "ChargePeriodStart": ("chargeperiodstart",),
    "ChargePeriodEnd": ("chargeperiodend",),
    "ListCost": ("listcost",),
    "ContractedCost": ("contractedcost",),
    "BilledCost": ("billedcost",),
    "EffectiveCost": ("effectivecost", "amortizedcost"),
    "BillingCurrency": ("billingcurrency",),
    "ResourceId": ("resourceid",),
    "ResourceName": ("resourcename",),
    "ServiceName": ("servicename",),
    "ServiceCategory": ("servicecategory",),
    "ChargeCategory": ("chargecategory", "chargetype"),
    "ChargeClass": ("chargeclass",),
    "ChargeDescription": ("chargedescription",),
    "ConsumedQuantity": ("consumedquantity", "usagequantity"),
    "ConsumedUnit": ("consumedunit", "usageunit"),
    "SubAccountId": ("subaccountid",),
    "SubAccountName": ("subaccountname",),
    "BillingAccountId": ("billingaccountid",),
    "BillingAccountName": ("billingaccountname",),
    "InvoiceId": ("invoiceid",),
    "ProviderName": ("providername", "provider"),
    "ServiceProviderName": ("serviceprovidername",),
    "HostProviderName": ("hostprovidername",),
    "PublisherName": ("publishername", "publisher"),
    "PricingCurrency": ("pricingcurrency",),
    "PricingCurrencyListUnitPrice": ("pricingcurrencylistunitprice",),
    "PricingCurrencyContractedUnitPrice": ("pricingcurrencycontractedunitprice",),
    "PricingCurrencyEffectiveCost": ("pricingcurrencyeffectivecost",),
    "AllocatedMethodId": ("allocatedmethodid",),
    "AllocatedResourceId": ("allocatedresourceid",),
    "AllocatedResourceName": ("allocatedresourcename",),
    "AllocatedTags": ("allocatedtags",),
    # Cost basis (ingest.focus.basis): commitment purchases and unused commitment.
    "CommitmentDiscountId": ("commitmentdiscountid",),
    "CommitmentDiscountStatus": ("commitmentdiscountstatus",),
    "CommitmentDiscountCategory": ("commitmentdiscountcategory",),
    "ChargeFrequency": ("chargefrequency",),
    "Tags": ("tags",),
}
REQUIRED = ("BillingPeriodStart", "BilledCost")
_ALIASES = {alias: canon for canon, aliases in COLUMNS.items() for alias in aliases}
# The canonical spelling of each column, normalised (wins over older aliases).
_CURRENT = {canon.lower(): canon for canon in COLUMNS}

# The columns fingerprint version 1 recognised, verbatim: part of the storage
# format of charges imported before version 2 (docs/decisions/0002-dedup.md).
V1_COLUMNS: dict[str, tuple[str, ...]] = {
    "BillingPeriodStart": ("billingperiodstart",),
    "BillingPeriodEnd": ("billingperiodend",),
    "ChargePeriodStart": ("chargeperiodstart",),
    "ChargePeriodEnd": ("chargeperiodend",),
    "ListCost": ("listcost",),
    "ContractedCost": ("contractedcost",),
    "BilledCost": ("billedcost",),
    "EffectiveCost": ("effectivecost",),
    "BillingCurrency": ("billingcurrency",),
    "ResourceId": ("resourceid",),
    "ResourceName": ("resourcename",),
    "ServiceName": ("servicename",),
    "ServiceCategory": ("servicecategory",),
    "ChargeCategory": ("chargecategory", "chargetype"),
    "ChargeDescription": ("chargedescription",),
    "ConsumedQuantity": ("consumedquantity", "usagequantity"),
    "ConsumedUnit": ("consumedunit", "usageunit"),
    "SubAccountId": ("subaccountid",),
    "SubAccountName": ("subaccountname",),
    "ProviderName": ("providername",),
    "ServiceProviderName": ("serviceprovidername",),
    "Tags": ("tags",),
}
_V1_ALIASES = {alias: canon for canon, aliases in V1_COLUMNS.items() for alias in aliases}


def _normal(name: str) -> str:
    return name.strip().strip("\ufeff").strip().lower()


def resolve_columns(header: list[str], name: str, kind: str) -> dict[str, int]:
    positions: dict[str, int] = {}
    current = {_CURRENT[n] for n in map(_normal, header) if n in _CURRENT}
    for index, raw in enumerate(header):
        normal = _normal(raw)
        canon = _ALIASES.get(normal)
        if canon is None or (canon in current and normal not in _CURRENT):
            continue  # not FOCUS, or an older name beside the current one
        if canon in positions:
            first = header[positions[canon]].strip()
            raise IngestError(
                f"{name}, line 1: columns {positions[canon] + 1} ({first}) and "
                f"{index + 1} ({raw.strip()}) are both {canon}"
            )
        positions[canon] = index
    missing = [col for col in REQUIRED if col not in positions]
    if missing:
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            delimiter = "semicolon" if ";" in header[0] else "tab"
            raise IngestError(
                f"{name}, line 1: the file is {delimiter}-delimited; FOCUS CSV files must be "
                "comma-separated"
            )
        where = "schema" if kind == "parquet" else "line 1"
        if not any(_normal(h) in _ALIASES for h in header):
            raise IngestError(
                f"{name}, {where}: not a FOCUS file (none of its {len(header)} columns is a "
                f"FOCUS column; required: {', '.join(REQUIRED)})"
            )
        raise IngestError(f"{name}, {where}: missing required column {', '.join(missing)}")
    return positions


def identity_names(header: list[str], positions: dict[str, int]) -> list[str]:
    """The name each column has in the whole-row fingerprint.

    Recognised columns by their canonical name (so ``ChargeType`` and
    ``ChargeCategory`` are the same column), the others by their normalised
    header; a repeated header gets ``#2``, ``#3``...
    """
    names = [_normal(h) for h in header]
    for canon, index in positions.items():
        names[index] = canon
    seen: dict[str, int] = {}
    for index, value in enumerate(names):
        seen[value] = seen.get(value, 0) + 1
        if seen[value] > 1:
            names[index] = f"{value}#{seen[value]}"
    return names


def legacy_column_positions(header: list[str]) -> dict[str, int]:
    """canonical -> index of the columns fingerprint version 1 hashed."""
    positions: dict[str, int] = {}
    for index, raw in enumerate(header):
        canon = _V1_ALIASES.get(_normal(raw))
        if canon is not None and canon not in positions:
            positions[canon] = index
    return positions


def clean_text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # Strip whitespace and stray byte-order marks (e.g. two files concatenated).
    return text.strip().strip("\ufeff").strip()
