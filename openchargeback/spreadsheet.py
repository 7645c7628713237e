"""Text that a spreadsheet would run as a formula, made harmless.

A CSV or XLSX cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is a formula to Excel, LibreOffice and Google Sheets
(CSV injection). Every text cell this project writes goes through
:func:`neutralise`, which puts an apostrophe in front; numbers are written
as numbers and never pass through it.

The apostrophe is reversible: :func:`restore` removes exactly the one that
:func:`neutralise` added, so a file that is exported, edited in a spreadsheet
and imported again (account mappings, exchange rates) gives back the text
that was exported. For that, text that already starts with apostrophes before
a formula character (``'=x``) gets one more (``''=x``).
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def _needs_apostrophe(value: str) -> bool:
    text = value.lstrip("'")
    return text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text)


def neutralise(value: str) -> str:
    """``'`` + value when it would start a formula; a plain signed number such as a
    quantity of ``-1.5`` is left alone (a spreadsheet reads it as the number)."""
    return "'" + value if _needs_apostrophe(value) else value


def restore(value: str) -> str:
    """The text :func:`neutralise` was given: ``restore(neutralise(v)) == v`` for
    every string (an apostrophe that neutralise did not add is kept)."""
    if value.startswith("'") and _needs_apostrophe(value[1:]):
        return value[1:]
    return value
