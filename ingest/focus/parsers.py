"""FOCUS file reading: CSV, CSV.gz and Parquet into chunks of string columns.

Pure I/O and validation, no ORM. :func:`open_focus` checks the file (size,
format, header) and returns a :class:`FocusReader` whose :meth:`chunks`
stream the recognised columns as lists of stripped strings, a bounded
number of rows at a time. Problems a user can cause raise
:class:`IngestError` with one line naming file, line and column.

The way in for hostile input (docs/security.md, "Limits") is this module
and the ones it reads through: ingest.focus.streams (gzip bombs, the kept
copy), ingest.focus.csv_records (records and the line limit),
ingest.focus.parquet_text (row groups, Parquet values as text) and
ingest.focus.columns (the header); every limit is ingest.focus.limits.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from billing.periods import month_of
from ingest.focus.columns import (
    clean_text,
    identity_names,
    legacy_column_positions,
    resolve_columns,
)
from ingest.focus.csv_records import Records, fallback_lines, parser_message
from ingest.focus.errors import IngestError
from ingest.focus.limits import Limits
from ingest.focus.parquet_text import arrow_text, is_text, parquet_header, text_columns, text_length
from ingest.focus.streams import (
    GZIP_MAGIC,
    CompressTee,
    CountingReader,
    LimitExceeded,
    open_binary,
)

PARQUET_MAGIC = b"PAR1"


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
        raw: Any = open_binary(self.path, self.kind, self.limits, self.display_name)
        if self.keep_copy_to is not None and self.kind == "csv":
            raw = CompressTee(raw, self.keep_copy_to, self._copy_failed)
        counted = CountingReader(raw)
        records = Records(counted, self.display_name, self.limits.max_line_bytes)
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
                    message = parser_message(exc, piece.rows)
                    raise IngestError(f"{self.display_name}: {message}") from None
                piece.data = b""  # not held while the chunk is used
                rows = len(frame)
                if not rows:
                    continue
                # pandas refuses a row with more fields than the header as it
                # reads it (``names``), before it holds the piece's cells.
                lines = piece.rows if rows == len(piece.rows) else fallback_lines(piece, rows)
                raw_cells = [frame[c].tolist() for c in frame.columns]
                del frame
                if piece.has_nul or piece.longest > self.limits.max_field_chars:
                    self.check_cells(raw_cells, lines, nul=piece.has_nul)
                cells = [[v.strip() for v in values] for values in raw_cells]
                # A byte-order mark can start a data line (two files joined).
                values = cells[0]
                for i, value in enumerate(values):
                    if value.startswith("\ufeff"):
                        values[i] = clean_text(value)
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
        except LimitExceeded as exc:
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
        with open_binary(self.path, self.kind, self.limits, self.display_name) as raw:
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
            handle = pq.ParquetFile(self.path, read_dictionary=text_columns(self.path))
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
                        cells.append(arrow_text(array))
                        if index in legacy_wanted and pa.types.is_timestamp(array.type):
                            legacy[index] = arrow_text(array, legacy=True)
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
            if pa.types.is_dictionary(kind) and is_text(kind.value_type):
                taken = pc.take(text_length(array.dictionary), array.indices)
            elif is_text(kind):
                taken = text_length(array)
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
        header = parquet_header(path, name, limits)
    else:
        header = _csv_header(path, kind, name, limits)
    if len(header) > limits.max_columns:
        where = "schema" if kind == "parquet" else "line 1"
        raise IngestError(
            f"{name}, {where}: {len(header):,} columns, more than the {limits.max_columns:,} "
            "allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)"
        )
    positions = resolve_columns(header, name, kind)
    return FocusReader(
        path=path,
        display_name=name,
        kind=kind,
        header=header,
        positions=positions,
        chunk_rows=chunk_rows,
        limits=limits,
        progress=progress,
        names=identity_names(header, positions),
        legacy_positions=legacy_column_positions(header),
    )


def _csv_header(path: Path, kind: str, name: str, limits: Limits) -> list[str]:
    most = limits.max_header_bytes
    try:
        with open_binary(path, kind, limits, name) as raw:
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
    except LimitExceeded as exc:
        raise IngestError(str(exc)) from None
    if not text.strip():
        raise IngestError(f"{name}, line 1: the header line is empty")
    header = next(csv.reader([text.rstrip("\r\n")]))
    if len(sample.split(b"\n", 1)) == 1 or not sample.split(b"\n", 1)[1].strip():
        raise IngestError(f"{name}: has a header but no data rows; nothing to import")
    return header


# --- Values -------------------------------------------------------------------

# Spellings of "no value" in every column (SQL exports write NULL, pandas NaT).
_NULLS = frozenset({"", "NULL", "null", "Null", "NaT", "None"})


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
