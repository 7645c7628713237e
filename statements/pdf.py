"""A statement as a PDF (reportlab platypus; no HTML engine).

Every dynamic string goes through :func:`text` (escaped for reportlab's
paragraph markup), so a project called ``<b>x`` or ``<img src=...>`` is
printed as those characters and never read as markup or a file. With the
same :class:`~statements.building.StatementData` and generation time the
bytes are identical (reportlab's invariant mode).
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from openchargeback.money import format_money
from statements.building import Remainder, StatementData

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
CELL_HEAD = ParagraphStyle("cell_head", parent=CELL, fontName="Helvetica-Bold", textColor="white")
CELL_HEAD_RIGHT = ParagraphStyle("cell_head_right", parent=CELL_HEAD, alignment=TA_RIGHT)
BIG = ParagraphStyle("big", parent=BASE, fontName="Helvetica-Bold", fontSize=15, leading=19)
BIG_RIGHT = ParagraphStyle("big_right", parent=BIG, alignment=TA_RIGHT)
BIG_GREEN = ParagraphStyle("big_green", parent=BIG, textColor=GREEN)

MARGIN = 0.7 * inch


def text(value: object) -> str:
    """Escape anything for a reportlab Paragraph (``&``, ``<``, ``>``, quotes)."""
    return escape(str(value), {'"': "&quot;", "'": "&#39;"})


class _Money:
    def __init__(self, data: StatementData) -> None:
        inst = data.institution
        self.kwargs: dict[str, Any] = {
            "currency": inst.currency,
            "thousands": inst.thousands_separator,
            "decimal_point": inst.decimal_separator,
        }

    def __call__(self, amount: Decimal) -> str:
        return text(format_money(amount, **self.kwargs))

    def contribution(self, amount: Decimal) -> str:
        """The institution's contribution, shown as a reduction (never blank)."""
        if not amount:
            return text(format_money(Decimal(0), **self.kwargs))
        return self(-amount)


def _numbered_canvas(footer_left: str, footer_right: str) -> type[Canvas]:
    """A canvas that knows the page count, for "Page x of y" footers."""

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
            self.line(MARGIN, 0.62 * inch, width - MARGIN, 0.62 * inch)
            self.setFont("Helvetica", 7.5)
            self.setFillColor(MUTED)
            self.drawString(MARGIN, 0.45 * inch, footer_left)
            self.drawRightString(
                width - MARGIN,
                0.45 * inch,
                f"{footer_right}Page {self._pageNumber} of {total}",
            )
            self.restoreState()

    return NumberedCanvas


def _table(rows: list[list[Any]], widths: list[float | None], *, total_row: bool) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
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


def _header(data: StatementData, number: str) -> list[Any]:
    inst = data.institution
    contact = [text(inst.name)]
    if inst.address:
        contact.append(text(inst.address).replace("\n", "<br/>"))
    reach = " · ".join(text(v) for v in (inst.contact_email, inst.contact_phone) if v)
    if reach:
        contact.append(reach)
    top = Table(
        [
            [
                Paragraph("Statement of research computing charges", TITLE),
                Paragraph(f"Statement <b>{text(number)}</b>", CELL_RIGHT),
            ],
            [Paragraph("<br/>".join(contact), SMALL), ""],
        ],
        colWidths=[5.0 * inch, None],
    )
    top.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("LINEBELOW", (0, -1), (-1, -1), 1.2, INK),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 8),
            ]
        )
    )
    project = text(data.project_id) if data.project_id else "(no project)"
    if data.project_title:
        project += f"<br/>{text(data.project_title)}"
    pi = text(data.pi_name) + "<br/>" if data.pi_name else ""
    pi += text(data.pi_email)
    info = Table(
        [
            [
                Paragraph("BILLING PERIOD", LABEL),
                Paragraph("PRINCIPAL INVESTIGATOR", LABEL),
                Paragraph("PROJECT", LABEL),
                Paragraph("FUND/ORG", LABEL),
            ],
            [
                Paragraph(text(data.period), BASE),
                Paragraph(pi, BASE),
                Paragraph(project, BASE),
                Paragraph(text(data.fund_org) or "-", BASE),
            ],
        ],
        colWidths=[1.1 * inch, 2.35 * inch, 2.1 * inch, None],
    )
    info.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), BAND),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, 0), 7),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 7),
            ]
        )
    )
    return [top, Spacer(1, 10), info, Spacer(1, 8)]


def _summary(data: StatementData, money: _Money) -> Table:
    percent = data.discount_percent
    share = f" ({percent}%)" if percent is not None else ""
    box = Table(
        [
            [
                Paragraph("LIST PRICE", LABEL),
                Paragraph("INSTITUTIONAL SUBSIDY", LABEL),
                Paragraph("AMOUNT DUE", ParagraphStyle("l", parent=LABEL, alignment=TA_RIGHT)),
            ],
            [
                Paragraph(money(data.list_total), BIG),
                Paragraph(money.contribution(data.discount_total) + share, BIG_GREEN),
                Paragraph(money(data.billed_total), BIG_RIGHT),
            ],
        ],
        colWidths=[2.0 * inch, 2.9 * inch, None],
    )
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.75, RULE),
                ("TOPPADDING", (0, 0), (-1, 0), 7),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 8),
            ]
        )
    )
    return box


def _service_table(data: StatementData, money: _Money) -> Table:
    rows: list[list[Any]] = [
        [
            Paragraph("Source", CELL_HEAD),
            Paragraph("Service", CELL_HEAD),
            Paragraph("List price", CELL_HEAD_RIGHT),
            Paragraph("Subsidy", CELL_HEAD_RIGHT),
            Paragraph("Amount", CELL_HEAD_RIGHT),
        ]
    ]
    for line in data.lines:
        service = text(line.service) or "(no service name)"
        if line.list_amount > 0 and line.billed == 0:
            service += '<br/><font size="7" color="#0b6e4f">Fully covered by the institution</font>'
        rows.append(
            [
                Paragraph(text(line.source), CELL),
                Paragraph(service, CELL),
                Paragraph(money(line.list_amount), CELL_RIGHT),
                Paragraph(money.contribution(line.discount), CELL_RIGHT),
                Paragraph(money(line.billed), CELL_RIGHT),
            ]
        )
    bold = ParagraphStyle("b", parent=CELL_RIGHT, fontName="Helvetica-Bold")
    rows.append(
        [
            Paragraph("<b>Total</b>", CELL),
            "",
            Paragraph(money(data.list_total), bold),
            Paragraph(money.contribution(data.discount_total), bold),
            Paragraph(money(data.billed_total), bold),
        ]
    )
    widths: list[float | None] = [0.9 * inch, 2.75 * inch, 1.1 * inch, 1.1 * inch, None]
    return _table(rows, widths, total_row=True)


def _resource_table(data: StatementData, money: _Money) -> Table:
    rows: list[list[Any]] = [
        [
            Paragraph("Resource", CELL_HEAD),
            Paragraph("Service", CELL_HEAD),
            Paragraph("Items", CELL_HEAD_RIGHT),
            Paragraph("List price", CELL_HEAD_RIGHT),
            Paragraph("Subsidy", CELL_HEAD_RIGHT),
            Paragraph("Amount", CELL_HEAD_RIGHT),
        ]
    ]
    for res in data.resources:
        name = text(res.resource_name or res.resource_id) or "(unnamed)"
        if res.resource_name and res.resource_id and res.resource_id != res.resource_name:
            name += f'<br/><font size="7" color="#52606d">{text(res.resource_id)}</font>'
        rows.append(
            [
                Paragraph(name, CELL),
                Paragraph(text(res.service), CELL),
                Paragraph(f"{res.charges:,}", CELL_RIGHT),
                Paragraph(money(res.list_amount), CELL_RIGHT),
                Paragraph(money.contribution(res.discount), CELL_RIGHT),
                Paragraph(money(res.billed), CELL_RIGHT),
            ]
        )
    rest: Remainder | None = data.remainder
    if rest is not None:
        rows.append(
            [
                Paragraph(
                    f"<i>{rest.resources:,} other resources</i> (every line item is in the "
                    "CSV file sent with this statement)",
                    CELL,
                ),
                "",
                Paragraph(f"{rest.charges:,}", CELL_RIGHT),
                Paragraph(money(rest.list_amount), CELL_RIGHT),
                Paragraph(money.contribution(rest.discount), CELL_RIGHT),
                Paragraph(money(rest.billed), CELL_RIGHT),
            ]
        )
    widths: list[float | None] = [
        2.35 * inch,
        1.45 * inch,
        0.55 * inch,
        0.95 * inch,
        0.85 * inch,
        None,
    ]
    return _table(rows, widths, total_row=False)


def render(data: StatementData, *, number: str, generated_at: datetime) -> bytes:
    """The statement PDF; identical bytes for identical arguments."""
    money = _Money(data)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=LETTER,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=0.6 * inch,
        bottomMargin=0.85 * inch,
        title=f"Statement {number}",
        author=data.institution.name,
        subject=f"{data.period} {data.pi_email} {data.project_id}",
        creator="OpenChargeback",
        invariant=1,
    )
    story: list[Any] = _header(data, number)
    story += [_summary(data, money), Paragraph("Charges by service", H2), Spacer(1, 4)]
    story.append(_service_table(data, money))
    rounding = data.exact_billed - data.billed_total
    note = (
        "Amounts are rounded to the cent per service line; the amount due is the sum of the "
        f"rounded lines. {data.charge_count:,} charge line items"
    )
    if rounding:
        note += (
            f"; unrounded total {text(format_money(data.exact_billed, **money.kwargs, places=6))}"
        )
    story.append(Spacer(1, 4))
    story.append(Paragraph(note + ".", SMALL))
    if data.resources:
        story.append(KeepTogether([Paragraph("Details by resource", H2), Spacer(1, 4)]))
        story.append(_resource_table(data, money))
        story.append(Spacer(1, 3))
        story.append(
            Paragraph(
                "Resource amounts are rounded on their own and may differ from the service "
                "lines by a cent.",
                SMALL,
            )
        )
    inst = data.institution
    question = f"Questions: {inst.contact_email}" if inst.contact_email else inst.name
    footer_left = f"{question} · Generated {generated_at:%Y-%m-%d %H:%M} UTC"
    footer_right = f"Statement {number} · {data.period} · "
    doc.build(story, canvasmaker=_numbered_canvas(footer_left, footer_right))
    return buffer.getvalue()
