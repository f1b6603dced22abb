"""Reading input files: headers, row numbers, text cells, formats, sheets, defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from helpers_input import (
    BASE_ROW,
    TEMPLATES,
    context,
    prepare_rows,
    problems,
    rows_to_sheet,
    write_csv,
    write_xlsx,
)

from batch_provisioner.errors import InputError
from batch_provisioner.settings import Limits
from batch_provisioner.sheet.defaults import load_defaults
from batch_provisioner.sheet.expand import masked
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.read import ROW, normalise_header, read_custom_reports, read_table

LONG_ID = "7012345678901234567"


@pytest.mark.parametrize(("header", "name"), [
    (" Group-ID ", "group_id"), ("Sync Frequency", "sync_frequency"),
    ("SCHEMA", "schema"), ("access--token", "access_token"), ("Client  Name\t", "client_name"),
])
def test_headers_are_normalised(header: str, name: str) -> None:
    assert normalise_header(header) == name


def test_normalised_headers_reach_validation(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(" Group-ID ,Schema,Sync Frequency,ACCESS TOKEN,Client Name\n"
                     "decent_dropsy,tiktok_acme,360,env:TIKTOK_TEST_TOKEN,Acme\n",
                     encoding="utf-8")
    prepared = prepare(sheet, secrets=context(tmp_path))
    assert problems(prepared) == []
    [request] = prepared.requests
    assert request.payload["sync_frequency"] == 360
    assert prepared.table.headers["group_id"] == " Group-ID "
    assert prepared.carry_columns == ["client_name"]


def test_row_numbers_count_the_header_and_skipped_blank_rows(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("group_id,schema,access_token\n"
                     "g1,s_one,env:TIKTOK_TEST_TOKEN\n"
                     "\n"
                     ",,\n"
                     "g1,Bad Schema,env:TIKTOK_TEST_TOKEN\n"
                     "g1,s_three,env:TIKTOK_TEST_TOKEN\n", encoding="utf-8")
    prepared = prepare(sheet, secrets=context(tmp_path))
    assert prepared.rows == [2, 5, 6]
    assert [p["row"] for p in problems(prepared)] == [5]
    assert [r.row for r in prepared.requests] == [2, 6]


def test_xlsx_row_numbers_match_what_excel_shows(tmp_path: Path) -> None:
    rows: list[list[object]] = [["group_id", "schema", "access_token"],
                                ["g1", "s_one", "env:TIKTOK_TEST_TOKEN"], [], [],
                                ["g1", "Bad Schema", "env:TIKTOK_TEST_TOKEN"]]
    book = write_xlsx(tmp_path / "book.xlsx", {"connections": rows})
    prepared = prepare(book, secrets=context(tmp_path))
    assert prepared.rows == [2, 5]
    assert [p["row"] for p in problems(prepared)] == [5]


def test_strings_are_trimmed(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{
        "group_id": "  decent_dropsy ", "schema": "\ttiktok_acme ", "sync_mode": " allaccounts",
        "access_token": " env:TIKTOK_TEST_TOKEN ", "client_name": "  Acme Retail  "}])
    assert problems(prepared) == []
    [request] = prepared.requests
    assert request.group_id == "decent_dropsy"
    assert request.payload["config"] == {"sync_mode": "AllAccounts", "schema": "tiktok_acme"}
    assert prepared.table.frame.get_column("client_name").to_list() == ["Acme Retail"]


def test_every_csv_cell_is_text_long_ids_and_leading_zeros_stay_exact(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{
        **BASE_ROW, "group_id": "0012", "sync_mode": "SpecificAccounts",
        "accounts": f"{LONG_ID}, 0070123456789012345678", "client_code": "000123",
        "proxy_agent_id": "1e5"}])
    assert problems(prepared) == []
    [request] = prepared.requests
    assert request.payload["group_id"] == "0012"
    assert request.payload["proxy_agent_id"] == "1e5"
    assert request.payload["config"]["accounts"] == [LONG_ID, "0070123456789012345678"]
    assert prepared.table.frame.get_column("client_code").to_list() == ["000123"]
    assert all(dtype == pl.String for name, dtype in prepared.table.frame.schema.items()
               if name != ROW)


@pytest.mark.parametrize("separators", [",", ";", "|", "\n", " ; ", "\r\n"])
def test_list_cells_take_any_separator(tmp_path: Path, separators: str) -> None:
    accounts = separators.join([LONG_ID, "7012345678901234568", "7012345678901234569"])
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "sync_mode": "SpecificAccounts",
                                        "accounts": accounts}])
    assert problems(prepared) == []
    assert prepared.requests[0].payload["config"]["accounts"] == [
        LONG_ID, "7012345678901234568", "7012345678901234569"]


def test_unknown_columns_are_carried_through_untouched(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [
        {**BASE_ROW, "Client Name": "Acme Retail", "Account Manager": "jo@agency.example"},
        {**BASE_ROW, "schema": "tiktok_two", "Client Name": "=SUM(A1)", "Notes": " x "},
    ])
    assert prepared.carry_columns == ["client_name", "account_manager", "notes"]
    frame = prepared.table.frame
    assert frame.get_column("client_name").to_list() == ["Acme Retail", "=SUM(A1)"]
    assert frame.get_column("notes").to_list() == [None, "x"]
    assert "client_name" not in str([r.payload for r in prepared.requests])


def test_neutralised_formula_cells_read_back_as_written(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "client_name": "'=HYPERLINK(x)",
                                        "notes": "'-5"}])
    frame = prepared.table.frame
    assert frame.get_column("client_name").to_list() == ["=HYPERLINK(x)"]
    assert frame.get_column("notes").to_list() == ["-5"]


def test_reader_ignores_columns_that_failed_rows_csv_adds(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "error": "schema: is required",
                                        "source_row": "9"}])
    assert prepared.carry_columns == []
    assert prepared.rows == [2]


# --- defaults.toml -------------------------------------------------------------------------

DEFAULTS = """
sync_frequency = 1440
daily_sync_time = "09:00"
timeframe_months = "TWELVE"
paused = true
hide_setup_guide = true
"""


def test_defaults_fill_blank_cells_and_a_cell_wins(tmp_path: Path) -> None:
    rows = [
        {**BASE_ROW, "schema": "s_default"},
        {**BASE_ROW, "schema": "s_cell", "timeframe_months": "3", "paused": "no",
         "daily_sync_time": "17:00"},
    ]
    prepared = prepare_rows(tmp_path, rows, defaults=DEFAULTS)
    assert problems(prepared) == []
    first, second = (r.payload for r in prepared.requests)
    assert (first["sync_frequency"], first["daily_sync_time"], first["paused"],
            first["config"]["timeframe_months"]) == (1440, "09:00", True, "TWELVE")
    assert (second["sync_frequency"], second["daily_sync_time"], second["paused"],
            second["config"]["timeframe_months"]) == (1440, "17:00", False, "THREE")


def test_defaults_go_through_the_same_validation_as_cells(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [BASE_ROW], defaults='timeframe_months = "FIVE"\n')
    [problem] = problems(prepared)
    assert (problem["column"], problem["value"]) == ("timeframe_months", "FIVE")


def test_defaults_apply_only_where_they_mean_something(tmp_path: Path) -> None:
    """A default daily time skips rows that don't sync daily; a default hide_setup_guide
    skips rows without a connect card. Neither turns a good row into a problem."""
    rows = [
        {**BASE_ROW, "schema": "s_daily"},
        {**BASE_ROW, "schema": "s_six_hourly", "sync_frequency": "360"},
        {"group_id": "g", "schema": "s_card", "redirect_uri": "https://agency.example/ok"},
    ]
    prepared = prepare_rows(tmp_path, rows, defaults=DEFAULTS)
    assert problems(prepared) == []
    daily, six_hourly, card = (r.payload for r in prepared.requests)
    assert daily["daily_sync_time"] == "09:00"
    assert "connect_card_config" not in daily
    assert six_hourly["sync_frequency"] == 360
    assert "daily_sync_time" not in six_hourly
    assert card["connect_card_config"] == {"redirect_uri": "https://agency.example/ok",
                                           "hide_setup_guide": True}


def test_defaults_can_supply_a_required_column(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{"schema": "s1", "access_token": "env:TIKTOK_TEST_TOKEN"}],
                            defaults='group_id = "decent_dropsy"\n')
    assert prepared.requests[0].payload["group_id"] == "decent_dropsy"


@pytest.mark.parametrize(("text", "fragment"), [
    ("sync_frequncy = 1440\n", "unknown setting 'sync_frequncy'"),
    ("[limits]\ncalls_per_day = 5\n", "unknown [limits] key 'calls_per_day'"),
    ("sync_frequency = \n", "is not valid TOML"),
    ("[limits]\nconcurrency = -1\n", "must be a whole number from 1 to 256 (got -1)"),
])
def test_bad_defaults_are_input_errors_naming_the_file(tmp_path: Path, text: str,
                                                       fragment: str) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_defaults(path)
    assert fragment in caught.value.message
    assert str(path) in caught.value.message


def test_defaults_accept_lists_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text(f'sync_mode = "SpecificAccounts"\naccounts = ["{LONG_ID}"]\n'
                    "[limits]\nconcurrency = 4\n", encoding="utf-8")
    defaults = load_defaults(path)
    assert defaults.values == {"sync_mode": "SpecificAccounts", "accounts": LONG_ID}
    assert defaults.limits == Limits(concurrency=4)


# --- formats and sheets --------------------------------------------------------------------

ROWS = [
    {**BASE_ROW, "sync_mode": "SpecificAccounts", "accounts": f"{LONG_ID},7012345678901234568",
     "sync_frequency": "1440", "daily_sync_time": "14:00", "paused": "no"},
    {**BASE_ROW, "schema": "tiktok_two", "timeframe_months": "24", "client_name": "Two"},
]


def _payloads(path: Path, tmp_path: Path, **kwargs: Any) -> list[tuple[int, dict[str, Any]]]:
    prepared = prepare(path, secrets=context(path.parent), **kwargs)
    assert problems(prepared) == []
    return [(r.row, masked(r.payload)) for r in prepared.requests]


def test_csv_xlsx_and_parquet_read_the_same(tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "sheet.csv", ROWS)
    xlsx_file = write_xlsx(tmp_path / "sheet.xlsx", {"connections": rows_to_sheet(ROWS)})
    parquet_file = tmp_path / "sheet.parquet"
    pl.read_csv(csv_file, infer_schema=False).write_parquet(parquet_file)
    expected = _payloads(csv_file, tmp_path)
    assert len(expected) == 2
    assert _payloads(xlsx_file, tmp_path) == expected
    assert _payloads(parquet_file, tmp_path) == expected


def test_parquet_with_typed_columns_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    pl.DataFrame({
        "group_id": ["g1"], "schema": ["s1"], "access_token": ["env:TIKTOK_TEST_TOKEN"],
        "sync_frequency": [1440], "paused": [False], "sync_mode": ["SpecificAccounts"],
        "accounts": [[LONG_ID, "7012345678901234568"]],
    }).write_parquet(path)
    [(_, payload)] = _payloads(path, tmp_path)
    assert payload["sync_frequency"] == 1440
    assert payload["paused"] is False
    assert payload["config"]["accounts"] == [LONG_ID, "7012345678901234568"]


def test_xlsx_reads_the_first_sheet_or_the_one_named(tmp_path: Path) -> None:
    other = [{**BASE_ROW, "schema": "from_second_sheet"}]
    book = write_xlsx(tmp_path / "book.xlsx", {"first": rows_to_sheet(ROWS),
                                               "Second Sheet": rows_to_sheet(other)})
    assert [p["config"]["schema"] for _, p in _payloads(book, tmp_path)] == [
        "tiktok_acme", "tiktok_two"]
    named = _payloads(book, tmp_path, sheet_name="Second Sheet")
    assert [p["config"]["schema"] for _, p in named] == ["from_second_sheet"]


def test_missing_sheet_is_an_input_error_listing_the_sheets(tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "book.xlsx", {"connections": rows_to_sheet(ROWS)})
    with pytest.raises(InputError, match=r"has no sheet 'nope' \(sheets: connections\)"):
        read_table(book, sheet="nope")


def test_xlsx_numeric_accounts_cell_tells_to_format_the_column_as_text(tmp_path: Path) -> None:
    rows: list[list[object]] = [
        ["group_id", "schema", "access_token", "sync_mode", "accounts"],
        ["g1", "s_text", "env:TIKTOK_TEST_TOKEN", "SpecificAccounts", LONG_ID],
        ["g1", "s_number", "env:TIKTOK_TEST_TOKEN", "SpecificAccounts", 7012345678901234567],
    ]
    book = write_xlsx(tmp_path / "book.xlsx", {"connections": rows})
    prepared = prepare(book, secrets=context(tmp_path))
    [problem] = problems(prepared)
    assert (problem["row"], problem["column"], problem["severity"]) == (3, "accounts", "error")
    assert "format the accounts column as Text" in problem["hint"]
    assert "already changed the id" in problem["message"]
    [request] = prepared.requests
    assert request.payload["config"]["accounts"] == [LONG_ID]


def test_xlsx_native_cells_booleans_numbers_and_times_are_understood(tmp_path: Path) -> None:
    book = tmp_path / "native.xlsx"
    workbook = xlsxwriter.Workbook(str(book))
    sheet = workbook.add_worksheet()
    for col, name in enumerate(["group_id", "schema", "access_token", "paused",
                                "sync_frequency", "daily_sync_time"]):
        sheet.write_string(0, col, name)
    sheet.write_string(1, 0, "g1")
    sheet.write_string(1, 1, "s1")
    sheet.write_string(1, 2, "env:TIKTOK_TEST_TOKEN")
    sheet.write_boolean(1, 3, True)
    sheet.write_number(1, 4, 1440)
    sheet.write_datetime(1, 5, dt.time(14, 0), workbook.add_format({"num_format": "hh:mm"}))
    workbook.close()
    [(_, payload)] = _payloads(book, tmp_path)
    assert payload["paused"] is True
    assert payload["sync_frequency"] == 1440
    assert payload["daily_sync_time"] == "14:00"


def test_custom_reports_come_from_the_workbook_sheet(tmp_path: Path) -> None:
    reports = [{"schema": "tiktok_acme", "table_name": "daily", "metrics": "spend",
                "report_type": "auction_basic_ad_report"}]
    book = write_xlsx(tmp_path / "book.xlsx", {"connections": rows_to_sheet(ROWS),
                                               "Custom Reports": rows_to_sheet(reports)})
    table = read_custom_reports(None, book)
    assert table is not None and table.sheet == "Custom Reports"
    [(_, first), _second] = _payloads(book, tmp_path)
    assert first["config"]["custom_reports"] == [
        {"report_type": "auction_basic_ad_report", "metrics": ["spend"], "table_name": "daily"}]


def test_custom_reports_file_wins_over_the_workbook_sheet(tmp_path: Path) -> None:
    in_book = [{"schema": "tiktok_acme", "table_name": "from_book", "metrics": "spend",
                "report_type": "auction_basic_ad_report"}]
    book = write_xlsx(tmp_path / "book.xlsx", {"connections": rows_to_sheet(ROWS),
                                               "custom_reports": rows_to_sheet(in_book)})
    reports_file = write_csv(tmp_path / "reports.csv", [{**in_book[0], "table_name": "from_file",
                                                        "schema": "tiktok_two"}])
    payloads = _payloads(book, tmp_path, custom_reports=reports_file)
    assert "custom_reports" not in payloads[0][1]["config"]
    assert payloads[1][1]["config"]["custom_reports"][0]["table_name"] == "from_file"


def test_custom_reports_file_needs_its_key_columns(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "sheet.csv", ROWS)
    reports = write_csv(tmp_path / "reports.csv", [{"schema": "tiktok_acme", "metrics": "x"}])
    with pytest.raises(InputError, match="custom reports need the column"):
        prepare(sheet, custom_reports=reports, secrets=context(tmp_path))


def test_duplicate_headers_are_an_input_error(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("group_id,schema,Group ID\ng,s,h\n", encoding="utf-8")
    with pytest.raises(InputError, match="both mean 'group_id'"):
        read_table(sheet)


def test_utf8_bom_and_utf16_csv_are_read(tmp_path: Path) -> None:
    text = "group_id,schema,access_token,client_name\ng1,s1,env:TIKTOK_TEST_TOKEN,Café\n"
    for encoding in ("utf-8-sig", "utf-16"):
        sheet = tmp_path / f"{encoding}.csv"
        sheet.write_bytes(text.encode(encoding))
        prepared = prepare(sheet, secrets=context(tmp_path))
        assert problems(prepared) == []
        assert prepared.table.frame.get_column("client_name").to_list() == ["Café"]


def test_the_committed_templates_read_the_same_in_csv_and_xlsx(tmp_path: Path) -> None:
    from_xlsx = _payloads(TEMPLATES / "advertiser_groups.xlsx", tmp_path)
    from_csv = _payloads(TEMPLATES / "advertiser_groups.csv", tmp_path,
                         custom_reports=TEMPLATES / "custom_reports.csv")
    assert from_xlsx == from_csv
    assert [row for row, _ in from_xlsx] == [2, 3, 4]


def test_regression_custom_reports_option_reads_a_workbooks_custom_reports_sheet(
        tmp_path: Path) -> None:
    from batch_provisioner.report.template_files import write_templates
    from batch_provisioner.sheet.read import read_custom_reports

    write_templates(tmp_path)
    table = read_custom_reports(tmp_path / "advertiser_groups.xlsx", None)
    assert table is not None and table.sheet == "custom_reports"
    assert table.frame.get_column("table_name").to_list() == ["campaign_daily",
                                                              "audience_by_country"]
