"""One test per validation rule: what a user writes in a cell and what the tool says about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers_input import (
    BASE_ROW,
    MASK,
    TOKEN_ENV,
    TOKEN_VALUE,
    prepare_rows,
    problem_keys,
    problems,
)

from batch_provisioner.sheet.validate import ERROR, WARNING

E, W = ERROR, WARNING


def _one(tmp_path: Path, **cells: str) -> Any:
    row = {**BASE_ROW, **cells}
    return prepare_rows(tmp_path, [{k: v for k, v in row.items() if v is not None}])


def _canonical(prepared: Any, column: str) -> Any:
    return prepared.frame.get_column(column).to_list()[0]


# --- values a cell may hold, and the spelling Fivetran gets --------------------------------

CANONICAL = [
    # enums: any case, and the documented aliases
    ("sync_mode", "specificaccounts", "SpecificAccounts"),
    ("sync_mode", "ALLACCOUNTS", "AllAccounts"),
    ("timeframe_months", "three", "THREE"),
    ("timeframe_months", "3", "THREE"),
    ("timeframe_months", "6", "SIX"),
    ("timeframe_months", "12", "TWELVE"),
    ("timeframe_months", "24", "TWENTY_FOUR"),
    ("timeframe_months", "all", "ALL_TIME"),
    ("timeframe_months", "ALL", "ALL_TIME"),
    ("timeframe_months", "All_Time", "ALL_TIME"),
    ("attribution_window_size", "1", "ONE"),
    ("attribution_window_size", "7", "SEVEN"),
    ("attribution_window_size", "14", "FOURTEEN"),
    ("attribution_window_size", "28", "TWENTY_EIGHT"),
    ("attribution_window_size", "twenty_eight", "TWENTY_EIGHT"),
    ("schedule_type", "MANUAL", "manual"),
    ("schedule_type", "Auto", "auto"),
    ("networking_method", "sshtunnel", "SshTunnel"),
    ("networking_method", "DIRECTLY", "Directly"),
    ("data_delay_sensitivity", "sync_frequency", "SYNC_FREQUENCY"),
    ("data_delay_sensitivity", "high", "HIGH"),
    ("destination_schema_names", "source_naming", "SOURCE_NAMING"),
    # booleans: true/false, yes/no, 1/0 in any case
    ("paused", "TRUE", "true"),
    ("paused", "Yes", "true"),
    ("paused", "1", "true"),
    ("paused", "False", "false"),
    ("paused", "NO", "false"),
    ("paused", "0", "false"),
    ("trust_certificates", "yEs", "true"),
    ("pause_after_trial", "no", "false"),
    # whole numbers, also as a spreadsheet writes them
    ("sync_frequency", "1440", "1440"),
    ("sync_frequency", "60.0", "60"),
    ("sync_frequency", "015", "15"),
    ("data_delay_threshold", "0", "0"),
    # whole hours
    ("daily_sync_time", "9:00", "09:00"),
    ("daily_sync_time", "23:00:00", "23:00"),
]


@pytest.mark.parametrize(("column", "raw", "expected"), CANONICAL,
                         ids=[f"{c}={r}" for c, r, _ in CANONICAL])
def test_accepted_spellings_are_canonicalised(tmp_path: Path, column: str, raw: str,
                                              expected: str) -> None:
    cells = {column: raw}
    if column == "daily_sync_time":
        cells["sync_frequency"] = "1440"
    if expected == "SpecificAccounts":
        cells["accounts"] = "7012345678901234567"
    prepared = _one(tmp_path, **cells)
    assert problems(prepared) == []
    assert _canonical(prepared, column) == expected
    assert len(prepared.requests) == 1


INVALID = [
    ("sync_mode", "some", "is not a valid value", "AllAccounts, SpecificAccounts"),
    ("timeframe_months", "36", "is not a valid value", "(or 3, 6, 12, 24, all"),
    ("attribution_window_size", "2", "is not a valid value", "(or 1, 7, 14, 28)"),
    ("schedule_type", "hourly", "is not a valid value", "auto, manual"),
    ("networking_method", "vpn", "is not a valid value", "ProxyAgent"),
    ("data_delay_sensitivity", "medium", "is not a valid value", "SYNC_FREQUENCY"),
    ("paused", "maybe", "is not a boolean", "yes/no"),
    ("hide_setup_guide", "y", "is not a boolean", "true/false"),
    ("sync_frequency", "daily", "is not a whole number", "whole number"),
    ("data_delay_threshold", "-5", "is not a whole number", "whole number"),
    ("data_delay_threshold", "2.5", "is not a whole number", "whole number"),
    ("daily_sync_time", "14:30", "is not a whole hour", "00:00 to 23:00"),
    ("daily_sync_time", "24:00", "is not a whole hour", "00:00 to 23:00"),
    ("daily_sync_time", "2pm", "is not a whole hour", "00:00 to 23:00"),
]


@pytest.mark.parametrize(("column", "raw", "message", "hint"), INVALID,
                         ids=[f"{c}={r}" for c, r, _, _ in INVALID])
def test_invalid_values_are_errors_showing_the_value_and_the_choices(
        tmp_path: Path, column: str, raw: str, message: str, hint: str) -> None:
    cells = {column: raw, "sync_frequency": "1440"} if column != "sync_frequency" else {
        column: raw}
    prepared = _one(tmp_path, **cells)
    [problem] = problems(prepared)
    assert (problem["row"], problem["column"], problem["severity"]) == (2, column, E)
    assert problem["value"] == raw
    assert message in problem["message"]
    assert hint in problem["hint"]
    assert prepared.requests == []
    assert 2 in prepared.invalid


# --- rules across columns: the exact set of (column, severity) each row gets ---------------

ACCOUNT_A, ACCOUNT_B = "7012345678901234567", "7012345678901234568"
ROW_RULES: list[tuple[str, dict[str, str | None], set[tuple[str, str]]]] = [
    ("clean base row", {}, set()),
    ("sync_frequency not in the list", {"sync_frequency": "45"}, {("sync_frequency", E)}),
    ("sync_frequency 1 allowed", {"sync_frequency": "1"}, set()),
    ("daily_sync_time with 1440", {"sync_frequency": "1440", "daily_sync_time": "14:00"},
     set()),
    ("daily_sync_time with 360", {"sync_frequency": "360", "daily_sync_time": "14:00"},
     {("daily_sync_time", E)}),
    ("daily_sync_time without frequency", {"daily_sync_time": "14:00"},
     {("daily_sync_time", E)}),
    ("threshold with CUSTOM", {"data_delay_sensitivity": "custom",
                               "data_delay_threshold": "30"}, set()),
    ("threshold without CUSTOM warns", {"data_delay_sensitivity": "NORMAL",
                                        "data_delay_threshold": "30"},
     {("data_delay_threshold", W)}),
    ("threshold alone warns", {"data_delay_threshold": "15"}, {("data_delay_threshold", W)}),
    ("threshold 0 with NORMAL is clean", {"data_delay_sensitivity": "NORMAL",
                                          "data_delay_threshold": "0"}, set()),
    ("ProxyAgent needs proxy_agent_id", {"networking_method": "ProxyAgent"},
     {("proxy_agent_id", E)}),
    ("ProxyAgent with its id", {"networking_method": "proxyagent", "proxy_agent_id": "pa_1"},
     set()),
    ("PrivateLink needs private_link_id", {"networking_method": "PrivateLink"},
     {("private_link_id", E)}),
    ("PrivateLink with its id", {"networking_method": "PrivateLink", "private_link_id": "pl_1"},
     set()),
    ("SpecificAccounts needs accounts", {"sync_mode": "SpecificAccounts"}, {("accounts", E)}),
    ("SpecificAccounts with ids", {"sync_mode": "SpecificAccounts",
                                   "accounts": f"{ACCOUNT_A}; {ACCOUNT_B}"}, set()),
    ("accounts must be digits", {"sync_mode": "SpecificAccounts",
                                 "accounts": f"{ACCOUNT_A},70123abc"}, {("accounts", E)}),
    ("accounts with AllAccounts", {"sync_mode": "AllAccounts", "accounts": ACCOUNT_A},
     {("accounts", E)}),
    ("accounts without sync_mode", {"accounts": ACCOUNT_A}, {("accounts", E)}),
    ("duplicate account warns", {"sync_mode": "SpecificAccounts",
                                 "accounts": f"{ACCOUNT_A},{ACCOUNT_A}"}, {("accounts", W)}),
    ("schema required", {"schema": None}, {("schema", E)}),
    ("schema with capitals", {"schema": "Tiktok_Acme"}, {("schema", E)}),
    ("schema with a space", {"schema": "tiktok acme"}, {("schema", E)}),
    ("schema starting with a digit", {"schema": "1tiktok"}, {("schema", E)}),
    ("group_id or group_name required", {"group_id": None}, {("group_id", E)}),
    ("group_name instead of group_id", {"group_id": None, "group_name": "Acme EU"}, set()),
    ("token only", {}, set()),
    ("both client keys", {"access_token": None, "client_id": "env:TIKTOK_TEST_ID",
                          "client_secret": "env:TIKTOK_TEST_SECRET"}, set()),
    ("token and client keys", {"client_id": "env:TIKTOK_TEST_ID",
                               "client_secret": "env:TIKTOK_TEST_SECRET"}, set()),
    ("client_id without secret", {"access_token": None, "client_id": "env:TIKTOK_TEST_ID"},
     {("client_secret", E)}),
    ("client_secret without id", {"access_token": None,
                                  "client_secret": "env:TIKTOK_TEST_SECRET"},
     {("client_id", E)}),
    ("no auth needs redirect_uri", {"access_token": None}, {("redirect_uri", E)}),
    ("connect card row", {"access_token": None, "redirect_uri": "https://agency.example/ok"},
     set()),
    ("connect card with setup tests warns", {"access_token": None, "run_setup_tests": "yes",
                                             "redirect_uri": "https://agency.example/ok"},
     {("run_setup_tests", W)}),
    ("redirect_uri http", {"redirect_uri": "http://agency.example/ok"}, {("redirect_uri", E)}),
    ("redirect_uri relative", {"redirect_uri": "/onboarding/done"}, {("redirect_uri", E)}),
    ("redirect_uri no scheme", {"redirect_uri": "agency.example/done"}, {("redirect_uri", E)}),
    ("hide_setup_guide without redirect_uri warns", {"hide_setup_guide": "true"},
     {("hide_setup_guide", W)}),
    ("hide_setup_guide with redirect_uri", {"hide_setup_guide": "true",
                                            "redirect_uri": "https://agency.example/ok"}, set()),
    ("literal token warns", {"access_token": "literal-token-value"}, {("access_token", W)}),
]


@pytest.mark.parametrize(("cells", "expected"), [(c, e) for _, c, e in ROW_RULES],
                         ids=[name for name, _, _ in ROW_RULES])
def test_row_rules(tmp_path: Path, cells: dict[str, str | None],
                   expected: set[tuple[str, str]]) -> None:
    merged = {**BASE_ROW, **cells}
    row = {k: v for k, v in merged.items() if v is not None}
    prepared = prepare_rows(tmp_path, [row], columns=list(merged))  # blank cells stay columns
    assert problem_keys(prepared) == expected
    has_error = any(severity == E for _, severity in expected)
    assert (2 in prepared.invalid) is has_error
    assert len(prepared.requests) == (0 if has_error else 1)


def test_every_problem_names_row_column_value_and_a_hint(tmp_path: Path) -> None:
    prepared = _one(tmp_path, sync_frequency="45", schema="Bad Schema",
                    networking_method="ProxyAgent")
    found = {p["column"]: p for p in problems(prepared)}
    assert set(found) == {"sync_frequency", "schema", "proxy_agent_id"}
    assert found["sync_frequency"]["value"] == "45"
    assert found["schema"]["value"] == "Bad Schema"
    assert all(p["hint"] for p in found.values())
    assert all(p["source"].endswith("sheet.csv") for p in found.values())
    text = prepared.invalid[2]
    assert "sync_frequency" in text and "schema" in text and "proxy_agent_id" in text


def test_schema_unique_per_group_is_reported_on_every_row_involved(tmp_path: Path) -> None:
    rows: list[dict[str, str | None]] = [
        {**BASE_ROW, "schema": "tiktok_a"},
        {**BASE_ROW, "schema": "tiktok_b"},
        {**BASE_ROW, "schema": "tiktok_a"},
        {**BASE_ROW, "group_id": "other_group", "schema": "tiktok_a"},  # another group: fine
        {**BASE_ROW, "group_id": None, "group_name": "Acme", "schema": "tiktok_c"},
        {**BASE_ROW, "group_id": None, "group_name": "Acme", "schema": "tiktok_c"},
    ]
    prepared = prepare_rows(tmp_path, [{k: v for k, v in r.items() if v} for r in rows])
    duplicates = [p for p in problems(prepared) if p["column"] == "schema"]
    assert sorted(p["row"] for p in duplicates) == [2, 4, 6, 7]
    assert all("2 rows in the same group" in p["message"] for p in duplicates)
    assert [r.row for r in prepared.requests] == [3, 5]


# --- secrets -------------------------------------------------------------------------------

def test_env_secret_must_be_set(tmp_path: Path) -> None:
    prepared = _one(tmp_path, access_token="env:NOT_SET_ANYWHERE")
    [problem] = problems(prepared)
    assert (problem["column"], problem["severity"]) == ("access_token", E)
    assert "NOT_SET_ANYWHERE is not set" in problem["message"]
    assert problem["value"] == "env:NOT_SET_ANYWHERE"


def test_env_secret_name_must_be_valid(tmp_path: Path) -> None:
    prepared = _one(tmp_path, access_token="env:NOT-A-NAME")
    [problem] = problems(prepared)
    assert "not a valid environment variable name" in problem["message"]


def test_file_secret_must_exist(tmp_path: Path) -> None:
    prepared = _one(tmp_path, access_token="file:secrets/missing.txt")
    [problem] = problems(prepared)
    assert (problem["column"], problem["severity"]) == ("access_token", E)
    assert "does not exist" in problem["message"]


def test_file_secret_must_not_be_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    prepared = _one(tmp_path, access_token="file:empty.txt")
    [problem] = problems(prepared)
    assert "is empty" in problem["message"]


def test_file_secret_in_the_sheet_folder_resolves(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token.txt").write_text("file-token-value\n", encoding="utf-8")
    prepared = _one(tmp_path, access_token="file:secrets/token.txt")
    assert problems(prepared) == []


@pytest.mark.parametrize("reference", ["file:../outside/token.txt", "file:../../etc/passwd",
                                       "file:/etc/passwd"])
def test_file_secret_outside_the_allowed_folder_is_refused_without_reading_it(
        tmp_path: Path, reference: str) -> None:
    sheet_dir = tmp_path / "job"
    sheet_dir.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret_value = "outside-secret-value-0042"
    (outside / "token.txt").write_text(secret_value, encoding="utf-8")
    prepared = _one(sheet_dir, access_token=reference)
    [problem] = problems(prepared)
    assert (problem["column"], problem["severity"]) == ("access_token", E)
    assert "outside the allowed folder" in problem["message"]
    assert secret_value not in str(prepared.problems.to_dicts())
    assert "root:" not in str(prepared.problems.to_dicts())  # /etc/passwd never read


def test_problems_never_contain_a_secret_value(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("file-secret-value-777", encoding="utf-8")
    rows = [
        {**BASE_ROW, "schema": "s_literal", "access_token": "literal-secret-value-555"},
        {**BASE_ROW, "schema": "s_file", "access_token": "file:token.txt",
         "client_id": f"env:{TOKEN_ENV}"},  # client_secret missing: an error on this row
        {**BASE_ROW, "schema": "s_env", "sync_frequency": "45"},
    ]
    prepared = prepare_rows(tmp_path, rows)
    dumped = str(prepared.problems.to_dicts()) + str(prepared.invalid)
    for value in ("literal-secret-value-555", "file-secret-value-777", TOKEN_VALUE):
        assert value not in dumped
    literal = [p for p in problems(prepared, row=2) if p["column"] == "access_token"]
    assert [(p["severity"], p["value"]) for p in literal] == [(W, MASK)]
    assert "literal secret" in literal[0]["message"]


# --- custom reports ------------------------------------------------------------------------

REPORT = {"schema": "tiktok_acme", "table_name": "campaign_daily",
          "report_type": "auction_basic_campaign_report", "metrics": "spend,impressions",
          "dimensions": "campaign_id,stat_time_day", "aggregate": "daily"}


def _reports(tmp_path: Path, *reports: dict[str, str],
             rows: list[dict[str, str]] | None = None) -> Any:
    return prepare_rows(tmp_path, rows or [BASE_ROW], reports=list(reports))


def _report_problems(prepared: Any) -> set[tuple[int, str, str]]:
    return {(p["row"], p["column"], p["severity"])
            for p in problems(prepared, source="reports.csv")}


REPORT_RULES: list[tuple[str, dict[str, str], set[tuple[str, str]]]] = [
    ("clean report", {}, set()),
    ("table_name required", {"table_name": ""}, {("table_name", E)}),
    ("table_name with capitals", {"table_name": "Campaign_Daily"}, {("table_name", E)}),
    ("table_name with a space", {"table_name": "campaign daily"}, {("table_name", E)}),
    ("metrics required", {"metrics": ""}, {("metrics", E)}),
    ("metrics only separators", {"metrics": " ; , "}, {("metrics", E)}),
    ("report_type required", {"report_type": ""}, {("report_type", E)}),
    ("report_type malformed", {"report_type": "Auction Basic"}, {("report_type", E)}),
    ("report_type unknown warns", {"report_type": "auction_basic_campain_report"},
     {("report_type", W)}),
    ("metric malformed", {"metrics": "spend,Total Clicks"}, {("metrics", E)}),
    ("metric unknown warns", {"metrics": "spend,impresions"}, {("metrics", W)}),
    ("dimension malformed", {"dimensions": "campaign-id"}, {("dimensions", E)}),
    ("dimension unknown warns", {"dimensions": "campaign_idd"}, {("dimensions", W)}),
    ("aggregate malformed", {"aggregate": "Daily"}, {("aggregate", E)}),
    ("aggregate unknown warns", {"aggregate": "weekly"}, {("aggregate", W)}),
    ("schema matches no row", {"schema": "tiktok_nobody"}, {("schema", E)}),
    ("schema required", {"schema": ""}, {("schema", E)}),
]


@pytest.mark.parametrize(("cells", "expected"), [(c, e) for _, c, e in REPORT_RULES],
                         ids=[name for name, _, _ in REPORT_RULES])
def test_custom_report_rules(tmp_path: Path, cells: dict[str, str],
                             expected: set[tuple[str, str]]) -> None:
    prepared = _reports(tmp_path, {**REPORT, **cells})
    assert {(c, s) for _, c, s in _report_problems(prepared)} == expected
    owner_invalid = any(s == E for _, s in expected) and cells.get("schema") is None
    assert (2 in prepared.invalid) is owner_invalid
    if not any(s == E for _, s in expected):
        [request] = prepared.requests
        assert len(request.payload["config"]["custom_reports"]) == 1


@pytest.mark.parametrize(("cells", "suggestion"), [
    ({"report_type": "auction_basic_campain_report"}, "'auction_basic_campaign_report'"),
    ({"metrics": "spend,impresions"}, "impresions: did you mean 'impressions'?"),
    ({"dimensions": "campaign_idd"}, "did you mean 'campaign_id'?"),
    ({"aggregate": "dayly"}, "did you mean 'daily'?"),
])
def test_unknown_report_names_get_a_did_you_mean(tmp_path: Path, cells: dict[str, str],
                                                 suggestion: str) -> None:
    prepared = _reports(tmp_path, {**REPORT, **cells})
    [problem] = problems(prepared, source="reports.csv")
    assert problem["severity"] == W
    assert "did you mean" in problem["hint"]
    assert suggestion in problem["hint"]
    assert len(prepared.requests) == 1  # a warning never stops the row


def test_a_report_with_an_error_makes_its_connection_row_invalid(tmp_path: Path) -> None:
    rows = [BASE_ROW, {**BASE_ROW, "schema": "tiktok_other"}]
    prepared = _reports(tmp_path, {**REPORT, "metrics": ""},
                        {**REPORT, "table_name": "second"}, rows=rows)
    owner = [p for p in problems(prepared, row=2) if p["source"] == prepared.table.label]
    assert [(p["column"], p["severity"]) for p in owner] == [("custom_reports", E)]
    assert "2" in owner[0]["value"] and "reports.csv" in owner[0]["message"]
    assert [r.row for r in prepared.requests] == [3]


def test_table_name_unique_per_connection_on_every_report_involved(tmp_path: Path) -> None:
    rows = [BASE_ROW, {**BASE_ROW, "schema": "tiktok_other"}]
    prepared = _reports(tmp_path, REPORT, {**REPORT, "metrics": "clicks"},
                        {**REPORT, "schema": "tiktok_other"}, rows=rows)
    assert _report_problems(prepared) == {(2, "table_name", E), (3, "table_name", E)}
    assert [r.row for r in prepared.requests] == [3]
    [other] = prepared.requests
    assert [r["table_name"] for r in other.payload["config"]["custom_reports"]] == [
        "campaign_daily"]


def test_schema_used_in_several_groups_needs_group_id_on_the_report(tmp_path: Path) -> None:
    rows = [BASE_ROW, {**BASE_ROW, "group_id": "second_group"},
            {**BASE_ROW, "group_id": "second_group", "schema": "tiktok_third"}]
    reports = [{**REPORT, "group_id": "second_group"},
               {**REPORT, "group_id": "decent_dropsy", "table_name": "other"}]
    prepared = _reports(tmp_path, *reports, rows=rows)
    assert _report_problems(prepared) == set()
    first, second, _third = prepared.requests
    assert [r["table_name"] for r in first.payload["config"]["custom_reports"]] == ["other"]
    assert [r["table_name"] for r in second.payload["config"]["custom_reports"]] == [
        "campaign_daily"]


def test_a_report_that_matches_several_groups_holds_back_every_candidate(
        tmp_path: Path) -> None:
    rows = [BASE_ROW, {**BASE_ROW, "group_id": "second_group"},
            {**BASE_ROW, "schema": "tiktok_unrelated"}]
    prepared = _reports(tmp_path, REPORT, rows=rows)
    [problem] = problems(prepared, source="reports.csv")
    assert (problem["column"], problem["severity"]) == ("group_id", E)
    assert "several groups" in problem["message"]
    assert problem_keys(prepared, row=2) == {("custom_reports", E)}
    assert problem_keys(prepared, row=3) == {("custom_reports", E)}
    assert [r.row for r in prepared.requests] == [4]


def test_reports_attach_to_their_connection_in_file_order(tmp_path: Path) -> None:
    rows = [BASE_ROW, {**BASE_ROW, "schema": "tiktok_other"}]
    prepared = _reports(tmp_path, REPORT, {**REPORT, "schema": "tiktok_other"},
                        {**REPORT, "table_name": "second", "dimensions": "", "aggregate": ""},
                        rows=rows)
    assert _report_problems(prepared) == set()
    first, other = prepared.requests
    assert first.payload["config"]["custom_reports"] == [
        {"report_type": "auction_basic_campaign_report", "metrics": ["spend", "impressions"],
         "table_name": "campaign_daily", "dimensions": ["campaign_id", "stat_time_day"],
         "aggregate": "daily"},
        {"report_type": "auction_basic_campaign_report", "metrics": ["spend", "impressions"],
         "table_name": "second"},
    ]
    assert len(other.payload["config"]["custom_reports"]) == 1
