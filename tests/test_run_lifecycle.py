"""Crash, kill, deadline and resume; the failed-rows round trip; the run lock."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_provisioner.run.journal import Journal, load
from batch_provisioner.run.lock import RunLock
from batch_provisioner.sandbox import SandboxHandle, run_in_process
from tests.apply_helpers import ENV, creations, write_sheet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_process(profile="fast", groups={"decent_dropsy": "Acme",
                                                "happy_harbor": "Blue Fin",
                                                "quiet_quasar": "Crimson"}) as handle:
        yield handle


@pytest.fixture()
def box(sandbox: SandboxHandle) -> SandboxHandle:
    sandbox.reset()
    return sandbox


def apply_cmd(sheet: Path, box: SandboxHandle, reports: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batch_provisioner", "apply", str(sheet), "--sandbox-url",
            box.url, "--reports-dir", str(reports), "--log-format", "json", *extra]


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def results(reports: Path, run_id: str) -> pl.DataFrame:
    return pl.read_csv(reports / run_id / "results.csv", infer_schema=False)


def test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 200, connect_card_every=9)
    reports = tmp_path / "reports"
    rng = random.Random(20261125)
    kills = 0
    for _ in range(10):  # ten seeded kill points
        process = subprocess.Popen(apply_cmd(sheet, box, reports, "--run-id", "migration"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, **ENV}, cwd=ROOT)
        time.sleep(rng.uniform(1.2, 2.4))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    final = run(apply_cmd(sheet, box, reports, "--resume", "migration"))
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 5, "the kills came too late to interrupt anything"
    table = results(reports, "migration")
    assert table.height == 200
    assert set(table["status"].to_list()) == {"created"}
    made = creations(box.ledger())
    assert all(n == 1 for n in made.values()), {k: n for k, n in made.items() if n > 1}
    assert set(made) == set(zip(table["group_id"].to_list(), table["schema"].to_list(),
                                strict=True))
    assert table["connection_id"].n_unique() == 200


def test_deadline_then_resume_completes_in_two_invocations(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 300)
    reports = tmp_path / "reports"
    first = run(apply_cmd(sheet, box, reports, "--run-id", "cron", "--deadline", "4s"))
    assert first.returncode == 4, first.stderr[-2000:]
    partial = results(reports, "cron")
    assert partial.height == 300
    done_first = partial.filter(pl.col("status") == "created").height
    assert 0 < done_first < 300
    assert set(partial["status"].to_list()) == {"created", "not_attempted"}
    summary = json.loads((reports / "cron" / "summary.json").read_text())
    assert summary["exit_code"] == 4 and summary["stop_reason"] == "deadline"
    second = run(apply_cmd(sheet, box, reports, "--resume", "cron"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert set(results(reports, "cron")["status"].to_list()) == {"created"}
    made = creations(box.ledger())
    assert len(made) == 300 and set(made.values()) == {1}


def test_resume_with_a_different_input_is_refused_unless_forced(
        tmp_path: Path, box: SandboxHandle) -> None:
    reports = tmp_path / "reports"
    sheet = write_sheet(tmp_path / "in.csv", 3)
    assert run(apply_cmd(sheet, box, reports, "--run-id", "r1")).returncode == 0
    write_sheet(sheet, 4)
    refused = run(apply_cmd(sheet, box, reports, "--resume", "r1"))
    assert refused.returncode == 2
    assert "different input" in refused.stderr and "Traceback" not in refused.stderr
    forced = run(apply_cmd(sheet, box, reports, "--resume", "r1", "--force"))
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert results(reports, "r1")["status"].to_list() == ["created"] * 4


def test_failed_rows_file_round_trips_after_fixing(tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 12, connect_card_every=4)
    frame = pl.read_csv(sheet, infer_schema=False).with_row_index()
    frame = frame.with_columns(
        pl.when(pl.col("index") == 1).then(pl.lit("Bad Schema!")).otherwise(pl.col("schema"))
        .alias("schema"),
        pl.when(pl.col("index") == 2).then(pl.lit("no_such_group")).otherwise(pl.col("group_id"))
        .alias("group_id")).drop("index")
    frame.write_csv(sheet)
    reports = tmp_path / "reports"
    first = run(apply_cmd(sheet, box, reports, "--run-id", "first"))
    assert first.returncode == 1
    failed_path = reports / "first" / "failed_rows.csv"
    failed = pl.read_csv(failed_path, infer_schema=False)
    assert failed["source_row"].to_list() == ["3", "4"]
    assert "schema" in failed["error"][0]
    assert "does not exist" in failed["error"][1]
    fixed = failed.with_columns(
        pl.when(pl.col("schema") == "Bad Schema!").then(pl.lit("fixed_schema"))
        .otherwise(pl.col("schema")).alias("schema"),
        pl.when(pl.col("group_id") == "no_such_group").then(pl.lit("happy_harbor"))
        .otherwise(pl.col("group_id")).alias("group_id"))
    fixed.write_csv(failed_path)
    second = run(apply_cmd(failed_path, box, reports, "--run-id", "second"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert results(reports, "second")["status"].to_list() == ["created", "created"]
    made = creations(box.ledger())
    assert len(made) == 12 and set(made.values()) == {1}


def test_a_live_lock_refuses_a_second_run_and_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLock(run_dir) as lock:
        assert lock.took_over_from is None
        with pytest.raises(Exception, match="already running"):
            RunLock(run_dir).acquire()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (run_dir / "lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname()[1]}))
    lock = RunLock(run_dir).acquire()
    assert lock.took_over_from == {"pid": int(dead.stdout), "host": os.uname()[1]}
    lock.release()
    assert not (run_dir / "lock").exists()


def test_a_torn_last_journal_line_is_tolerated(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "journal.jsonl").write_text(
        '{"type": "run", "input_sha256": "x"}\n'
        '{"type": "start", "row": 2, "key": ["g", "s"]}\n'
        '{"type": "outcome", "row": 2, "status": "created", "final": true}\n'
        '{"type": "start", "row": 3, "key": ["g", "t"]}\n'
        '{"type": "outc')
    state = load(run_dir)
    assert state.torn_lines == 1
    assert set(state.outcomes) == {("g", "s")} and set(state.started) == {("g", "t")}
    assert state.started[("g", "t")].row == 3  # keyed by connection, the row kept for display


def test_regression_a_torn_tail_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "journal.jsonl").write_text(
        '{"type": "start", "row": 3, "key": ["g", "t"], "op": "create", "t": "x"}\n'
        '{"type": "outc')
    journal = Journal(run_dir)
    journal.header("run", tmp_path / "in.csv", "sha-after-kill", "apply")
    journal.close()
    state = load(run_dir)
    assert state.header is not None and state.header["input_sha256"] == "sha-after-kill"
    assert state.torn_lines == 1 and set(state.started) == {("g", "t")}


def test_ctrl_c_finishes_in_flight_rows_writes_the_report_and_exits_4(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 200)
    reports = tmp_path / "reports"
    with run_in_process(profile="fast", faults="latency_ms=50..80") as slow:
        process = subprocess.Popen(apply_cmd(sheet, slow, reports, "--run-id", "int"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **ENV}, cwd=ROOT)
        time.sleep(3.0)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
        made = creations(slow.ledger())
    assert process.returncode == 4, err[-2000:]
    assert "Traceback" not in err
    table = results(reports, "int")
    statuses = table["status"].value_counts()
    counts = dict(zip(statuses["status"].to_list(), statuses["count"].to_list(), strict=True))
    assert set(counts) == {"created", "not_attempted"} and 0 < counts["created"] < 200
    # every in-flight create finished and was recorded: nothing created is missing
    assert counts["created"] == len(made) and set(made.values()) == {1}
    summary = json.loads((reports / "int" / "summary.json").read_text())
    assert summary["exit_code"] == 4 and summary["stop_reason"] == "interrupted"
