"""Text that a spreadsheet would run as a formula, made harmless.

A CSV or XLSX cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is a formula to Excel, LibreOffice and Google Sheets
(CSV injection). Every text cell this project writes goes through
:func:`neutralise`, which puts an apostrophe in front; numbers are written
as numbers and never pass through it.
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def neutralise(value: str) -> str:
    """``'`` + value when it would start a formula; a plain signed number such as a
    quantity of ``-1.5`` is left alone (a spreadsheet reads it as the number)."""
    if value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value
