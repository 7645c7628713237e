"""A statement as a PDF (reportlab platypus; no HTML engine): what goes where
on the page. What it is drawn with (styles, cells, amounts, the footer) is
:mod:`statements.drawing`.

Every dynamic string goes through :func:`~statements.drawing.text` (escaped for reportlab's
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
from typing import Any

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from billing.basis import DIFFERENCE_LABELS
from billing.basis import describe as describe_bases
from billing.currencies import describe
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
from statements.drawing import (
    BAND,
    BASE,
    BIG,
    BIG_GREEN,
    BIG_RIGHT,
    CELL,
    CELL_RIGHT,
    GREEN,
    H2,
    INK,
    LABEL,
    MARGIN,
    MID,
    MID_GREEN,
    MID_RIGHT,
    MUTED,
    RULE,
    SMALL,
    TITLE,
    Line,
    Money,
    cell,
    numbered_canvas,
    striped_table,
    text,
)

# Compressed page streams as binary, not ASCII85 text: 15% faster to write and
# smaller. (reportlab reads this setting when a document is saved; this
# process draws no other PDFs.)
rl_config.useA85 = 0


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


def _revision_notice(revision: Revision, money: Money) -> list[Any]:
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


def _summary(data: StatementData, money: Money) -> Table:
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


def _service_table(data: StatementData, money: Money) -> Table:
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
    return striped_table(rows, list(cols), total_row=True)


def _resource_table(data: StatementData, money: Money) -> Table:
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
    return striped_table(rows, list(cols), total_row=False)


def _resource_name(res: Resource) -> list[Line]:
    name = [Line(res.resource_name or res.resource_id or "(unnamed)")]
    if res.resource_name and res.resource_id and res.resource_id != res.resource_name:
        name.append(Line(res.resource_id, size=7, color=MUTED))
    return name


CREDIT_COLUMNS = _columns(3.2 * inch, 2.1 * inch, 0.6 * inch)


def _credit_table(data: StatementData, money: Money) -> Table:
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
    return striped_table(rows, list(cols), total_row=True)


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
    money = Money(data)
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
    doc.build(story, canvasmaker=numbered_canvas(question, generated, footer_right))
    return buffer.getvalue()
