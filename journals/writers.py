"""Journal files: CSV (the product's one CSV writer, RFC 4180) and XLSX (openpyxl).

Text cells that a spreadsheet would run as a formula (beginning with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) get a leading apostrophe in
both formats; amounts are numbers and are never touched.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any, BinaryIO

from journals.layouts import Table
from openchargeback.csvfile import CsvWriter
from openchargeback.spreadsheet import neutralise

MONEY_FORMAT = "#,##0.00;-#,##0.00"
DETAIL_MONEY_FORMAT = "#,##0.00########;-#,##0.00########"


def write_csv(table: Table, out: BinaryIO) -> int:
    """Write the CSV to `out`; returns the data rows. Header on its own line; every
    field quoted as needed; UTF-8, CRLF."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    writer = CsvWriter(text, neutralise=True)
    writer.writerow(table.headers)
    count = 0
    for row in table.rows:
        writer.writerow(row)
        count += 1
    text.flush()
    text.detach()  # leave `out` open for the caller
    return count


def write_xlsx(
    table: Table, out: BinaryIO, *, title: str, exact: bool = False, subject: str = ""
) -> int:
    """Write the workbook to `out` (streamed: openpyxl's write-only mode); returns
    the data rows. Amounts are numbers with a money format; the header is bold
    and frozen. `exact` shows up to 10 decimals (detail rows)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    if subject:  # document properties: what the numbers are (the cost basis)
        workbook.properties.subject = subject
    sheet = workbook.create_sheet(title[:31])
    sheet.freeze_panes = "A2"
    for index, header in enumerate(table.headers, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(10, min(40, len(header) + 4))
    bold = Font(bold=True)
    header_cells = []
    for header in table.headers:
        cell = WriteOnlyCell(sheet, value=neutralise(header))
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)
    money = DETAIL_MONEY_FORMAT if exact else MONEY_FORMAT
    count = 0
    for row in table.rows:
        values: list[Any] = []
        for index, value in enumerate(row):
            if isinstance(value, Decimal):
                cell = WriteOnlyCell(sheet, value=value)  # stored as a number
                if index in table.number_columns:
                    cell.number_format = money
                values.append(cell)
            else:
                values.append(neutralise(str(value)))
        sheet.append(values)
        count += 1
    workbook.save(out)
    return count
