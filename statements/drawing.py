"""What a statement PDF is drawn with: its colours, paragraph styles, table
cells (drawn directly when they fit, wrapped when not), amounts in the
institution's format, the striped table and the "Page x of y" footer. What
goes where on the page is :mod:`statements.pdf`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

from openchargeback.money import format_money
from statements import fonts
from statements.building import StatementData

INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#52606d")
RULE = colors.HexColor("#cbd2d9")
BAND = colors.HexColor("#f0f4f8")
HEAD = colors.HexColor("#243b53")
GREEN = colors.HexColor("#0b6e4f")

BASE = ParagraphStyle("base", fontName="Helvetica", fontSize=9, leading=11.5, textColor=INK)
SMALL = ParagraphStyle("small", parent=BASE, fontSize=7.5, leading=9.5, textColor=MUTED)
LABEL = ParagraphStyle("label", parent=SMALL, fontName="Helvetica-Bold", fontSize=7)
TITLE = ParagraphStyle("title", parent=BASE, fontName="Helvetica-Bold", fontSize=17, leading=21)
H2 = ParagraphStyle(
    "h2", parent=BASE, fontName="Helvetica-Bold", fontSize=11.5, leading=14, spaceBefore=10
)
CELL = ParagraphStyle("cell", parent=BASE, fontSize=8.5, leading=10.5)
CELL_RIGHT = ParagraphStyle("cell_right", parent=CELL, alignment=TA_RIGHT)
BIG = ParagraphStyle("big", parent=BASE, fontName="Helvetica-Bold", fontSize=15, leading=19)
BIG_RIGHT = ParagraphStyle("big_right", parent=BIG, alignment=TA_RIGHT)
BIG_GREEN = ParagraphStyle("big_green", parent=BIG, textColor=GREEN)
# A summary box with four or five amounts sets them smaller.
MID = ParagraphStyle("mid", parent=BIG, fontSize=12, leading=15)
MID_RIGHT = ParagraphStyle("mid_right", parent=MID, alignment=TA_RIGHT)
MID_GREEN = ParagraphStyle("mid_green", parent=MID, textColor=GREEN)

MARGIN = 0.7 * inch

PADDING = 6  # a table cell's left and right padding (reportlab's default)


def text(value: object, font: str = fonts.BASE) -> str:
    """Anything as reportlab Paragraph markup: escaped (``&``, ``<``, ``>``,
    quotes), each character in a font that has it. `font` is the paragraph's
    own (Helvetica-Bold in a bold style)."""
    return fonts.markup(value, font)


class Line(NamedTuple):
    """One line of a table cell, in one font."""

    text: str
    font: str = "Helvetica"
    size: float = 8.5
    color: Any = INK


class _Lines(Flowable):
    """Short lines drawn as they are: no markup is parsed and nothing wraps.

    Most table cells are a short name or an amount; drawing them directly
    is ten times cheaper than a Paragraph. :func:`cell` uses this only when
    every line fits its column, so nothing can overlap.
    """

    LEADING = 1.24

    def __init__(self, lines: list[Line], width: float, *, right: bool) -> None:
        super().__init__()
        self.lines, self.right, self.fixed_width = lines, right, width

    def wrap(self, _avail_width: float, _avail_height: float) -> tuple[float, float]:
        return self.fixed_width, sum(line.size * self.LEADING for line in self.lines)

    def draw(self) -> None:
        canvas = self.canv
        y = sum(line.size * self.LEADING for line in self.lines)
        for line in self.lines:
            y -= line.size * self.LEADING
            baseline = y + line.size * 0.26
            canvas.setFillColor(line.color)
            if self.right:
                fonts.draw_right(
                    canvas, self.fixed_width, baseline, line.text, line.font, line.size
                )
            else:
                fonts.draw(canvas, 0, baseline, line.text, line.font, line.size)


def cell(lines: list[Line], column: float, *, right: bool = False) -> Flowable:
    """A table cell for `column` points: drawn directly when it fits, else wrapped.

    Amounts never wrap: one too wide for its column is set smaller until it
    fits. Text too wide becomes a Paragraph (escaped) that wraps.
    """
    avail = column - 2 * PADDING
    widths = [fonts.width(line.text, line.font, line.size) for line in lines]
    if all(w <= avail for w in widths):
        return _Lines(lines, avail, right=right)
    if right:
        scale = max(min(avail / w for w in widths if w), 0.5)
        return _Lines([line._replace(size=line.size * scale) for line in lines], avail, right=True)
    markup = "<br/>".join(
        f'<font name="{line.font}" size="{line.size}" color="#{line.color.hexval()[2:]}">'
        f"{text(line.text, line.font)}</font>"
        for line in lines
    )
    return Paragraph(markup, ParagraphStyle("wrapped", parent=CELL, leading=10.5))


class Money:
    def __init__(self, data: StatementData) -> None:
        inst = data.institution
        self.kwargs: dict[str, Any] = {
            "currency": inst.currency,
            "thousands": inst.thousands_separator,
            "decimal_point": inst.decimal_separator,
        }

    def __call__(self, amount: Decimal) -> str:
        """For a Paragraph in a bold style (escaped)."""
        return text(self.plain(amount), fonts.BASE_BOLD)

    def plain(self, amount: Decimal) -> str:
        return format_money(amount, **self.kwargs)

    def contribution(self, amount: Decimal) -> str:
        """The institution's contribution, shown as a reduction (never blank)."""
        return text(self.plain_contribution(amount), fonts.BASE_BOLD)

    def plain_contribution(self, amount: Decimal) -> str:
        return self.plain(-amount if amount else Decimal(0))


def numbered_canvas(contact: str, generated: str, footer_right: str) -> type[Canvas]:
    """A canvas that knows the page count, for "Page x of y" footers. On the left,
    `contact` (cut short to leave room) and `generated`."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab's API name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            width, _height = self._pagesize
            self.saveState()
            self.setStrokeColor(RULE)
            self.setLineWidth(0.5)
            left, right = MARGIN + PADDING, width - MARGIN - PADDING  # the body's edges
            self.line(left, 0.62 * inch, right, 0.62 * inch)
            self.setFillColor(MUTED)
            page = f"{footer_right}Page {self._pageNumber} of {total}"
            fonts.draw_right(self, right, 0.45 * inch, page, fonts.BASE, 7.5)
            used = fonts.width(page, fonts.BASE, 7.5) + fonts.width(generated, fonts.BASE, 7.5)
            shown = fonts.fit(contact, fonts.BASE, 7.5, right - left - used - 12) + generated
            fonts.draw(self, left, 0.45 * inch, shown, fonts.BASE, 7.5)
            self.restoreState()

    return NumberedCanvas


def striped_table(rows: list[list[Any]], widths: list[float | None], *, total_row: bool) -> Table:
    # A row taller than a page (a name thousands of characters long) splits.
    table = Table(rows, colWidths=widths, repeatRows=1, splitInRow=1)
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), HEAD),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, RULE),
    ]
    for index in range(2, len(rows), 2):
        style.append(("BACKGROUND", (0, index), (-1, index), BAND))
    if total_row:
        style += [
            ("LINEABOVE", (0, -1), (-1, -1), 1, INK),
            ("BACKGROUND", (0, -1), (-1, -1), colors.white),
        ]
    table.setStyle(TableStyle(style))
    return table
