"""Fonts for statement PDFs: text in any script prints, never as boxes.

A statement draws each run of text in the first font of a chain that has
glyphs for it (by the font's character map):

1. Helvetica, reportlab's built-in (not embedded): every character of
   Windows-1252, so a statement in Western European languages looks and
   weighs what it always did;
2. Kurinto Sans (Latin, Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai and
   more), then Kurinto Sans SC, JP, TC and KR for Chinese, Japanese and
   Korean (a name with kana prefers the Japanese face, one with Hangul the
   Korean one), regular and bold; from the ``weblate-fonts`` package;
3. Noto Emoji (monochrome) and Noto Sans Symbols, from ``manimgx-fonts``.

The TrueType fonts are embedded as subsets of the glyphs used; each is read
the first time a statement needs it. Arabic and Hebrew are shaped (Arabic
letters joined by their presentation forms) and put in visual order before
drawing. A character no font has prints as U+FFFD (a visible replacement
mark), and invisible format characters (variation selectors, zero-width
joiners, direction marks) are dropped. See docs/decisions/0010-statement-fonts.md.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import arabic_reshaper
from bidi import get_display
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont

BASE = "Helvetica"
BASE_BOLD = "Helvetica-Bold"
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Face:
    """One TrueType font of the chain, with its bold variant when there is one."""

    name: str  # the name reportlab knows it by
    regular: Path
    bold: Path | None = None

    def font_name(self, bold: bool) -> str:
        return f"{self.name}-Bold" if bold and self.bold else self.name


def _kurinto(name: str) -> Face:
    folder = files("weblate_fonts") / "static" / "weblate_fonts" / "kurinto" / "ttf"
    return Face(
        name.replace("-", ""),
        Path(str(folder / f"{name}-Rg.ttf")),
        Path(str(folder / f"{name}-Bd.ttf")),
    )


def _noto(file: str, name: str) -> Face:
    return Face(name, Path(str(files("manimgx_fonts") / file)))


SANS = _kurinto("KurintoSans")
SC, JP, TC, KR = (_kurinto(f"KurintoSans{s}") for s in ("SC", "JP", "TC", "KR"))
EMOJI = _noto("NotoEmoji[wght].ttf", "NotoEmoji")
SYMBOLS = _noto("NotoSansSymbols[wght].ttf", "NotoSansSymbols")

NOWHERE = Face("", Path())  # no font has the character

# After Helvetica, in this order (CJK faces reordered per string, see _chain).
CHAIN: tuple[Face, ...] = (SANS, SC, JP, TC, KR, EMOJI, SYMBOLS)

_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_RTL = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff\U00010800-\U00010fff\U0001e800-\U0001efff]"
)
# Invisible characters that only steer shaping or direction, or pick an emoji
# presentation: dropped once the text is shaped and ordered.
_IGNORABLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e0fff]"
)

_lock = threading.Lock()


def _to_unicode_cmap(fontname: str, subset: list[int]) -> str:
    """reportlab's ToUnicode map for a subset, with characters beyond the Basic
    Multilingual Plane (emoji) written as UTF-16 pairs as PDF readers expect:
    reportlab writes 🔬 as ``<1F52C>``, which readers take for U+1F52."""
    original: str = _reportlab_to_unicode_cmap(fontname, subset)
    lines = original.split("\n")
    start = lines.index(f"{len(subset)} beginbfchar") + 1
    lines[start : start + len(subset)] = [
        f"<{code:02X}> <{chr(value).encode('utf-16-be').hex().upper() if value else '0000'}>"
        for code, value in enumerate(subset)
    ]
    return "\n".join(lines)


_reportlab_to_unicode_cmap = ttfonts.makeToUnicodeCMap
if "<1F52C>" in _reportlab_to_unicode_cmap("x", [0x1F52C]):  # not yet fixed upstream
    ttfonts.makeToUnicodeCMap = _to_unicode_cmap


@cache
def _cmap(face: Face) -> frozenset[int]:
    """The code points `face` has glyphs for (registering it, and its bold, with reportlab)."""
    with _lock:
        font = TTFont(face.name, str(face.regular))
        pdfmetrics.registerFont(font)
        if face.bold:
            pdfmetrics.registerFont(TTFont(f"{face.name}-Bold", str(face.bold)))
        pdfmetrics.registerFontFamily(
            face.name,
            normal=face.name,
            bold=face.font_name(True),
            italic=face.name,
            boldItalic=face.font_name(True),
        )
        return frozenset(code for code, glyph in font.face.charToGlyph.items() if glyph)


def _in_base(char: str) -> bool:
    """Helvetica draws exactly the printable characters of Windows-1252."""
    if char < " " or "\x7f" <= char < "\xa0":
        return False
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _chain(value: str) -> tuple[Face, ...]:
    """The fallback faces for `value`: Japanese text prefers the Japanese CJK face,
    Korean the Korean one (the same ideograph is drawn differently in each)."""
    if _KANA.search(value):
        return (SANS, JP, SC, TC, KR, EMOJI, SYMBOLS)
    if _HANGUL.search(value):
        return (SANS, KR, SC, JP, TC, EMOJI, SYMBOLS)
    return CHAIN


def visual(value: str) -> str:
    """`value` as drawn: NFC, tabs and line breaks as spaces, and any right-to-left
    text shaped and in visual order (left to right as the page is read)."""
    if value.isascii() and value.isprintable():
        return value
    value = unicodedata.normalize("NFC", value)
    if not value.isprintable():
        value = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    if _RTL.search(value):
        value = get_display(arabic_reshaper.reshape(value))
    return _IGNORABLE.sub("", value)


def runs(value: str, font: str = BASE) -> list[tuple[str, str]]:
    """`value` split into (font name, text) runs, each run in the first font of the
    chain that has all its characters. `font` is Helvetica or Helvetica-Bold."""
    value = visual(value)
    if all(map(_in_base, value)):
        return [(font, value)] if value else []
    bold = font == BASE_BOLD
    chain = _chain(value)
    out: list[tuple[str, str]] = []
    faces: list[Face | None] = []  # the face of each run (None: Helvetica)
    for char in value:
        found = _face_for(char, chain)
        if found is NOWHERE:
            char, found = REPLACEMENT, SANS
        name = found.font_name(bold) if found else font
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + char)
        elif char == " " and out and faces[-1] not in (EMOJI, SYMBOLS):
            out[-1] = (out[-1][0], out[-1][1] + char)  # a space stays in a run of text
        else:
            out.append((name, char))
            faces.append(found)
    return out


def _face_for(char: str, chain: tuple[Face, ...]) -> Face | None:
    """The face to draw `char` in: None for Helvetica, NOWHERE when no font has it."""
    if _in_base(char):
        return None
    code = ord(char)
    if code >= 0x1F000 and code in _cmap(EMOJI):  # pictographs all from one font
        return EMOJI
    for face in chain:
        if code in _cmap(face):
            return face
    return NOWHERE


def missing(value: str) -> str:
    """The characters of `value` that no font of the chain has (printed as U+FFFD)."""
    value = visual(value)
    chain = _chain(value)
    return "".join(c for c in value if _face_for(c, chain) is NOWHERE)


def width(value: str, font: str, size: float) -> float:
    return sum(pdfmetrics.stringWidth(t, name, size) for name, t in runs(value, font))


def draw(canvas: Any, x: float, y: float, value: str, font: str, size: float) -> None:
    """Draw `value` on `canvas` from (x, y), each run in its font."""
    for name, part in runs(value, font):
        canvas.setFont(name, size)
        canvas.drawString(x, y, part)
        x += pdfmetrics.stringWidth(part, name, size)


def draw_right(canvas: Any, x: float, y: float, value: str, font: str, size: float) -> None:
    """Draw `value` on `canvas` ending at x."""
    draw(canvas, x - width(value, font, size), y, value, font, size)


def fit(value: str, font: str, size: float, room: float) -> str:
    """`value`, cut short with an ellipsis if it is wider than `room` points."""
    if width(value, font, size) <= room:
        return value
    low, high = 0, len(value)
    while low < high:  # the longest prefix that fits with its ellipsis
        mid = (low + high + 1) // 2
        if width(value[:mid] + "…", font, size) <= room:
            low = mid
        else:
            high = mid - 1
    return value[:low] + "…"


def markup(value: object, font: str = BASE) -> str:
    """`value` as reportlab paragraph markup: escaped, and each run not in the
    paragraph's own font (Helvetica or Helvetica-Bold, as `font` says) in a
    ``<font name=...>`` tag."""
    out = []
    for name, part in runs(str(value), font):
        safe = escape(part, {'"': "&quot;", "'": "&#39;"})
        out.append(safe if name == font else f'<font name="{name}">{safe}</font>')
    return "".join(out)
