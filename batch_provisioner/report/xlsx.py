"""``results.xlsx``: the results a person filters, and a Summary sheet; never a formula.

Two sheets. ``results`` is the first tab, as it always was, so a script that reads a
workbook's first sheet (fastexcel, pandas) still gets the results: the same columns and cells
as results.csv, one row per input row, under a bold frozen header with an autofilter over
every row; column widths from the header and the content (at most ``MAX_WIDTH`` characters;
error messages wrap); the status cell filled with its status's colour from report.html's
palette; ``connect_card_uri`` a clickable link when it is an http(s) URL that Excel can hold;
``started_at`` and ``finished_at`` Excel datetimes in UTC; numbers and booleans as such.
``Summary`` is the second tab: the run's figures, the rows per status in the same colours and
the next actions, each with the command to paste.

The caller has already scrubbed and neutralised the frame, and scrubbed the summary; this
writer only makes sure that no string is ever turned into a formula, number or URL by
xlsxwriter. Every text goes through ``write_string`` (the Summary's with Excel's quote prefix,
so that a command starting with ``=`` or ``-`` stays text even when a person edits the cell),
and only an http(s) URL through ``write_url``. The workbook is written in ``constant_memory``
mode (row by row, nothing kept per cell), and it is dated by the run's start, so the same
results and summary make the same bytes.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.errors import ExitCode
from batch_provisioner.report.palette import STATUS_COLOURS

RESULTS_SHEET = "results"
SUMMARY_SHEET = "Summary"
#: The widest a column gets, in characters: a longer cell is cut off at the next filled cell
#: (error messages wrap instead).
MAX_WIDTH = 60
_MIN_WIDTH = 6
_FILTER_BUTTON = 3  # the header's autofilter button takes about this many characters
#: Excel's longest hyperlink, and its most hyperlinks in one worksheet: past either, the URL
#: is written as text.
URL_LIMIT = 2079
LINKS_PER_SHEET = 65_530
_LINKABLE = re.compile(r"(?i)^https?://[^\s\x00-\x1f\x7f]+$")
#: How the datetime cells show (the value itself is an Excel datetime, in UTC).
DATETIME_FORMAT = 'yyyy-mm-dd hh:mm:ss "UTC"'
_DATETIME_WIDTH = len("2026-12-01 20:24:54 UTC") + 1
TIME_COLUMNS = frozenset({"started_at", "finished_at"})
_WRAPPED = frozenset({"error_message"})
_OPTIONS = {"strings_to_formulas": False, "strings_to_numbers": False,
            "strings_to_urls": False, "constant_memory": True}

#: Writes one cell that is not empty: (row, column, value).
_Write = Callable[[int, int, Any], object]


def write_xlsx(frame: pl.DataFrame, path: Path,
               summary: Mapping[str, Any] | None = None) -> None:
    """Write ``frame`` as the sheet ``results`` and ``summary`` as the sheet ``Summary``.

    ``frame`` is already scrubbed and neutralised, ``summary`` (``summary.json``'s content)
    already scrubbed; without a summary the Summary sheet has its labels and no figures.
    """
    import xlsxwriter

    summary = summary or {}
    with tempfile.TemporaryDirectory(prefix="batch-provisioner-xlsx-",
                                     ignore_cleanup_errors=True) as scratch:
        workbook = xlsxwriter.Workbook(str(path), {**_OPTIONS, "tmpdir": scratch})
        try:
            started = parse_utc(summary.get("started_at"))
            if started is not None:
                workbook.set_properties({"created": started})
            styles = _Styles(workbook)
            _write_results(workbook.add_worksheet(RESULTS_SHEET), frame, styles)
            _write_summary(workbook.add_worksheet(SUMMARY_SHEET), summary, styles)
            workbook.close()
        finally:
            _close_row_files(workbook)


def _close_row_files(workbook: Any) -> None:
    """Close the file each sheet keeps its rows in (``constant_memory``) if a failed write
    (a full disk) left it open; ``close`` closes them itself once the workbook is written.
    The files are in the scratch folder, removed with it."""
    for sheet in workbook.worksheets():
        handle = getattr(sheet, "row_data_fh", None)
        if handle is not None and not handle.closed:
            handle.close()


def parse_utc(value: object) -> datetime | None:
    """An ISO 8601 time (a text, or a datetime) as a naive UTC datetime for Excel; None when
    it is not one, or is outside the years Excel shows. A time without an offset is UTC, as
    every time the job writes is."""
    moment = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if moment is None:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 9999-12-31 at a negative offset
            return None
    return moment if 1900 <= moment.year <= 9999 else None


def is_linkable(text: str) -> bool:
    """An http(s) URL with no blank or control character, short enough for an Excel link."""
    return bool(_LINKABLE.match(text)) and len(text.encode("utf-16-le")) // 2 <= URL_LIMIT


class _Styles:
    """The workbook's cell formats, each made once."""

    def __init__(self, workbook: Any) -> None:
        self.header = workbook.add_format({"bold": True})
        self.heading = workbook.add_format({"bold": True, "quote_prefix": True})
        self.text = workbook.add_format({"quote_prefix": True})
        self.paragraph = workbook.add_format({"quote_prefix": True, "text_wrap": True,
                                              "valign": "top"})
        self.datetime = workbook.add_format({"num_format": DATETIME_FORMAT})
        self.wrapped = workbook.add_format({"text_wrap": True})
        self.status = {status: workbook.add_format({"bg_color": colour,
                                                    "font_color": "#ffffff"})
                       for status, colour in STATUS_COLOURS.items()}


def _write_value(sheet: Any, row: int, col: int, value: Any, text_format: Any = None,
                 time_format: Any = None) -> None:
    """A boolean, a finite number or a datetime (with ``time_format``) as such; anything
    else as a text cell."""
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, int | float) and math.isfinite(value):
        sheet.write_number(row, col, value)
    elif isinstance(value, datetime) and time_format is not None:
        sheet.write_datetime(row, col, value, time_format)
    else:
        sheet.write_string(row, col, str(value), text_format)


class _ResultCells:
    """The writer of each column of the results sheet, chosen once per column: the cells of a
    typed column go straight to xlsxwriter's writer for that type."""

    def __init__(self, sheet: Any, styles: _Styles) -> None:
        self.sheet = sheet
        self.styles = styles
        self.links = 0

    def for_column(self, name: str, dtype: pl.DataType) -> _Write:
        special: dict[str, _Write] = {"status": self.status, "connect_card_uri": self.link}
        if name in special:
            return special[name]
        if name in TIME_COLUMNS:
            return self.moment
        if name in _WRAPPED:
            return self.wrapped
        if dtype == pl.String:
            write: _Write = self.sheet.write_string
        elif dtype == pl.Boolean:
            write = self.sheet.write_boolean
        elif dtype.is_integer():
            write = self.sheet.write_number
        else:
            write = self.value
        return write

    def value(self, row: int, col: int, value: Any) -> None:
        _write_value(self.sheet, row, col, value)

    def status(self, row: int, col: int, value: Any) -> None:
        self.sheet.write_string(row, col, str(value), self.styles.status.get(str(value)))

    def link(self, row: int, col: int, value: Any) -> None:
        """A link showing its own URL; text when it is not an http(s) URL Excel can hold, or
        once the sheet has as many links as Excel allows."""
        text = str(value)
        if self.links < LINKS_PER_SHEET and is_linkable(text):
            self.links += 1
            self.sheet.write_url(row, col, text, None, text)
        else:
            self.sheet.write_string(row, col, text)

    def moment(self, row: int, col: int, value: Any) -> None:
        """A datetime cell; a value that is not an ISO 8601 time stays as it is."""
        moment = parse_utc(value)
        if moment is None:
            _write_value(self.sheet, row, col, value)
        else:
            self.sheet.write_datetime(row, col, moment, self.styles.datetime)

    def wrapped(self, row: int, col: int, value: Any) -> None:
        self.sheet.write_string(row, col, str(value), self.styles.wrapped)


def _write_results(sheet: Any, frame: pl.DataFrame, styles: _Styles) -> None:
    """The results sheet: header, rows, widths, frozen header and autofilter."""
    cells = _ResultCells(sheet, styles)
    writers = [cells.for_column(name, dtype) for name, dtype in frame.schema.items()]
    for col, (name, width) in enumerate(zip(frame.columns, column_widths(frame), strict=True)):
        sheet.set_column(col, col, width)
        sheet.write_string(0, col, name, styles.header)
    for r, values in enumerate(frame.iter_rows(), start=1):
        for col, value in enumerate(values):
            if value is not None:
                writers[col](r, col, value)
    sheet.freeze_panes(1, 0)
    if frame.width:
        sheet.autofilter(0, 0, frame.height, frame.width - 1)


def column_widths(frame: pl.DataFrame) -> list[int]:
    """Each column's width in characters: its header (and filter button) or its longest cell,
    whichever is wider, between ``_MIN_WIDTH`` and ``MAX_WIDTH``. One vectorised pass."""
    if not frame.width:
        return []
    longest = frame.select(pl.col(name).cast(pl.String).str.len_chars().max()
                           for name in frame.columns).row(0)
    widths = []
    for name, content in zip(frame.columns, longest, strict=True):
        cells = _DATETIME_WIDTH if name in TIME_COLUMNS else (content or 0) + 1
        widths.append(min(MAX_WIDTH, max(_MIN_WIDTH, len(name) + _FILTER_BUTTON, cells)))
    return widths


@dataclass(frozen=True)
class SummaryLine:
    """One line of the Summary sheet: its cells (None for an empty one) and how the first
    shows: ``plain``, ``heading`` (every cell bold), ``wrapped`` (every text wraps: a next
    action's sentence and command, which would not fit a column) or a status (filled in its
    colour)."""

    cells: tuple[object, ...] = ()
    style: str = "plain"


def summary_lines(summary: Mapping[str, Any]) -> list[SummaryLine]:
    """The Summary sheet, line by line: the run's figures, the rows per status, the next
    actions. Only what ``summary`` holds is shown; nothing is derived but the total."""
    code = summary.get("exit_code")
    invocations = summary.get("invocations") or []
    wall = ("active time over all invocations (s)" if len(invocations) > 1
            else "wall time (s)")
    times = {key: parse_utc(summary.get(key)) or summary.get(key)
             for key in ("started_at", "finished_at")}
    lines = [
        SummaryLine(("run", "value"), "heading"),
        SummaryLine(("run id", summary.get("run_id"))),
        SummaryLine(("version", summary.get("version"))),
        SummaryLine(("started (UTC)", times["started_at"])),
        SummaryLine(("finished (UTC)", times["finished_at"])),
        SummaryLine(("exit code", code, exit_name(code))),
        SummaryLine((wall, summary.get("wall_seconds"))),
        SummaryLine(("ideal time from the budgets (s)", summary.get("ideal_seconds"))),
        SummaryLine(("API calls", summary.get("calls"))),
        SummaryLine(("429 answers", summary.get("throttled_429"))),
        SummaryLine(("retries", summary.get("retries"))),
        SummaryLine(),
        SummaryLine(("status", "rows"), "heading"),
    ]
    counts: Mapping[str, Any] = summary.get("counts") or {}
    lines += [SummaryLine((status, count), status) for status, count in counts.items()]
    lines.append(SummaryLine(("total", sum(c for c in counts.values()
                                           if isinstance(c, int | float)))))
    return [*lines, SummaryLine(), *_next_action_lines(summary)]


def _next_action_lines(summary: Mapping[str, Any]) -> list[SummaryLine]:
    """Each next action as the closing lines of ``apply`` print it: its sentence, the
    command to paste and what the command does (``why``, left out when it is the sentence)."""
    heading = SummaryLine(("next actions", "command", "what the command does"), "heading")
    if "next_actions" not in summary:
        return [heading, SummaryLine(("none recorded for this run",))]
    actions = [a for a in summary["next_actions"] or [] if isinstance(a, Mapping)]
    if not actions:
        return [heading, SummaryLine(("none: nothing needs you",))]
    return [heading, *(SummaryLine((a.get("message"), a.get("command"),
                                    None if a.get("why") == a.get("message") else a.get("why")),
                                   "wrapped") for a in actions)]


def exit_name(code: object) -> str | None:
    """``rows_failed`` for 1 and so on, as the closing lines of ``apply`` name them."""
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return None


def _write_summary(sheet: Any, summary: Mapping[str, Any], styles: _Styles) -> None:
    """The Summary sheet: ``summary_lines``, every text a quote-prefixed text cell."""
    lines = summary_lines(summary)
    for col, width in enumerate(_summary_widths(lines)):
        sheet.set_column(col, col, width)
    for row, line in enumerate(lines):
        for col, value in enumerate(line.cells):
            if value is None:
                continue
            if line.style == "heading":
                sheet.write_string(row, col, str(value), styles.heading)
            elif line.style == "wrapped":
                _write_value(sheet, row, col, value, styles.paragraph)
            elif col == 0 and line.style in styles.status:
                sheet.write_string(row, col, str(value), styles.status[line.style])
            else:
                _write_value(sheet, row, col, value, styles.text, styles.datetime)


def _summary_widths(lines: list[SummaryLine]) -> list[int]:
    columns = max((len(line.cells) for line in lines), default=0)
    widths = [_MIN_WIDTH] * columns
    for line in lines:
        for col, value in enumerate(line.cells):
            size = _DATETIME_WIDTH if isinstance(value, datetime) else len(str(value or ""))
            widths[col] = min(MAX_WIDTH, max(widths[col], size + 1))
    return widths
