"""FOCUS file reading: CSV, CSV.gz and Parquet into chunks of string columns.

Pure I/O and validation, no ORM. :func:`open_focus` checks the file (size,
format, header) and returns a :class:`FocusReader` whose :meth:`chunks`
stream the recognised columns as lists of stripped strings, a bounded
number of rows at a time. Problems a user can cause raise
:class:`IngestError` with one line naming file, line and column.

Over 600 lines on purpose: the reader and the byte-level guards it reads
through (size, compression ratio, header, line and field limits;
docs/security.md, "Limits") are one boundary for hostile input, kept in one
place so that a reviewer sees every byte's way in.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from billing.errors import BillingError
from billing.periods import month_of

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

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
# Spellings of "no value" in every column (SQL exports write NULL, pandas NaT).
_NULLS = frozenset({"", "NULL", "null", "Null", "NaT", "None"})


class IngestError(BillingError):
    """A user-caused problem with a file; the message is one line.

    ``web`` says the same for a browser user (buttons, not commands)."""

    def __init__(self, message: str, *, web: str = "") -> None:
        super().__init__(message, web=web)


@dataclass(frozen=True)
class Limits:
    """What a file may contain before it is refused (docs/security.md, "Limits").

    Each is an ``OPENCHARGEBACK_INGEST_*`` setting; the defaults here are the
    settings' defaults. They bound the memory one import takes whatever the
    file's shape: ``chunk_bytes`` and ``chunk_cells`` cap what one chunk
    holds (a chunk has fewer rows than ``chunk_rows`` when its rows are wide).
    """

    max_columns: int = 1_000
    max_header_bytes: int = 64 * 1024
    max_field_chars: int = 64 * 1024
    max_line_bytes: int = 1024 * 1024
    max_uncompressed: int = 16 * 1024**3
    max_ratio: int = 100
    max_row_group_bytes: int = 256 * 1024**2
    chunk_bytes: int = 16 * 1024**2
    chunk_cells: int = 2_000_000
    max_tags_depth: int = 32
    max_tags_chars: int = 32 * 1024


# A .csv.gz is measured against ``max_ratio`` once this much is decompressed.
_RATIO_AFTER = 1024 * 1024


@dataclass
class Chunk:
    """``rows`` rows starting at data record ``start`` (0-based).

    ``lines`` is the physical line (row for Parquet) where each record starts.
    ``cells`` holds every column of the file by position (stripped text as
    written); ``columns`` names the recognised ones (the same lists).
    ``legacy`` holds, by position, the text fingerprint version 1 hashed
    where it differs from ``cells`` (Parquet timestamps; only when asked).
    """

    start: int
    rows: int
    columns: dict[str, list[str]]
    lines: list[int]
    cells: list[list[str]] = field(default_factory=list)
    legacy: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class FocusReader:
    path: Path
    display_name: str
    kind: str  # csv | csv.gz | parquet
    header: list[str]  # as written in the file
    positions: dict[str, int]  # canonical -> 0-based column index in the file
    chunk_rows: int
    limits: Limits
    progress: Callable[[int, int], None] | None = None
    # Per position: the canonical name, or the normalised header of a column
    # not recognised (the names the whole-row fingerprint uses).
    names: list[str] = field(default_factory=list)
    # canonical -> index of the columns fingerprint version 1 recognised.
    legacy_positions: dict[str, int] = field(default_factory=dict)
    # Ask the Parquet reader for version 1 text too (sources with v1 imports).
    want_legacy: bool = field(default=False, init=False)
    rows_read: int = field(default=0, init=False)
    # When set, a plain CSV is zstd-compressed to this path while it is read.
    keep_copy_to: Path | None = field(default=None, init=False)
    keep_copy_error: str = field(default="", init=False)

    @property
    def max_uncompressed(self) -> int:
        return self.limits.max_uncompressed

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def column_label(self, canonical: str) -> str:
        index = self.positions[canonical]
        return f"column {index + 1} ({self.header[index].strip()})"

    def where(self, line: int, canonical: str | None = None) -> str:
        """'file.csv, line 12, column 7 (BilledCost)' (row for Parquet)."""
        text = f"{self.display_name}, {'row' if self.kind == 'parquet' else 'line'} {line}"
        if canonical:
            text += f", {self.column_label(canonical)}"
        return text

    def cell_where(self, line: int, index: int) -> str:
        """'file.csv, line 12, column 7 (BilledCost)' for a column by position."""
        name = self.header[index].strip() if index < len(self.header) else ""
        return f"{self.where(line)}, column {index + 1}{f' ({name})' if name else ''}"

    @property
    def chunk_rows_cap(self) -> int:
        """Rows per chunk: fewer than ``chunk_rows`` when the file is wide."""
        cap = self.limits.chunk_cells // max(1, len(self.header))
        return max(1, min(self.chunk_rows, cap))

    def check_cells(self, cells: list[list[str]], lines: list[int], *, nul: bool = True) -> None:
        """Refuse a NUL character or a field over the size limit, naming the cell."""
        limit = self.limits.max_field_chars
        for index, values in enumerate(cells):
            if max(map(len, values), default=0) > limit:
                row = next(i for i, v in enumerate(values) if len(v) > limit)
                raise IngestError(
                    f"{self.cell_where(lines[row], index)}: a field of "
                    f"{len(values[row]):,} characters, more than the {limit:,} allowed "
                    "(OPENCHARGEBACK_INGEST_MAX_FIELD_CHARS)"
                )
            if nul and "\x00" in "".join(values):
                row = next(i for i, v in enumerate(values) if "\x00" in v)
                raise IngestError(
                    f"{self.cell_where(lines[row], index)}: contains a NUL character "
                    f"(at character {values[row].index(chr(0)) + 1}); a FOCUS file is "
                    "text, remove the NUL bytes and import it again"
                )

    def _copy_failed(self, exc: OSError) -> None:
        self.keep_copy_error = exc.strerror or str(exc)

    def chunks(self) -> Iterator[Chunk]:
        if self.kind == "parquet":
            yield from self._parquet_chunks()
        else:
            yield from self._csv_chunks()

    # -- CSV -----------------------------------------------------------------
    def _csv_chunks(self) -> Iterator[Chunk]:
        raw: Any = _open_binary(self.path, self.kind, self.limits, self.display_name)
        if self.keep_copy_to is not None and self.kind == "csv":
            raw = _CompressTee(raw, self.keep_copy_to, self._copy_failed)
        counted = _CountingReader(raw)
        records = _Records(counted, self.display_name, self.limits.max_line_bytes)
        start = 0
        total = self.size
        try:
            for piece in records.pieces(self.chunk_rows_cap, self.limits.chunk_bytes):
                if not piece.rows:
                    continue  # only blank lines
                try:
                    # Every column is read (not only the recognised ones): pandas
                    # checks the encoding only of the columns it reads.
                    frame = pd.read_csv(
                        io.BytesIO(piece.data),
                        header=None,
                        names=range(len(self.header)),
                        index_col=False,
                        dtype=object,
                        na_filter=False,
                        keep_default_na=False,
                        encoding="utf-8",
                        encoding_errors="strict",
                        engine="c",
                        skip_blank_lines=True,
                        low_memory=True,
                    )
                except pd.errors.ParserError as exc:
                    message = _parser_message(exc, piece.rows)
                    raise IngestError(f"{self.display_name}: {message}") from None
                piece.data = b""  # not held while the chunk is used
                rows = len(frame)
                if not rows:
                    continue
                # pandas refuses a row with more fields than the header as it
                # reads it (``names``), before it holds the piece's cells.
                lines = piece.rows if rows == len(piece.rows) else _fallback_lines(piece, rows)
                raw_cells = [frame[c].tolist() for c in frame.columns]
                del frame
                if piece.has_nul or piece.longest > self.limits.max_field_chars:
                    self.check_cells(raw_cells, lines, nul=piece.has_nul)
                cells = [[v.strip() for v in values] for values in raw_cells]
                # A byte-order mark can start a data line (two files joined).
                values = cells[0]
                for i, value in enumerate(values):
                    if value.startswith("\ufeff"):
                        values[i] = _clean(value)
                columns = {canon: cells[index] for canon, index in self.positions.items()}
                yield Chunk(start, rows, columns, lines, cells)
                start += rows
                self.rows_read = start
                if self.progress:
                    # Through the rows handed out (the reader reads ahead).
                    done = records.consumed
                    if self.kind == "csv.gz":
                        done = counted.compressed_position() * done // max(1, counted.position)
                    self.progress(min(done, total), total)
        except UnicodeDecodeError:
            raise IngestError(self._encoding_error()) from None
        except _LimitExceeded as exc:
            raise IngestError(str(exc)) from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise IngestError(f"{self.display_name}: cannot read the file ({exc})") from None
        finally:
            counted.close()

    def _encoding_error(self) -> str:
        """Find the first byte that is not UTF-8 and name its line and column."""
        line, offset = 1, 0
        line_start = 0
        carry = b""
        with _open_binary(self.path, self.kind, self.limits, self.display_name) as raw:
            while True:
                block = raw.read(1 << 16)
                data = carry + block
                if not data:
                    break
                try:
                    data.decode("utf-8")
                    good, carry = len(data), b""
                except UnicodeDecodeError as exc:
                    truncated = exc.reason == "unexpected end of data" and exc.end == len(data)
                    if truncated and block:
                        good, carry = exc.start, data[exc.start :]
                    else:
                        bad = offset + exc.start
                        before = data[: exc.start]
                        newlines = before.count(b"\n")
                        if newlines:
                            line_start = offset + before.rfind(b"\n") + 1
                        line += newlines
                        return (
                            f"{self.display_name}, line {line}, byte {bad - line_start + 1}: "
                            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {bad}); "
                            "save the file as UTF-8 and import it again"
                        )
                chunk = data[:good]
                newlines = chunk.count(b"\n")
                if newlines:
                    line_start = offset + chunk.rfind(b"\n") + 1
                line += newlines
                offset += good
                if not block:
                    break
        return f"{self.display_name}: not UTF-8 text"

    # -- Parquet -------------------------------------------------------------
    def _parquet_chunks(self) -> Iterator[Chunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        legacy_wanted = set(self.legacy_positions.values()) if self.want_legacy else set[int]()
        start = 0
        decoded = 0
        try:
            handle = pq.ParquetFile(self.path, read_dictionary=_text_columns(self.path))
            # One row group at a time (each checked against the limit in
            # open_focus). Text columns stay dictionary-encoded as read (a value
            # repeated a million times is held once); each batch is measured
            # and decoded in slices of at most ``chunk_bytes``.
            batches = (
                batch
                for group in range(handle.metadata.num_row_groups)
                for batch in handle.iter_batches(batch_size=self.chunk_rows_cap, row_groups=[group])
            )
            for batch in batches:
                size = self._batch_bytes(batch, start)
                decoded += size
                if decoded > self.limits.max_uncompressed:
                    raise IngestError(
                        f"{self.display_name}: decodes to more than "
                        f"{self.limits.max_uncompressed:,} bytes of text (the limit is "
                        "OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES)"
                    )
                parts = max(1, -(-size // self.limits.chunk_bytes))
                step = max(1, -(-batch.num_rows // parts))
                for offset in range(0, batch.num_rows, step):
                    part = batch.slice(offset, step)
                    cells: list[list[str]] = []
                    legacy: dict[int, list[str]] = {}
                    for index in range(part.num_columns):
                        array = part.column(index)
                        if pa.types.is_dictionary(array.type):
                            array = array.dictionary_decode()
                        cells.append(_arrow_text(array))
                        if index in legacy_wanted and pa.types.is_timestamp(array.type):
                            legacy[index] = _arrow_text(array, legacy=True)
                    rows = part.num_rows
                    lines = list(range(start + 1, start + rows + 1))
                    self.check_cells(cells, lines)
                    columns = {canon: cells[index] for canon, index in self.positions.items()}
                    yield Chunk(start, rows, columns, lines, cells, legacy)
                    start += rows
                    self.rows_read = start
                    if self.progress:
                        total = handle.metadata.num_rows
                        self.progress(min(start, total), total)
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{self.display_name}: unreadable Parquet file ({exc})") from None

    def _batch_bytes(self, batch: Any, start: int) -> int:
        """About how many bytes the batch takes decoded; refuses a text value
        over ``max_field_chars`` (measured before decoding)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        limit = self.limits.max_field_chars
        total = 0
        for index in range(batch.num_columns):
            array = batch.column(index)
            kind = array.type
            if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
                taken = pc.take(_text_length(array.dictionary), array.indices)
            elif _is_text(kind):
                taken = _text_length(array)
            else:
                total += array.nbytes + 24 * len(array)
                continue
            longest = pc.max(taken).as_py() or 0
            if longest > limit:
                row = pc.index(taken, pa.scalar(longest, taken.type)).as_py()
                raise IngestError(
                    f"{self.cell_where(start + row + 1, index)}: a field of {longest:,} "
                    f"characters, more than the {limit:,} allowed "
                    "(OPENCHARGEBACK_INGEST_MAX_FIELD_CHARS)"
                )
            total += (pc.sum(taken).as_py() or 0) + 56 * len(array)
        return total


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(kind in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary()))


def _text_length(array: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type in (pa.string(), pa.large_string()):
        return pc.utf8_length(array)
    return pc.binary_length(array)


def _text_columns(path: Path) -> list[str]:
    """The top-level string and binary columns of a Parquet file."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return [f.name for f in schema if _is_text(f.type)]


def _arrow_text(array: Any, *, legacy: bool = False) -> list[str]:
    """One Parquet column as text.

    Timestamps keep their zone as an offset (``2024-10-01T00:00:00+0200``;
    without a zone, no offset: UTC), dates are ``YYYY-MM-DD``, decimals and
    integers their exact digits, maps, structs and lists JSON. ``legacy``
    gives what fingerprint version 1 hashed (timestamps without their zone).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_timestamp(kind):
        zone = "%z" if kind.tz is not None and not legacy else ""
        array = pc.strftime(array, format=f"%Y-%m-%dT%H:%M:%S{zone}")
    elif pa.types.is_date(kind):
        array = pc.strftime(array, format="%Y-%m-%d")
    elif pa.types.is_nested(kind):
        return [_json_text(v) for v in array.to_pylist()]
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        array = pc.cast(array, pa.string())
    return [_clean(v) for v in array.to_pylist()]


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        value = dict(value)  # a Parquet map arrives as (key, value) pairs
    return json.dumps(value, ensure_ascii=False, default=str)


def _fallback_lines(piece: _Piece, rows: int) -> list[int]:
    """Line numbers when pandas split the records otherwise than :class:`_Records`
    (a stray quote in an unquoted field): one record per line from the first."""
    return list(range(piece.rows[0], piece.rows[0] + rows))


def _clean(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # Strip whitespace and stray byte-order marks (e.g. two files concatenated).
    return text.strip().strip("\ufeff").strip()


def _parser_message(exc: Exception, lines: list[int]) -> str:
    """pandas's error, with its line (a record of the piece) as the file's line."""

    def line_of(record: int) -> int:
        return lines[min(max(record, 1), len(lines)) - 1]

    text = " ".join(str(exc).split())
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, record, saw = match.groups()
        line = line_of(int(record))
        return (
            f"line {line}: expected {expected} columns, found {saw} "
            "(an unquoted comma or a broken quote?)"
        )
    match = re.search(r"EOF inside string starting at row (\d+)", text)
    if match:
        return (
            f"line {line_of(int(match.group(1)) + 1)}: a quoted field is never closed "
            "(the file may be cut short)"
        )
    return f"not a valid CSV file ({text.removeprefix('Error tokenizing data. C error: ')})"


class _LimitExceeded(Exception):
    pass


class _LimitedReader(io.RawIOBase):
    """Refuses to decompress more than ``limits.max_uncompressed`` bytes, or more
    than ``limits.max_ratio`` times what it read from disk (decompression bombs)."""

    def __init__(self, inner: gzip.GzipFile, limits: Limits, name: str) -> None:
        self.inner = inner
        self.limit = limits.max_uncompressed
        self.ratio = limits.max_ratio
        self.name_for_errors = name
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.total += len(data)
        if self.total > self.limit:
            raise _LimitExceeded(
                f"{self.name_for_errors}: decompresses to more than {self.limit:,} bytes "
                "(the limit is OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES)"
            )
        if self.ratio and self.total > _RATIO_AFTER:
            # What was read from disk so far (gzip reads ahead: never too little).
            fileobj: Any = self.inner.fileobj
            compressed = max(1, fileobj.tell()) if fileobj is not None else 1
            if self.total > self.ratio * compressed:
                raise _LimitExceeded(
                    f"{self.name_for_errors}: decompresses to more than {self.ratio} times "
                    f"its size ({self.total:,} bytes from the first {compressed:,}); the "
                    "limit is OPENCHARGEBACK_INGEST_MAX_COMPRESSION_RATIO"
                )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


@dataclass
class _Piece:
    """Whole records of a CSV, at most a chunk's worth, blank lines left out.

    ``rows``: the line each record starts on; ``longest``: the longest record
    in bytes.
    """

    data: bytes  # emptied once parsed
    rows: list[int]
    longest: int
    has_nul: bool


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 13, 32]] = True  # tab, LF, CR, space: what makes a line blank


class _Records:
    """Splits the decompressed text of a CSV (after its header line) into pieces
    of whole records, with the line each starts on.

    A record ends at a newline outside quotes (RFC 4180: a field with a quote
    in it is quoted, its quotes doubled, so the quotes before a record's end
    are even). No record may be longer than ``max_line`` bytes, which also
    catches a quote that is never closed early; blank lines cost one pass of
    numpy per block. Pieces hold at most ``max_rows`` rows and about
    ``max_bytes`` bytes (always at least one record), so the memory of a chunk
    is bounded whatever the file's shape.
    """

    BLOCK = 1024 * 1024

    def __init__(self, raw: io.RawIOBase, name: str, max_line: int) -> None:
        self.raw = raw
        self.name = name
        self.max_line = max_line
        self.consumed = 0  # bytes of text through the last piece yielded

    def _too_long(self, line: int) -> IngestError:
        return IngestError(
            f"{self.name}, line {line}: a line longer than {self.max_line:,} bytes "
            "(OPENCHARGEBACK_INGEST_MAX_LINE_BYTES), or a quoted field that is never closed"
        )

    def _skip_header(self) -> bytes:
        data = b""
        while True:
            block = self.raw.read(self.BLOCK)
            if not block:
                return b""
            data += block
            cut = data.find(b"\n")
            if cut >= 0:
                self.consumed = cut + 1
                return data[cut + 1 :]
            if len(data) > self.max_line:
                raise self._too_long(1)

    def pieces(self, max_rows: int, max_bytes: int) -> Iterator[_Piece]:
        carry = self._skip_header()
        line = 2  # the line ``carry`` starts on
        parts: list[bytes] = []
        size = 0  # bytes of the file in the piece, blank lines included
        rows: list[int] = []
        longest = 0
        has_nul = False
        at_end = False
        while not at_end:
            block = self.raw.read(self.BLOCK)
            at_end = not block
            data = carry + block if carry else block
            if at_end:
                if not data:
                    break
                if not data.endswith(b"\n"):
                    data += b"\n"  # the last record, without its newline
            if not data:
                continue
            arr = np.frombuffer(data, dtype=np.uint8)
            newlines = np.flatnonzero(arr == 10)
            quotes = np.flatnonzero(arr == 34)
            if quotes.size:
                inside = np.searchsorted(quotes, newlines, side="right") & 1
                ends = newlines[inside == 0]
            else:
                ends = newlines
            if at_end and (not ends.size or ends[-1] != len(data) - 1):
                # Quotes left open at the end: one last record, which pandas
                # reads (a stray quote in an unquoted field) or refuses.
                ends = np.append(ends, len(data) - 1)
            if not ends.size:
                if len(data) > self.max_line:
                    raise self._too_long(line)
                carry = data
                continue
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            lengths = ends - starts
            # The line of each record: ``line`` plus the newlines before it.
            record_lines = line + np.searchsorted(newlines, starts)
            over = np.flatnonzero(lengths > self.max_line)
            if over.size:
                raise self._too_long(int(record_lines[over[0]]))
            solid = np.cumsum(~_WHITESPACE[arr], dtype=np.int32)
            filled = solid[ends] - np.where(starts > 0, solid[starts - 1], 0)
            last = int(ends[-1]) + 1
            carry = data[last:]
            line += int(np.searchsorted(newlines, last))
            if len(carry) > self.max_line:
                raise self._too_long(line)
            nul = data.find(b"\x00", 0, last) >= 0
            view = memoryview(data)
            blank = filled == 0
            # Cut into pieces: by rows (non-blank records) and by bytes. Blank
            # records are counted (bytes) but left out of the pieces.
            taken = 0
            count = ends.size
            nonblank_cum = np.cumsum(~blank)
            while taken < count:
                room_rows = max_rows - len(rows)
                room_bytes = max(max_bytes - size, 0)
                base_rows = int(nonblank_cum[taken - 1]) if taken else 0
                by_rows = int(np.searchsorted(nonblank_cum, base_rows + room_rows, side="right"))
                base_offset = int(starts[taken])
                by_bytes = int(np.searchsorted(ends + 1 - base_offset, room_bytes, side="right"))
                stop = min(count, by_rows, max(by_bytes, taken + (0 if size else 1)))
                if stop > taken:
                    keep = taken + np.flatnonzero(~blank[taken:stop])
                    if keep.size:
                        # Runs of consecutive kept records, each one slice of data.
                        breaks = np.flatnonzero(np.diff(keep) != 1)
                        firsts = np.concatenate(([keep[0]], keep[breaks + 1]))
                        lasts = np.concatenate((keep[breaks], [keep[-1]]))
                        for first, final in zip(firsts.tolist(), lasts.tolist(), strict=True):
                            parts.append(view[int(starts[first]) : int(ends[final]) + 1])
                        rows.extend(record_lines[keep].tolist())
                        longest = max(longest, int(lengths[keep].max()))
                        has_nul = has_nul or nul
                    size += int(ends[stop - 1]) + 1 - base_offset
                    taken = stop
                if taken < count or len(rows) >= max_rows or size >= max_bytes:
                    self.consumed += size
                    piece = _Piece(b"".join(parts), rows, longest, has_nul)
                    parts, size, rows, longest, has_nul = [], 0, [], 0, False
                    yield piece
        if size:
            self.consumed += size
            yield _Piece(b"".join(parts), rows, longest, has_nul)


class _CompressTee(io.RawIOBase):
    """Passes reads through and writes the same bytes zstd-compressed to a file.

    The copy is written to ``<target>.part`` and renamed to ``target`` (after
    an fsync) only when the source was read to the end, so a reader stopped
    early never leaves something that looks complete. zstd (from pyarrow) is
    about three times faster than gzip at a better ratio.
    """

    def __init__(self, inner: IO[bytes], target: Path, on_error: Callable[[OSError], None]) -> None:
        import pyarrow as pa

        self.inner = inner
        self.target = target
        self.partial = target.with_name(target.name + ".part")
        self.out = pa.CompressedOutputStream(str(self.partial), "zstd")
        self.at_end = False
        # A copy that cannot be written (a full disk) stops; reading goes on,
        # and the import is refused when it wants the copy (nothing half kept).
        self.failed = False
        self.on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        if data:
            if not self.failed:
                try:
                    self.out.write(data)
                except OSError as exc:
                    self._fail(exc)
        else:
            self.at_end = True
        buffer[: len(data)] = data
        return len(data)

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        self.on_error(exc)

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
            try:
                self.out.close()
                if self.at_end and not self.failed:
                    fd = os.open(self.partial, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(self.partial, self.target)
            except OSError as exc:
                self._fail(exc)
            if self.failed or not self.at_end:
                self.partial.unlink(missing_ok=True)
        super().close()


class _CountingReader(io.RawIOBase):
    """Passes reads through and tells how far into the file on disk we are."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def compressed_position(self) -> int:
        fileobj = getattr(getattr(self.inner, "inner", None), "fileobj", None)
        if fileobj is not None:
            try:
                return int(fileobj.tell())
            except (OSError, ValueError):
                return self.position
        return self.position

    def close(self) -> None:
        self.inner.close()
        super().close()


def _open_binary(path: Path, kind: str, limits: Limits, name: str) -> IO[bytes]:
    if kind == "csv.gz":
        gz = gzip.GzipFile(filename=str(path), mode="rb")
        return io.BufferedReader(_LimitedReader(gz, limits, name), buffer_size=1 << 20)
    return open(path, "rb")


def detect_kind(head: bytes) -> str:
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(GZIP_MAGIC):
        return "csv.gz"
    return "csv"


def open_focus(
    path: str | os.PathLike[str],
    *,
    display_name: str | None = None,
    chunk_rows: int = 20_000,
    max_file_bytes: int = 4 * 1024**3,
    max_uncompressed: int = 16 * 1024**3,
    progress: Callable[[int, int], None] | None = None,
    limits: Limits | None = None,
) -> FocusReader:
    """Check a FOCUS file and its header; raise :class:`IngestError` if unusable.

    ``limits`` (with its own ``max_uncompressed``) wins over ``max_uncompressed``.
    """
    path = Path(path)
    limits = limits or Limits(max_uncompressed=max_uncompressed)
    name = display_name or path.name
    if not path.is_file():
        raise IngestError(f"{name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(f"{name}: the file is empty")
    if size > max_file_bytes:
        raise IngestError(
            f"{name}: {size:,} bytes is over the {max_file_bytes:,}-byte limit "
            "(OPENCHARGEBACK_INGEST_MAX_FILE_BYTES)"
        )
    with open(path, "rb") as fh:
        head = fh.read(4)
    kind = detect_kind(head)
    if kind == "parquet":
        header = _parquet_header(path, name, limits)
    else:
        header = _csv_header(path, kind, name, limits)
    if len(header) > limits.max_columns:
        where = "schema" if kind == "parquet" else "line 1"
        raise IngestError(
            f"{name}, {where}: {len(header):,} columns, more than the {limits.max_columns:,} "
            "allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)"
        )
    positions = _resolve(header, name, kind)
    return FocusReader(
        path=path,
        display_name=name,
        kind=kind,
        header=header,
        positions=positions,
        chunk_rows=chunk_rows,
        limits=limits,
        progress=progress,
        names=_identity_names(header, positions),
        legacy_positions=_legacy_positions(header),
    )


def _csv_header(path: Path, kind: str, name: str, limits: Limits) -> list[str]:
    most = limits.max_header_bytes
    try:
        with _open_binary(path, kind, limits, name) as raw:
            sample = raw.read(most + 64 * 1024)
            if not sample:
                raise IngestError(f"{name}: the file is empty (nothing after decompression)")
            first = sample.split(b"\n", 1)[0]
            if len(first) > most:
                raise IngestError(
                    f"{name}, line 1: a header line longer than {most:,} bytes "
                    "(OPENCHARGEBACK_INGEST_MAX_HEADER_BYTES)"
                )
            if b"\x00" in first:
                raise IngestError(f"{name}: binary content, not a FOCUS CSV file")
            try:
                text = first.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise IngestError(f"{name}, line 1: header is not UTF-8 text") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IngestError(f"{name}: cannot read the file ({exc})") from None
    except _LimitExceeded as exc:
        raise IngestError(str(exc)) from None
    if not text.strip():
        raise IngestError(f"{name}, line 1: the header line is empty")
    header = next(csv.reader([text.rstrip("\r\n")]))
    if len(sample.split(b"\n", 1)) == 1 or not sample.split(b"\n", 1)[1].strip():
        raise IngestError(f"{name}: has a header but no data rows; nothing to import")
    return header


def _parquet_header(path: Path, name: str, limits: Limits) -> list[str]:
    """The column names, from the metadata alone (nothing is decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{name}: unreadable Parquet file ({exc})") from None
    metadata = handle.metadata
    if metadata.num_columns > limits.max_columns:
        raise IngestError(
            f"{name}, schema: {metadata.num_columns:,} columns, more than the "
            f"{limits.max_columns:,} allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)"
        )
    if metadata.num_rows == 0:
        raise IngestError(f"{name}: the Parquet file has no rows; nothing to import")
    most = limits.max_row_group_bytes
    first = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        size = max(
            group.total_byte_size,
            sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)),
        )
        if size > most:
            raise IngestError(
                f"{name}, rows {first + 1:,} to {first + group.num_rows:,}: a row group of "
                f"{size:,} bytes uncompressed, more than the {most:,} allowed "
                "(OPENCHARGEBACK_INGEST_MAX_ROW_GROUP_BYTES); write the file with smaller "
                "row groups"
            )
        first += group.num_rows
    return list(handle.schema_arrow.names)


def _normal(name: str) -> str:
    return name.strip().strip("\ufeff").strip().lower()


def _resolve(header: list[str], name: str, kind: str) -> dict[str, int]:
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


def _identity_names(header: list[str], positions: dict[str, int]) -> list[str]:
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


def _legacy_positions(header: list[str]) -> dict[str, int]:
    """canonical -> index of the columns fingerprint version 1 hashed."""
    positions: dict[str, int] = {}
    for index, raw in enumerate(header):
        canon = _V1_ALIASES.get(_normal(raw))
        if canon is not None and canon not in positions:
            positions[canon] = index
    return positions


# --- Values -------------------------------------------------------------------


def is_null(value: str) -> bool:
    return value in _NULLS


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date or date-time (``Z``, offsets, a space separator); UTC if naive.

    The instant is kept: ``2024-10-01T00:00:00+02:00`` is 2024-09-30 22:00 UTC.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_period(text: str) -> str:
    """The billing month a BillingPeriodStart names: ``YYYY-MM`` as written.

    The month of the date the provider wrote, in the provider's own offset:
    ``2024-10-01T00:00:00+02:00`` is October, never converted to UTC first
    (that would be September 30).
    """
    return month_of(datetime.fromisoformat(text))
