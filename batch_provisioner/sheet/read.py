"""Reading input files (CSV, XLSX, Parquet) into normalised all-text frames.

Every cell is text: TikTok advertiser ids are 19-digit numbers that a float would silently turn
into other ids. Every row keeps the number a person sees in the file (header = 1, first data
row = 2) in the ``source_row`` column. Headers are normalised, strings trimmed, blank rows
dropped, and unknown columns carried through untouched (``load`` then refuses the ones that
look misspelled or that an output uses: ``sheet/guardrails.py``).

The header is the first row that is not blank, wherever it sits: a sheet whose first rows (or
columns) are empty still reports the row numbers Excel shows. Without ``--sheet``, a workbook
is read from its first *visible* sheet that is not ``custom_reports``: a hidden sheet is
something a person never looks at, so it is never picked silently (``--sheet`` may still name
it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.safety import FORMULA_PREFIX, NEUTRALISER
from batch_provisioner.sheet import csv_file, xlsx
from batch_provisioner.sheet.columns import IGNORED_COLUMNS
from batch_provisioner.sheet.common import (
    CUSTOM_REPORTS_SHEET,
    MAX_ROWS,
    check_height,
    check_width,
    normalise_header,
    reraise_fatal,
    short,
)
from batch_provisioner.sheet.xlsx import column_letter

__all__ = ["NEUTRALISED", "ROW", "Table", "detect_format", "normalise_header",
           "read_custom_reports", "read_table", "xlsx_sheet_names"]

ROW = "source_row"
# A cell the writers neutralised (``'=...``): the reader strips exactly that prefix again.
NEUTRALISED = "^" + NEUTRALISER + "(" + FORMULA_PREFIX.removeprefix("^") + ")"
_XLSX_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"
# First bytes of formats that people save under a .csv name by mistake (PNG, JPEG, GIF, PDF,
# old Office, gzip, Parquet).
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"\xd0\xcf\x11\xe0",
                 b"\x1f\x8b", _PARQUET_MAGIC)


@dataclass(frozen=True)
class Table:
    """One sheet of input: an all-text frame plus where it came from."""

    path: Path
    frame: pl.DataFrame
    headers: dict[str, str]  # normalised name -> header as written in the file
    sheet: str | None = None
    numeric_cells: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    header_row: int = 1  # the row number (as the file shows it) that holds the headers
    # XLSX cells that show an Excel error (#DIV/0!, #N/A, #REF!): fastexcel reads them as blank
    error_cells: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # headers dropped because failed_rows.csv adds them
    name: str | None = None  # how outputs name the file when not by ``path`` (a download's URL)

    @property
    def label(self) -> str:
        name = self.name or str(self.path)
        return f"{name}[{self.sheet}]" if self.sheet else name

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


def detect_format(path: Path) -> str:
    """``csv``, ``xlsx`` or ``parquet``, from the extension, checked against the first bytes."""
    suffix = path.suffix.lower()
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except IsADirectoryError:
        raise InputError("is a directory, not a spreadsheet", path=str(path)) from None
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", path=str(path)) from None
    if not head:
        raise InputError("the file is empty", path=str(path))
    if suffix in (".xlsx", ".xlsm"):
        if head != _XLSX_MAGIC:
            raise InputError("is not a valid XLSX workbook (damaged or another format)",
                             path=str(path))
        return "xlsx"
    if suffix == ".parquet":
        if head != _PARQUET_MAGIC:
            raise InputError("is not a valid Parquet file", path=str(path))
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        if head == _XLSX_MAGIC:
            raise InputError("is a ZIP file (an XLSX workbook?) with a .csv name, not CSV text; "
                             "rename a workbook to .xlsx", path=str(path))
        if head.startswith(_BINARY_MAGIC):
            raise InputError("holds binary data (an image, PDF or other file?), not CSV text",
                             path=str(path))
        return "csv"
    if suffix == ".xls":
        raise InputError("old .xls workbooks are not supported; save as .xlsx or CSV",
                         path=str(path))
    raise InputError(
        f"unsupported file type {suffix or '(none)'!r}; use .csv, .xlsx or .parquet",
        path=str(path),
    )


def read_table(path: Path, *, sheet: str | None = None) -> Table:
    """Read the connections sheet (the first visible sheet, or ``sheet``) of any file."""
    fmt = detect_format(path)
    if fmt == "parquet":
        frame = _read_parquet(path)
        return _normalise(path, frame, list(frame.columns), 1, None)
    first_col = sheet_index = 0
    if fmt == "csv":
        grid, first_row, sheet_name = *csv_file.read_grid(path), None
    else:
        grid, sheet_name, sheet_index, first_col = xlsx.read_grid(path, sheet)
        first_row = 1
    header_row, headers, body = _split_header(grid, first_row)
    table = _normalise(path, body, headers, header_row, sheet_name, first_col)
    if fmt == "xlsx":
        numeric, errors = xlsx.raw_cells(path, sheet_index, headers, header_row, first_col,
                                         ("accounts",))
        table = replace(table, numeric_cells=numeric, error_cells=errors)
    return table


def xlsx_sheet_names(path: Path) -> list[str]:
    """The sheet names of a workbook, in order."""
    return xlsx.sheet_names(path)


def read_custom_reports(path: Path | None, workbook: Path | None) -> Table | None:
    """Custom reports from ``--custom-reports FILE`` or the workbook's ``custom_reports`` sheet.

    A file replaces the sheet: the two are never merged. A workbook given as the file is read
    from its ``custom_reports`` sheet when it has one (so ``failed_rows.csv`` from an XLSX run
    can be fed back with ``--custom-reports original.xlsx``), else from its first sheet.
    """
    source = path if path is not None else workbook
    if source is None:
        return None
    if detect_format(source) == "xlsx":
        names = xlsx_sheet_names(source)
        match = [n for n in names if normalise_header(n) == CUSTOM_REPORTS_SHEET]
        if match:
            table = read_table(source, sheet=match[0])
            return table if table.frame.height else None
    return read_table(path) if path is not None else None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        check_width(path, len(pl.read_parquet_schema(path)))
        frame = pl.read_parquet(path, n_rows=MAX_ROWS)  # one more than fits: refused below
    except InputError:
        raise
    except BaseException as exc:  # ComputeError/OSError variants, or a panic on damaged files
        reraise_fatal(exc)
        raise InputError(f"is not a readable Parquet file ({short(exc)})",
                         path=str(path)) from None
    return frame.with_columns(_to_text(frame.get_column(name)) for name in frame.columns)


def _to_text(series: pl.Series) -> pl.Series:
    """A typed Parquet column as text cells: lists joined by ``,``; binary decoded (or hex);
    structs and nested lists as JSON."""
    dtype = series.dtype
    if dtype == pl.String:
        return series
    try:
        if isinstance(dtype, pl.List) and not dtype.inner.is_nested():
            return series.cast(pl.List(pl.String)).list.join(",")
        if not dtype.is_nested() and dtype not in (pl.Binary, pl.Object):
            return series.cast(pl.String)
    except pl.exceptions.PolarsError:
        pass
    return pl.Series(series.name, [_cell_text(v) for v in series.to_list()], dtype=pl.String)


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + value.hex()
    return json.dumps(value, ensure_ascii=False, default=str)


def _split_header(grid: pl.DataFrame, first_row: int) -> tuple[int, list[str | None], pl.DataFrame]:
    """(row number of the header, its cells, the rows below): the header is the first row
    that is not blank."""
    if grid.width == 0 or grid.height == 0:
        return first_row, [None] * grid.width, grid.clear()
    filled = pl.any_horizontal(pl.all().str.strip_chars().replace("", None).is_not_null())
    found = grid.head(100).select(filled).to_series().arg_true()
    if found.is_empty():
        found = grid.select(filled).to_series().arg_true()
    if found.is_empty():
        return first_row, [None] * grid.width, grid.clear()
    index = int(found[0])
    return first_row + index, list(grid.row(index)), grid.slice(index + 1)


def _unneutralised(header: str) -> str:
    """A header the writers neutralised (``'=x``) as it was (``=x``), like any cell, so the
    header row of failed_rows.csv reads back as the original's; other headers as written."""
    stripped = header.strip()
    return stripped[1:] if re.match(NEUTRALISED, stripped) else header


def _normalise(
    path: Path, frame: pl.DataFrame, headers: list[str | None], header_row: int,
    sheet: str | None, first_col: int = 0,
) -> Table:
    where = f"{path}[{sheet}]" if sheet else str(path)
    check_width(path, len(headers))
    check_height(path, header_row + frame.height)
    names: dict[str, tuple[int, str]] = {}  # normalised name -> (position, header as written)
    keep: list[str] = []
    ignored: list[str] = []
    for position, (column, original) in enumerate(zip(frame.columns, headers, strict=True)):
        text = _unneutralised("" if original is None else str(original))
        name = normalise_header(text) or f"column_{position + 1}"
        if name in IGNORED_COLUMNS or name == ROW:
            ignored.append(name)
            continue
        if name in names:
            earlier, first = names[name]
            raise InputError(
                f"columns {column_letter(first_col + earlier)} {first!r} and "
                f"{column_letter(first_col + position)} {text!r} both mean {name!r}; "
                "keep one of them",
                path=where, row=header_row, column=text,
            )
        names[name] = (position, text)
        keep.append(column)
    frame = frame.select(keep)
    frame.columns = list(names)
    if frame.width:
        frame = frame.with_columns(
            pl.all().cast(pl.String).str.strip_chars()
            .str.replace(NEUTRALISED, "$1").replace("", None))
    start = header_row + 1
    frame = frame.with_columns(pl.int_range(start, start + frame.height, dtype=pl.Int64).alias(ROW))
    if frame.width > 1:
        frame = frame.filter(~pl.all_horizontal(pl.exclude(ROW).is_null()))
    return Table(path=path, frame=frame, headers={n: t for n, (_, t) in names.items()},
                 sheet=sheet, header_row=header_row, ignored=tuple(dict.fromkeys(ignored)))
