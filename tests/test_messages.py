"""What a person reads about a mistake: each message of issue 15, as the user meets it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_input import BASE_ROW, prepare_rows, problems, run_cli, write_csv, write_xlsx

from batch_provisioner.errors import (
    ApiError,
    ExitCode,
    FatalApiError,
    NotFoundApiError,
    RowApiError,
)
from batch_provisioner.models import counted
from batch_provisioner.run.row_outcome import error_code_of
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.validate import AS_TEXT_HINT, STORED_AS_NUMBER
from tests.apply_helpers import cli, csv_rows, load, run_job, write_dict_rows


def _only(prepared: Any, column: str) -> dict[str, Any]:
    [problem] = [p for p in problems(prepared) if p["column"] == column]
    return problem


# --- the sheet's messages ------------------------------------------------------------------

def test_a_csv_id_in_scientific_notation_gets_the_excel_message_as_xlsx_does(
        tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "sync_mode": "SpecificAccounts", "accounts": "7.01234567890123E+18"}]
    from_csv = _only(prepare_rows(tmp_path, rows), "accounts")
    assert from_csv["message"] == f"{STORED_AS_NUMBER}: 7.01234567890123E+18"
    assert from_csv["hint"].startswith(AS_TEXT_HINT) and "not all digits" not in str(from_csv)
    workbook = write_xlsx(tmp_path / "sheet.xlsx", {"connections": [
        ["group_id", "schema", "sync_mode", "accounts", "access_token"],
        ["decent_dropsy", "tiktok_acme", "SpecificAccounts", 7012345678901234567,
         "env:TIKTOK_TEST_TOKEN"]]})
    from_xlsx = _only(prepare(workbook), "accounts")
    assert from_xlsx["message"] == STORED_AS_NUMBER and from_xlsx["hint"] == AS_TEXT_HINT


def test_other_ids_that_are_not_digits_keep_their_own_message(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "sync_mode": "SpecificAccounts",
             "accounts": "7012345678901234567, 70123abc, 7.0E+18"}]
    found = sorted(p["message"] for p in problems(prepare_rows(tmp_path, rows)))
    assert found == ["has ids that are not all digits: 70123abc", f"{STORED_AS_NUMBER}: 7.0E+18"]


@pytest.mark.parametrize(("column", "typo", "meant"), [
    ("sync_mode", "AllAcounts", "AllAccounts"),
    ("sync_mode", "specificaccount", "SpecificAccounts"),
    ("timeframe_months", "TWELWE", "TWELVE"),
    ("networking_method", "SshTunel", "SshTunnel"),
])
def test_an_enum_typo_gets_did_you_mean(tmp_path: Path, column: str, typo: str,
                                        meant: str) -> None:
    problem = _only(prepare_rows(tmp_path, [{**BASE_ROW, column: typo}]), column)
    assert problem["hint"].startswith(f"did you mean {meant}? (use one of ")


def test_an_enum_value_far_from_every_choice_gets_the_choices_only(tmp_path: Path) -> None:
    problem = _only(prepare_rows(tmp_path, [{**BASE_ROW, "sync_mode": "some"}]), "sync_mode")
    assert problem["hint"] == "use one of AllAccounts, SpecificAccounts"


def test_a_duplicate_schema_names_the_other_rows_both_ways(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "schema": "tiktok_a"}, {**BASE_ROW, "schema": "tiktok_b"},
            {**BASE_ROW, "schema": "tiktok_a"}, {**BASE_ROW, "schema": "tiktok_c"},
            {**BASE_ROW, "schema": "tiktok_c"}, {**BASE_ROW, "schema": "tiktok_c"}]
    found = {p["row"]: p["message"] for p in problems(prepare_rows(tmp_path, rows))}
    assert found == {
        2: "is used by 2 rows in the same group (also row 4)",
        4: "is used by 2 rows in the same group (also row 2)",
        5: "is used by 3 rows in the same group (also rows 6, 7)",
        6: "is used by 3 rows in the same group (also rows 5, 7)",
        7: "is used by 3 rows in the same group (also rows 5, 6)",
    }


def test_a_schema_used_by_many_rows_names_a_few_and_counts_the_rest(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "schema": "tiktok_a"} for _ in range(9)]
    found = {p["row"]: p["message"] for p in problems(prepare_rows(tmp_path, rows))}
    assert found[2] == "is used by 9 rows in the same group (also rows 3, 4, 5, 6, 7 and 3 more)"


def test_a_blank_client_secret_is_shown_blank_not_masked(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "access_token": "", "client_id": "env:TIKTOK_TEST_ID"}]
    prepared = prepare_rows(tmp_path, rows, columns=[*BASE_ROW, "client_id", "client_secret"])
    problem = _only(prepared, "client_secret")
    assert problem["value"] is None
    assert problem["message"] == "is blank, but it is required with client_id"
    assert "******" not in prepared.invalid[2]
    assert prepared.invalid[2].startswith("client_secret is blank, but it is required")


def test_a_literal_secret_is_still_masked(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "access_token": "literal-token-9f8e7d"}]
    problem = _only(prepare_rows(tmp_path, rows), "access_token")
    assert problem["value"] == "******"


def test_a_missing_file_secret_names_the_path_it_looked_for(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "access_token": "file:secrets/missing.txt"}]
    problem = _only(prepare_rows(tmp_path, rows), "access_token")
    looked = tmp_path.resolve() / "secrets" / "missing.txt"
    assert problem["message"] == (f"secret file secrets/missing.txt does not exist "
                                  f"(looked for {looked})")
    assert "relative to the sheet's folder" in problem["hint"]


def test_an_invalid_rows_error_text_is_sentences_with_what_to_do(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "sync_mode": "AllAcounts", "schema": ""}]
    prepared = prepare_rows(tmp_path, rows, columns=[*BASE_ROW, "sync_mode"])
    text = prepared.invalid[2]
    assert text == ("sync_mode 'AllAcounts' is not a valid value — did you mean AllAccounts? "
                    "(use one of AllAccounts, SpecificAccounts); schema is required — fill a "
                    "destination schema name, e.g. tiktok_acme")
    assert "InvalidRow" not in text and "''" not in text


# --- counts read as English ----------------------------------------------------------------

@pytest.mark.parametrize(("count", "expected"), [
    (0, "0 rows"), (1, "1 row"), (2, "2 rows"), (1500, "1,500 rows")])
def test_counted_gets_singular_and_plural_right(count: int, expected: str) -> None:
    assert counted(count, "row") == expected


def test_counted_takes_an_irregular_plural() -> None:
    assert [counted(n, "entry", "entries") for n in (1, 3)] == ["1 entry", "3 entries"]


def test_validate_of_one_row_says_row_warning_and_error_in_the_singular(tmp_path: Path) -> None:
    clean = write_csv(tmp_path / "one.csv", [BASE_ROW])
    done = run_cli(["validate", clean], cwd=tmp_path)
    assert "1 row checked: no problems." in done.stdout
    warned = write_csv(tmp_path / "warned.csv", [
        {**BASE_ROW, "access_token": "literal-token-9f8e7d"},
        {**BASE_ROW, "schema": "Bad Schema", "access_token": "literal-token-9f8e7d"}])
    done = run_cli(["validate", warned], cwd=tmp_path)
    assert "2 rows: 1 invalid (1 error, 2 warnings), 1 ready to send." in done.stdout
    assert "fix the 1 invalid row in the sheet" in done.stdout


# --- validate writes a file only when it has something to say ------------------------------

def test_a_clean_validate_writes_no_folder_and_claims_no_problems(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "clean.csv", [BASE_ROW])
    for _ in range(2):
        done = run_cli(["validate", sheet], cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "written" not in done.stdout and "Problems" not in done.stdout
    assert not (tmp_path / "reports").exists()


def test_a_clean_validate_with_a_run_id_writes_the_header_where_asked(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "clean.csv", [BASE_ROW])
    done = run_cli(["validate", sheet, "--run-id", "nightly"], cwd=tmp_path)
    written = tmp_path / "reports" / "nightly" / "validation.csv"
    assert f"no problems: {written.relative_to(tmp_path)} holds only the header" in done.stdout
    assert written.read_text("utf-8").splitlines() == [
        "source,row,column,value,severity,message,hint"]


def test_validate_with_problems_counts_them_in_the_file_it_names(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "bad.csv", [{**BASE_ROW, "sync_mode": "AllAcounts"}])
    done = run_cli(["validate", sheet], cwd=tmp_path)
    assert done.returncode == 1
    [line] = [x for x in done.stdout.splitlines() if " written to " in x]
    assert line.startswith("1 problem written to reports/")
    path = tmp_path / line.removeprefix("1 problem written to ")
    with path.open(encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["hint"].startswith("did you mean AllAccounts?")


# --- conflicts say what to do, and are in failed_rows.csv ----------------------------------

def test_conflicts_carry_advice_and_are_in_failed_rows_csv_which_feeds_back(
        tmp_path: Path, box: SandboxHandle) -> None:
    columns = ["group_id", "schema", "sync_mode", "sync_frequency", "access_token",
               "timeframe_months", "client_ref"]
    first = write_dict_rows(tmp_path / "first.csv", [
        {"group_id": "quiet_quasar", "schema": "tt_fixed", "timeframe_months": "THREE"}],
        columns)
    assert run_job(load(first), box.url, tmp_path / "first").exit_code is ExitCode.OK
    httpx.post(f"{box.url}/v1/connections", auth=box.auth, json={
        "service": "google_ads", "group_id": "happy_harbor", "config": {"schema": "taken"}}
               ).raise_for_status()
    sheet = write_dict_rows(tmp_path / "second.csv", [
        {"group_id": "quiet_quasar", "schema": "tt_fixed", "timeframe_months": "TWELVE",
         "client_ref": "C-1"},
        {"group_id": "happy_harbor", "schema": "taken", "client_ref": "C-2"},
        {"group_id": "happy_harbor", "schema": "tt_new", "client_ref": "C-3"}], columns)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "second")
    assert done.returncode == ExitCode.ROWS_FAILED, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("exit code 1 (rows_failed)")  # ExitCode's own name
    fixed, taken, new = csv_rows(tmp_path / "r" / "second" / "results.csv")
    assert [r["status"] for r in (fixed, taken, new)] == ["conflict", "conflict", "created"]
    assert fixed["error_message"].endswith(
        "— to keep the connection, set the row back to its timeframe_months 'THREE'; for the "
        "new value, give the row a new schema name (apply creates a second connection; delete "
        "the old one in Fivetran if it is no longer wanted)")
    assert "already used by a google_ads connection in this group" in taken["error_message"]
    assert taken["error_message"].endswith("give this row another schema name (a schema is "
                                           "unique within a group and fixed at creation), or "
                                           "remove the row")
    failed_rows = tmp_path / "r" / "second" / "failed_rows.csv"
    written = csv_rows(failed_rows)
    assert [(r["source_row"], r["client_ref"]) for r in written] == [("2", "C-1"), ("3", "C-2")]
    assert [r["error"] for r in written] == [fixed["error_message"], taken["error_message"]]
    status = cli("status", "second", "--sandbox-url", box.url, "--reports-dir", tmp_path / "r")
    assert status.stdout.rstrip().endswith("exit code 0 (ok)"), status.stdout
    again = load(failed_rows)  # fed straight back: the error column is ignored
    assert [r.schema for r in again.requests] == ["tt_fixed", "taken"]
    assert again.carry_columns == ["client_ref"] and again.problems.is_empty()


# --- no Python class names in what a person reads --------------------------------------------

@pytest.mark.parametrize(("error", "code"), [
    (RowApiError("POST /v1/connections: HTTP 400", http_status=400), "BadRequest"),
    (FatalApiError("HTTP 401", http_status=401), "Unauthorized"),
    (RowApiError("HTTP 422", http_status=422), "UnprocessableEntity"),
    (FatalApiError("no answer"), "NoAnswer"),
    (NotFoundApiError("HTTP 404", http_status=404, code="NotFound_Group"), "NotFound_Group"),
])
def test_an_error_without_the_apis_code_is_named_after_what_happened(error: ApiError,
                                                                    code: str) -> None:
    assert error_code_of(error) == code
