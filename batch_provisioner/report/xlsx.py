"""``results.xlsx``: every cell a text, number or boolean cell, never a formula."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_xlsx(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` as one sheet ``results`` (bold, frozen header row).

    The caller has already scrubbed and neutralised ``frame``; this writer only makes sure no
    string is ever turned into a formula, number or URL by xlsxwriter.
    """
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False,
                                               "strings_to_numbers": False,
                                               "strings_to_urls": False})
    sheet = workbook.add_worksheet("results")
    bold = workbook.add_format({"bold": True})
    for col, name in enumerate(frame.columns):
        sheet.write_string(0, col, name, bold)
    for r, row in enumerate(frame.iter_rows(), start=1):
        for col, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(r, col, value)
            elif isinstance(value, int | float):
                sheet.write_number(r, col, value)
            else:
                sheet.write_string(r, col, str(value))
    sheet.freeze_panes(1, 0)
    workbook.close()
