"""apply against the sandbox: idempotent reruns, faults, pacing, concurrency, fatal stops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Status
from batch_provisioner.sandbox import run_in_process, run_in_thread
from tests.apply_helpers import creations, load, run_job, settings, write_sheet

ROOT = Path(__file__).resolve().parents[1]
FAULTS = "429=0.05,503=0.05,reset=0.03,drop_after_commit=0.05,slow=0.02"


def test_second_apply_reports_every_row_exists_and_creates_nothing(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 30, connect_card_every=5))
    with run_in_thread(profile="fast") as sandbox:
        first = run_job(sheet, sandbox.url, tmp_path / "run1")
        assert [o.status for o in first.outcomes] == [Status.CREATED] * 30
        assert first.exit_code is ExitCode.OK
        first_ledger = sandbox.ledger()
        second = run_job(sheet, sandbox.url, tmp_path / "run2")
        ledger = sandbox.ledger()
    after_first = first_ledger["counts"]["creations"]
    second_run = ledger["requests"][len(first_ledger["requests"]):]
    assert [o.status for o in second.outcomes] == [Status.EXISTS] * 30
    assert [o.connection_id for o in second.outcomes] == [o.connection_id for o in first.outcomes]
    assert after_first == 30 and ledger["counts"]["creations"] == 30
    # 3 groups: the groups and the account listing (cheaper than 3 group listings), no POST
    assert [(r["method"], r["path"]) for r in second_run] == [
        ("GET", "/v1/groups"), ("GET", "/v1/connections")]


def test_connect_card_rows_get_a_uri_and_run_no_setup_tests(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 6, connect_card_every=3))
    with run_in_thread(profile="fast") as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run")
    cards = [o for o in result.outcomes if o.connect_card_uri]
    assert [o.row for o in cards] == [2, 5]
    assert all(o.setup_state == "incomplete" for o in cards)
    assert all(o.setup_state == "connected" for o in result.outcomes if not o.connect_card_uri)


def test_regression_the_ideal_counts_setup_tests_the_sheet_leaves_to_fivetrans_default(
        tmp_path: Path) -> None:
    # 300 creates with auth and no run_setup_tests column: Fivetran runs their setup tests
    # (its default is true), 250 per (fast) minute, so the budget bound is one window. The
    # summary said 0.0 s (it counted only an explicit true) while the gate waited for it.
    sheet = load(write_sheet(tmp_path / "in.csv", 300))
    assert all("run_setup_tests" not in r.payload for r in sheet.requests)
    with run_in_thread(profile="fast", create_limit=0) as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run")
    assert result.exit_code is ExitCode.OK
    assert result.summary["ideal_seconds"] == 1.0
    assert result.summary["wall_seconds"] >= 1.0


# One seed here; tests/test_fault_matrix_small.py runs a slice of the matrix and
# tests/benchmarks/fault_matrix.py the whole of it (the suite must stay under 10 minutes).
@pytest.mark.parametrize("seed", [11])
def test_faults_lose_nothing_and_duplicate_nothing(tmp_path: Path, seed: int) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 300, connect_card_every=7))
    with run_in_process(profile="fast", faults=FAULTS, seed=seed, slow_ms=1500) as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run",
                         client=settings(16, read_timeout=1.0, max_attempts=8))
        ledger = sandbox.ledger()
    statuses = {o.status for o in result.outcomes}
    assert statuses <= {Status.CREATED, Status.EXISTS}, [
        (o.row, o.status, o.error_message) for o in result.outcomes
        if o.status not in (Status.CREATED, Status.EXISTS)]
    made = creations(ledger)
    keys = {(r.group_id, r.schema) for r in sheet.requests}
    assert set(made) == keys and all(n == 1 for n in made.values())
    assert result.summary["reconciliations"] > 0  # the faults did hit lost answers
    faults = {r["fault"] for r in ledger["requests"] if r["fault"]}
    assert {"drop_after_commit", "503", "429"} <= faults


def test_no_429_and_in_flight_within_concurrency_without_faults(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 120))
    with run_in_process(profile="fast") as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run", client=settings(4))
        ledger = sandbox.ledger()
    assert result.exit_code is ExitCode.OK
    assert ledger["counts"]["429"] == 0, "our own pacing overran a budget"
    assert max(r["in_flight"] for r in ledger["requests"]) <= 4
    # 120 creates at 20 per (fast) second take at least 5 windows
    assert result.summary["wall_seconds"] >= 5.0


def test_wrong_credentials_stop_the_run_with_exit_3(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 10))
    with run_in_thread(profile="fast", api_key="other", api_secret="other-secret") as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run", adopt=False)
        ledger = sandbox.ledger()
    assert result.exit_code is ExitCode.FATAL_API
    assert {o.status for o in result.outcomes} == {Status.NOT_ATTEMPTED}
    assert all("fatal" in (o.error_message or "") for o in result.outcomes)
    assert not [r for r in ledger["requests"] if r["method"] == "POST"]


def test_unknown_group_fails_only_its_rows(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 6, groups=("decent_dropsy", "no_such_group")))
    with run_in_thread(profile="fast") as sandbox:
        result = run_job(sheet, sandbox.url, tmp_path / "run")
    by_group = {(o.group_id, o.status) for o in result.outcomes}
    assert by_group == {("decent_dropsy", Status.CREATED), ("no_such_group", Status.FAILED)}
    failed = [o for o in result.outcomes if o.status is Status.FAILED]
    assert all(o.error_code == "NotFound_Group" for o in failed)
    assert result.exit_code is ExitCode.ROWS_FAILED


def test_the_readme_demo_command_runs_twice_idempotently(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "batch_provisioner", "apply",
               str(ROOT / "input_templates" / "advertiser_groups.xlsx"), "--sandbox",
               "--reports-dir", str(tmp_path)]
    runs = []
    for run_id in ("first", "second"):
        done = subprocess.run([*command, "--run-id", run_id], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        runs.append(json.loads((tmp_path / run_id / "summary.json").read_text()))
    assert runs[0]["counts"]["created"] == 3
    assert runs[1]["counts"]["exists"] == 3 and runs[1]["counts"]["created"] == 0
    assert runs[1]["write_attempts"] == 0
