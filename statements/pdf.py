"""A statement as a PDF (reportlab platypus; no HTML engine).

Every dynamic string goes through :func:`text` (escaped for reportlab's
paragraph markup, each run of characters in a font that has them: see
:mod:`statements.fonts`), so a project called ``<b>x`` or ``<img src=...>``
is printed as those characters and never read as markup or a file, and a PI
called 张伟 or محمد is printed in Chinese or Arabic. A name of any length
wraps, breaking a long token anywhere, and a table row taller than a page
continues on the next. With the
same :class:`~statements.building.StatementData` and generation time the
bytes are identical (reportlab's invariant mode).
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from billing.currencies import describe
from ingest.focus.basis import DIFFERENCE_LABELS
from ingest.focus.basis import describe as describe_bases
from openchargeback.money import format_money
from statements import fonts
from statements.building import (
    DISCOUNT,
    SUBSIDY,
    Remainder,
    Resource,
    Revision,
    StatementData,
)

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

# Compressed page streams as binary, not ASCII85 text: 15% faster to write and
# smaller. (reportlab reads this setting when a document is saved; this
# process draws no other PDFs.)
rl_config.useA85 = 0
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

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
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


class _Money:
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


def _numbered_canvas(contact: str, generated: str, footer_right: str) -> type[Canvas]:
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


def _table(rows: list[list[Any]], widths: list[float | None], *, total_row: bool) -> Table:
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


def _header(data: StatementData, number: str) -> list[Any]:
    inst = data.institution
    contact = [text(inst.name)]
    if inst.address:
        contact.append("<br/>".join(text(line) for line in inst.address.splitlines()))
    reach = " · ".join(text(v) for v in (inst.contact_email, inst.contact_phone) if v)
    if reach:
        contact.append(reach)
    top = Table(
        [
            [
                Paragraph("Statement of research computing charges", TITLE),
                Paragraph(f"Statement <b>{text(number, fonts.BASE_BOLD)}</b>", CELL_RIGHT),
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
        splitInRow=1,
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


AMBER = colors.HexColor("#8d5a00")
NOTICE = colors.HexColor("#fff7e6")


def _revision_notice(revision: Revision, money: _Money) -> list[Any]:
    """A band under the header: which statement this one replaces, and the amounts."""
    replaces, amounts = revision.sentences(money.plain)
    box = Table(
        [
            [Paragraph("REVISED STATEMENT", ParagraphStyle("rl", parent=LABEL, textColor=AMBER))],
            [Paragraph(f"{text(replaces)} {text(amounts)}", BASE)],
        ],
        colWidths=[BODY_WIDTH],
    )
    box.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), NOTICE),
                ("LINEBEFORE", (0, 0), (0, -1), 3, AMBER),
                ("TOPPADDING", (0, 0), (-1, 0), 6),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 7),
            ]
        )
    )
    return [box, Spacer(1, 8)]


def _summary(data: StatementData, money: _Money) -> Table:
    """List price, the provider discount and/or institutional subsidy (each with
    its share of list), credits if any, and the amount due."""
    kinds = data.differences
    credits = data.credit_total
    compact = len(kinds) + bool(credits) > 1
    big, green, right = (MID, MID_GREEN, MID_RIGHT) if compact else (BIG, BIG_GREEN, BIG_RIGHT)
    labels = [Paragraph("LIST PRICE", LABEL)]
    amounts = [Paragraph(money(data.list_total), big)]
    for kind in kinds:
        percent = data.difference_percent(kind)
        amount = money.contribution(data.difference(kind))
        if percent is not None:
            # Beside the amount in a roomy box; under it, smaller, when five share the width.
            amount += (
                f'<br/><font size="7.5">{percent}% of list price</font>'
                if compact
                else f" ({percent}%)"
            )
        labels.append(Paragraph(DIFFERENCE_LABELS[kind].upper(), LABEL))
        amounts.append(Paragraph(amount, green))
    if credits:
        labels.append(Paragraph("CREDITS", LABEL))
        amounts.append(Paragraph(money(credits), big))
    labels.append(Paragraph("AMOUNT DUE", ParagraphStyle("l", parent=LABEL, alignment=TA_RIGHT)))
    amounts.append(Paragraph(money(data.billed_total), right))
    if len(labels) == 3:
        widths: list[float | None] = [2.0 * inch, 2.9 * inch, None]
    else:
        middle = (BODY_WIDTH - 1.5 * inch - 1.6 * inch) / (len(labels) - 2)
        widths = [1.5 * inch, *([middle] * (len(labels) - 2)), None]
    box = Table([labels, amounts], colWidths=widths)
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.75, RULE),
                ("VALIGN", (0, 1), (-1, 1), "TOP"),  # amounts on one baseline
                ("TOPPADDING", (0, 0), (-1, 0), 7),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 8),
            ]
        )
    )
    return box


# The body's width: the page less its margins and the frame's own 6 pt padding.
BODY_WIDTH = LETTER[0] - 2 * MARGIN - 12


def _columns(*widths: float) -> list[float]:
    """Column widths, the last one taking what is left of the body's width."""
    return [*widths, BODY_WIDTH - sum(widths)]


SERVICE_COLUMNS = _columns(1.45 * inch, 2.2 * inch, 1.1 * inch, 1.1 * inch)
RESOURCE_COLUMNS = _columns(2.35 * inch, 1.45 * inch, 0.55 * inch, 0.95 * inch, 0.85 * inch)
BOLD = "Helvetica-Bold"


def _head(titles: list[str], columns: list[float], right_from: int) -> list[Any]:
    return [
        cell([Line(title, BOLD, color=colors.white)], width, right=index >= right_from)
        for index, (title, width) in enumerate(zip(titles, columns, strict=True))
    ]


def _amounts(values: list[str], columns: list[float], font: str = "Helvetica") -> list[Any]:
    return [cell([Line(v, font)], w, right=True) for v, w in zip(values, columns, strict=True)]


def _difference_header(data: StatementData) -> str:
    """'Subsidy', 'Discount', or 'Discount/subsidy' when the statement has both kinds."""
    kinds = {line.difference for line in data.lines if not line.is_credit}
    if kinds == {SUBSIDY, DISCOUNT}:
        return "Disc./subsidy"
    return "Discount" if kinds == {DISCOUNT} else "Subsidy"


def _service_table(data: StatementData, money: _Money) -> Table:
    cols = SERVICE_COLUMNS
    rows: list[list[Any]] = [
        _head(
            ["Source", "Service", "List price", _difference_header(data), "Amount"],
            cols,
            right_from=2,
        )
    ]
    mixed = _difference_header(data) == "Disc./subsidy"
    for line in data.lines:
        service = [Line(line.service or "(no service name)")]
        if line.category:
            service.append(Line(line.category, BOLD, size=7, color=MUTED))
        if line.is_credit:
            amounts = ["", "", money.plain(line.billed)]
        else:
            if line.list_amount > 0 and line.billed == 0:
                covered = (
                    "Fully covered by the institution"
                    if line.difference == SUBSIDY
                    else "No charge after the provider's discount"
                )
                service.append(Line(covered, size=7, color=GREEN))
            elif mixed and line.discount:
                service.append(Line(DIFFERENCE_LABELS[line.difference], size=7, color=MUTED))
            amounts = [
                money.plain(line.list_amount),
                money.plain_contribution(line.discount),
                money.plain(line.billed),
            ]
        for c in data.conversions:
            if (c.source, c.service) == (line.source, line.service):
                shown = describe(
                    c.original_billed,
                    c.currency,
                    c.rate,
                    money.kwargs["currency"],
                    thousands=money.kwargs["thousands"],
                    decimal_point=money.kwargs["decimal_point"],
                )
                service.append(Line(f"incl. {shown}", size=7, color=MUTED))
        rows.append(
            [
                cell([Line(data.source_name(line.source))], cols[0]),
                cell(service, cols[1]),
                *_amounts(amounts, cols[2:]),
            ]
        )
    rows.append(
        [
            cell([Line("Total", BOLD)], cols[0]),
            "",
            *_amounts(
                [
                    money.plain(data.list_total),
                    money.plain_contribution(data.discount_total),
                    money.plain(data.billed_total),
                ],
                cols[2:],
                BOLD,
            ),
        ]
    )
    return _table(rows, list(cols), total_row=True)


def _resource_table(data: StatementData, money: _Money) -> Table:
    cols = RESOURCE_COLUMNS
    rows: list[list[Any]] = [
        _head(
            ["Resource", "Service", "Items", "List price", _difference_header(data), "Amount"],
            cols,
            right_from=2,
        )
    ]
    for res in data.resources:
        service = [Line(res.service)]
        if res.category:
            service.append(Line(res.category, BOLD, size=7, color=MUTED))
        rows.append(
            [
                cell(_resource_name(res), cols[0]),
                cell(service, cols[1]),
                *_amounts(
                    [
                        f"{res.charges:,}",
                        money.plain(res.list_amount),
                        money.plain_contribution(res.discount),
                        money.plain(res.billed),
                    ],
                    cols[2:],
                ),
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
                *_amounts(
                    [
                        f"{rest.charges:,}",
                        money.plain(rest.list_amount),
                        money.plain_contribution(rest.discount),
                        money.plain(rest.billed),
                    ],
                    cols[2:],
                ),
            ]
        )
    return _table(rows, list(cols), total_row=False)


def _resource_name(res: Resource) -> list[Line]:
    name = [Line(res.resource_name or res.resource_id or "(unnamed)")]
    if res.resource_name and res.resource_id and res.resource_id != res.resource_name:
        name.append(Line(res.resource_id, size=7, color=MUTED))
    return name


CREDIT_COLUMNS = _columns(3.2 * inch, 2.1 * inch, 0.6 * inch)


def _credit_table(data: StatementData, money: _Money) -> Table:
    """Every credit on its own row (a long tail past CREDIT_LIMIT in one row of credits)."""
    cols = CREDIT_COLUMNS
    rows: list[list[Any]] = [_head(["Credit", "Service", "Items", "Amount"], cols, right_from=2)]
    for res in data.credits:
        rows.append(
            [
                cell(_resource_name(res), cols[0]),
                cell([Line(res.service)], cols[1]),
                *_amounts([f"{res.charges:,}", money.plain(res.billed)], cols[2:]),
            ]
        )
    more = data.more_credits
    if more is not None:
        rows.append(
            [
                Paragraph(
                    f"<i>{more.resources:,} more credits</i> (each is in the CSV file sent "
                    "with this statement)",
                    CELL,
                ),
                "",
                *_amounts([f"{more.charges:,}", money.plain(more.billed)], cols[2:]),
            ]
        )
    rows.append(
        [
            cell([Line("Total credits", BOLD)], cols[0]),
            "",
            "",
            *_amounts([money.plain(data.credit_total)], cols[3:], BOLD),
        ]
    )
    return _table(rows, list(cols), total_row=True)


def basis_note(data: StatementData) -> str:
    """'Cost basis: billed cost.' or, per source when they differ, 'aws amortised ...'."""
    bases = ((data.source_name(slug), basis) for slug, basis in data.bases)
    return f"Cost basis: {describe_bases(bases)}."


def render(
    data: StatementData,
    *,
    number: str,
    generated_at: datetime,
    revision: Revision | None = None,
) -> bytes:
    """The statement PDF; identical bytes for identical arguments. A `revision`
    (the statement this version replaces) is named under the header."""
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
    if revision is not None:
        story += _revision_notice(revision, money)
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
    story.append(Paragraph(f"{note}. {text(basis_note(data))}", SMALL))
    if data.credits:
        story.append(KeepTogether([Paragraph("Credits", H2), Spacer(1, 4)]))
        story.append(_credit_table(data, money))
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
    generated = f" · Generated {generated_at:%Y-%m-%d %H:%M} UTC"
    footer_right = f"Statement {number} · {data.period} · "
    doc.build(story, canvasmaker=_numbered_canvas(question, generated, footer_right))
    return buffer.getvalue()
