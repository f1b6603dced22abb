"""Reading a CSV file into an all-text grid (header row included).

UTF-8 (with or without a BOM) and UTF-16 with a BOM are read; CR or mixed line endings are
fixed; ``;`` and tab separators are recognised from the header, or named by Excel's
``sep=;`` first line (which is then skipped). A file polars refuses is explained by the
row it stumbled on.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.common import (
    MAX_COLUMNS,
    MAX_ROWS,
    check_width,
    reraise_fatal,
    short,
)

# Excel's hint line: ``sep=;`` alone on the first line names the separator.
_SEP_LINE = re.compile(rb"sep=([^\r\n])[ \t]*(?:\r?\n|\Z)", re.IGNORECASE)


def read_grid(path: Path) -> tuple[pl.DataFrame, int]:
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
    hinted, data = _sep_line(path, data)
    if not data.strip(b" \t\r\n"):
        raise InputError("the file is empty" if hinted is None else
                         "holds only its 'sep=' line: no header, no rows", path=str(path))
    blank_lines = re.match(rb"(?:[ \t\r]*\n)*", data)
    body = data[blank_lines.end():] if blank_lines else data
    first_row = data[: len(data) - len(body)].count(b"\n") + 1
    header = body.split(b"\n", 1)[0]
    separator = hinted or _separator(path, header)
    if header.count(separator.encode()) >= MAX_COLUMNS:  # refuse before polars builds it
        check_width(path, len(next(csv.reader([header.decode()], delimiter=separator))))
    try:
        return _parse_csv(body, separator, ragged=False), first_row
    except BaseException as exc:  # polars errors, or a panic on a pathological file
        reraise_fatal(exc)
        problem = _csv_problem(body.decode("utf-8"), separator, first_row)
        if problem is None:  # only empty cells beyond the header's width: nothing is lost
            try:
                return _parse_csv(body, separator, ragged=True), first_row
            except BaseException as again:
                reraise_fatal(again)
        raise InputError(problem or f"is not a readable CSV file ({short(exc)})",
                         path=str(path)) from None


def _parse_csv(data: bytes, separator: str, *, ragged: bool) -> pl.DataFrame:
    # at most one row more than a sheet may have: the caller refuses a file that long
    return pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False,
                       separator=separator, truncate_ragged_lines=ragged, raise_if_empty=True,
                       n_rows=MAX_ROWS + 1)


def _sep_line(path: Path, data: bytes) -> tuple[str | None, bytes]:
    """(the separator a first line ``sep=;`` names, the file without that line); (None, the
    file) when there is none. Excel writes and honours that hint line and never shows it as
    a row, so the rows are numbered without it, as Excel shows them."""
    match = _SEP_LINE.match(data)
    if match is None:
        return None, data
    separator = match.group(1)
    if separator == b'"' or separator.isalnum() or not separator.isascii():
        raise InputError(f"its first line {match.group(0).strip().decode()!r} names a "
                         "separator that cannot be used; use sep=, sep=; or sep=| (or a tab)",
                         path=str(path))
    return separator.decode(), data[match.end():]


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
