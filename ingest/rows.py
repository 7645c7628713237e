"""Row preparation for ingest: fingerprints, occurrences, costs, dates. Pure.

:class:`RowPreparer` turns a parsed :class:`~ingest.parsers.Chunk` into a
:class:`PreparedChunk`: everything about a row that needs neither the
database nor the institution's rules. :func:`prepared_chunks` runs it in a
forked helper process when the file is large, so parsing overlaps with the
database inserts done by the importer on a second core.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.parsers import Chunk, FocusReader, IngestError, is_null, parse_timestamp
from openchargeback.money import MoneyError, parse_nanos

_NULL_TEXT = frozenset({"NULL", "null", "Null", "NaT", "None"})
_MAX_ERRORS_SHOWN = 5
# Files with more rows than this are parsed in a helper process.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024


# Charge columns computed here, in this order; the importer adds the period,
# the attribution and the flags (see ingest.services.INSERT_COLUMNS).
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
    # Cost basis (ingest.basis)
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

# Text columns: FOCUS name -> maximum stored length (None: unlimited).
_TEXT = (
    ("ServiceName", 200),
    ("ServiceCategory", 100),
    ("ChargeCategory", 50),
    ("ChargeDescription", None),
    ("ResourceId", None),
    ("ResourceName", 300),
    ("SubAccountId", 200),
    ("SubAccountName", 200),
)


@dataclass
class PreparedChunk:
    """Rows ready for the importer: ``bases`` follow :data:`BASE_COLUMNS`."""

    start: int
    rows: int
    lines: list[int]
    periods: list[str]
    tags: list[str]
    bases: list[tuple[Any, ...]]
    rounded: int


class _SeenKeys:
    """Set of 64-bit row keys with ~8 bytes per row, for occurrence counting.

    A log-structured list of sorted numpy arrays: memory stays flat (8 bytes
    per row instead of ~100 for a Python set) as files grow.
    """

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for level in self.levels:
            idx = np.searchsorted(level, keys)
            idx[idx == len(level)] = 0
            found |= level[idx] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        new = np.sort(keys)
        while self.levels and len(self.levels[-1]) <= len(new):
            new = np.sort(np.concatenate((self.levels.pop(), new)))
        self.levels.append(new)


class RowPreparer:
    """Per-file state: occurrence counts and parse caches. No database."""

    def __init__(self, reader: FocusReader, adapt_timestamp: Callable[[Any], Any]) -> None:
        self.reader = reader
        self.adapt_timestamp = adapt_timestamp
        self.seen = _SeenKeys()
        self.repeats: dict[int, int] = {}
        self.period_cache: dict[str, str] = {}
        self.ts_cache: dict[str, Any] = {}

    def prepare(self, chunk: Chunk) -> PreparedChunk:
        """Validate and convert one chunk; IngestError names the first bad cells."""
        cols = chunk.columns
        n = chunk.rows
        empty = [""] * n

        names = sorted(cols)
        header_tag = "\x1e".join(names) + "\x1f"
        # Fingerprint: hash of the recognised values in a fixed column order.
        blake2b = hashlib.blake2b
        digests = [
            blake2b((header_tag + "\x1f".join(values)).encode(), digest_size=16).digest()
            for values in zip(*[cols[name] for name in names], strict=True)
        ]
        keys = np.frombuffer(b"".join(d[:8] for d in digests), dtype="<i8")
        in_previous = self.seen.contains(keys).tolist()
        self.seen.add(keys)
        occurrences = self._occurrences(keys.tolist(), in_previous)

        errors: list[tuple[int, str, str, str]] = []  # record, column, problem, value
        periods = self._periods(cols["BillingPeriodStart"], chunk.start, errors)
        costs, rounded = self._costs(cols, chunk.start, errors)
        charge_start = self._timestamps(
            cols.get("ChargePeriodStart"), n, "ChargePeriodStart", chunk.start, errors
        )
        charge_end = self._timestamps(
            cols.get("ChargePeriodEnd"), n, "ChargePeriodEnd", chunk.start, errors
        )
        if errors:
            errors.sort()
            shown = "; ".join(
                f"{self.reader.where(chunk.lines[record - chunk.start], column)}: "
                f"{problem}: {value[:40]!r}"
                for record, column, problem, value in errors[:_MAX_ERRORS_SHOWN]
            )
            more = len(errors) - _MAX_ERRORS_SHOWN
            raise IngestError(
                f"{shown}{f' (and {more} more)' if more > 0 else ''}; nothing was imported"
            )
        provider = cols.get("ServiceProviderName")
        fallback = cols.get("ProviderName", empty)
        providers = (
            [p or f for p, f in zip(provider, fallback, strict=True)] if provider else fallback
        )
        texts = [
            [v[:limit] for v in cols[name]] if limit and name in cols else cols.get(name, empty)
            for name, limit in _TEXT
        ]
        bases = list(
            zip(
                chunk.lines,
                [d.hex() for d in digests],
                occurrences,
                *texts,
                [p[:100] for p in providers],
                [_text(v, 50) for v in cols.get("ConsumedQuantity", empty)],
                [_text(v, 50) for v in cols.get("ConsumedUnit", empty)],
                charge_start,
                charge_end,
                [c.upper()[:3] for c in cols.get("BillingCurrency", empty)],
                *costs,
                # Cost basis (ingest.basis)
                [_text(v, None) for v in cols.get("CommitmentDiscountId", empty)],
                [_text(v, 20) for v in cols.get("CommitmentDiscountStatus", empty)],
                [_text(v, 20) for v in cols.get("CommitmentDiscountCategory", empty)],
                [_text(v, 20) for v in cols.get("ChargeFrequency", empty)],
                strict=True,
            )
        )
        return PreparedChunk(
            start=chunk.start,
            rows=n,
            lines=chunk.lines,
            periods=periods,
            tags=cols.get("Tags", empty),
            bases=bases,
            rounded=rounded,
        )

    def _occurrences(self, keys: list[int], in_previous: list[bool]) -> list[int]:
        """0 for the first row with a key in the file, 1 for the second, ..."""
        repeats = self.repeats
        local: set[int] = set()
        result = []
        for key, before in zip(keys, in_previous, strict=True):
            if key in repeats:
                result.append(repeats[key])
                repeats[key] += 1
            elif before or key in local:
                result.append(1)
                repeats[key] = 2
            else:
                result.append(0)
                local.add(key)
        return result

    def _periods(self, values: list[str], start: int, errors: list[Any]) -> list[str]:
        cache = self.period_cache
        result = []
        for i, raw in enumerate(values):
            period = cache.get(raw)
            if period is None:
                try:
                    if is_null(raw):
                        raise ValueError("empty")
                    period = parse_timestamp(raw).strftime("%Y-%m")
                except ValueError:
                    errors.append((start + i, "BillingPeriodStart", "not a date", raw))
                    period = ""
                else:
                    cache[raw] = period
            result.append(period)
        return result

    def _costs(
        self, cols: dict[str, list[str]], start: int, errors: list[Any]
    ) -> tuple[list[list[int]], int]:
        """(list, contracted, billed, effective) nano-unit lists and the rounded count.

        An empty or NULL optional cost is the billed cost.
        """
        billed_col = cols["BilledCost"]
        others = [cols.get(name) for name in ("ListCost", "ContractedCost", "EffectiveCost")]
        out: list[list[int]] = [[], [], [], []]
        rounded = 0
        for i, billed_text in enumerate(billed_col):
            try:
                if not billed_text or billed_text in _NULL_TEXT:
                    raise MoneyError("empty")
                billed, billed_rounded = parse_nanos(billed_text)
            except MoneyError:
                errors.append((start + i, "BilledCost", "not a number", billed_text))
                billed, billed_rounded = 0, False
            rounded += billed_rounded
            values = [billed, billed, billed]
            for slot, column in enumerate(others):
                if column is None:
                    continue
                text = column[i]
                if text == billed_text:
                    rounded += billed_rounded
                elif text and text not in _NULL_TEXT:
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
            if not raw or raw in _NULL_TEXT:
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


def _text(value: str, limit: int | None) -> str:
    return "" if value in _NULL_TEXT else value[:limit]


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
            yield preparer.prepare(chunk)
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
            sender.send(("chunk", preparer.prepare(chunk)))
        sender.send(("done", None))
    except IngestError as exc:
        sender.send(("error", str(exc)))
    except BrokenPipeError:
        pass  # the importer stopped reading (it failed); nothing to report
    except BaseException:
        sender.send(("crash", traceback.format_exc()))
    finally:
        sender.close()
        os._exit(0)
