"""The sheets ``export`` writes: the input template's own format, filled with what exists.

An XLSX keeps the template's look: the connections sheet first (the known columns in the
template's order, then ``connection_id`` and ``setup_state``), a note on every header, the
dropdowns, text cells, a frozen header; then ``custom_reports``, ``instructions`` and, when
something could not be expressed, ``not_exported``. A CSV is the connections sheet alone, with
``<stem>_custom_reports.csv`` and ``<stem>_not_exported.csv`` beside it when they have rows.

Every cell goes through the one scrubber and formula neutraliser (``report/scrub.py``), and
every file through the one atomic writer (``replacing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.report.files import replacing
from batch_provisioner.report.scrub import neutralise, scrub_frame
from batch_provisioner.sheet.columns import EXPORT_COLUMNS, REPORT_COLUMNS, Column
from batch_provisioner.sheet.templates import dropdown, sheet_columns

CONNECTIONS_SHEET = "connections"
REPORTS_SHEET = "custom_reports"
INSTRUCTIONS_SHEET = "instructions"
NOT_EXPORTED_SHEET = "not_exported"
#: The columns of what could not be exported (one line per field of a connection).
NOT_EXPORTED_COLUMNS = ("group_id", "schema", "connection_id", "field", "value", "reason")
SUFFIXES = (".xlsx", ".csv")
EXPORT_NOTES = {
    "connection_id": "The connection this row was exported from: plan and apply work on that "
                     "connection only, never create it anew. Clear it to create a new one.",
    "setup_state": "Whether the connection was authorised (connected) when exported. Read, "
                   "never sent.",
}
_DROPDOWN_ROWS = 1000  # as the template: dropdowns on the first 1,000 rows at least


@dataclass(frozen=True)
class ExportSheet:
    """What one export file holds: rows of cells, report rows, what was left out, the text of
    the instructions sheet."""

    rows: Sequence[Mapping[str, str]]
    reports: Sequence[Mapping[str, str]]
    not_exported: Sequence[Mapping[str, str]]
    instructions: Sequence[str]


def checked_out_path(path: Path) -> Path:
    """``path`` when it names a file ``export`` can write (.xlsx or .csv); else exit 2."""
    if path.suffix.lower() not in SUFFIXES:
        raise InputError("is neither .xlsx nor .csv, the two kinds of sheet export writes "
                         "(--out)", path=str(path))
    return path


def companion(path: Path, part: str, suffix: str | None = None) -> Path:
    """A file beside ``path`` named after it: ``moves.xlsx`` -> ``moves_retire.xlsx``."""
    return path.with_name(f"{path.stem}_{part}{suffix or path.suffix}")


def connection_columns() -> list[str]:
    return [c.name for c in sheet_columns()] + list(EXPORT_COLUMNS)


def write_export(path: Path, sheet: ExportSheet) -> dict[str, Path]:
    """Write ``sheet`` to ``path`` (.xlsx or .csv); the paths written, by what they hold."""
    frames = {
        CONNECTIONS_SHEET: _frame(sheet.rows, connection_columns()),
        REPORTS_SHEET: _frame(sheet.reports, [c.name for c in REPORT_COLUMNS]),
        NOT_EXPORTED_SHEET: _frame(sheet.not_exported, list(NOT_EXPORTED_COLUMNS)),
    }
    if path.suffix.lower() == ".xlsx":
        with replacing(path) as temporary:
            _write_workbook(temporary, frames, sheet.instructions)
        return {CONNECTIONS_SHEET: path}
    paths = {CONNECTIONS_SHEET: path, REPORTS_SHEET: companion(path, REPORTS_SHEET),
             NOT_EXPORTED_SHEET: companion(path, NOT_EXPORTED_SHEET)}
    written: dict[str, Path] = {}
    for name, frame in frames.items():
        if name == CONNECTIONS_SHEET or frame.height:
            with replacing(paths[name]) as temporary:
                frame.write_csv(temporary)
            written[name] = paths[name]
    return written


def _frame(rows: Sequence[Mapping[str, str]], columns: list[str]) -> pl.DataFrame:
    """Rows as text cells in ``columns`` order, scrubbed and neutralised."""
    frame = pl.DataFrame([{name: row.get(name) for name in columns} for row in rows],
                         schema=dict.fromkeys(columns, pl.String))
    return neutralise(scrub_frame(frame))


def _write_workbook(path: Path, frames: Mapping[str, pl.DataFrame],
                    instructions: Sequence[str]) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False,
                                              "strings_to_formulas": False,
                                              "strings_to_urls": False})
    workbook.set_properties({"title": "batch-provisioner export"})
    text = workbook.add_format({"num_format": "@"})
    header = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "num_format": "@"})
    known = {c.name: c for c in sheet_columns()}
    connections = frames[CONNECTIONS_SHEET]
    sheet = workbook.add_worksheet(CONNECTIONS_SHEET)
    last_row = max(_DROPDOWN_ROWS, connections.height)
    for index, name in enumerate(connections.columns):
        column = known.get(name)
        sheet.set_column(index, index, max(14, len(name) + 2), text)
        sheet.write_string(0, index, name, header)
        sheet.write_comment(0, index, column.note if column else EXPORT_NOTES[name],
                            {"x_scale": 2, "y_scale": 1.5})
        if column is not None:
            _add_dropdown(sheet, index, column, last_row)
    _write_rows(sheet, connections, text)
    sheet.freeze_panes(1, 0)
    reports = workbook.add_worksheet(REPORTS_SHEET)
    for index, column in enumerate(REPORT_COLUMNS):
        reports.set_column(index, index, 28, text)
        reports.write_string(0, index, column.name, header)
        reports.write_comment(0, index, column.note)
    _write_rows(reports, frames[REPORTS_SHEET], text)
    notes = workbook.add_worksheet(INSTRUCTIONS_SHEET)
    notes.set_column(0, 0, 120)
    for row, line in enumerate(instructions):
        notes.write_string(row, 0, line)
    dropped = frames[NOT_EXPORTED_SHEET]
    if dropped.height:
        left = workbook.add_worksheet(NOT_EXPORTED_SHEET)
        for index, name in enumerate(dropped.columns):
            left.set_column(index, index, 60 if name in ("value", "reason") else 20, text)
            left.write_string(0, index, name, header)
        _write_rows(left, dropped, text)
        left.freeze_panes(1, 0)
    workbook.close()


def _add_dropdown(sheet: Any, index: int, column: Column, last_row: int) -> None:
    options = dropdown(column)
    if options:
        sheet.data_validation(1, index, last_row, index, {
            "validate": "list", "source": options, "ignore_blank": True,
            "error_title": column.name,
            "error_message": f"Use one of: {', '.join(options)}"})


def _write_rows(sheet: Any, frame: pl.DataFrame, fmt: Any) -> None:
    for r, row in enumerate(frame.iter_rows(), start=1):
        for col, value in enumerate(row):
            if value is not None:
                sheet.write_string(r, col, value, fmt)
