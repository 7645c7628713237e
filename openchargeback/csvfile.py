"""The one CSV writer of the product (RFC 4180).

Every CSV file OpenChargeback writes goes through :class:`CsvWriter`:

* a field holding a comma, a double quote, a carriage return or a line feed
  is quoted (quotes doubled), whatever the line terminator; outside quotes
  the only line breaks are the terminator, the same on every line;
* the terminator is CRLF, except for the FOCUS files the product generates
  for its own importer (converter output, sample data), which keep LF;
* NUL characters are dropped (no importer of this product accepts them, and
  spreadsheets truncate or refuse them);
* with ``neutralise=True`` (files people open in a spreadsheet) a text cell
  that a spreadsheet would run as a formula gets a leading apostrophe (see
  :mod:`openchargeback.spreadsheet`); :func:`~openchargeback.spreadsheet.restore`
  removes exactly that apostrophe, so a file that is also imported again
  reads back what was exported. Numbers (``Decimal``, ``int``) are written as
  numbers and never touched.

Why not ``csv.writer`` alone: with ``lineterminator="\\n"`` it quotes a field
holding a line feed but not one holding a bare carriage return, which
spreadsheets and many readers take as a line break (rows split, and the text
after the CR escapes formula neutralising).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final, Literal, TextIO

from openchargeback.spreadsheet import neutralise as neutralise_text

LineEnd = Literal["\r\n", "\n"]
CRLF: Final = "\r\n"
LF: Final = "\n"

# csv.writer quotes a field holding any character of its line terminator; with
# CRLF that is both CR and LF. Rows are always produced with it, and the last
# two characters swapped for LF when the file wants LF.
_QUOTING_TERMINATOR: Final = CRLF


def cell_text(value: Any, *, neutralise: bool) -> str:
    """A value as the text of one CSV cell (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"  # exact, never 1E-7
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value).replace("\0", "")
    return neutralise_text(text) if neutralise else text


class _Rows:
    """The file object csv.writer writes to: one call per row, terminator swapped."""

    def __init__(self, out: TextIO, line_end: str) -> None:
        self.out = out
        self.line_end = line_end

    def write(self, line: str) -> int:
        if not line.endswith(_QUOTING_TERMINATOR):  # pragma: no cover - csv contract
            raise ValueError("csv.writer wrote a partial row")
        if self.line_end != _QUOTING_TERMINATOR:
            line = line[: -len(_QUOTING_TERMINATOR)] + self.line_end
        return self.out.write(line)


class CsvWriter:
    """Rows of values to CSV text on `out` (a text stream opened with ``newline=""``)."""

    def __init__(self, out: TextIO, *, neutralise: bool, line_end: LineEnd = CRLF) -> None:
        if line_end not in (CRLF, LF):
            raise ValueError(f"line_end must be CRLF or LF, not {line_end!r}")
        self.neutralise = neutralise
        self._writer = csv.writer(
            _Rows(out, line_end), lineterminator=_QUOTING_TERMINATOR, quoting=csv.QUOTE_MINIMAL
        )

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([cell_text(v, neutralise=self.neutralise) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(
    rows: Iterable[Iterable[Any]],
    *,
    neutralise: bool,
    line_end: LineEnd = CRLF,
) -> str:
    """The whole file as text: the first row is the header."""
    buffer = io.StringIO(newline="")
    CsvWriter(buffer, neutralise=neutralise, line_end=line_end).writerows(rows)
    return buffer.getvalue()
