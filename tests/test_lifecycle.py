"""plan, apply --update, connect-cards, status, rollback and group names, against the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import polars as pl
import pytest

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Status
from batch_provisioner.run.drift import diff, format_changes
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from batch_provisioner.sheet.expand import expand
from batch_provisioner.sheet.secrets import parse_ref
from tests.apply_helpers import ENV, cli, creations, csv_rows, load, run_job, write_dict_rows

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["group_id", "group_name", "schema", "sync_mode", "accounts", "access_token",
           "redirect_uri", "sync_frequency", "timeframe_months", "client_ref"]
GROUPS = {"decent_dropsy": "Acme", "happy_harbor": "Blue Fin", "quiet_quasar": "Crimson",
          "twin_one": "Twins", "twin_two": "Twins"}


# -- drift.diff: a pure function ---------------------------------------------------------------

def _answer(**top: Any) -> dict[str, Any]:
    config = {"schema": "tt_a", "sync_mode": "SpecificAccounts", "accounts": ["2", "1"],
              "timeframe_months": "THREE", "attribution_window_size": "SEVEN",
              "access_token": "******"}
    config.update(top.pop("config", {}))
    return {"id": "c1", "group_id": "g", "service": "tiktok_ads", "schema": "tt_a",
            "paused": False, "sync_frequency": 1440, "daily_sync_time": "14:00",
            "schedule_type": "auto", "status": {"setup_state": "connected"}, "config": config,
            **top}


def _row(**cells: Any) -> dict[str, Any]:
    base = {"group_id": "g", "schema": "tt_a", "sync_mode": "SpecificAccounts",
            "accounts": ["1", "2"], "sync_frequency": "1440", "access_token": "env:TT_TOKEN"}
    return expand({**base, **cells})


def test_diff_of_an_unchanged_connection_is_empty_whatever_the_spelling() -> None:
    # "1440" vs 1440, accounts in another order, auth masked, run_setup_tests not state
    assert diff(_row(run_setup_tests="true"), _answer()) == ({}, {})


def test_fields_the_row_leaves_blank_are_never_drift() -> None:
    answer = _answer(paused=True, data_delay_sensitivity="HIGH",
                     config={"attribution_window_size": "TWENTY_EIGHT"})
    assert diff(_row(), answer) == ({}, {})


def test_mutable_and_immutable_changes_are_told_apart() -> None:
    desired = _row(sync_frequency="360", paused="true", accounts=["1", "3"],
                   timeframe_months="SIX")
    mutable, immutable = diff(desired, _answer())
    assert mutable == {"paused": (False, True), "sync_frequency": (1440, 360),
                       "config.accounts": (["2", "1"], ["1", "3"])}
    assert immutable == {"config.timeframe_months": ("THREE", "SIX")}
    assert format_changes({"sync_frequency": (1440, 360)}) == "sync_frequency: 1440 -> 360"


def test_daily_sync_time_counts_only_for_daily_syncs() -> None:
    answer = _answer(sync_frequency=360, daily_sync_time=None)
    assert diff(_row(sync_frequency="360", daily_sync_time="14:00"), answer) == ({}, {})
    assert diff(_row(daily_sync_time="03:00"), _answer())[0] == {
        "daily_sync_time": ("14:00", "03:00")}


def test_schema_difference_is_immutable_and_secrets_are_never_compared() -> None:
    desired = expand({"group_id": "g", "schema": "tt_b", "access_token": "env:OTHER"})
    assert "******" not in json.dumps(desired, default=str)
    assert isinstance(desired["auth"]["access_token"], type(parse_ref("env:X")))
    mutable, immutable = diff(desired, _answer(config={"schema": "tt_a"}))
    assert mutable == {} and immutable == {"config.schema": ("tt_a", "tt_b")}


def test_custom_reports_compare_as_sets_on_the_keys_the_row_sets() -> None:
    mine = [{"table_name": "b", "report_type": "auction_basic_ad_report",
             "metrics": ["spend", "clicks"]},
            {"table_name": "a", "report_type": "auction_basic_campaign_report",
             "metrics": ["spend"]}]
    theirs = [{"table_name": "a", "report_type": "auction_basic_campaign_report",
               "metrics": ["spend"], "aggregate": "daily"},
              {"table_name": "b", "report_type": "auction_basic_ad_report",
               "metrics": ["clicks", "spend"], "dimensions": []}]
    desired = {"service": "tiktok_ads", "config": {"schema": "tt_a", "custom_reports": mine}}
    assert diff(desired, _answer(config={"custom_reports": theirs})) == ({}, {})
    changed = {"config": {"schema": "tt_a", "custom_reports": mine[:1]}}
    mutable, _ = diff(changed, _answer(config={"custom_reports": theirs}))
    assert list(mutable) == ["config.custom_reports"]


def test_a_listing_item_compares_only_what_it_shows() -> None:
    listed = {"id": "c1", "service": "tiktok_ads", "schema": "tt_a", "sync_frequency": 1440}
    assert diff(_row(paused="true"), listed, known_only=True) == ({}, {})
    assert diff(_row(sync_frequency="60"), listed, known_only=True)[0] == {
        "sync_frequency": (1440, 60)}
    # a full answer without the field: it is drift (the row wants a value Fivetran lacks)
    assert diff(_row(paused="true"), listed)[0]["paused"] == (None, True)


# -- against the sandbox -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread(profile="fast", groups=GROUPS, slow_ms=60_000) as handle:
        yield handle


@pytest.fixture()
def box(sandbox: SandboxHandle) -> SandboxHandle:
    sandbox.reset()
    return sandbox


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_dict_rows(path, rows, COLUMNS)


def methods(box: SandboxHandle, since: int = 0) -> list[str]:
    return [r["method"] for r in box.ledger(since)["requests"]]


def seq(box: SandboxHandle) -> int:
    return int(box.ledger()["counts"]["requests"])


def connection(box: SandboxHandle, connection_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{box.url}/v1/connections/{connection_id}", auth=box.auth)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_plan_sorts_new_existing_drifted_and_conflicting_rows(
        tmp_path: Path, box: SandboxHandle) -> None:
    existing = [{"group_id": "decent_dropsy", "schema": f"tt_{i}", "client_ref": f"C{i}"}
                for i in range(4)]
    assert run_job(load(write_rows(tmp_path / "first.csv", existing)), box.url,
                   tmp_path / "first").exit_code is ExitCode.OK
    httpx.post(f"{box.url}/v1/connections", auth=box.auth, json={
        "service": "google_ads", "group_id": "happy_harbor", "config": {"schema": "taken"}}
               ).raise_for_status()
    rows = [*existing[:2],
            {**existing[2], "sync_frequency": "360"},              # drift
            {**existing[3], "timeframe_months": "SIX"},            # immutable: conflict
            {"group_id": "happy_harbor", "schema": "taken"},       # other service: conflict
            {"group_id": "happy_harbor", "schema": "tt_new_1"},    # create
            {"group_name": "Crimson", "schema": "tt_new_2"},       # create, by group name
            {"group_id": "quiet_quasar", "schema": "tt_bad", "sync_frequency": "7"},  # invalid
            {"group_name": "Nobody", "schema": "tt_orphan"}]       # invalid: unknown group
    sheet = write_rows(tmp_path / "plan.csv", rows)
    before = seq(box)
    done = cli("plan", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "p")
    assert done.returncode == ExitCode.ROWS_FAILED, done.stdout + done.stderr
    assert "plan: 2 create, 2 exists, 1 drift, 2 conflict, 2 invalid" in done.stdout
    plan = {int(r["source_row"]): r for r in csv_rows(tmp_path / "r" / "p" / "plan.csv")}
    assert [plan[n]["action"] for n in range(2, 11)] == [
        "exists", "exists", "drift", "conflict", "conflict", "create", "create", "invalid",
        "invalid"]
    assert plan[4]["detail"] == "sync_frequency: 1440 -> 360"
    assert "config.timeframe_months: 'THREE' -> 'SIX'" in plan[5]["detail"]
    assert "google_ads" in plan[6]["detail"]
    assert plan[8]["group_id"] == "quiet_quasar"
    assert "no group is named 'Nobody'" in plan[10]["detail"]
    assert plan[2]["client_ref"] == "C0"
    # a plan only reads: one listing per group, a GET per existing tiktok_ads connection
    assert set(methods(box, before)) == {"GET"}


def test_plan_with_nothing_to_change_exits_0_and_with_creates_exits_5(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_rows(tmp_path / "in.csv", [{"group_id": "happy_harbor", "schema": "tt_x"}])
    pending = cli("plan", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path)
    assert pending.returncode == 5, pending.stdout
    run_job(load(sheet), box.url, tmp_path / "run")
    clean = cli("plan", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path)
    assert clean.returncode == 0, clean.stdout
    assert "plan: 0 create, 1 exists, 0 drift" in clean.stdout


def test_update_patches_only_the_drift_then_plan_shows_none(
        tmp_path: Path, box: SandboxHandle) -> None:
    rows = [{"group_id": "decent_dropsy", "schema": f"tt_{i}"} for i in range(3)]
    run_job(load(write_rows(tmp_path / "in.csv", rows)), box.url, tmp_path / "first")
    rows[1] = {**rows[1], "sync_frequency": "360", "sync_mode": "SpecificAccounts",
               "accounts": "7012345678901234567;7012345678901234568"}
    changed = load(write_rows(tmp_path / "changed.csv", rows))
    before = seq(box)
    left = run_job(changed, box.url, tmp_path / "no_update")
    assert [o.status for o in left.outcomes] == [Status.EXISTS] * 3
    assert left.outcomes[1].error_code == "Drift"
    assert "sync_frequency: 1440 -> 360" in (left.outcomes[1].error_message or "")
    assert "PATCH" not in methods(box, before)
    assert methods(box, before) == ["GET"]  # a rerun without --update reads only the listing
    updated = run_job(changed, box.url, tmp_path / "update", update=True)
    assert [o.status for o in updated.outcomes] == [Status.EXISTS, Status.UPDATED, Status.EXISTS]
    assert methods(box, before).count("PATCH") == 1
    live = connection(box, updated.outcomes[1].connection_id or "")
    assert live["sync_frequency"] == 360
    assert sorted(live["config"]["accounts"]) == ["7012345678901234567", "7012345678901234568"]
    done = cli("plan", tmp_path / "changed.csv", "--sandbox-url", box.url,
               "--reports-dir", tmp_path / "r")
    assert done.returncode == 0, done.stdout
    assert "plan: 0 create, 3 exists, 0 drift, 0 conflict, 0 invalid" in done.stdout


def test_an_immutable_change_is_a_conflict_and_never_sent(
        tmp_path: Path, box: SandboxHandle) -> None:
    rows = [{"group_id": "quiet_quasar", "schema": "tt_fixed", "timeframe_months": "THREE"}]
    run_job(load(write_rows(tmp_path / "in.csv", rows)), box.url, tmp_path / "first")
    rows[0] |= {"timeframe_months": "TWELVE", "sync_frequency": "60"}
    before = seq(box)
    result = run_job(load(write_rows(tmp_path / "changed.csv", rows)), box.url,
                     tmp_path / "update", update=True)
    outcome = result.outcomes[0]
    assert outcome.status is Status.CONFLICT and result.exit_code is ExitCode.ROWS_FAILED
    assert "timeframe_months" in (outcome.error_message or "")
    assert "PATCH" not in methods(box, before)
    assert connection(box, outcome.connection_id or "")["sync_frequency"] == 1440


def apply_cli(sheet: Path, reports: Path, run_id: str, *target: str
              ) -> subprocess.CompletedProcess[str]:
    return cli("apply", sheet, *target, "--reports-dir", reports, "--run-id", run_id,
               "--log-format", "json")


def card_rows(n_cards: int, n_tokens: int = 0) -> list[dict[str, str]]:
    cards = [{"group_id": "happy_harbor", "schema": f"tt_card_{i}", "access_token": "",
              "redirect_uri": "https://agency.example/done", "client_ref": f"CARD-{i}"}
             for i in range(n_cards)]
    return cards + [{"group_id": "happy_harbor", "schema": f"tt_tok_{i}"}
                    for i in range(n_tokens)]


def test_connect_cards_refreshes_the_uri_of_rows_still_incomplete(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_rows(tmp_path / "in.csv", card_rows(2, 1))
    reports = tmp_path / "reports"
    assert apply_cli(sheet, reports, "run", "--sandbox-url", box.url).returncode == 0
    first = {r["schema"]: r for r in csv_rows(reports / "run" / "results.csv")}
    old_uri = first["tt_card_0"]["connect_card_uri"]
    assert old_uri.startswith("https://") and first["tt_tok_0"]["connect_card_uri"] == ""
    box.authorize(first["tt_card_1"]["connection_id"])
    done = cli("connect-cards", "run", "--sandbox-url", box.url, "--reports-dir", reports)
    assert done.returncode == 0, done.stdout + done.stderr
    cards = csv_rows(reports / "run" / "connect_cards.csv")
    assert [(c["row"], c["schema"], c["client_ref"]) for c in cards] == [
        ("2", "tt_card_0", "CARD-0")]
    new_uri = cards[0]["uri"]
    token = parse_qs(urlparse(new_uri).query)["auth"][0]
    assert token != parse_qs(urlparse(old_uri).query)["auth"][0]
    assert parse_qs(urlparse(new_uri).query)["redirect_uri"] == ["https://agency.example/done"]
    expires = datetime.fromisoformat(cards[0]["expires_at"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(hours=23)
    refreshed = {r["schema"]: r for r in csv_rows(reports / "run" / "results.csv")}
    assert refreshed["tt_card_0"]["connect_card_uri"] == new_uri
    assert new_uri.replace("&", "&amp;") in (reports / "run" / "report.html").read_text()


def test_status_sees_who_authorised_with_the_embedded_sandbox_state(tmp_path: Path) -> None:
    sheet = write_rows(tmp_path / "in.csv", card_rows(2, 1))
    reports = tmp_path / "reports"
    assert apply_cli(sheet, reports, "run", "--sandbox").returncode == 0
    ids = {r["schema"]: r["connection_id"] for r in csv_rows(reports / "run" / "results.csv")}
    with run_in_thread(state_path=reports / "sandbox" / "state.sqlite") as later:
        later.authorize(ids["tt_card_1"])  # the client completed the connect card
    done = cli("status", "run", "--sandbox", "--reports-dir", reports)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "setup: 2 connected, 1 incomplete" in done.stdout
    status = {r["schema"]: r for r in csv_rows(reports / "run" / "status.csv")}
    assert status["tt_card_0"]["setup_state"] == "incomplete"
    assert status["tt_card_1"]["setup_state"] == "connected"
    assert status["tt_tok_0"]["setup_tests"] == "3/3 passed"
    results = pl.read_parquet(reports / "run" / "results.parquet")
    assert dict(zip(results["schema"], results["setup_state"], strict=True)) == {
        "tt_card_0": "incomplete", "tt_card_1": "connected", "tt_tok_0": "connected"}
    summary = json.loads((reports / "run" / "summary.json").read_text())
    assert summary["setup_states"] == {"connected": 2, "incomplete": 1}
    assert "<svg" in (reports / "run" / "report.html").read_text()  # the timeline is kept


def test_rollback_deletes_only_what_the_run_created_even_across_a_kill(
        tmp_path: Path, box: SandboxHandle) -> None:
    reports = tmp_path / "reports"
    old = [{"group_id": "decent_dropsy", "schema": f"tt_old_{i}"} for i in range(2)]
    assert apply_cli(write_rows(tmp_path / "old.csv", old), reports, "before",
                     "--sandbox-url", box.url).returncode == 0
    rows = old + [{"group_id": "quiet_quasar", "schema": f"tt_new_{i}"} for i in range(4)]
    assert apply_cli(write_rows(tmp_path / "in.csv", rows), reports, "run",
                     "--sandbox-url", box.url).returncode == 0
    results = csv_rows(reports / "run" / "results.csv")
    created = {r["connection_id"] for r in results if r["status"] == "created"}
    kept = {r["connection_id"] for r in results if r["status"] == "exists"}
    assert len(created) == 4 and len(kept) == 2

    refused = cli("rollback", "run", "--sandbox-url", box.url, "--reports-dir", reports)
    assert refused.returncode == ExitCode.INPUT_ERROR
    assert "pass --yes" in refused.stderr
    slow = sorted(created)[1]
    box.script([{"fault": "slow", "method": "DELETE", "path": f"/v1/connections/{slow}"}])
    start, total = seq(box), box.health()["connections"]
    killed = subprocess.Popen(
        [sys.executable, "-m", "batch_provisioner", "rollback", "run", "--yes",
         "--concurrency", "1", "--sandbox-url", box.url, "--reports-dir", str(reports)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ENV},
        cwd=ROOT)
    try:
        _wait_until_deleted(box, start, total, slow)  # it landed; its answer is held back
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    finished = cli("rollback", "run", "--yes", "--sandbox-url", box.url,
                   "--reports-dir", reports)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = {r["connection_id"]: r for r in csv_rows(reports / "run" / "rollback" /
                                                         "results.csv")}
    assert set(report) == created
    assert {r["status"] for r in report.values()} == {"rolled_back"}
    assert report[slow]["error_message"].startswith("already gone (404)")
    deletes = [r for r in box.ledger(start)["requests"] if r["method"] == "DELETE"]
    assert {r["path"].rsplit("/", 1)[1] for r in deletes} == created
    assert sum(1 for r in deletes if r["status"] == 200) == 3  # the slow one's answer was lost
    listed = httpx.get(f"{box.url}/v1/groups/decent_dropsy/connections", auth=box.auth)
    assert {c["id"] for c in listed.json()["data"]["items"]} == kept
    final = {r["connection_id"]: r["status"] for r in csv_rows(reports / "run" /
                                                                 "results.csv")}
    assert final == {**dict.fromkeys(created, "rolled_back"), **dict.fromkeys(kept, "exists")}
    again = cli("rollback", "run", "--yes", "--sandbox-url", box.url, "--reports-dir", reports)
    assert again.returncode == 0 and "0 deleted now, 4 rolled back earlier" in again.stdout


def _wait_until_deleted(box: SandboxHandle, start: int, total: int, slow: str) -> None:
    """Until the slow DELETE has arrived and every DELETE so far has been applied."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        deletes = [r for r in box.ledger(start)["requests"] if r["method"] == "DELETE"]
        if (any(r["path"].endswith(slow) for r in deletes)
                and box.health()["connections"] == total - len(deletes)):
            return
        time.sleep(0.05)
    raise AssertionError("the rollback never reached the slow DELETE")


def test_group_names_resolve_and_unknown_or_ambiguous_ones_fail(
        tmp_path: Path, box: SandboxHandle) -> None:
    rows = [{"group_name": "blue fin", "schema": "tt_named"},
            {"group_name": "Blue Fen", "schema": "tt_typo"},
            {"group_name": "Twins", "schema": "tt_twins"}]
    sheet = write_rows(tmp_path / "names.csv", rows)
    planned = cli("plan", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
                  "--run-id", "p")
    assert planned.returncode == ExitCode.ROWS_FAILED
    plan = csv_rows(tmp_path / "r" / "p" / "plan.csv")
    assert [(p["action"], p["group_id"]) for p in plan] == [
        ("create", "happy_harbor"), ("invalid", ""), ("invalid", "")]
    assert "candidates: Blue Fin" in plan[1]["detail"]
    assert "2 groups are named 'Twins'" in plan[2]["detail"]
    result = run_job(load(sheet), box.url, tmp_path / "apply")
    assert [o.status for o in result.outcomes] == [Status.CREATED, Status.FAILED, Status.FAILED]
    assert result.outcomes[0].group_id == "happy_harbor"
    assert result.outcomes[1].error_code == "NotFound_Group"
    assert result.outcomes[2].error_code == "Ambiguous_Group"
    assert "use group_id instead" in (result.outcomes[2].error_message or "")


def test_run_id_commands_refuse_an_unknown_run(tmp_path: Path) -> None:
    for command in ("status", "connect-cards", "rollback"):
        done = cli(command, "nope", "--reports-dir", tmp_path, "--sandbox-url",
                   "http://127.0.0.1:9")
        assert done.returncode == ExitCode.INPUT_ERROR
        assert "no run 'nope'" in done.stderr


def test_a_resumed_update_whose_patch_landed_is_updated_not_created(
        tmp_path: Path, box: SandboxHandle) -> None:
    rows = [{"group_id": "decent_dropsy", "schema": "tt_patched"}]
    first = run_job(load(write_rows(tmp_path / "in.csv", rows)), box.url, tmp_path / "first")
    connection_id = first.outcomes[0].connection_id
    run_dir = tmp_path / "crashed"
    run_dir.mkdir()
    (run_dir / "journal.jsonl").write_text(json.dumps(  # the PATCH went out, then a crash
        {"type": "start", "row": 2, "key": ["decent_dropsy", "tt_patched"], "op": "update"})
        + "\n")
    httpx.patch(f"{box.url}/v1/connections/{connection_id}", auth=box.auth,
                json={"sync_frequency": 60}).raise_for_status()
    rows[0]["sync_frequency"] = "60"
    resumed = run_job(load(write_rows(tmp_path / "changed.csv", rows)), box.url, run_dir,
                      update=True)
    assert resumed.outcomes[0].status is Status.UPDATED and resumed.outcomes[0].reconciled


def test_wrong_credentials_stop_plan_and_rollback_with_exit_3_and_delete_nothing(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_rows(tmp_path / "in.csv", [{"group_id": "happy_harbor", "schema": "tt_keep"}])
    assert run_job(load(sheet), box.url, tmp_path / "reports" / "run").exit_code is ExitCode.OK
    bad = {**os.environ, **ENV, "FIVETRAN_API_KEY": "wrong", "FIVETRAN_API_SECRET": "nope"}
    for args in (["plan", str(sheet)], ["rollback", "run", "--yes"]):
        done = subprocess.run(
            [sys.executable, "-m", "batch_provisioner", *args, "--sandbox-url", box.url,
             "--reports-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=120, env=bad, cwd=ROOT)
        assert done.returncode == ExitCode.FATAL_API, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "nope" not in done.stdout + done.stderr
    assert box.health()["connections"] == 1
    rolled = csv_rows(tmp_path / "reports" / "run" / "rollback" / "results.csv")
    assert [r["status"] for r in rolled] == ["failed"]


def test_regression_group_name_and_group_id_rows_for_one_key_are_not_both_sent(
        tmp_path: Path) -> None:
    sheet = tmp_path / "dup.csv"
    sheet.write_text("group_id,group_name,schema,sync_mode,access_token\n"
                     "decent_dropsy,,tt_dup,AllAccounts,env:TT_TOKEN\n"
                     ",Acme Retail,tt_dup,AllAccounts,env:TT_TOKEN\n")
    prepared = load(sheet)
    with run_in_thread(profile="fast") as sandbox:
        result = run_job(prepared, sandbox.url, tmp_path / "run")
        made = creations(sandbox.ledger())
    assert [o.status for o in result.outcomes] == [Status.CREATED, Status.FAILED]
    assert result.outcomes[1].error_code == "Duplicate_Key"
    assert "row 2" in (result.outcomes[1].error_message or "")
    assert made == {("decent_dropsy", "tt_dup"): 1}
