"""results.xlsx as a person opens it: filter, links, datetimes, colours, and a Summary sheet.

The workbook is read back with openpyxl, which reads the styles (fills, number formats,
hyperlinks, the autofilter) that the value-only readers skip.
"""

from __future__ import annotations

import errno
import gc
import json
import tempfile
import warnings
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest
from openpyxl.styles.numbers import is_date_format
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from batch_provisioner.errors import OutputError
from batch_provisioner.report import xlsx
from batch_provisioner.report.files import write_result_files
from batch_provisioner.report.palette import STATUS_COLOURS
from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import cli, write_sheet

CARD = "https://fivetran.example/connect-card/setup?auth=abc&redirect_uri=https%3A%2F%2Fx"
EVIL_CARD = "javascript:alert(document.cookie)"
LONG_CARD = "https://fivetran.example/connect-card/setup?auth=" + "a" * 2100
LONG_ERROR = "sync_mode 'AllAcounts' is not one of AllAccounts, SpecificAccounts. " * 4
NEXT = [{"kind": "fix_rows", "count": 1, "rows": [3],
         "message": "1 row to fix, each with its error in reports/r-1/failed_rows.csv",
         "command": "batch-provisioner apply reports/r-1/failed_rows.csv --sandbox",
         "why": "after fixing failed_rows.csv: its rows as a new run"},
        {"kind": "conflicts", "count": 1, "rows": [4], "message": "an odd command",
         "command": "=1+1", "why": None},
        {"kind": "status", "count": 3, "rows": [], "message": "setup state of every connection",
         "command": "-x status r-1", "why": "setup state of every connection"},
        {"kind": "retry_rows", "count": 1, "rows": [5], "message": "a resume tries it again",
         "command": None, "why": None}]
#: (sentence, command, what the command does) of each line the Summary shows for ``NEXT``.
NEXT_LINES = [(NEXT[0]["message"], NEXT[0]["command"], NEXT[0]["why"]),
              ("an odd command", "=1+1", None),
              ("setup state of every connection", "-x status r-1", None),
              ("a resume tries it again", None, None)]
#: The cells of each row that the tests look at; every other column as apply writes it.
ROWS: list[dict[str, Any]] = [
    {"status": "created", "client_ref": "plain", "connect_card_uri": CARD,
     "started_at": "2026-12-01T20:24:54.123Z", "finished_at": "2026-12-01T22:24:56+02:00"},
    {"status": "failed", "client_ref": "=1+1", "connect_card_uri": EVIL_CARD,
     "http_status": 404, "error_code": "NotFound_Group", "error_message": LONG_ERROR,
     "attempts": 3, "started_at": "yesterday"},
    {"status": "exists", "client_ref": "-2+3", "connect_card_uri": LONG_CARD},
]


def results(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A results frame shaped as apply writes it, one row per entry of ``rows``."""
    base: dict[str, Any] = {"group_id": "decent_dropsy", "group_name": None, "schema": "tt_x",
                            "client_ref": None, "action": "create", "status": "created",
                            "connection_id": "conn_1", "setup_state": "incomplete",
                            "connect_card_uri": None, "http_status": 201, "error_code": None,
                            "error_message": None, "attempts": 1, "reconciled": False,
                            "started_at": None, "finished_at": None}
    records = [{"source_row": i + 2, **base, **row} for i, row in enumerate(rows)]
    schema = {name: pl.Int64 if name in ("source_row", "http_status", "attempts")
              else pl.Boolean if name == "reconciled" else pl.String
              for name in ["source_row", *base]}
    return pl.DataFrame(records, schema=schema)


def summary(**extra: Any) -> dict[str, Any]:
    return {"run_id": "r-1", "version": "0.1.0", "started_at": "2026-12-01T20:24:50Z",
            "finished_at": "2026-12-01T20:25:10.5Z", "exit_code": 1, "wall_seconds": 20.5,
            "ideal_seconds": 12.25, "calls": 9, "throttled_429": 2, "retries": 3,
            "counts": {"created": 1, "failed": 1, "exists": 1, "invalid": 0},
            "next_actions": NEXT, **extra}


def written(tmp_path: Path, frame: pl.DataFrame, run_summary: dict[str, Any]) -> Workbook:
    """The workbook ``write_result_files`` writes (scrubbed, neutralised), opened."""
    write_result_files(tmp_path, frame, run_summary, (), ["client_ref"])
    return openpyxl.load_workbook(tmp_path / "results.xlsx")


@pytest.fixture()
def book(tmp_path: Path) -> Workbook:
    return written(tmp_path, results(ROWS), summary())


def column(sheet: Worksheet, name: str) -> list[Any]:
    """The cells under header ``name``, data rows only."""
    header = [cell.value for cell in sheet[1]]
    return list(sheet.iter_rows(min_row=2, min_col=header.index(name) + 1,
                                max_col=header.index(name) + 1))


def cell(sheet: Worksheet, name: str, row: int) -> Any:
    """The cell under header ``name`` of data row ``row`` (0 = the first under the header)."""
    return column(sheet, name)[row][0]


def width(sheet: Worksheet, name: str) -> float:
    """The width of the column under header ``name`` (openpyxl keeps a range of columns of
    one width as one dimension)."""
    index = [c.value for c in sheet[1]].index(name) + 1
    return next(d.width for d in sheet.column_dimensions.values() if d.min <= index <= d.max)


def summary_rows(book: Workbook) -> list[tuple[Any, ...]]:
    return [row for row in book["Summary"].iter_rows(values_only=True) if any(row)]


def action_rows(book: Workbook) -> list[tuple[Any, ...]]:
    """(sentence, command, what it does) of each line under the Summary's "next actions"."""
    rows = summary_rows(book)
    return [r[:3] for r in rows[[r[0] for r in rows].index("next actions") + 1:]]


def test_results_stay_the_first_tab_with_a_filter_over_every_row(book: Workbook) -> None:
    assert book.sheetnames == ["results", "Summary"]
    sheet = book["results"]
    last = get_column_letter(sheet.max_column)
    assert sheet.auto_filter.ref == f"A1:{last}{len(ROWS) + 1}"
    assert sheet.freeze_panes == "A2"
    assert all(c.font.b for c in sheet[1])
    assert [c.value for c in sheet[1]][:5] == ["source_row", "group_id", "group_name",
                                               "schema", "client_ref"]


def test_a_filter_over_no_rows_covers_the_header(tmp_path: Path) -> None:
    sheet = written(tmp_path, results([]), summary())["results"]
    assert sheet.auto_filter.ref == f"A1:{get_column_letter(sheet.max_column)}1"


def test_only_an_http_connect_card_is_a_link(book: Workbook) -> None:
    sheet = book["results"]
    good, evil, long = (cell(sheet, "connect_card_uri", r) for r in range(3))
    assert good.value == CARD and good.hyperlink is not None
    assert good.hyperlink.target == CARD
    assert evil.value == EVIL_CARD and evil.hyperlink is None
    assert long.value == LONG_CARD and long.hyperlink is None  # past Excel's 2079: text


def test_past_excels_link_limit_the_urls_are_text(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "LINKS_PER_SHEET", 2)  # xlsxwriter would warn past 65,530
    frame = results([{"connect_card_uri": f"{CARD}&n={i}"} for i in range(3)])
    sheet = written(tmp_path, frame, summary())["results"]
    links = [c[0].hyperlink for c in column(sheet, "connect_card_uri")]
    assert [link is not None for link in links] == [True, True, False]
    assert cell(sheet, "connect_card_uri", 2).value == f"{CARD}&n=2"


def test_times_are_excel_datetimes_in_utc(book: Workbook) -> None:
    sheet = book["results"]
    started, finished = cell(sheet, "started_at", 0), cell(sheet, "finished_at", 0)
    assert started.value == datetime(2026, 12, 1, 20, 24, 54, 123000)
    assert finished.value == datetime(2026, 12, 1, 20, 24, 56)  # +02:00 shown in UTC
    assert is_date_format(started.number_format) and "UTC" in started.number_format
    assert cell(sheet, "started_at", 1).value == "yesterday"  # not a time: left as text


def test_counts_stay_numbers_and_formula_like_cells_stay_strings(book: Workbook,
                                                                 tmp_path: Path) -> None:
    sheet = book["results"]
    for name, expected in [("source_row", 3), ("http_status", 404), ("attempts", 3)]:
        assert cell(sheet, name, 1).value == expected
        assert cell(sheet, name, 1).data_type == "n"
    for row, text in [(1, "'=1+1"), (2, "'-2+3")]:  # neutralise's prefix, kept as text
        assert cell(sheet, "client_ref", row).value == text
        assert cell(sheet, "client_ref", row).data_type == "s"
    with zipfile.ZipFile(tmp_path / "results.xlsx") as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist()
                  if n.startswith("xl/worksheets/sheet")]
    assert len(sheets) == 2 and not [s for s in sheets if "<f>" in s or "<f " in s]


def test_status_cells_carry_the_report_colours(book: Workbook) -> None:
    sheet = book["results"]
    fills = [cell(sheet, "status", r).fill.fgColor.rgb for r in range(3)]
    assert fills == [f"FF{STATUS_COLOURS[s][1:].upper()}" for s in ("created", "failed",
                                                                    "exists")]
    assert len(set(fills)) == 3


def test_widths_follow_the_content_up_to_a_cap(book: Workbook) -> None:
    sheet = book["results"]
    assert xlsx.MAX_WIDTH <= width(sheet, "error_message") < xlsx.MAX_WIDTH + 1  # capped
    assert cell(sheet, "error_message", 1).alignment.wrap_text  # and the long error wraps
    assert width(sheet, "connection_id") >= len("connection_id")
    assert width(sheet, "started_at") >= len("2026-12-01 20:24:54 UTC")
    assert width(sheet, "status") < width(sheet, "client_ref") < width(sheet, "connect_card_uri")


def test_the_summary_sheet_has_the_figures_the_counts_and_the_next_actions(
        book: Workbook) -> None:
    rows = summary_rows(book)
    figures = {row[0]: row[1:] for row in rows}
    assert figures["run id"][0] == "r-1"
    assert figures["started (UTC)"][0] == datetime(2026, 12, 1, 20, 24, 50)
    assert figures["finished (UTC)"][0] == datetime(2026, 12, 1, 20, 25, 10, 500000)
    assert figures["exit code"][:2] == (1, "rows_failed")
    assert figures["API calls"][0] == 9 and figures["429 answers"][0] == 2
    assert figures["retries"][0] == 3 and figures["ideal time from the budgets (s)"][0] == 12.25
    assert [figures[s][0] for s in ("created", "failed", "exists", "invalid", "total")] == [
        1, 1, 1, 0, 3]
    assert action_rows(book) == NEXT_LINES


def test_summary_status_cells_and_commands_are_styled_text(book: Workbook) -> None:
    sheet = book["Summary"]
    by_label = {row[0].value: row for row in sheet.iter_rows() if row[0].value}
    assert by_label["failed"][0].fill.fgColor.rgb == f"FF{STATUS_COLOURS['failed'][1:].upper()}"
    assert by_label["failed"][0].fill.fgColor.rgb != by_label["created"][0].fill.fgColor.rgb
    for label, command in [("an odd command", "=1+1"),
                           ("setup state of every connection", "-x status r-1")]:
        command_cell = by_label[label][1]
        assert command_cell.value == command and command_cell.data_type == "s"  # no formula
        assert command_cell.quotePrefix  # and stays text when a person edits the cell
        assert command_cell.alignment.wrap_text  # a long command shows whole


@pytest.mark.parametrize(("next_actions", "line"), [
    (None, "none recorded for this run"), ([], "none: nothing needs you")])
def test_a_summary_without_next_actions_says_so(tmp_path: Path, next_actions: Any,
                                                line: str) -> None:
    run_summary = summary()
    if next_actions is None:
        del run_summary["next_actions"]
    else:
        run_summary["next_actions"] = next_actions
    assert action_rows(written(tmp_path, results(ROWS), run_summary)) == [(line, None, None)]


def test_the_same_results_make_the_same_bytes(tmp_path: Path) -> None:
    written(tmp_path / "a", results(ROWS), summary())
    written(tmp_path / "b", results(ROWS), summary())
    first, second = ((tmp_path / d / "results.xlsx").read_bytes() for d in "ab")
    assert first == second


def test_a_full_disk_mid_write_leaves_no_file_open_or_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where xlsxwriter keeps its rows

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xlsx, "_write_summary", full)
    with pytest.raises(OutputError, match=r"results\.xlsx: No space left"):
        write_result_files(tmp_path / "run", results(ROWS), summary(), (), ["client_ref"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "run" / "results.xlsx").exists()


def test_a_sandbox_runs_workbook_has_links_times_colours_and_a_summary(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 6, connect_card_every=3,
                        groups=("decent_dropsy", "no_such_group"))
    reports = tmp_path / "reports"
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "run")
    assert done.returncode == 1, done.stderr[-1500:]
    run_dir = reports / "run"
    book = openpyxl.load_workbook(run_dir / "results.xlsx")
    run_summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    results_sheet = book["results"]
    assert results_sheet.auto_filter.ref == f"A1:{get_column_letter(results_sheet.max_column)}7"
    statuses = [c[0].value for c in column(results_sheet, "status")]
    assert statuses == ["created", "failed"] * 3
    card = cell(results_sheet, "connect_card_uri", 0)  # row 0: a connect-card row, created
    assert card.hyperlink is not None and card.hyperlink.target == card.value
    assert card.value.startswith("https://")
    assert isinstance(cell(results_sheet, "started_at", 0).value, datetime)
    assert is_date_format(cell(results_sheet, "started_at", 0).number_format)
    fills = {c[0].value: c[0].fill.fgColor.rgb for c in column(results_sheet, "status")}
    assert fills["created"] != fills["failed"]
    figures = {row[0]: row[1] for row in summary_rows(book)}
    assert figures["run id"] == "run" and (figures["created"], figures["failed"]) == (3, 3)
    assert figures["exit code"] == run_summary["exit_code"] == 1
    actions = run_summary["next_actions"]
    assert {a["kind"] for a in actions} >= {"fix_rows", "connect_cards"}
    assert action_rows(book) == [
        (a["message"], a["command"], None if a["why"] == a["message"] else a["why"])
        for a in actions]
