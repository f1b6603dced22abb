"""``export``: the sheet it writes plans unchanged as every row ``exists``; a move creates one
connect-card connection per old one and pauses the old ones; bad flags and groups exit 2."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import polars as pl
import pytest

import batch_provisioner as bp
from batch_provisioner.cli import main
from batch_provisioner.errors import ExitCode
from batch_provisioner.report.export_files import connection_columns
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from batch_provisioner.sheet.columns import REPORT_COLUMNS
from tests.apply_helpers import csv_rows

OLD, NEW = "warm_sunset", "brave_meadow"
GROUPS = {OLD: "Snowflake EU", NEW: "BigQuery EU", "calm_harbor": "Other"}
BACK = "https://agency.example/welcome-back"
REPORT = {"report_type": "auction_basic_campaign_report", "metrics": ["spend", "clicks"],
          "table_name": "campaign_daily", "dimensions": ["campaign_id", "stat_time_day"],
          "aggregate": "daily"}


def _seed(schema: str, group_id: str = OLD, **fields: Any) -> dict[str, Any]:
    config = {"schema": schema, "sync_mode": "AllAccounts", **fields.pop("config", {})}
    return {"group_id": group_id, "service": "tiktok_ads", "sync_frequency": 1440,
            "daily_sync_time": "05:00", "config": config, **fields}


SEEDS = [
    _seed("tiktok_acme", id="acme_conn", config={"custom_reports": [REPORT]}),
    _seed("tiktok_bluefin", id="bluefin_conn", sync_frequency=360, daily_sync_time=None,
          setup_state="incomplete", destination_configuration={"virtual_warehouse": "wh"}),
    _seed("tiktok_crimson", id="crimson_conn", paused=True,
          config={"sync_mode": "SpecificAccounts", "accounts": ["7012345678901234567"]}),
    {**_seed("fb_other", id="fb_conn"), "service": "facebook_ads",
     "config": {"schema": "fb_other"}},
]


@pytest.fixture()
def box() -> Iterator[SandboxHandle]:
    """A sandbox (no budgets in the way) whose old group holds connections made by hand."""
    seeds = [{k: v for k, v in s.items() if v is not None} for s in SEEDS]
    with run_in_thread(profile="unlimited", groups=GROUPS, connections=seeds) as handle:
        yield handle


def run(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def next_commands(out: str) -> list[list[str]]:
    """The commands of the ``next:`` and ``then:`` lines, as words (the program dropped)."""
    found = re.findall(r"^(?:next|then): batch-provisioner (.*?)(?:   #.*)?$", out, re.M)
    return [shlex.split(line) for line in found]


def connection(box: SandboxHandle, connection_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        data: dict[str, Any] = client.get(f"/v1/connections/{connection_id}").json()["data"]
        return data


def in_group(box: SandboxHandle, group_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        items: list[dict[str, Any]] = client.get(
            f"/v1/groups/{group_id}/connections").json()["data"]["items"]
        return items


def test_an_exported_workbook_plans_unchanged_as_every_row_exists(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "adopt.xlsx"
    code, out, err = run("export", "--group-name", "snowflake eu", "--out", sheet,
                         "--sandbox-url", box.url, capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "exported 3 tiktok_ads connections of Snowflake EU (warm_sunset)" in out
    assert "not exported, listed in" in out and "destination_configuration" in out
    assert "fb_other: service (not tiktok_ads" in out
    (plan,) = next_commands(out)
    assert plan == ["plan", str(sheet), "--sandbox-url", box.url]
    code, out, err = run(*plan, "--reports-dir", tmp_path / "r", "--run-id", "p", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert "plan: 0 create, 3 exists, 0 drift, 0 conflict, 0 invalid" in out
    assert "carried through" not in err  # connection_id and setup_state are the job's own


def test_the_workbook_keeps_the_templates_dropdowns_notes_and_instructions(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "adopt.xlsx"
    code, out, err = run("export", "--group", OLD, "--out", sheet, "--sandbox-url", box.url,
                         capsys=capsys)
    assert code == ExitCode.OK, out + err
    book = openpyxl.load_workbook(sheet)
    assert book.sheetnames == ["connections", "custom_reports", "instructions", "not_exported"]
    rows = book["connections"]
    header = [c.value for c in rows[1]]
    assert header == connection_columns()
    assert all(cell.comment is not None and cell.comment.text for cell in rows[1])
    lists = {str(v.sqref).split(":")[0]: v.formula1 for v in rows.data_validations.dataValidation}
    letter = {name: rows.cell(1, i + 1).column_letter for i, name in enumerate(header)}
    assert lists[f"{letter['sync_mode']}2"] == '"AllAccounts,SpecificAccounts"'
    assert lists[f"{letter['paused']}2"] == '"true,false"'
    assert rows["A2"].number_format == "@"
    data = [dict(zip(header, (c.value for c in r), strict=True)) for r in rows.iter_rows(2)]
    assert [(r["schema"], r["connection_id"], r["setup_state"], r["paused"]) for r in data] == [
        ("tiktok_acme", "acme_conn", "connected", "false"),
        ("tiktok_bluefin", "bluefin_conn", "incomplete", "false"),
        ("tiktok_crimson", "crimson_conn", "connected", "true")]
    assert all(r["access_token"] is None and r["client_secret"] is None for r in data)
    reports = [[c.value for c in r] for r in book["custom_reports"].iter_rows()]
    assert reports[0] == [c.name for c in REPORT_COLUMNS]
    assert reports[1][:3] == ["tiktok_acme", OLD, "campaign_daily"]
    notes = "\n".join(str(c.value) for c in book["instructions"]["A"] if c.value)
    assert "the Fivetran API never returns secrets (it masks them)" in notes
    left = [[c.value for c in r] for r in book["not_exported"].iter_rows()]
    assert left[0] == ["group_id", "schema", "connection_id", "field", "value", "reason"]
    assert [r[3] for r in left[1:]] == ["destination_configuration", "service"]


def test_a_csv_export_writes_its_reports_and_losses_beside_it_and_plans_as_printed(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "adopt.csv"
    code, out, err = run("export", "--group", OLD, "--out", sheet, "--sandbox-url", box.url,
                         "--redirect-uri", BACK, capsys=capsys)
    assert code == ExitCode.OK, out + err
    reports, left = tmp_path / "adopt_custom_reports.csv", tmp_path / "adopt_not_exported.csv"
    assert [r["table_name"] for r in csv_rows(reports)] == ["campaign_daily"]
    assert {r["field"] for r in csv_rows(left)} == {"destination_configuration", "service"}
    rows = csv_rows(sheet)
    assert {r["redirect_uri"] for r in rows} == {BACK}  # filled where none was set
    (plan,) = next_commands(out)
    assert plan[:4] == ["plan", str(sheet), "--custom-reports", str(reports)]
    code, out, err = run(*plan, "--reports-dir", tmp_path / "r", "--run-id", "p", capsys=capsys)
    assert code == ExitCode.OK and "3 exists, 0 drift" in out, out + err


def test_a_move_creates_one_card_each_and_the_retire_sheet_pauses_the_old_ones(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    reports_dir = tmp_path / "reports"
    code, out, err = run("export", "--group", OLD, "--to-group-name", "BigQuery EU",
                         "--redirect-uri", BACK, "--out", tmp_path / "move.xlsx",
                         "--sandbox-url", box.url, "--reports-dir", reports_dir, capsys=capsys)
    assert code == ExitCode.OK, out + err
    steps = next_commands(out)
    assert [s[0] for s in steps] == ["apply", "connect-cards", "status", "apply"]
    code, out, err = run(*steps[0], capsys=capsys)
    assert code == ExitCode.OK, out + err
    made = in_group(box, NEW)
    assert sorted(c["schema"] for c in made) == ["tiktok_acme", "tiktok_bluefin",
                                                 "tiktok_crimson"]
    assert all(c["status"]["setup_state"] == "incomplete" for c in made)
    assert all(c["connect_card_config"]["redirect_uri"] == BACK for c in made)
    acme = next(c for c in made if c["schema"] == "tiktok_acme")
    assert acme["config"]["custom_reports"] == [REPORT]
    results = csv_rows(reports_dir / "move-to-brave_meadow" / "results.csv")
    assert all(r["connect_card_uri"].startswith("https://") for r in results)
    code, out, err = run(*steps[1], capsys=capsys)
    assert code == ExitCode.OK and "3 fresh connect cards" in out, out + err
    for item in made:
        box.authorize(item["id"])
    code, out, err = run(*steps[2], capsys=capsys)
    assert code == ExitCode.OK and "setup: 3 connected" in out, out + err
    code, out, err = run(*steps[3], capsys=capsys)
    assert code == ExitCode.OK and "updated" in out, out + err
    assert [connection(box, c)["paused"] for c in ("acme_conn", "bluefin_conn",
                                                    "crimson_conn")] == [True, True, True]
    assert connection(box, "bluefin_conn")["sync_frequency"] == 360  # only paused was sent
    assert all(c["paused"] is False for c in in_group(box, NEW) if c["schema"] != "tiktok_crimson")
    code, out, _ = run("rollback", "move-to-brave_meadow-pause", "--yes", "--sandbox-url",
                       box.url, "--reports-dir", reports_dir, capsys=capsys)
    assert "created no connection; nothing to delete" in out
    assert len(in_group(box, OLD)) == 4  # pausing adopted connections never deletes them


def test_a_schema_the_new_group_has_already_is_named_and_not_created_twice(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        body = {**_seed("tiktok_acme", NEW), "run_setup_tests": False}
        assert client.post("/v1/connections", json=body).status_code == 201
    code, out, err = run("export", "--group", OLD, "--to-group", NEW, "--redirect-uri", BACK,
                         "--out", tmp_path / "move.csv", "--sandbox-url", box.url,
                         "--reports-dir", tmp_path / "r", capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert f"1 of these schemas exist in {NEW} already (tiktok_acme)" in out
    code, out, err = run(*next_commands(out)[0], capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert len(in_group(box, NEW)) == 3


@pytest.mark.parametrize(("args", "message"), [
    (("--group", "nope"), "--group 'nope': no group has this id (the account's groups: "
                          "warm_sunset (Snowflake EU)"),
    (("--group-name", "Snowflake"), "--group-name 'Snowflake': no group has this name"),
    (("--group", OLD, "--to-group-name", "Nowhere", "--redirect-uri", BACK),
     "--to-group-name 'Nowhere': no group has this name"),
    (("--group", OLD, "--to-group", NEW), "need --redirect-uri URL"),
    (("--group", OLD, "--to-group", OLD, "--redirect-uri", BACK),
     "warm_sunset (Snowflake EU) is both exported and the new group"),
    (("--all-groups", "--group", OLD), "--all-groups exports every group"),
    ((), "say which groups to export"),
    (("--group", OLD, "--redirect-uri", "http://x"), "is not an absolute https URL"),
    (("--group", OLD, "--to-group", NEW, "--to-group-name", "BigQuery EU", "--redirect-uri",
      BACK), "give one"),
])
def test_bad_flags_and_unknown_groups_exit_2_naming_them_and_write_nothing(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...], message: str) -> None:
    code, out, err = run("export", *args, "--out", tmp_path / "x.xlsx", "--sandbox-url",
                         box.url, capsys=capsys)
    assert code == ExitCode.INPUT_ERROR, out + err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.xlsx").exists()


def test_an_out_file_of_another_kind_exits_2(tmp_path: Path, box: SandboxHandle,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("export", "--group", OLD, "--out", tmp_path / "x.json",
                       "--sandbox-url", box.url, capsys=capsys)
    assert code == ExitCode.INPUT_ERROR and "is neither .xlsx nor .csv" in err


def test_two_old_groups_with_one_schema_cannot_move_into_one_group(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = [_seed("tiktok_same", OLD), _seed("tiktok_same", "calm_harbor")]
    with run_in_thread(profile="unlimited", groups=GROUPS, connections=seeds) as other:
        code, _, err = run("export", "--group", OLD, "--group", "calm_harbor", "--to-group",
                           NEW, "--redirect-uri", BACK, "--out", tmp_path / "m.xlsx",
                           "--sandbox-url", other.url, capsys=capsys)
    assert code == ExitCode.INPUT_ERROR
    assert "the schema 'tiktok_same' (warm_sunset and calm_harbor) would be used twice" in err


def test_bad_credentials_are_a_fatal_api_error(tmp_path: Path, box: SandboxHandle,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIVETRAN_API_KEY", "wrong")
    monkeypatch.setenv("FIVETRAN_API_SECRET", "wrong-secret")
    code, _, err = run("export", "--all-groups", "--out", tmp_path / "x.xlsx", "--sandbox-url",
                       box.url, capsys=capsys)
    assert code == ExitCode.FATAL_API and "401" in err
    assert not (tmp_path / "x.xlsx").exists()


def test_a_read_that_fails_is_listed_and_the_exit_code_is_1(tmp_path: Path,
                                                            box: SandboxHandle) -> None:
    box.script([{"method": "GET", "path": "/v1/connections/bluefin_conn", "fault": "503",
                 "times": 10}])
    result = bp.export(groups=[OLD], out=tmp_path / "x.csv", sandbox_url=box.url,
                       limits=bp.Limits(max_attempts=1))
    assert result.exit_code == ExitCode.ROWS_FAILED and result.failed == 1
    assert [c.schema for c in result.connections] == ["tiktok_acme", "tiktok_crimson"]
    failed = result.not_exported.filter(pl.col("connection_id") == "bluefin_conn")
    assert failed.get_column("reason").str.starts_with("reading it failed").to_list() == [True]


def test_pinned_rows_are_planned_against_their_connection_only(
        tmp_path: Path, box: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "adopt.csv"
    assert run("export", "--group", OLD, "--out", sheet, "--sandbox-url", box.url,
               capsys=capsys)[0] == ExitCode.OK
    rows = pl.read_csv(sheet, infer_schema=False)
    edited = rows.with_columns(
        pl.when(pl.col("schema") == "tiktok_acme").then(pl.lit("tiktok_renamed"))
        .when(pl.col("schema") == "tiktok_bluefin").then(pl.lit("tiktok_crimson_2"))
        .otherwise(pl.col("schema")).alias("schema"),
        pl.when(pl.col("schema") == "tiktok_crimson").then(pl.lit("acme_conn"))
        .otherwise(pl.col("connection_id")).alias("connection_id"))
    edited.write_csv(tmp_path / "edited.csv")
    code, out, err = run("plan", tmp_path / "edited.csv", "--sandbox-url", box.url,
                         "--reports-dir", tmp_path / "r", "--run-id", "p", capsys=capsys)
    assert code == ExitCode.ROWS_FAILED, out + err
    plan = {r["schema"]: r for r in csv_rows(tmp_path / "r" / "p" / "plan.csv")}
    assert plan["tiktok_renamed"]["action"] == "invalid"
    assert "has the schema 'tiktok_acme', fixed at creation" in plan["tiktok_renamed"]["detail"]
    assert plan["tiktok_crimson_2"]["action"] == "invalid"  # pinned, so never a create
    assert plan["tiktok_crimson"]["action"] == "conflict"
    assert "is connection crimson_conn, not acme_conn" in plan["tiktok_crimson"]["detail"]


def test_an_embedded_sandbox_seeded_from_a_csv_exports_and_plans_from_its_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = tmp_path / "existing.csv"
    seeds.write_text("group_id,schema,connection_id,sync_mode,sync_frequency,paused\n"
                     "decent_dropsy,tiktok_one,first_conn,AllAccounts,60,no\n"
                     "decent_dropsy,tiktok_two,second_conn,AllAccounts,1440,yes\n",
                     encoding="utf-8")
    reports, sheet = tmp_path / "reports", tmp_path / "adopt.csv"
    code, out, err = run("export", "--group", "decent_dropsy", "--out", sheet, "--sandbox",
                         "--sandbox-connections", seeds, "--reports-dir", reports,
                         capsys=capsys)
    assert code == ExitCode.OK, out + err
    assert [(r["connection_id"], r["paused"]) for r in csv_rows(sheet)] == [
        ("first_conn", "false"), ("second_conn", "true")]
    (plan,) = next_commands(out)
    assert "--sandbox-connections" not in plan  # the state keeps them: no second seeding
    code, out, err = run(*plan, capsys=capsys)
    assert code == ExitCode.OK and "2 exists, 0 drift" in out, out + err


@pytest.mark.parametrize(("args", "message"), [
    (("--sandbox-connections", "seeds.json"), "--sandbox-connections configures the embedded "
                                              "sandbox: it needs --sandbox"),
    (("--sandbox", "--sandbox-connections", "missing.json"), "cannot be read"),
])
def test_a_seed_file_without_sandbox_or_unreadable_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        message: str) -> None:
    (tmp_path / "seeds.json").write_text("[]", encoding="utf-8")
    code, _, err = run("export", "--all-groups", "--out", tmp_path / "x.xlsx", "--reports-dir",
                       tmp_path / "r", *(str(tmp_path / a) if a.endswith(".json") else a
                                         for a in args), capsys=capsys)
    assert code == ExitCode.INPUT_ERROR and message in err, err
    assert not (tmp_path / "x.xlsx").exists()
