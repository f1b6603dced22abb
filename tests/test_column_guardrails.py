"""Column guardrails: a misspelled header or a column named like one of the job's own outputs is
an input error (exit 2, nothing sent); the user's own columns ride along, named once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest

from batch_provisioner.cli import main
from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.report import results as report_results
from batch_provisioner.run import operations
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.sheet import columns as cols
from batch_provisioner.sheet.columns import (
    COLUMNS,
    EXPORT_COLUMNS,
    IGNORED_COLUMNS,
    KNOWN_COLUMNS,
    REPORT_COLUMNS,
    RESERVED_COLUMNS,
)
from batch_provisioner.sheet.guardrails import (
    SYNONYMS,
    check_headers,
    edit_distance,
    looks_secret,
    resembles,
)
from batch_provisioner.sheet.read import ROW
from tests.apply_helpers import ENV, cli, csv_rows, write_dict_rows

BASE = {"group_id": "happy_harbor", "schema": "tt_one", "sync_mode": "AllAccounts",
        "access_token": "env:TT_TOKEN"}
OWN_COLUMNS = ("notes", "client", "client_name", "account_manager", "owner", "region", "comment",
               "name", "id", "team", "budget", "advertiser", "market", "x_account", "client_ref",
               "note", "agency", "brand", "country", "currency", "timezone", "contact_email",
               "start_date", "vertical", "tier", "industry", "manager", "label", "tags",
               "priority", "destination", "proxy", "daily", "hybrid")
CONNECTION_NAMES = [c.name for c in COLUMNS]
REPORT_NAMES = [c.name for c in REPORT_COLUMNS]
SECRET_HEADERS = ("tiktok_token", "token", "auth_token", "secret", "app_secret", "api_key",
                  "password", "access_key", "passwd", "apikey", "credential", "credentials",
                  "bearer", "private_key", "TikTok Token", "AuthToken", "app-secret",
                  "api_keys", "secret_key", "user_password")
#: Headers a person plausibly writes for a known column: header -> the column.
WRITTEN_ANOTHER_WAY = {
    "sync_frequency_minutes": "sync_frequency", "sync_frequency_mins": "sync_frequency",
    "sync_freq": "sync_frequency", "syncfreq": "sync_frequency", "frequency": "sync_frequency",
    "sync_interval": "sync_frequency", "Sync Interval Minutes": "sync_frequency",
    "sync_time": "daily_sync_time", "sync_hour": "daily_sync_time",
    "daily_sync_hour": "daily_sync_time",
    "timeframe_mo": "timeframe_months", "history_months": "timeframe_months",
    "lookback_months": "timeframe_months", "timeframe_month": "timeframe_months",
    "attribution": "attribution_window_size", "attribution_window": "attribution_window_size",
    "attribution_window_days": "attribution_window_size",
    "advertiser_ids": "accounts", "account_ids": "accounts", "accounts_ids": "accounts",
    "advertisers": "accounts", "advertiser_id": "accounts", "AdvertiserIDs": "accounts",
    "return_url": "redirect_uri", "callback_url": "redirect_uri", "redirect": "redirect_uri",
    "is_paused": "paused", "start_paused": "paused",
    "trust_cert": "trust_certificates", "trust_certs": "trust_certificates",
    "run_tests": "run_setup_tests",
    "destination_group_id": "group_id",
    "schema_name": "schema", "destination_schema": "schema",
}
REPORT_WRITTEN_ANOTHER_WAY = {
    "aggregation": "aggregate", "metric": "metrics", "dimension": "dimensions",
    "report": "report_type", "table": "table_name",
}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def run(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def sheet(path: Path, extra: dict[str, str], base: dict[str, str] | None = None) -> Path:
    """One valid row plus ``extra`` columns (header -> cell)."""
    row = {**(BASE if base is None else base), **extra}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(row))
        writer.writerow(list(row.values()))
    return path


def one_typo_each(name: str) -> dict[str, str]:
    """A deletion, a substitution, a swap of neighbours and an insertion of ``name``."""
    middle = len(name) // 2
    swap = next(i for i in range(len(name) - 1) if name[i] != name[i + 1])
    last = name[-1]
    typos = {
        "deletion": name[:middle] + name[middle + 1:],
        "substitution": name[:-1] + ("q" if last != "q" else "z"),
        "transposition": name[:swap] + name[swap + 1] + name[swap] + name[swap + 2:],
        "insertion": name[:middle] + "k" + name[middle:],
    }
    for kind, typo in typos.items():
        assert edit_distance(name, typo) == 1, (kind, typo)
    return typos


# -- misspelled headers ---------------------------------------------------------------------

def test_a_misspelled_header_is_an_input_error_naming_the_column_it_resembles(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"sync_frequncy": "60", "timeframe": "SIX",
                                           "notes": "keep"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    assert str(path) in err and "2 headers" in err  # every such header at once
    assert "'sync_frequncy' looks like the column 'sync_frequency' misspelled" in err
    assert "'timeframe' looks like the column 'timeframe_months' misspelled" in err
    assert "use the known name" in err and "prefix it x_ (e.g. 'x_sync_frequncy')" in err
    assert "'notes'" not in err  # the user's own column is not a problem
    assert not (tmp_path / "r").exists()  # nothing written either


@pytest.mark.parametrize("name", [c.name for c in COLUMNS])
def test_every_known_column_with_any_one_typo_is_refused_naming_the_column(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kind, typo in one_typo_each(name).items():
        path = sheet(tmp_path / f"{kind}.csv", {typo: "x"})
        code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
        assert code == ExitCode.INPUT_ERROR, (kind, typo, out + err)
        assert f"{typo!r} looks like the column" in err and repr(name) in err, (kind, err)


def test_a_header_written_without_underscores_or_with_spaces_is_caught_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"SyncFrequency": "60", "Attribution Window": "7"})
    code, _, err = run("validate", path, capsys=capsys)
    assert code == ExitCode.INPUT_ERROR
    assert "'SyncFrequency' looks like the column 'sync_frequency'" in err
    assert "'Attribution Window' looks like the column 'attribution_window_size'" in err


@pytest.mark.parametrize("name", [c.name for c in REPORT_COLUMNS])
def test_every_report_column_with_any_one_typo_is_refused_naming_the_column(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    connections = sheet(tmp_path / "groups.csv", {})
    report = {"schema": "tt_one", "table_name": "t_daily", "report_type": "BASIC",
              "metrics": "spend"}
    for kind, typo in one_typo_each(name).items():
        reports = sheet(tmp_path / f"reports_{kind}.csv", {typo: "x"}, base=report)
        code, out, err = run("validate", connections, "--custom-reports", reports,
                             "--reports-dir", tmp_path / "r", capsys=capsys)
        assert code == ExitCode.INPUT_ERROR, (kind, typo, out + err)
        assert str(reports) in err and f"{typo!r} looks like the report column" in err
        assert repr(name) in err, (kind, err)


def test_a_misspelled_defaults_key_is_an_input_error_naming_defaults_toml_and_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('sync_frequncy = 60\n', encoding="utf-8")
    code, _, err = run("validate", sheet(tmp_path / "groups.csv", {}), "--defaults", defaults,
                       capsys=capsys)
    assert code == ExitCode.INPUT_ERROR
    assert "defaults.toml" in err and "'sync_frequncy'" in err
    assert "did you mean 'sync_frequency'?" in err


# -- the user's own columns -----------------------------------------------------------------

def test_the_users_own_columns_pass_and_are_named_once_in_a_notice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {name: f"v-{name}" for name in OWN_COLUMNS})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    notice = "carried through unchanged (your own columns): " + ", ".join(OWN_COLUMNS)
    assert out.count("carried through unchanged") == 1 and notice in out


def test_the_rule_has_no_false_alarm_on_the_usual_own_columns() -> None:
    for name in OWN_COLUMNS:
        assert resembles(name, CONNECTION_NAMES) == [], name
        assert resembles(name, REPORT_NAMES) == [], name
        assert not looks_secret(name), name


def test_an_x_prefixed_header_is_always_the_users_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"x_sync_frequency": "mine", "x_timeframe": "mine"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "(your own columns): x_sync_frequency, x_timeframe" in out


def test_headers_the_reader_ignores_stay_ignored_and_are_named_once_as_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "failed_rows.csv", {"error": "was bad", "source_row": "7"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "carried through" not in out
    notice = ("ignored: error, source_row (columns failed_rows.csv adds; rename yours, "
              "e.g. x_error)")
    assert out.count("ignored:") == 1 and notice in out


def test_an_own_column_named_source_row_is_named_as_ignored_with_its_own_rename(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"Source Row": "mine", "notes": "keep"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "(your own columns): notes" in out
    assert "ignored: source_row (columns failed_rows.csv adds; rename yours, e.g. x_source_row)" \
        in out


def test_a_sheet_without_ignored_headers_prints_no_ignored_notice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("validate", sheet(tmp_path / "groups.csv", {"notes": "keep"}),
                         "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "ignored:" not in out + err


def test_apply_names_the_ignored_headers_once_on_stderr(
        tmp_path: Path, box: SandboxHandle) -> None:
    path = write_dict_rows(tmp_path / "groups.csv",
                           [{"group_id": "happy_harbor", "schema": "tt_a", "error": "mine"}],
                           ["group_id", "schema", "sync_mode", "sync_frequency", "access_token",
                            "error"])
    done = cli("apply", path, "--sandbox-url", box.url, "--reports-dir", tmp_path / "reports",
               "--run-id", "run")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert done.stderr.count("ignored: error (columns failed_rows.csv adds") == 1


# -- secrets in a column of the user's own --------------------------------------------------

@pytest.mark.parametrize("header", SECRET_HEADERS)
def test_a_header_named_like_a_secret_is_an_input_error_saying_where_a_secret_goes(
        header: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {header: "tok-live-123", "notes": "keep"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    assert (f"{header!r} looks like a secret: put it in access_token (or "
            "client_id/client_secret) as env:NAME or file:PATH; if it is not a secret, prefix "
            "the header x_") in " ".join(err.split())
    assert "'notes'" not in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("header", ["client_secret_value", "access_token_value", "accesstoken",
                                    "client_secrets"])
def test_a_secret_header_that_resembles_a_secret_column_names_the_column_and_env_or_file(
        header: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("validate", sheet(tmp_path / "groups.csv", {header: "tok-live-123"}),
                         capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    text = " ".join(err.split())
    assert f"{header!r} looks like the column" in text
    assert "(a secret: give it as env:NAME or file:PATH)" in text


def test_a_secret_looking_header_prefixed_x_is_carried_as_the_users_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"x_token_count": "3", "x_api_key_owner": "ana"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "(your own columns): x_token_count, x_api_key_owner" in out


def test_words_that_merely_contain_a_secret_word_are_not_secrets() -> None:
    for header in ("keynote", "key_account", "monkey", "pallbearer", "tokenomics_notes",
                   "secretary"):
        assert not looks_secret(header), header
    assert looks_secret("tiktoktoken") and looks_secret("app_apikey")


# -- a known column written another way -----------------------------------------------------

@pytest.mark.parametrize(("header", "column"), WRITTEN_ANOTHER_WAY.items())
def test_a_known_column_written_another_way_is_refused_naming_the_column(
        header: str, column: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {header: "x", "notes": "keep"})
    code, out, err = run("validate", path, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    text = " ".join(err.split())
    assert f"{header!r} looks like the column {column!r}" in text, text
    assert "prefix it x_ (e.g. 'x_" in text
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("header", "column"), REPORT_WRITTEN_ANOTHER_WAY.items())
def test_a_report_column_written_another_way_is_refused_naming_the_column(
        header: str, column: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    connections = sheet(tmp_path / "groups.csv", {})
    report = {"schema": "tt_one", "table_name": "t_daily", "report_type": "BASIC",
              "metrics": "spend"}
    reports = sheet(tmp_path / "reports.csv", {header: "x"},
                    base={k: v for k, v in report.items() if k != column})
    code, out, err = run("validate", connections, "--custom-reports", reports,
                         "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    assert f"{header!r} looks like the report column {column!r}" in " ".join(err.split())


def test_a_synonym_names_only_its_column() -> None:
    # destination_schema is also the start of destination_schema_names: the synonym decides
    assert resembles("destination_schema", CONNECTION_NAMES) == ["schema"]
    assert resembles("advertiser", CONNECTION_NAMES) == []  # the lone word is the user's own


def test_every_synonym_names_a_known_column_and_is_not_one() -> None:
    names = set(CONNECTION_NAMES) | set(REPORT_NAMES)
    for column, words in SYNONYMS.items():
        assert column in names, column
        for word in words:
            assert word not in names and word not in OWN_COLUMNS, word
            known = CONNECTION_NAMES if column in CONNECTION_NAMES else REPORT_NAMES
            assert resembles(word, known) == [column], word


def test_a_reserved_name_that_resembles_a_known_column_points_to_the_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sheet(tmp_path / "groups.csv", {"setup_tests": "true"})
    code, out, err = run("validate", path, capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    text = " ".join(err.split())
    assert ("'setup_tests': did you mean 'run_setup_tests'? ('setup_tests' is a column the "
            "job's own reports use)") in text
    assert "my_setup_tests" not in text and "'x_setup_tests'" in text


def test_the_widest_sheet_excel_allows_is_checked_and_its_one_typo_found() -> None:
    """16,384 columns (Excel's limit): every own column passes, the one typo among them is
    named. (About 2 s: the rule is one index look-up per header, not a scan per column.)"""
    headers = {f"own_column_{i}": f"Own Column {i}" for i in range(16_383)}
    check_headers("wide.csv", 1, headers, CONNECTION_NAMES)
    headers["sync_frequncy"] = "sync_frequncy"
    with pytest.raises(InputError, match="sync_frequency"):
        check_headers("wide.csv", 1, headers, CONNECTION_NAMES)


# -- names the outputs use ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(n for n in RESERVED_COLUMNS - IGNORED_COLUMNS
                                         - set(EXPORT_COLUMNS)
                                         if not resembles(n, CONNECTION_NAMES)))
def test_a_user_column_named_like_an_output_column_is_refused_with_a_rename(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("validate", sheet(tmp_path / "groups.csv", {name: "mine"}), capsys=capsys)
    assert code == ExitCode.INPUT_ERROR
    assert f"{name!r} is a name the job's own reports use" in err
    assert f"'my_{name}'" in err
    renamed = sheet(tmp_path / "renamed.csv", {f"my_{name}": "mine"})
    code, out, err = run("validate", renamed, "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err  # the suggested name is one the job accepts


def test_a_user_column_named_status_is_refused_before_any_create(
        tmp_path: Path, box: SandboxHandle) -> None:
    path = write_dict_rows(tmp_path / "groups.csv",
                           [{"group_id": "happy_harbor", "schema": "tt_a", "status": "new"}],
                           ["group_id", "schema", "sync_mode", "sync_frequency", "access_token",
                            "status"])
    reports = tmp_path / "reports"
    done = cli("apply", path, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "run")
    assert done.returncode == ExitCode.INPUT_ERROR, done.stdout + done.stderr
    assert "'status' is a name the job's own reports use" in done.stderr
    assert "'my_status'" in done.stderr and "DuplicateError" not in done.stderr
    ledger = box.ledger()
    assert ledger["requests"] == [] and ledger["creates"] == []  # nothing was sent


# -- carry columns through apply, status and rollback ---------------------------------------

CARRY_SHEET_COLUMNS = ["group_id", "schema", "sync_mode", "sync_frequency", "access_token",
                       "redirect_uri", "notes", "zz_owner", "aa_region"]


def _carry_rows() -> list[dict[str, str]]:
    return [{"group_id": "happy_harbor", "schema": "tt_tok", "notes": "first",
             "zz_owner": "ana", "aa_region": "emea"},
            {"group_id": "quiet_quasar", "schema": "tt_card", "access_token": "",
             "redirect_uri": "https://agency.example/done", "notes": "=1+1", "zz_owner": "bo",
             "aa_region": "apac"}]


def test_a_carry_column_passes_apply_and_rides_along_to_results_csv(
        tmp_path: Path, box: SandboxHandle) -> None:
    path = write_dict_rows(tmp_path / "groups.csv", _carry_rows(), CARRY_SHEET_COLUMNS)
    reports = tmp_path / "reports"
    done = cli("apply", path, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "run", "--log-format", "json")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    notice = "carried through unchanged (your own columns): notes, zz_owner, aa_region"
    assert done.stderr.count("carried through unchanged") == 1 and notice in done.stderr
    rows = csv_rows(reports / "run" / "results.csv")
    assert [(r["schema"], r["notes"], r["zz_owner"]) for r in rows] == [
        ("tt_tok", "first", "ana"), ("tt_card", "'=1+1", "bo")]
    summary = json.loads((reports / "run" / "summary.json").read_text("utf-8"))
    assert summary["carry_columns"] == ["notes", "zz_owner", "aa_region"]
    events = [json.loads(line) for line in
              (reports / "run" / "run.log.jsonl").read_text("utf-8").splitlines()]
    carried = [e for e in events if e.get("event") == "input.carry_columns"]
    assert len(carried) == 1 and carried[0]["columns"] == ["notes", "zz_owner", "aa_region"]


@pytest.mark.parametrize("recorded", [True, False], ids=["summary_names_them", "older_run"])
def test_status_and_rollback_find_carry_columns_by_name_not_by_position(
        recorded: bool, tmp_path: Path, box: SandboxHandle) -> None:
    path = write_dict_rows(tmp_path / "groups.csv", _carry_rows(), CARRY_SHEET_COLUMNS)
    reports = tmp_path / "reports"
    run_dir = reports / "run"
    applied = cli("apply", path, "--sandbox-url", box.url, "--reports-dir", reports,
                  "--run-id", "run")
    assert applied.returncode == ExitCode.OK, applied.stdout + applied.stderr
    # A results.parquet whose carry columns do not sit between schema and action.
    results = pl.read_parquet(run_dir / "results.parquet")
    order = ["aa_region", *[c for c in results.columns if c not in ("aa_region", "zz_owner")],
             "zz_owner"]
    results.select(order).write_parquet(run_dir / "results.parquet")
    if not recorded:  # a run written before summary.json named its carry columns
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text("utf-8"))
        del summary["carry_columns"]
        summary_path.write_text(json.dumps(summary), "utf-8")
    status = cli("status", "run", "--sandbox-url", box.url, "--reports-dir", reports)
    assert status.returncode == ExitCode.OK, status.stdout + status.stderr
    lines = csv_rows(run_dir / "status.csv")
    assert [(r["schema"], r["notes"], r["zz_owner"], r["aa_region"]) for r in lines] == [
        ("tt_tok", "first", "ana", "emea"), ("tt_card", "'=1+1", "bo", "apac")]
    rolled = cli("rollback", "run", "--yes", "--sandbox-url", box.url, "--reports-dir", reports)
    assert rolled.returncode == ExitCode.OK, rolled.stdout + rolled.stderr
    back = csv_rows(run_dir / "rollback" / "results.csv")
    assert {(r["schema"], r["zz_owner"], r["aa_region"], r["status"]) for r in back} == {
        ("tt_tok", "ana", "emea", "rolled_back"), ("tt_card", "bo", "apac", "rolled_back")}


# -- one place for the names the outputs use ------------------------------------------------

def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return next(csv.reader(handle))


def test_every_output_column_is_known_reserved_or_the_users_own(
        tmp_path: Path, box: SandboxHandle) -> None:
    path = write_dict_rows(tmp_path / "groups.csv", _carry_rows(), CARRY_SHEET_COLUMNS)
    reports = tmp_path / "reports"
    run_dir = reports / "run"
    own = {"notes", "zz_owner", "aa_region"}
    planned = cli("plan", path, "--sandbox-url", box.url, "--reports-dir", reports,
                  "--run-id", "plan")
    assert planned.returncode == 5, planned.stdout + planned.stderr
    for args in (("apply", path, "--run-id", "run"), ("status", "run"),
                 ("connect-cards", "run"), ("rollback", "run", "--yes")):
        done = cli(*args, "--sandbox-url", box.url, "--reports-dir", reports)
        assert done.returncode == ExitCode.OK, (args, done.stdout + done.stderr)
    outputs = {
        "plan.csv": _header(reports / "plan" / "plan.csv"),
        "results.csv": _header(run_dir / "results.csv"),
        "results.parquet": pl.read_parquet(run_dir / "results.parquet").columns,
        "status.csv": _header(run_dir / "status.csv"),
        "connect_cards.csv": _header(run_dir / "connect_cards.csv"),
        "rollback/results.csv": _header(run_dir / "rollback" / "results.csv"),
    }
    allowed = KNOWN_COLUMNS | RESERVED_COLUMNS | own
    for name, columns in outputs.items():
        assert own <= set(columns), name
        assert set(columns) <= allowed, (name, sorted(set(columns) - allowed))


def test_the_output_modules_take_their_column_names_from_the_one_place() -> None:
    assert report_results.RESULT_COLUMNS is cols.RESULT_COLUMNS
    work = set(report_results._OUTCOME_SCHEMA) - {ROW}
    assert work <= RESERVED_COLUMNS | KNOWN_COLUMNS, sorted(work - RESERVED_COLUMNS)
    for name in ("RUN_ROW_COLUMNS", "STATUS_COLUMNS", "CONNECT_CARD_COLUMNS", "ROLLBACK_COLUMNS"):
        assert getattr(operations, name) is getattr(cols, name)
    for group in (cols.RESULT_COLUMNS, cols.WORK_COLUMNS, cols.PLAN_COLUMNS,
                  cols.RUN_ROW_COLUMNS, cols.STATUS_COLUMNS, cols.CONNECT_CARD_COLUMNS,
                  cols.ROLLBACK_COLUMNS, cols.REFRESHED_COLUMNS):
        assert set(group) <= RESERVED_COLUMNS | KNOWN_COLUMNS
