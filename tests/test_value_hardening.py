"""Hardening (issue 13): formula-like headers, ASCII digits, integer bounds, checked
``[limits]``, neutralised lifecycle rewrites, a retried DELETE's 404, Excel's ``sep=`` line.

Each test is named after the behaviour it pins down; the input-file cases live in the hostile
corpus (``tests/data/hostile/``: formula_headers.csv, unicode_digits.csv, huge_integers.csv,
limits_out_of_range.toml, excel_sep_line.csv).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import fastexcel
import polars as pl
import pytest
import typer

import batch_provisioner as bp
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.cli.common import parse_duration
from batch_provisioner.errors import ExitCode, InputError, RowApiError
from batch_provisioner.models import Status
from batch_provisioner.report.scrub import neutralise
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.settings import Limits, limit_problem
from batch_provisioner.sheet.columns import COLUMNS, INT32_MAX, Kind
from batch_provisioner.sheet.common import normalise_header
from batch_provisioner.sheet.defaults import load_defaults
from batch_provisioner.sheet.read import read_table
from tests.apply_helpers import load, write_dict_rows
from tests.helpers_input import BASE_ROW, prepare_rows, problems

FORMULA_HEADERS = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "+1+1",
                   "@SUM(A1)", "-2+3"]
DANGER = ("=", "+", "-", "@", "\t", "\r")
EVIL = '=HYPERLINK("http://evil.example","click")'


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def _csv_cells(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def _xlsx_cells(path: Path) -> list[str]:
    frame = fastexcel.read_excel(str(path)).load_sheet(0, header_row=None,
                                                       dtypes="string").to_polars()
    return [str(v) for row in frame.iter_rows() for v in row if v is not None]


def _unsafe(cells: list[str]) -> list[str]:
    return [c for c in cells if c.startswith(DANGER)]


# --- 4. carry-through headers that look like formulas ------------------------------------

def _formula_header_sheet(path: Path) -> Path:
    columns = ["group_id", "schema", "access_token", *FORMULA_HEADERS]
    rows = [{"group_id": "decent_dropsy", "schema": "tt_ok", "access_token": "env:TT_TOKEN",
             **dict.fromkeys(FORMULA_HEADERS, "plain")},
            {"group_id": "decent_dropsy", "schema": "Bad Schema",
             "access_token": "env:TT_TOKEN", **dict.fromkeys(FORMULA_HEADERS, "kept")}]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_regression_neutralise_covers_header_cells_and_the_reader_strips_them(
        tmp_path: Path) -> None:
    frame = pl.DataFrame({"=x": ["=1"], "ok": ["@y"], "+z": [None]}, schema={
        "=x": pl.String, "ok": pl.String, "+z": pl.String})
    safe = neutralise(frame)
    assert safe.columns == ["'=x", "ok", "'+z"]
    assert safe.row(0) == ("'=1", "'@y", None)
    path = tmp_path / "round.csv"
    safe.write_csv(path)
    table = read_table(path)
    assert list(table.headers.values()) == ["=x", "ok", "+z"]
    assert table.frame.get_column("=x").to_list() == ["=1"]


def test_regression_formula_headers_are_neutralised_in_every_output_and_round_trip(
        tmp_path: Path, box: SandboxHandle) -> None:
    prepared = load(_formula_header_sheet(tmp_path / "in.csv"))
    carry = [normalise_header(h) for h in FORMULA_HEADERS]
    assert prepared.carry_columns == carry  # they pass the column guardrails as the user's own
    reports = tmp_path / "reports"
    planned = bp.plan(prepared, sandbox_url=box.url, reports_dir=reports, run_id="p")
    done = bp.apply(prepared, sandbox_url=box.url, reports_dir=reports, run_id="a")
    assert done.exit_code is ExitCode.ROWS_FAILED
    assert [o.status for o in done.outcomes] == [Status.CREATED, Status.INVALID]
    run = reports / "a"
    for path in (planned.paths["plan.csv"], run / "results.csv"):
        header = _header(path)
        assert ["'" + c for c in carry if c[0] in DANGER] == [
            h for h in header if h.startswith("'")], path
        assert _unsafe(_csv_cells(path)) == [], path
    assert _unsafe(_xlsx_cells(run / "results.xlsx")) == []
    assert "'" + carry[0] in _xlsx_cells(run / "results.xlsx")
    failed = run / "failed_rows.csv"
    assert [h for h in _header(failed) if h.startswith("'")] == [
        "'" + h for h in FORMULA_HEADERS]
    assert _unsafe(_csv_cells(failed)) == []
    again = read_table(failed)  # fed back: the original headers, as written
    assert [again.headers[c] for c in carry] == FORMULA_HEADERS
    assert load(failed).carry_columns == carry


# --- 5. digits the API takes are ASCII -----------------------------------------------------

@pytest.mark.parametrize(("column", "value", "message"), [
    ("accounts", "７０１２３４５６７８９０１２３４５６７", "has ids that are not all digits"),
    ("accounts", "٧٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧", "has ids that are not all digits"),
    ("accounts", "7012345678901234567,७०१२", "has ids that are not all digits: ७०१२"),
    ("sync_frequency", "١٤٤٠", "is not a whole number"),
    ("data_delay_threshold", "６０", "is not a whole number"),
    ("daily_sync_time", "１４:00", "is not a whole hour"),
    ("redirect_uri", "https://agency.example:４４３/done", "is not an absolute https URL"),
])
def test_regression_unicode_digits_are_row_errors_not_sent(tmp_path: Path, column: str,
                                                           value: str, message: str) -> None:
    row = {**BASE_ROW, "sync_mode": "SpecificAccounts", "accounts": "7012345678901234567",
           "sync_frequency": "1440", "data_delay_sensitivity": "CUSTOM", column: value}
    prepared = prepare_rows(tmp_path, [row])
    found = [(p["column"], p["severity"]) for p in problems(prepared)
             if p["message"].startswith(message)]
    assert found == [(column, "error")]
    assert prepared.requests == []


def test_regression_ascii_digits_still_pass_and_are_sent_as_written(tmp_path: Path) -> None:
    row = {**BASE_ROW, "sync_mode": "SpecificAccounts", "accounts": "0070123456789012345",
           "sync_frequency": "1440", "daily_sync_time": "14:00",
           "data_delay_sensitivity": "CUSTOM", "data_delay_threshold": "0060",
           "redirect_uri": "https://agency.example:8443/done"}
    [request] = prepare_rows(tmp_path, [row]).requests
    assert request.payload["config"]["accounts"] == ["0070123456789012345"]
    assert request.payload["data_delay_threshold"] == 60


def test_regression_a_duration_takes_ascii_digits_only() -> None:
    assert parse_duration("1h30m") == 5400
    with pytest.raises(typer.BadParameter):
        parse_duration("١٢m")


# --- 6. integers have an upper bound ---------------------------------------------------------

@pytest.mark.parametrize(("value", "ok"), [
    ("525600", True), ("0000525600", True), ("525601", False), ("2147483648", False),
    ("9" * 23, False), ("9" * 400, False),
])
def test_regression_data_delay_threshold_has_an_upper_bound(tmp_path: Path, value: str,
                                                            ok: bool) -> None:
    row = {**BASE_ROW, "data_delay_sensitivity": "CUSTOM", "data_delay_threshold": value}
    prepared = prepare_rows(tmp_path, [row])
    if ok:
        assert problems(prepared) == []
        assert prepared.requests[0].payload["data_delay_threshold"] == 525600
        return
    [problem] = problems(prepared)
    assert (problem["row"], problem["column"], problem["severity"]) == (
        2, "data_delay_threshold", "error")
    assert problem["message"] == "is more than 525600, the largest data_delay_threshold allowed"
    assert "525600 (a year, in minutes)" in problem["hint"]
    assert prepared.requests == []


def test_regression_every_integer_column_is_bounded_within_int32(tmp_path: Path) -> None:
    integers = [c for c in COLUMNS if c.kind is Kind.INT]
    assert integers and all(c.choices or c.largest <= INT32_MAX for c in integers)
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "sync_frequency": "9" * 23}])
    assert [(p["column"], p["message"]) for p in problems(prepared)] == [
        ("sync_frequency", "is not an allowed sync frequency")]


# --- 12. [limits] in defaults.toml is checked as the flags are -----------------------------

@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("max_attempts = 0", "max_attempts", "must be a whole number >= 1 (got 0)"),
    ("calls_per_hour = 0.5", "calls_per_hour", "must be a whole number >= 0 (got 0.5)"),
    ("read_timeout = 0", "read_timeout", "must be a number >= 0.1 (got 0)"),
    ("connect_timeout = 0.05", "connect_timeout", "must be a number >= 0.1 (got 0.05)"),
    ("concurrency = 0", "concurrency", "must be a whole number from 1 to 256 (got 0)"),
    ("concurrency = 257", "concurrency", "must be a whole number from 1 to 256 (got 257)"),
    ("concurrency = 4.0", "concurrency", "must be a whole number from 1 to 256 (got 4.0)"),
    ("concurrency = true", "concurrency", "(got True)"),
    ('max_wait_seconds = "1h"', "max_wait_seconds", "must be a number >= 0 (got '1h')"),
    ("max_wait_seconds = -1", "max_wait_seconds", "must be a number >= 0 (got -1)"),
    ("max_wait_seconds = inf", "max_wait_seconds", "(got inf)"),
    ("setup_tests_per_hour = nan", "setup_tests_per_hour", "(got nan)"),
    ("creates_per_minute = -1", "creates_per_minute", "must be a whole number >= 0"),
    ("setup_tests_per_minute = [1]", "setup_tests_per_minute", "(got [1])"),
])
def test_regression_limits_in_defaults_are_checked_as_the_apply_flags_are(
        tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text(f"[limits]\n{text}\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_defaults(path)
    error = caught.value
    assert (error.path, error.column, error.exit_code) == (str(path), key, ExitCode.INPUT_ERROR)
    assert f"[limits] {key} must be " in error.message and fragment in error.message


def test_regression_limits_at_their_edges_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text("[limits]\nconcurrency = 256\nmax_attempts = 1\ncalls_per_hour = 0\n"
                    "max_wait_seconds = 0\nread_timeout = 0.1\nconnect_timeout = 30\n",
                    encoding="utf-8")
    limits = load_defaults(path).limits
    assert limits == Limits(concurrency=256, max_attempts=1, calls_per_hour=0,
                            max_wait_seconds=0.0, read_timeout=0.1, connect_timeout=30.0)
    assert limits.problems() == []
    settings = limits.client_settings()
    assert (settings.concurrency, settings.retry.max_attempts) == (256, 1)
    assert "calls_per_hour" not in {b.name for b in settings.budgets}  # 0 = off


@pytest.mark.parametrize(("limits", "key"), [
    (Limits(max_attempts=0), "max_attempts"), (Limits(read_timeout=0.0), "read_timeout"),
    (Limits(concurrency=0), "concurrency"), (Limits(max_wait_seconds=float("nan")),
                                             "max_wait_seconds"),
])
def test_regression_library_limits_are_checked_before_anything_is_sent(
        tmp_path: Path, box: SandboxHandle, limits: Limits, key: str) -> None:
    prepared = load(write_dict_rows(tmp_path / "in.csv", [{"group_id": "decent_dropsy",
                                                           "schema": "tt_a"}],
                                    ["group_id", "schema", "sync_mode", "sync_frequency",
                                     "access_token"]))
    with pytest.raises(InputError) as caught:
        bp.apply(prepared, sandbox_url=box.url, reports_dir=tmp_path / "r", limits=limits)
    assert caught.value.column == key and key in caught.value.message
    assert box.ledger()["counts"]["requests"] == 0


def test_limit_problem_is_the_one_check_for_every_key() -> None:
    keys = Limits.keys()
    assert [k for k in keys if limit_problem(k, 1) is None] == list(keys)
    assert all(limit_problem(k, True) is not None for k in keys)
    assert all(limit_problem(k, "1") is not None for k in keys)


# --- 13. status, connect-cards and rollback neutralise what they add -----------------------

def _created_run(tmp_path: Path, box: SandboxHandle) -> tuple[Path, list[str]]:
    rows = [{"group_id": "decent_dropsy", "schema": f"tt_{i}", "client_ref": f"c{i}"}
            for i in range(2)]
    sheet = write_dict_rows(tmp_path / "in.csv", rows, ["group_id", "schema", "sync_mode",
                                                        "sync_frequency", "access_token",
                                                        "client_ref"])
    reports = tmp_path / "reports"
    done = bp.apply(load(sheet), sandbox_url=box.url, reports_dir=reports, run_id="run")
    assert done.exit_code is ExitCode.OK
    return reports, [str(o.connection_id) for o in done.outcomes]


def _assert_all_neutralised(*paths: Path) -> None:
    for path in paths:
        cells = _xlsx_cells(path) if path.suffix == ".xlsx" else _csv_cells(path)
        assert _unsafe(cells) == [], path


def test_regression_status_neutralises_the_api_text_it_adds(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    reports, ids = _created_run(tmp_path, box)

    async def hostile(self: FivetranClient, connection_id: str) -> dict[str, Any]:
        if connection_id == ids[1]:
            raise RowApiError(EVIL, http_status=400, code="=cmd|' /C calc'!A0")
        return {"id": connection_id, "status": {"setup_state": EVIL},
                "setup_tests": [{"status": "=cmd|' /C calc'!A0", "title": "@SUM(1)",
                                 "message": EVIL}]}

    monkeypatch.setattr(FivetranClient, "get_connection", hostile)
    result = bp.status("run", reports_dir=reports, sandbox_url=box.url)
    assert result.lines[0]["setup_state"] == EVIL  # the library's own result is as answered
    run = reports / "run"
    _assert_all_neutralised(run / "status.csv", run / "results.csv", run / "results.xlsx")
    status = pl.read_csv(run / "status.csv", infer_schema=False)
    assert status["setup_state"].to_list()[0] == "'" + EVIL
    assert status["setup_tests"].to_list()[0] == f"'=cmd|' /C calc'!A0: @SUM(1): {EVIL}"
    results = pl.read_csv(run / "results.csv", infer_schema=False)
    assert results["setup_state"].to_list()[0] == "'" + EVIL
    assert results["setup_tests"].to_list()[0].startswith("'=cmd|")
    assert "'" + EVIL in _xlsx_cells(run / "results.xlsx")
    parquet = pl.read_parquet(run / "results.parquet")  # what later commands read: as answered
    assert parquet["setup_state"].to_list()[0] == EVIL


def test_regression_connect_cards_neutralises_the_uri_it_adds(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    reports, ids = _created_run(tmp_path, box)

    async def incomplete(self: FivetranClient, connection_id: str) -> dict[str, Any]:
        return {"id": connection_id, "status": {"setup_state": "incomplete"},
                "connect_card_config": {"redirect_uri": "https://agency.example/done"}}

    async def card(self: FivetranClient, connection_id: str, redirect_uri: str,
                   hide_setup_guide: bool = False) -> dict[str, Any]:
        return {"connect_card": {"uri": EVIL}}

    monkeypatch.setattr(FivetranClient, "get_connection", incomplete)
    monkeypatch.setattr(FivetranClient, "connect_card", card)
    bp.connect_cards("run", reports_dir=reports, sandbox_url=box.url)
    run = reports / "run"
    _assert_all_neutralised(run / "connect_cards.csv", run / "results.csv",
                            run / "results.xlsx")
    cards = pl.read_csv(run / "connect_cards.csv", infer_schema=False)
    assert cards["uri"].to_list() == ["'" + EVIL] * len(ids)
    results = pl.read_csv(run / "results.csv", infer_schema=False)
    assert results["connect_card_uri"].to_list() == ["'" + EVIL] * len(ids)


def test_regression_rollback_neutralises_the_api_error_it_adds(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    reports, ids = _created_run(tmp_path, box)

    async def refused(self: FivetranClient, connection_id: str) -> bool:
        raise RowApiError(EVIL, http_status=400, code="=cmd|' /C calc'!A0")

    monkeypatch.setattr(FivetranClient, "delete_connection", refused)
    done = bp.rollback("run", reports_dir=reports, sandbox_url=box.url)
    assert done.failed == len(ids) and done.deleted_now == 0
    report = reports / "run" / "rollback" / "results.csv"
    _assert_all_neutralised(report, reports / "run" / "results.csv")
    lines = pl.read_csv(report, infer_schema=False)
    assert lines["error_code"].to_list() == ["'=cmd|' /C calc'!A0"] * len(ids)
    assert lines["error_message"].to_list() == ["'" + EVIL] * len(ids)


# --- rollback: a 404 on DELETE is "already gone", never "deleted now" -----------------------

def test_regression_a_404_on_a_retried_delete_counts_as_already_gone(
        tmp_path: Path, box: SandboxHandle) -> None:
    reports, ids = _created_run(tmp_path, box)
    lost = ids[0]  # the DELETE lands, its answer is lost; the retry is answered 404
    box.script([{"fault": "drop_after_commit", "method": "DELETE",
                 "path": f"/v1/connections/{lost}"}])
    done = bp.rollback("run", reports_dir=reports, sandbox_url=box.url)
    by_id = {o.connection_id: o for o in done.outcomes}
    assert (done.deleted_now, done.already_gone, done.exit_code) == (1, 1, ExitCode.OK)
    assert by_id[lost].status is Status.ROLLED_BACK
    assert (by_id[lost].error_code, by_id[lost].http_status) == ("AlreadyGone", 404)
    assert (by_id[lost].error_message or "").startswith("already gone (404)")
    assert by_id[ids[1]].error_code is None
    deletes = [r for r in box.ledger()["requests"] if r["method"] == "DELETE"
               and r["path"].endswith(lost)]
    assert len(deletes) == 2  # the lost answer's DELETE, then the retry's 404


# --- Excel's sep= line -----------------------------------------------------------------------

@pytest.mark.parametrize("first", ["sep=;\n", "sep=;\r\n", "SEP=;\n", "\ufeffsep=;\n"])
def test_regression_excel_sep_line_names_the_separator_and_is_not_a_row(
        tmp_path: Path, first: str) -> None:
    sheet = tmp_path / "excel.csv"
    sheet.write_text(first + "group_id;schema;access_token;sync_mode;accounts\n"
                     'g1;s_one;env:TIKTOK_TEST_TOKEN;SpecificAccounts;"1,2"\n'
                     "g1;Bad;env:TIKTOK_TEST_TOKEN;AllAccounts;\n", encoding="utf-8")
    table = read_table(sheet)
    assert (table.header_row, table.frame.get_column("source_row").to_list()) == (1, [2, 3])
    prepared = load(sheet, {"TIKTOK_TEST_TOKEN": "tok-abcdef123456"})
    assert [p["row"] for p in problems(prepared)] == [3]
    assert prepared.requests[0].payload["config"]["accounts"] == ["1", "2"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("sep=;\n", "holds only its 'sep=' line"),
    ("sep=x\ngroup_id,schema\ng,s\n", "names a separator that cannot be used"),
])
def test_regression_an_unusable_sep_line_is_an_input_error(tmp_path: Path, text: str,
                                                          fragment: str) -> None:
    sheet = tmp_path / "excel.csv"
    sheet.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=fragment):
        read_table(sheet)
