"""Reading input files (CSV, XLSX, Parquet) into normalised all-text frames.

Every cell is text: TikTok advertiser ids are 19-digit numbers that a float would silently turn
into other ids. Every row keeps the number a person sees in the file (header = 1, first data
row = 2) in the ``source_row`` column. Headers are normalised, strings trimmed, blank rows
dropped, and unknown columns carried through untouched.

The header is the first row that is not blank, wherever it sits: a sheet whose first rows (or
columns) are empty still reports the row numbers Excel shows. Without ``--sheet``, a workbook
is read from its first *visible* sheet that is not ``custom_reports``: a hidden sheet is
something a person never looks at, so it is never picked silently (``--sheet`` may still name
it).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree import ElementTree

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.columns import IGNORED_COLUMNS

ROW = "source_row"
CUSTOM_REPORTS_SHEET = "custom_reports"
_XLSX_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"
# First bytes of formats that people save under a .csv name by mistake (PNG, JPEG, GIF, PDF,
# old Office, gzip, Parquet).
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"\xd0\xcf\x11\xe0",
                 b"\x1f\x8b", _PARQUET_MAGIC)
_EXACT_FLOAT_DIGITS = 15  # Excel keeps 15 significant digits; beyond that a number is mangled
MAX_COLUMNS = 16_384  # Excel's own limit (column XFD): no sheet a person made is wider
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u2060"))  # BOM, zero-width space, joiner
_XML_ERRORS = (zipfile.BadZipFile, KeyError, IndexError, StopIteration, ElementTree.ParseError,
               zlib.error, EOFError, OSError)


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

    @property
    def label(self) -> str:
        return f"{self.path}[{self.sheet}]" if self.sheet else str(self.path)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


def normalise_header(name: str) -> str:
    """``" Group-ID "`` → ``"group_id"``: case, spaces and dashes don't matter."""
    text = re.sub(r"[\s\-]+", "_", name.translate(_INVISIBLE).strip().lower())
    return re.sub(r"_+", "_", text).strip("_")


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
        grid, first_row, sheet_name = *_read_csv(path), None
    else:
        grid, sheet_name, sheet_index, first_col = _read_xlsx(path, sheet)
        first_row = 1
    header_row, headers, body = _split_header(grid, first_row)
    table = _normalise(path, body, headers, header_row, sheet_name, first_col)
    if fmt == "xlsx":
        numeric, errors = _raw_cells(path, sheet_index, headers, header_row, first_col,
                                     ("accounts",))
        table = replace(table, numeric_cells=numeric, error_cells=errors)
    return table


def xlsx_sheet_names(path: Path) -> list[str]:
    import fastexcel

    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except BaseException as exc:  # fastexcel raises its own error types (or panics)
        _reraise_fatal(exc)
        raise InputError(f"is not a readable XLSX workbook ({_short(exc)})",
                         path=str(path)) from None


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


def _read_csv(path: Path) -> tuple[pl.DataFrame, int]:
    """(every row as text, header included; the line number of its first row)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise InputError("is not valid UTF-16 (cut short or damaged); save it as 'CSV UTF-8'",
                             path=str(path)) from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\r" in data and re.search(rb"\r(?!\n)", data):
        data = re.sub(rb"\r\n?", b"\n", data)  # old Mac (CR) or mixed line endings
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise InputError(f"holds NUL bytes (first at line {line}): binary data, or UTF-16 text "
                         "without its byte-order mark? save it as 'CSV UTF-8'", path=str(path))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"is not valid UTF-8 (bad byte at line {line}); save it as 'CSV UTF-8'",
            path=str(path),
        ) from None
    if not data.strip(b" \t\r\n"):
        raise InputError("the file is empty", path=str(path))
    blank_lines = re.match(rb"(?:[ \t\r]*\n)*", data)
    body = data[blank_lines.end():] if blank_lines else data
    first_row = data[: len(data) - len(body)].count(b"\n") + 1
    header = body.split(b"\n", 1)[0]
    separator = _separator(path, header)
    if header.count(separator.encode()) >= MAX_COLUMNS:  # refuse before polars builds it
        _check_width(path, len(next(csv.reader([header.decode()], delimiter=separator))))
    try:
        return _parse_csv(body, separator, ragged=False), first_row
    except BaseException as exc:  # polars errors, or a panic on a pathological file
        _reraise_fatal(exc)
        problem = _csv_problem(body.decode("utf-8"), separator, first_row)
        if problem is None:  # only empty cells beyond the header's width: nothing is lost
            try:
                return _parse_csv(body, separator, ragged=True), first_row
            except BaseException as again:
                _reraise_fatal(again)
        raise InputError(problem or f"is not a readable CSV file ({_short(exc)})",
                         path=str(path)) from None


def _parse_csv(data: bytes, separator: str, *, ragged: bool) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False,
                       separator=separator, truncate_ragged_lines=ragged, raise_if_empty=True)


def _separator(path: Path, header: bytes) -> str:
    """``,`` unless the file is a ``.tsv`` or its header holds ``;`` or tabs and no comma."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    if b"," not in header and (b";" in header or b"\t" in header):
        return ";" if header.count(b";") >= header.count(b"\t") else "\t"
    return ","


def _csv_problem(text: str, separator: str, first_row: int) -> str | None:
    """Why polars refused the file, with the row it stumbled on; ``None`` if the only trouble
    is empty cells past the header's width (a trailing separator), which can be dropped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    width, row = 0, first_row - 1
    limit = csv.field_size_limit(len(text) + 1)  # a 10 MB cell is data, not a parse error
    try:
        for row, record in enumerate(reader, start=first_row):
            if row == first_row:
                width = len(record)
            elif len(record) > width and any(cell.strip() for cell in record[width:]):
                return (f"row {row} has {len(record)} cells but the header has {width}; "
                        "remove the extra cells or give them a header")
    except csv.Error as exc:
        return f"row {row + 1} cannot be read ({exc}: a stray or unclosed quote?)"
    finally:
        csv.field_size_limit(limit)
    return None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        _check_width(path, len(pl.read_parquet_schema(path)))
        frame = pl.read_parquet(path)
    except InputError:
        raise
    except BaseException as exc:  # ComputeError/OSError variants, or a panic on damaged files
        _reraise_fatal(exc)
        raise InputError(f"is not a readable Parquet file ({_short(exc)})",
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


def _read_xlsx(path: Path, sheet: str | None) -> tuple[pl.DataFrame, str, int, int]:
    """(every row from row 1 as text, the sheet's name, its index, its first column's index)."""
    import fastexcel

    try:
        reader = fastexcel.read_excel(str(path))
        names = list(reader.sheet_names)
    except BaseException as exc:
        _reraise_fatal(exc)
        raise InputError(f"is not a readable XLSX workbook ({_short(exc)})",
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
        loaded = reader.load_sheet(sheet, header_row=None, skip_rows=0, dtypes="string")
        columns = loaded.available_columns()
        frame = loaded.to_polars()
    except BaseException as exc:
        _reraise_fatal(exc)
        raise InputError(f"sheet {sheet!r} cannot be read ({_short(exc)})",
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


def _raw_cells(
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
    letters = {_column_letter(first_col + i): normalise_header(h or "") or f"column_{i + 1}"
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


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _normalise(
    path: Path, frame: pl.DataFrame, headers: list[str | None], header_row: int,
    sheet: str | None, first_col: int = 0,
) -> Table:
    where = f"{path}[{sheet}]" if sheet else str(path)
    _check_width(path, len(headers))
    names: dict[str, tuple[int, str]] = {}  # normalised name -> (position, header as written)
    keep: list[str] = []
    for position, (column, original) in enumerate(zip(frame.columns, headers, strict=True)):
        text = "" if original is None else str(original)
        name = normalise_header(text) or f"column_{position + 1}"
        if name in IGNORED_COLUMNS or name == ROW:
            continue
        if name in names:
            earlier, first = names[name]
            raise InputError(
                f"columns {_column_letter(first_col + earlier)} {first!r} and "
                f"{_column_letter(first_col + position)} {text!r} both mean {name!r}; "
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
            .str.replace(r"^'([=+\-@\t\r])", "$1").replace("", None))
    start = header_row + 1
    frame = frame.with_columns(pl.int_range(start, start + frame.height, dtype=pl.Int64).alias(ROW))
    if frame.width > 1:
        frame = frame.filter(~pl.all_horizontal(pl.exclude(ROW).is_null()))
    return Table(path=path, frame=frame, headers={n: t for n, (_, t) in names.items()},
                 sheet=sheet, header_row=header_row)


def _check_width(path: Path, width: int) -> None:
    if width > MAX_COLUMNS:
        raise InputError(f"has {width} columns; a sheet has at most {MAX_COLUMNS} "
                         "(Excel's limit)", path=str(path))


def _reraise_fatal(exc: BaseException) -> None:
    """Let interrupts and exits through; everything else a reader raises (including a Rust
    panic, which is a ``BaseException``) means the file is damaged."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
        raise exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
