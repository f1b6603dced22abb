"""Reading an XLSX workbook: fastexcel for the cells, the raw sheet XML for what it hides.

fastexcel reads a sheet as text from row 1, at most one row more than a sheet may have, and
only once ``zip_limits.check_inflation`` found that the workbook does not unzip to more than a
workbook may (a zip bomb). The workbook XML says which sheets are hidden
(never picked without ``--sheet``), and the sheet XML says which cells Excel stored as numbers
(a 19-digit id that already lost digits) or as errors (``#DIV/0!``, read as blank otherwise).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.common import (
    CUSTOM_REPORTS_SHEET,
    MAX_ROWS,
    normalise_header,
    reraise_fatal,
    short,
)
from batch_provisioner.sheet.zip_limits import check_inflation

_XML_ERRORS = (zipfile.BadZipFile, KeyError, IndexError, StopIteration, ElementTree.ParseError,
               zlib.error, EOFError, OSError)


def sheet_names(path: Path) -> list[str]:
    import fastexcel

    check_inflation(path)
    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except BaseException as exc:  # fastexcel raises its own error types (or panics)
        reraise_fatal(exc)
        raise InputError(f"is not a readable XLSX workbook ({short(exc)})",
                         path=str(path)) from None


def read_grid(path: Path, sheet: str | None) -> tuple[pl.DataFrame, str, int, int]:
    """(every row from row 1 as text, the sheet's name, its index, its first column's index)."""
    import fastexcel

    check_inflation(path)
    try:
        reader = fastexcel.read_excel(str(path))
        names = list(reader.sheet_names)
    except BaseException as exc:
        reraise_fatal(exc)
        raise InputError(f"is not a readable XLSX workbook ({short(exc)})",
                         path=str(path)) from None
    if sheet is None:
        hidden = _hidden_sheets(path)
        visible = [n for n in names
                   if normalise_header(n) != CUSTOM_REPORTS_SHEET and n not in hidden]
        if not visible:
            raise InputError("has no visible sheet to read besides custom_reports; name the "
                             "connections sheet with --sheet", path=str(path))
        sheet = visible[0]
    elif sheet not in names:
        raise InputError(f"has no sheet {sheet!r} (sheets: {', '.join(names)})", path=str(path))
    try:
        loaded = reader.load_sheet(sheet, header_row=None, skip_rows=0, dtypes="string",
                                   n_rows=MAX_ROWS + 1)  # one more than fits: refused later
        columns = loaded.available_columns()
        frame = loaded.to_polars()
    except BaseException as exc:
        reraise_fatal(exc)
        raise InputError(f"sheet {sheet!r} cannot be read ({short(exc)})",
                         path=str(path)) from None
    first_col = int(columns[0].absolute_index) if columns else 0
    return frame, sheet, names.index(sheet), first_col


def _hidden_sheets(path: Path) -> set[str]:
    """Names of the sheets marked hidden (or very hidden) in ``xl/workbook.xml``."""
    try:
        with zipfile.ZipFile(path) as archive:
            workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))  # noqa: S314
    except _XML_ERRORS:
        return set()
    return {el.get("name", "") for el in workbook.iter() if el.tag.endswith("}sheet")
            and el.get("state", "visible") != "visible"}


def raw_cells(
    path: Path, sheet_index: int, headers: list[str | None], header_row: int, first_col: int,
    numeric_in: tuple[str, ...],
) -> tuple[dict[str, list[tuple[int, str]]], dict[str, list[tuple[int, str]]]]:
    """(numeric cells of the ``numeric_in`` columns, error cells of any column), by column
    name, straight from the sheet XML.

    fastexcel renders every cell as text, but a number that Excel stored as a float has already
    lost digits: only the raw cell type tells a 19-digit id typed as text from one typed as a
    number. And fastexcel reads a cell that shows an Excel error (``#DIV/0!``) as blank, which
    would quietly send a default instead of the value the person meant.
    """
    letters = {column_letter(first_col + i): normalise_header(h or "") or f"column_{i + 1}"
               for i, h in enumerate(headers)}
    numeric: dict[str, list[tuple[int, str]]] = {}
    errors: dict[str, list[tuple[int, str]]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            member = _sheet_member(archive, sheet_index)
            if not set(numeric_in) & set(letters.values()) and not _has_error_cells(
                    archive, member):
                return numeric, errors
            with archive.open(member) as handle:
                # expat (>= 2.4) refuses entity-expansion bombs and ElementTree never
                # resolves external entities, so the standard parser is safe here.
                for _, elem in ElementTree.iterparse(handle):  # noqa: S314
                    if not elem.tag.endswith("}c"):
                        continue
                    ref = elem.get("r", "")
                    letter = ref.rstrip("0123456789")
                    row, cell_type = ref[len(letter):], elem.get("t", "n")
                    name = letters.get(letter)
                    if name is not None and row.isdigit() and int(row) > header_row:
                        value = next((v.text for v in elem if v.tag.endswith("}v")), None)
                        if value is not None and cell_type == "e":
                            errors.setdefault(name, []).append((int(row), value))
                        elif value is not None and cell_type == "n" and name in numeric_in:
                            numeric.setdefault(name, []).append((int(row), value))
                    elem.clear()
    except _XML_ERRORS:
        pass
    return numeric, errors


def _has_error_cells(archive: zipfile.ZipFile, member: str) -> bool:
    """Whether the sheet XML holds an error cell (``t="e"``), read in chunks."""
    marker, tail = b't="e"', b""
    with archive.open(member) as handle:
        while chunk := handle.read(1 << 20):
            if marker in tail + chunk:
                return True
            tail = chunk[-len(marker):]
    return False


def _sheet_member(archive: zipfile.ZipFile, index: int) -> str:
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))  # noqa: S314
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels}
    sheets = [el for el in workbook.iter() if el.tag.endswith("}sheet")]
    rid = next(v for k, v in sheets[index].attrib.items() if k.endswith("}id"))
    target = targets[rid].lstrip("/")
    return target if target.startswith("xl/") else f"xl/{target}"


def column_letter(index: int) -> str:
    """``0`` → ``A``, ``26`` → ``AA``: the column as Excel names it."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters
