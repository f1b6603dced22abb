"""Reading input files (CSV, XLSX, Parquet) into normalised all-text frames.

Every cell is text: TikTok advertiser ids are 19-digit numbers that a float would silently turn
into other ids. Every row keeps the number a person sees in the file (header = 1, first data
row = 2) in the ``source_row`` column. Headers are normalised, strings trimmed, blank rows
dropped, and unknown columns carried through untouched.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.fields import IGNORED_COLUMNS

ROW = "source_row"
CUSTOM_REPORTS_SHEET = "custom_reports"
_XLSX_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"
# First bytes of formats that people save under a .csv name by mistake (PNG, JPEG, GIF, PDF,
# old Office, gzip, Parquet).
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"\xd0\xcf\x11\xe0",
                 b"\x1f\x8b", _PARQUET_MAGIC)
_EXACT_FLOAT_DIGITS = 15  # Excel keeps 15 significant digits; beyond that a number is mangled


@dataclass(frozen=True)
class Table:
    """One sheet of input: an all-text frame plus where it came from."""

    path: Path
    frame: pl.DataFrame
    headers: dict[str, str]  # normalised name -> header as written in the file
    sheet: str | None = None
    numeric_cells: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.path}[{self.sheet}]" if self.sheet else str(self.path)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


def normalise_header(name: str) -> str:
    """``" Group-ID "`` → ``"group_id"``: case, spaces and dashes don't matter."""
    text = re.sub(r"[\s\-]+", "_", name.strip().lower())
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
    """Read the connections sheet (the first sheet, or ``sheet``) of any supported file."""
    fmt = detect_format(path)
    if fmt == "csv":
        numeric: dict[str, list[tuple[int, str]]] = {}
        frame, sheet_name = _read_csv(path), None
    elif fmt == "parquet":
        numeric = {}
        frame, sheet_name = _read_parquet(path), None
    else:
        frame, sheet_name, numeric = _read_xlsx(path, sheet)
    return _normalise(path, frame, sheet_name, numeric)


def xlsx_sheet_names(path: Path) -> list[str]:
    import fastexcel

    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except Exception as exc:  # fastexcel raises its own error types for damaged files
        raise InputError(f"is not a readable XLSX workbook ({_short(exc)})",
                         path=str(path)) from None


def read_custom_reports(path: Path | None, workbook: Path | None) -> Table | None:
    """Custom reports from ``--custom-reports FILE`` or the workbook's ``custom_reports`` sheet."""
    if path is not None:
        return read_table(path)
    if workbook is not None and detect_format(workbook) == "xlsx":
        names = xlsx_sheet_names(workbook)
        match = [n for n in names if normalise_header(n) == CUSTOM_REPORTS_SHEET]
        if match:
            table = read_table(workbook, sheet=match[0])
            return table if table.frame.height else None
    return None


def _read_csv(path: Path) -> pl.DataFrame:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = data.decode("utf-16").encode("utf-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"is not valid UTF-8 (bad byte at line {line}); save it as 'CSV UTF-8'",
            path=str(path),
        ) from None
    if not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise InputError("the file is empty", path=str(path))
    try:
        return pl.read_csv(
            io.BytesIO(data), infer_schema=False, truncate_ragged_lines=False,
            raise_if_empty=True,
        )
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"is not a readable CSV file ({_short(exc)})", path=str(path)) from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # pyarrow-free polars raises ComputeError/OSError variants
        raise InputError(f"is not a readable Parquet file ({_short(exc)})",
                         path=str(path)) from None
    return frame.with_columns(_to_text(name, dtype) for name, dtype in frame.schema.items())


def _to_text(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return pl.col(name)
    if isinstance(dtype, pl.List):
        return pl.col(name).cast(pl.List(pl.String)).list.join(",").alias(name)
    return pl.col(name).cast(pl.String)


def _read_xlsx(
    path: Path, sheet: str | None
) -> tuple[pl.DataFrame, str, dict[str, list[tuple[int, str]]]]:
    import fastexcel

    try:
        reader = fastexcel.read_excel(str(path))
        names = list(reader.sheet_names)
    except Exception as exc:
        raise InputError(f"is not a readable XLSX workbook ({_short(exc)})",
                         path=str(path)) from None
    if sheet is None:
        visible = [n for n in names if normalise_header(n) != CUSTOM_REPORTS_SHEET]
        if not visible:
            raise InputError("the workbook has no sheets", path=str(path))
        sheet = visible[0]
    elif sheet not in names:
        raise InputError(f"has no sheet {sheet!r} (sheets: {', '.join(names)})", path=str(path))
    try:
        frame = reader.load_sheet(sheet, dtypes="string", header_row=0).to_polars()
    except Exception as exc:
        message = _short(exc)
        if "empty" in message.lower() or "no rows" in message.lower():
            raise InputError(f"sheet {sheet!r} is empty", path=str(path)) from None
        raise InputError(f"sheet {sheet!r} cannot be read ({message})",
                         path=str(path)) from None
    numeric = _numeric_cells(path, names.index(sheet), frame.columns, ("accounts",))
    return frame, sheet, numeric


def _numeric_cells(
    path: Path, sheet_index: int, headers: list[str], wanted: tuple[str, ...]
) -> dict[str, list[tuple[int, str]]]:
    """Find numeric (not text) cells in the ``wanted`` columns, straight from the sheet XML.

    fastexcel renders every cell as text, but a number that Excel stored as a float has already
    lost digits. Only the raw cell type tells a 19-digit id typed as text from one typed as a
    number, so the few columns where that matters are checked here.
    """
    letters = {
        _column_letter(i): normalise_header(h)
        for i, h in enumerate(headers)
        if normalise_header(h) in wanted
    }
    found: dict[str, list[tuple[int, str]]] = {}
    if not letters:
        return found
    try:
        with zipfile.ZipFile(path) as archive:
            member = _sheet_member(archive, sheet_index)
            with archive.open(member) as handle:
                # expat (>= 2.4) refuses entity-expansion bombs and ElementTree never
                # resolves external entities, so the standard parser is safe here.
                for _, elem in ElementTree.iterparse(handle):  # noqa: S314
                    if not elem.tag.endswith("}c"):
                        continue
                    ref = elem.get("r", "")
                    letter = ref.rstrip("0123456789")
                    cell_type = elem.get("t", "n")
                    if letter in letters and cell_type == "n" and ref[len(letter):] != "1":
                        value = next((v.text for v in elem if v.tag.endswith("}v")), None)
                        if value is not None:
                            found.setdefault(letters[letter], []).append(
                                (int(ref[len(letter):]), value))
                    elem.clear()
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError):
        return found
    return found


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
    path: Path, frame: pl.DataFrame, sheet: str | None,
    numeric: dict[str, list[tuple[int, str]]],
) -> Table:
    headers: dict[str, str] = {}
    renames: dict[str, str] = {}
    drop: list[str] = []
    for position, original in enumerate(frame.columns, start=1):
        name = normalise_header(original) or f"column_{position}"
        if name in IGNORED_COLUMNS or name == ROW:
            drop.append(original)
            continue
        if name in headers:
            raise InputError(
                f"columns {headers[name]!r} and {original!r} both mean {name!r}; "
                "keep one of them",
                path=str(path), row=1, column=original,
            )
        headers[name] = original
        renames[original] = name
    frame = frame.drop(drop).rename(renames)
    frame = frame.with_columns(
        pl.col(c).cast(pl.String).str.strip_chars().str.replace(r"^'([=+\-@\t\r])", "$1")
        .replace("", None)
        for c in frame.columns
    ).with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(ROW))
    if frame.width > 1:
        frame = frame.filter(~pl.all_horizontal(pl.exclude(ROW).is_null()))
    return Table(path=path, frame=frame, headers=headers, sheet=sheet, numeric_cells=numeric)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
