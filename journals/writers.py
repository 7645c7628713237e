"""Journal files: CSV (RFC 4180 quoting) and XLSX (openpyxl).

Text cells that a spreadsheet would run as a formula (beginning with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) get a leading apostrophe in
both formats; amounts are numbers and are never touched.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from journals.layouts import Table

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MONEY_FORMAT = "#,##0.00;-#,##0.00"
DETAIL_MONEY_FORMAT = "#,##0.00########;-#,##0.00########"


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _text(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value:f}"
    return neutralise(str(value))


def write_csv(table: Table) -> tuple[bytes, int]:
    """(file bytes, data rows). Header on its own line; every field quoted as needed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralise(h) for h in table.headers])
    count = 0
    for row in table.rows:
        writer.writerow([_text(v) for v in row])
        count += 1
    return buffer.getvalue().encode("utf-8"), count


def write_xlsx(table: Table, *, title: str, exact: bool = False) -> tuple[bytes, int]:
    """(file bytes, data rows). Amounts as numbers with a money format; bold,
    frozen header. `exact` keeps up to 10 decimals visible (detail rows)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook(write_only=False)
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title[:31]
    sheet.append([neutralise(h) for h in table.headers])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    money = DETAIL_MONEY_FORMAT if exact else MONEY_FORMAT
    count = 0
    for row in table.rows:
        values: list[Any] = []
        for value in row:
            if isinstance(value, Decimal):
                # openpyxl stores a Decimal as a number (its exact digits).
                values.append(value)
            else:
                values.append(neutralise(str(value)))
        sheet.append(values)
        count += 1
        for index in table.number_columns:
            cell = sheet.cell(row=count + 1, column=index + 1)
            if isinstance(cell.value, Decimal | int | float):
                cell.number_format = money
    for index, header in enumerate(table.headers, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        sheet.column_dimensions[letter].width = max(10, min(40, len(header) + 4))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue(), count
