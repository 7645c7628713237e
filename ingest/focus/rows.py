"""Row preparation for ingest: costs, dates, currencies, text limits. Pure.

:class:`RowPreparer` turns a parsed :class:`~ingest.focus.parsers.Chunk` into a
:class:`PreparedChunk`: everything about a row that needs neither the
database nor the institution's rules (the row's key, its fingerprint and
occurrence, comes from :mod:`ingest.focus.fingerprints`).
:func:`prepared_chunks` runs it in a forked helper process when the file is
large, so parsing overlaps with the database inserts done by the importer on
a second core.

Over 600 lines on purpose: this is the per-row hot path of the import
(docs/performance.md). :meth:`RowPreparer.prepare` is a few steps called once
per chunk; each step is a loop over columns that keeps its values in local
variables, where smaller functions would pay a call per row and per column.
"""

from __future__ import annotations

import json
import multiprocessing
import operator
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from billing.rules import parse_tags
from ingest.focus.fingerprints import (
    Occurrences,
    fingerprint_keys,
    legacy_fingerprints,
    row_fingerprints,
)
from ingest.focus.parsers import (
    Chunk,
    FocusReader,
    IngestError,
    is_null,
    parse_period,
    parse_timestamp,
)
from openchargeback.money import MoneyError, parse_nanos

_NULL_TEXT = frozenset({"NULL", "null", "Null", "NaT", "None"})
_MAX_ERRORS_SHOWN = 5
# Files with more rows than this are parsed in a helper process.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024


# Charge columns computed here, in this order; the importer adds the period,
# the attribution and the flags (see ingest.focus.bulk.ROW_COLUMNS).
BASE_COLUMNS = (
    "line_number",
    "fingerprint",
    "occurrence",
    "service_name",
    "service_category",
    "charge_category",
    "charge_description",
    "resource_id",
    "resource_name",
    "sub_account_id",
    "sub_account_name",
    "provider_name",
    "consumed_quantity",
    "consumed_unit",
    "charge_period_start",
    "charge_period_end",
    "billing_currency",
    "list_cost",
    "contracted_cost",
    "billed_cost",
    "effective_cost",
    "invoice_id",
    "charge_class",
    "billing_account_id",
    "billing_account_name",
    "host_provider_name",
    "publisher_name",
    "pricing_currency",
    "pricing_currency_list_unit_price",
    "pricing_currency_contracted_unit_price",
    "pricing_currency_effective_cost",
    "allocated_resource_id",
    "allocated_resource_name",
    "allocated_method_id",
    # Cost basis (ingest.focus.basis)
    "commitment_discount_id",
    "commitment_discount_status",
    "commitment_discount_category",
    "charge_frequency",
)
B_FINGERPRINT = BASE_COLUMNS.index("fingerprint")
B_OCCURRENCE = BASE_COLUMNS.index("occurrence")
B_SERVICE = BASE_COLUMNS.index("service_name")
B_RESOURCE_ID = BASE_COLUMNS.index("resource_id")
B_RESOURCE_NAME = BASE_COLUMNS.index("resource_name")
B_CURRENCY = BASE_COLUMNS.index("billing_currency")
B_BILLED = BASE_COLUMNS.index("billed_cost")
B_CATEGORY = BASE_COLUMNS.index("charge_category")
B_LIST = BASE_COLUMNS.index("list_cost")
B_EFFECTIVE = BASE_COLUMNS.index("effective_cost")
B_COMMITMENT_ID = BASE_COLUMNS.index("commitment_discount_id")
B_COMMITMENT_STATUS = BASE_COLUMNS.index("commitment_discount_status")

# Text columns in BASE_COLUMNS order: FOCUS name -> the charge field's
# max_length (None: unlimited). Longer text refuses the file: never cut.
_TEXT = (
    ("ServiceName", 200),
    ("ServiceCategory", 100),
    ("ChargeCategory", 50),
    ("ChargeDescription", None),
    ("ResourceId", None),
    ("ResourceName", None),
    ("SubAccountId", 200),
    ("SubAccountName", 200),
)
# After the costs, in BASE_COLUMNS order.
_TEXT_AFTER = (
    ("InvoiceId", 200),
    ("ChargeClass", 20),
    ("BillingAccountId", 200),
    ("BillingAccountName", 200),
    ("HostProviderName", 200),
    ("PublisherName", 200),
    ("PricingCurrency", 40),
    ("PricingCurrencyListUnitPrice", None),
    ("PricingCurrencyContractedUnitPrice", None),
    ("PricingCurrencyEffectiveCost", None),
    ("AllocatedResourceId", None),
    ("AllocatedResourceName", None),
    ("AllocatedMethodId", 200),
    # Cost basis (ingest.focus.basis)
    ("CommitmentDiscountId", None),
    ("CommitmentDiscountStatus", 20),
    ("CommitmentDiscountCategory", 20),
    ("ChargeFrequency", 20),
)
# Other limits checked: provider, consumed quantity and unit.
TEXT_LIMITS: dict[str, int | None] = {
    **dict(_TEXT),
    **dict(_TEXT_AFTER),
    "ProviderName": 100,
    "ServiceProviderName": 100,
    "ConsumedQuantity": None,
    "ConsumedUnit": 50,
}
# FOCUS name -> charge field, for the tests that keep TEXT_LIMITS equal to the model.
TEXT_FIELDS = {
    "ServiceName": "service_name",
    "ServiceCategory": "service_category",
    "ChargeCategory": "charge_category",
    "ChargeDescription": "charge_description",
    "ResourceId": "resource_id",
    "ResourceName": "resource_name",
    "SubAccountId": "sub_account_id",
    "SubAccountName": "sub_account_name",
    "InvoiceId": "invoice_id",
    "ChargeClass": "charge_class",
    "BillingAccountId": "billing_account_id",
    "BillingAccountName": "billing_account_name",
    "HostProviderName": "host_provider_name",
    "PublisherName": "publisher_name",
    "PricingCurrency": "pricing_currency",
    "PricingCurrencyListUnitPrice": "pricing_currency_list_unit_price",
    "PricingCurrencyContractedUnitPrice": "pricing_currency_contracted_unit_price",
    "PricingCurrencyEffectiveCost": "pricing_currency_effective_cost",
    "AllocatedResourceId": "allocated_resource_id",
    "AllocatedResourceName": "allocated_resource_name",
    "AllocatedMethodId": "allocated_method_id",
    "CommitmentDiscountId": "commitment_discount_id",
    "CommitmentDiscountStatus": "commitment_discount_status",
    "CommitmentDiscountCategory": "commitment_discount_category",
    "ChargeFrequency": "charge_frequency",
    "ProviderName": "provider_name",
    "ServiceProviderName": "provider_name",
    "ConsumedQuantity": "consumed_quantity",
    "ConsumedUnit": "consumed_unit",
}

_CURRENCY_RE = re.compile(r"[A-Z]{3}")
# Columns that tell an origin row from the allocated rows split from it.
_ORIGIN_KEY = (
    "ResourceId",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ServiceName",
    "SubAccountId",
    "BillingAccountId",
    "ChargeDescription",
    "ConsumedUnit",
)
_CONFORMANCE_LINES = 3


@dataclass
class PreparedChunk:
    """Rows ready for the importer: ``bases`` follow :data:`BASE_COLUMNS`.

    ``rows`` counts the rows read; ``bases`` (and ``lines``, ``periods``,
    ``tags``, ``legacy``) leave out the origin rows of split allocations.
    ``legacy`` is each row's version 1 key (fingerprint, occurrence), or
    None when the source has no version 1 import in the row's period.
    """

    start: int
    rows: int
    lines: list[int]
    periods: list[str]
    tags: list[str]
    bases: list[tuple[Any, ...]]
    rounded: int
    legacy: list[tuple[str, int] | None] | None = None
    conformance: dict[str, list[Any]] = field(default_factory=dict)  # rule -> [rows, lines]
    invoice_nanos: dict[str, int] = field(default_factory=dict)
    origins: int = 0


class RowPreparer:
    """Per-file state: occurrence counts (or the delivery's) and parse caches. No database.

    ``legacy_periods``: periods where the source has charges fingerprinted
    with version 1; rows in them also get their version 1 key (version 1
    occurrences are counted per file, as version 1 imports were).
    """

    def __init__(
        self,
        reader: FocusReader,
        adapt_timestamp: Callable[[Any], Any],
        occurrences: Occurrences | None = None,
        *,
        legacy_periods: frozenset[str] = frozenset(),
    ) -> None:
        self.reader = reader
        self.adapt_timestamp = adapt_timestamp
        self.occurrences = occurrences or Occurrences()
        self.seen = self.occurrences.seen
        self.repeats = self.occurrences.repeats
        self.period_cache: dict[str, str] = {}
        self.ts_cache: dict[str, Any] = {}
        self.legacy_periods = legacy_periods
        self.legacy = Occurrences()  # version 1 keys, counted per file
        reader.want_legacy = bool(legacy_periods)
        # Origin-row keys of split cost allocation -> Σ BilledCost of the
        # allocated rows (see scan_allocations).
        self.allocated: dict[str, int] | None = None
        self.billed_seen = False
        self.held_error: str | None = None

    # -- FOCUS 1.3 split cost allocation ----------------------------------------
    def scan_allocations(self) -> None:
        """Read the file once for its allocated rows (AllocatedMethodId set).

        A row without AllocatedMethodId that describes the same charge (same
        resource, charge period and dimensions) is their origin: FOCUS 1.3
        splits the origin into the allocated rows, which add up to it, so only
        the allocated rows are billed.
        """
        self.allocated = {}
        if "AllocatedMethodId" not in self.reader.positions:
            return
        copy_to = self.reader.keep_copy_to
        self.reader.keep_copy_to = None  # the copy is kept on the real pass
        try:
            for chunk in self.reader.chunks():
                cols = {k: [_nulled(v) for v in vals] for k, vals in chunk.columns.items()}
                methods = cols["AllocatedMethodId"]
                if not any(methods):
                    continue
                keys = _origin_keys(cols, chunk.rows)
                billed = cols["BilledCost"]
                for i, method in enumerate(methods):
                    if method:
                        try:
                            nanos = parse_nanos(billed[i])[0]
                        except MoneyError:
                            nanos = 0  # the real pass names the bad cell
                        self.allocated[keys[i]] = self.allocated.get(keys[i], 0) + nanos
        finally:
            self.reader.keep_copy_to = copy_to

    def finish(self) -> None:
        """After the last chunk: a file whose BilledCost is empty in every row."""
        if self.held_error is not None:
            raise IngestError(
                f"{self.reader.display_name}: BilledCost is empty in every row; a FOCUS "
                "file must have a billed cost for each row; nothing was imported"
            )

    def prepare(self, chunk: Chunk) -> PreparedChunk | None:
        """Validate and convert one chunk; IngestError names the first bad cells.

        None while every BilledCost so far is empty (see :meth:`finish`).
        """
        n = chunk.rows
        errors: list[tuple[int, str, str, str]] = []  # record, column, problem, value
        periods = self._periods(chunk.columns["BillingPeriodStart"], chunk.start, errors)
        legacy: list[tuple[str, int] | None] | None = None
        if self.legacy_periods and not self.legacy_periods.isdisjoint(periods):
            legacy = self._legacy_keys(chunk, periods)
        cells = _without_nulls(chunk.cells)
        cols = {canon: cells[index] for canon, index in self.reader.positions.items()}
        digests = row_fingerprints(self.reader.names, cells, n)
        occurrences = self.occurrences.count(fingerprint_keys(digests))
        if self._held(chunk, cols["BilledCost"]):
            return None
        costs, rounded, charge_start, charge_end, currencies = self._convert(cols, chunk, errors)
        prepared = PreparedChunk(
            start=chunk.start,
            rows=n,
            lines=chunk.lines,
            periods=periods,
            tags=self._tags(cols, n),
            bases=_bases(
                cols, chunk.lines, digests, occurrences, charge_start, charge_end, currencies, costs
            ),
            rounded=rounded,
            legacy=legacy,
            conformance=self._conformance(cols, chunk, costs, charge_start, charge_end),
            invoice_nanos=_invoice_totals(cols, costs[2]),
        )
        if self.allocated and "AllocatedMethodId" in cols:
            self._drop_origins(prepared, cols, costs[2], chunk)
        return prepared

    def _held(self, chunk: Chunk, billed: list[str]) -> bool:
        """Whether the chunk waits because every BilledCost so far is empty.

        The file is refused either way: by :meth:`finish` if no row has a
        billed cost, else here, naming the first empty cells, at the first
        chunk that has one.
        """
        if self.billed_seen:
            return False
        if not any(billed):
            if self.held_error is None:
                self.held_error = self._error_text(
                    chunk,
                    [
                        (chunk.start + i, "BilledCost", "not a number", raw)
                        for i, raw in enumerate(chunk.columns["BilledCost"])
                    ],
                )
            return True
        self.billed_seen = True
        if self.held_error is not None:
            raise IngestError(self.held_error)
        return False

    def _convert(
        self, cols: dict[str, list[str]], chunk: Chunk, errors: list[Any]
    ) -> tuple[list[list[int]], int, list[Any], list[Any], list[str]]:
        """Costs (and the rounded count), charge periods, currencies; IngestError on bad cells."""
        n, start = chunk.rows, chunk.start
        costs, rounded = self._costs(cols, chunk.columns, start, errors)
        charge_start = self._timestamps(
            cols.get("ChargePeriodStart"), n, "ChargePeriodStart", start, errors
        )
        charge_end = self._timestamps(
            cols.get("ChargePeriodEnd"), n, "ChargePeriodEnd", start, errors
        )
        currencies = self._currencies(cols.get("BillingCurrency", [""] * n), start, errors)
        self._check_text(cols, start, errors)
        if errors:
            raise IngestError(self._error_text(chunk, errors))
        return costs, rounded, charge_start, charge_end, currencies

    def _drop_origins(
        self, prepared: PreparedChunk, cols: dict[str, list[str]], billed: list[int], chunk: Chunk
    ) -> None:
        """Leave out the origin rows of split allocations: their allocated rows are billed."""
        keep = self._not_origins(cols, chunk.rows, billed, chunk, prepared.conformance)
        prepared.origins = chunk.rows - len(keep)
        if not prepared.origins:
            return
        prepared.bases = [prepared.bases[i] for i in keep]
        prepared.lines = [prepared.lines[i] for i in keep]
        prepared.periods = [prepared.periods[i] for i in keep]
        prepared.tags = [prepared.tags[i] for i in keep]
        if prepared.legacy is not None:
            prepared.legacy = [prepared.legacy[i] for i in keep]

    def _error_text(self, chunk: Chunk, errors: list[tuple[int, str, str, str]]) -> str:
        errors.sort()
        shown = "; ".join(
            f"{self.reader.where(chunk.lines[record - chunk.start], column)}: "
            f"{problem}: {value[:40]!r}"
            for record, column, problem, value in errors[:_MAX_ERRORS_SHOWN]
        )
        more = len(errors) - _MAX_ERRORS_SHOWN
        return f"{shown}{f' (and {more} more)' if more > 0 else ''}; nothing was imported"

    def _legacy_keys(self, chunk: Chunk, periods: list[str]) -> list[tuple[str, int] | None]:
        """Version 1 (fingerprint, occurrence) of the rows in version 1 periods."""
        columns = {
            canon: chunk.legacy.get(index, chunk.cells[index])
            for canon, index in self.reader.legacy_positions.items()
        }
        digests = legacy_fingerprints(columns)
        occurrences = self.legacy.count(fingerprint_keys(digests))
        wanted = self.legacy_periods
        return [
            (d.hex(), occ) if period in wanted else None
            for d, occ, period in zip(digests, occurrences, periods, strict=True)
        ]

    def _check_text(self, cols: dict[str, list[str]], start: int, errors: list[Any]) -> None:
        """Text longer than its charge field refuses the file (never cut)."""
        for name, limit in TEXT_LIMITS.items():
            values = cols.get(name)
            if limit is None or values is None or max(map(len, values), default=0) <= limit:
                continue
            for i, value in enumerate(values):
                if len(value) > limit:
                    errors.append(
                        (start + i, name, f"{len(value):,} characters, over the {limit}", value)
                    )

    def _currencies(self, values: list[str], start: int, errors: list[Any]) -> list[str]:
        """BillingCurrency upper-cased; anything but a 3-letter code (or empty) refuses."""
        codes = {v: v.upper() for v in set(values)}
        bad = {v for v, code in codes.items() if code and not _CURRENCY_RE.fullmatch(code)}
        if bad:
            for i, value in enumerate(values):
                if value in bad:
                    errors.append((start + i, "BillingCurrency", "not a 3-letter code", value))
        if all(v == code for v, code in codes.items()):
            return values
        return [codes[v] for v in values]

    def _tags(self, cols: dict[str, list[str]], n: int) -> list[str]:
        """The Tags text each row is attributed by.

        A FOCUS 1.3 allocated row is attributed by its AllocatedTags, over its
        Tags (which AllocatedTags never repeats): the two objects merged, the
        allocated keys winning.
        """
        tags = cols.get("Tags", [""] * n)
        allocated = cols.get("AllocatedTags")
        if allocated is None or not any(allocated):
            return tags
        merged = list(tags)
        limits = self.reader.limits
        bounds = {"max_depth": limits.max_tags_depth, "max_chars": limits.max_tags_chars}
        for i, extra in enumerate(allocated):
            if not extra:
                continue
            base, base_invalid = parse_tags(tags[i], **bounds)
            more, more_invalid = parse_tags(extra, **bounds)
            if more_invalid:
                merged[i] = extra  # flagged invalid_tags, as the Tags cell would be
            elif base_invalid:
                merged[i] = tags[i]
            else:
                merged[i] = json.dumps({**base, **more}, ensure_ascii=False)
        return merged

    def _not_origins(
        self,
        cols: dict[str, list[str]],
        n: int,
        billed: list[int],
        chunk: Chunk,
        conformance: dict[str, list[Any]],
    ) -> list[int]:
        """Indexes of the rows to keep: all but origin rows of split allocations."""
        assert self.allocated is not None
        methods = cols["AllocatedMethodId"]
        keys = _origin_keys(cols, n)
        keep = []
        for i in range(n):
            total = None if methods[i] else self.allocated.get(keys[i])
            if total is None:
                keep.append(i)
            elif total != billed[i]:
                _note(conformance, "allocation_sum", chunk.lines[i])
        return keep

    def _conformance(
        self,
        cols: dict[str, list[str]],
        chunk: Chunk,
        costs: list[list[int]],
        starts: list[Any],
        ends: list[Any],
    ) -> dict[str, list[Any]]:
        """FOCUS rules the chunk's rows break: rule -> [rows, first lines]."""
        found: dict[str, list[Any]] = {}
        lines = chunk.lines
        currency = cols.get("BillingCurrency")
        if currency is None or not all(currency):
            for i, value in enumerate(currency or [""] * chunk.rows):
                if not value:
                    _note(found, "billing_currency_missing", lines[i])
        if "ChargePeriodStart" in cols and "ChargePeriodEnd" in cols:
            for i, (begin, end) in enumerate(zip(starts, ends, strict=True)):
                if begin is not None and end is not None and begin > end:
                    _note(found, "charge_period_reversed", lines[i])
        category = cols.get("ChargeCategory", [""] * chunk.rows)
        list_cost, billed = costs[0], costs[2]
        if min(billed, default=0) < 0:
            for i, kind in enumerate(category):
                if billed[i] < 0 and kind not in ("Credit", "Adjustment"):
                    _note(found, "negative_cost", lines[i])
        if "ListCost" in cols and any(map(operator.lt, list_cost, billed)):
            for i, kind in enumerate(category):
                if kind == "Usage" and list_cost[i] < billed[i]:
                    _note(found, "list_below_billed", lines[i])
        return found

    def _periods(self, values: list[str], start: int, errors: list[Any]) -> list[str]:
        cache = self.period_cache
        result = []
        for i, raw in enumerate(values):
            period = cache.get(raw)
            if period is None:
                try:
                    if is_null(raw):
                        raise ValueError("empty")
                    period = parse_period(raw)
                except ValueError:
                    errors.append((start + i, "BillingPeriodStart", "not a date", raw))
                    period = ""
                else:
                    cache[raw] = period
            result.append(period)
        return result

    def _costs(
        self,
        cols: dict[str, list[str]],
        raw: dict[str, list[str]],
        start: int,
        errors: list[Any],
    ) -> tuple[list[list[int]], int]:
        """(list, contracted, billed, effective) nano-unit lists and the rounded count.

        An empty or NULL optional cost is the billed cost. Errors quote
        ``raw`` (the text as written, before NULL became empty).
        """
        billed_col = cols["BilledCost"]
        others = [cols.get(name) for name in ("ListCost", "ContractedCost", "EffectiveCost")]
        out: list[list[int]] = [[], [], [], []]
        rounded = 0
        for i, billed_text in enumerate(billed_col):
            try:
                if not billed_text:
                    raise MoneyError("empty")
                billed, billed_rounded = parse_nanos(billed_text)
            except MoneyError:
                errors.append((start + i, "BilledCost", "not a number", raw["BilledCost"][i]))
                billed, billed_rounded = 0, False
            rounded += billed_rounded
            values = [billed, billed, billed]
            for slot, column in enumerate(others):
                if column is None:
                    continue
                text = column[i]
                if text == billed_text:
                    rounded += billed_rounded
                elif text:
                    try:
                        values[slot], was_rounded = parse_nanos(text)
                    except MoneyError:
                        name = ("ListCost", "ContractedCost", "EffectiveCost")[slot]
                        errors.append((start + i, name, "not a number", text))
                        continue
                    rounded += was_rounded
            out[0].append(values[0])
            out[1].append(values[1])
            out[2].append(billed)
            out[3].append(values[2])
        return out, rounded

    def _timestamps(
        self, values: list[str] | None, n: int, name: str, start: int, errors: list[Any]
    ) -> list[Any]:
        if values is None:
            return [None] * n
        cache = self.ts_cache
        result: list[Any] = []
        for i, raw in enumerate(values):
            if not raw:
                result.append(None)
                continue
            value = cache.get(raw)
            if value is None:
                try:
                    value = self.adapt_timestamp(parse_timestamp(raw))
                except ValueError:
                    errors.append((start + i, name, "not a date", raw))
                    result.append(None)
                    continue
                cache[raw] = value
            result.append(value)
        return result


# Conformance rules: key -> what the rows break (informative; see docs/focus.md).
CONFORMANCE_RULES = {
    "billing_currency_missing": "BillingCurrency is missing (FOCUS requires it on every row)",
    "charge_period_reversed": "ChargePeriodStart is after ChargePeriodEnd",
    "negative_cost": "BilledCost is negative outside ChargeCategory Credit or Adjustment",
    "list_below_billed": "ListCost is below BilledCost on a Usage row",
    "allocation_sum": "allocated rows do not add up to their origin row's BilledCost",
    "missing_columns": "mandatory columns of its FOCUS version are missing",
}


# Mandatory columns per FOCUS version (the cost and billing core; the
# version is told from the names the file uses).
_MANDATORY_1_0 = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
_PREVIEW_NAMES = frozenset({"usagequantity", "usageunit", "provider", "publisher", "chargetype"})
_V1_3_NAMES = frozenset(
    {"serviceprovidername", "hostprovidername", "allocatedmethodid", "allocatedresourceid"}
)


def focus_version(reader: FocusReader) -> str:
    """The FOCUS version a file's column names point to: 1.0-preview, 1.0, 1.3."""
    names = {h.strip().strip("\ufeff").strip().lower() for h in reader.header}
    if names & _V1_3_NAMES:
        return "1.3"
    if names & _PREVIEW_NAMES:
        return "1.0-preview"
    return "1.0"


def missing_columns(reader: FocusReader) -> list[str]:
    """Mandatory columns of the file's FOCUS version that it lacks."""
    version = focus_version(reader)
    wanted = list(_MANDATORY_1_0)
    if version == "1.3":
        wanted += ["ChargeClass", "ContractedCost", "ServiceProviderName"]
    elif version == "1.0":
        wanted += ["ChargeClass", "ContractedCost", "ProviderName"]
    else:
        wanted += ["ProviderName"]
    present = {h.strip().strip("\ufeff").strip().lower() for h in reader.header}
    present |= {canon.lower() for canon in reader.positions}
    return [name for name in wanted if name.lower() not in present]


def _without_nulls(cells: list[list[str]]) -> list[list[str]]:
    """The columns with their NULL text emptied: NULL means no value, in every column."""
    nulls = _NULL_TEXT
    return [
        values if nulls.isdisjoint(values) else ["" if v in nulls else v for v in values]
        for values in cells
    ]


def _bases(
    cols: dict[str, list[str]],
    lines: list[int],
    digests: list[bytes],
    occurrences: list[int],
    charge_start: list[Any],
    charge_end: list[Any],
    currencies: list[str],
    costs: list[list[int]],
) -> list[tuple[Any, ...]]:
    """The rows as tuples in :data:`BASE_COLUMNS` order."""
    empty = [""] * len(lines)
    provider = cols.get("ServiceProviderName")
    fallback = cols.get("ProviderName", empty)
    providers = [p or f for p, f in zip(provider, fallback, strict=True)] if provider else fallback
    texts = [cols.get(name, empty) for name, _limit in _TEXT]
    after = [cols.get(name, empty) for name, _limit in _TEXT_AFTER]
    return list(
        zip(
            lines,
            [d.hex() for d in digests],
            occurrences,
            *texts,
            providers,
            cols.get("ConsumedQuantity", empty),
            cols.get("ConsumedUnit", empty),
            charge_start,
            charge_end,
            currencies,
            *costs,
            *after,
            strict=True,
        )
    )


def _invoice_totals(cols: dict[str, list[str]], billed: list[int]) -> dict[str, int]:
    """Σ BilledCost (nano-units) per InvoiceId; empty without the column."""
    totals: dict[str, int] = {}
    if "InvoiceId" in cols:
        for invoice, nanos in zip(cols["InvoiceId"], billed, strict=True):
            totals[invoice] = totals.get(invoice, 0) + nanos
    return totals


def _note(found: dict[str, list[Any]], rule: str, line: int) -> None:
    entry = found.setdefault(rule, [0, []])
    entry[0] += 1
    if len(entry[1]) < _CONFORMANCE_LINES:
        entry[1].append(line)


def _origin_keys(cols: dict[str, list[str]], n: int) -> list[str]:
    present = [cols[name] for name in _ORIGIN_KEY if name in cols]
    if not present:
        return [""] * n
    return ["\x1f".join(values) for values in zip(*present, strict=True)]


def _nulled(value: str) -> str:
    return "" if value in _NULL_TEXT else value


def prepared_chunks(preparer: RowPreparer, *, parallel: bool) -> Iterator[PreparedChunk]:
    """The file's prepared chunks, parsed in a forked helper process if ``parallel``
    (and this process may have children).

    The helper only reads the file and computes; it never touches the
    database (the parent's connections are inherited but left alone, and it
    leaves with ``os._exit``). The pipe holds at most a chunk or two, so
    memory stays bounded.
    """
    # A daemonic process (a django-q2 worker, by default) may not have
    # children: it parses in its own process.
    if (
        not parallel
        or "fork" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
    ):
        for chunk in preparer.reader.chunks():
            prepared = preparer.prepare(chunk)
            if prepared is not None:
                yield prepared
        preparer.finish()
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_produce, args=(preparer, sender, receiver), daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                raise IngestError(
                    f"{preparer.reader.display_name}: the parser process stopped unexpectedly"
                ) from None
            if kind == "chunk":
                preparer.reader.rows_read = payload.start + payload.rows
                yield payload
            elif kind == "done":
                # The helper counted occurrences in its copy of the state: take it back.
                levels, repeats = payload
                preparer.seen.levels[:] = levels
                preparer.repeats.clear()
                preparer.repeats.update(repeats)
                return
            elif kind == "error":
                raise IngestError(payload)
            else:
                raise RuntimeError(f"ingest parser process failed:\n{payload}")
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


def _produce(preparer: RowPreparer, sender: Any, receiver: Any) -> None:
    # The fork inherited the reading end: close it, so that if the importer
    # dies (killed) the pipe has no reader left and the next send fails
    # instead of blocking this helper for ever.
    receiver.close()
    try:
        for chunk in preparer.reader.chunks():
            prepared = preparer.prepare(chunk)
            if prepared is not None:
                sender.send(("chunk", prepared))
        preparer.finish()
        sender.send(("done", (preparer.seen.levels, preparer.repeats)))
    except IngestError as exc:
        sender.send(("error", str(exc)))
    except BrokenPipeError:
        pass  # the importer stopped reading (it failed); nothing to report
    except BaseException:
        sender.send(("crash", traceback.format_exc()))
    finally:
        sender.close()
        os._exit(0)
