"""A CSV's text cut into pieces of whole records before pandas parses them:
records end at newlines outside quotes, no record is longer than the line
limit, a piece holds a bounded number of rows and bytes whatever the file's
shape; and pandas's errors told with the file's own line numbers."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ingest.focus.errors import IngestError


@dataclass
class Piece:
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


class Records:
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

    def pieces(self, max_rows: int, max_bytes: int) -> Iterator[Piece]:
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
                    piece = Piece(b"".join(parts), rows, longest, has_nul)
                    parts, size, rows, longest, has_nul = [], 0, [], 0, False
                    yield piece
        if size:
            self.consumed += size
            yield Piece(b"".join(parts), rows, longest, has_nul)


def fallback_lines(piece: Piece, rows: int) -> list[int]:
    """Line numbers when pandas split the records otherwise than :class:`Records`
    (a stray quote in an unquoted field): one record per line from the first."""
    return list(range(piece.rows[0], piece.rows[0] + rows))


def parser_message(exc: Exception, lines: list[int]) -> str:
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
