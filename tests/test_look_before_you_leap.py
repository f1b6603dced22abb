"""Look before you leap: the estimate, the question before sending, and canaries.

``--rows`` and ``--limit`` run a subset; the rest are ``not_attempted`` with a reason and a
resume carries on. ``plan`` and ``apply`` say what they would send and how long the budgets
make it take.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import batch_provisioner as bp
from batch_provisioner.errors import InputError
from batch_provisioner.models import Action, ActionKind, Status
from batch_provisioner.run.estimate import describe_budget, estimate, format_duration
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.settings import Budget
from tests.apply_helpers import ENV, cli, csv_rows, load, write_sheet


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


# -- the estimate -----------------------------------------------------------------------------


def test_the_estimate_names_the_budget_that_binds(tmp_path: Path) -> None:
    prepared = load(write_sheet(tmp_path / "in.csv", 600))  # every row runs setup tests
    actions = [Action(ActionKind.CREATE, r) for r in prepared.requests]
    budgets = [Budget("calls", 20_000, 3600.0, "all"), Budget("tests_m", 250, 60.0, "setup_test"),
               Budget("tests_h", 2_500, 3600.0, "setup_test")]
    figures = estimate(actions, budgets)
    assert (figures.creates, figures.updates, figures.calls, figures.setup_tests) == (
        600, 0, 600, 600)
    assert figures.seconds == 120.0 and figures.binding == "250 setup tests/min"
    assert figures.describe() == ("600 creates (600 run setup tests), 0 updates, 600 calls: "
                                  "≥ 2 min at 250 setup tests/min")
    many = estimate(actions * 20, budgets)  # 12,000 setup tests: the hourly budget binds
    assert many.binding == "2,500 setup tests/h" and many.describe().endswith(
        "≥ 4 h at 2,500 setup tests/h")


def test_durations_and_budgets_read_as_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (12, 61, 3600, 15000, 200_000)] == [
        "12 s", "2 min", "1 h", "4 h 10 min", "2 days 7 h"]
    # after "≥" a bound rounds down: 74 s (1,500 creates at 20 a second) is at least 1 min
    assert [format_duration(s, at_least=True) for s in (12, 74, 119.9, 3600, 15000)] == [
        "12 s", "1 min", "1 min", "1 h", "4 h 10 min"]
    assert describe_budget(Budget("c", 20, 60.0, "create")) == "20 creates/min"
    assert describe_budget(Budget("x", 5, 90.0, "all")) == "5 calls per 90 s"


def test_plan_and_apply_carry_the_estimate_at_the_budgets_in_force(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 6)
    planned = bp.plan(sheet, sandbox_url=box.url, reports_dir=tmp_path / "r")
    assert planned.estimate is not None and planned.estimate.creates == 6
    assert planned.estimate.binding is not None  # the sandbox's adopted budgets
    applied = bp.apply(sheet, sandbox_url=box.url, reports_dir=tmp_path / "r", run_id="a1")
    assert applied.estimate is not None and applied.estimate.creates == 6
    summary = json.loads((tmp_path / "r" / "a1" / "summary.json").read_text())
    assert summary["estimate"]["creates"] == 6


# -- the question before sending --------------------------------------------------------------


def test_a_declined_run_sends_nothing_and_a_resume_carries_on(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 4)
    asked: list[bp.Estimate] = []

    async def say_no(preview: bp.Estimate) -> bool:
        asked.append(preview)
        return False

    result = anyio.run(lambda: bp.apply_async(sheet, sandbox_url=box.url, run_id="no",
                                              reports_dir=tmp_path / "r", confirm=say_no))
    assert [p.creates for p in asked] == [4]
    assert box.ledger()["creates"] == []
    assert {o.error_code for o in result.outcomes} == {"declined"}
    assert int(result.exit_code) == 4
    again = bp.apply(sheet, sandbox_url=box.url, run_id="no", reports_dir=tmp_path / "r",
                     resume=True)
    assert {o.status for o in again.outcomes} == {Status.CREATED}


# -- canaries ---------------------------------------------------------------------------------


def test_rows_runs_only_the_rows_named_and_a_resume_runs_the_rest(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 12)  # rows 2..13
    first = bp.apply(sheet, sandbox_url=box.url, run_id="c1", reports_dir=tmp_path / "r",
                     rows="2-4,13")
    by_row = {o.row: o for o in first.outcomes}
    assert sorted(r for r, o in by_row.items() if o.status is Status.CREATED) == [2, 3, 4, 13]
    held = [o for o in first.outcomes if o.status is Status.NOT_ATTEMPTED]
    assert len(held) == 8 and {o.error_code for o in held} == {"not_selected"}
    assert all("--rows 2-4,13" in (o.error_message or "") and "--resume c1" in (
        o.error_message or "") for o in held)
    assert int(first.exit_code) == 4
    rest = bp.apply(sheet, sandbox_url=box.url, run_id="c1", reports_dir=tmp_path / "r",
                    resume=True)
    assert {o.status for o in rest.outcomes} == {Status.CREATED}
    assert int(rest.exit_code) == 0
    assert all(c["creations"] == 1 for c in box.ledger()["creates"])


def test_limit_sends_at_most_n_rows(tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 10)
    result = bp.apply(sheet, sandbox_url=box.url, run_id="l1", reports_dir=tmp_path / "r",
                      limit=3)
    assert len(box.ledger()["creates"]) == 3
    assert [o.status for o in result.outcomes].count(Status.NOT_ATTEMPTED) == 7
    assert result.estimate is not None and result.estimate.creates == 3


def test_a_failed_canary_row_wins_over_the_rows_held_back(tmp_path: Path,
                                                          box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 4, groups=("no_such_group",))
    result = bp.apply(sheet, sandbox_url=box.url, run_id="f1", reports_dir=tmp_path / "r",
                      limit=1)
    assert int(result.exit_code) == 1


@pytest.mark.parametrize(("rows", "message"), [
    ("2-x", "is not a row number or a range"),
    ("9-3", "runs backwards"),
    ("500-600", "the sheet has no row 500-600 .its rows are 2-4"),
    ("2,100", "the sheet has no row 100 "),
    ("2-1000", "the sheet has no row 5-1000 "),
    (" , ", "name at least one row"),
])
def test_a_bad_rows_selection_is_an_input_error(tmp_path: Path, rows: str, message: str) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3)
    with pytest.raises(InputError, match=message):
        bp.apply(sheet, sandbox=True, reports_dir=tmp_path / "r", rows=rows)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("journal.jsonl"))


def test_canary_flags_on_the_command_line(tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 5)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "k1", "--rows", "2-3", "--limit", "1")
    assert done.returncode == 4, done.stderr
    rows = csv_rows(tmp_path / "r" / "k1" / "results.csv")
    assert [r["status"] for r in rows].count("created") == 1
    assert "apply" in done.stdout and "--resume k1" in done.stdout
    bad = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
              "--rows", "x")
    assert bad.returncode == 2 and "--rows" in bad.stderr


# -- the question on a terminal ---------------------------------------------------------------


def _apply_on_a_terminal(args: list[str], answer: str | None, env: dict[str, str]
                         ) -> tuple[int, str, str]:
    """Run apply with stdin and stderr on a pseudo-terminal; answer the question if asked."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "batch_provisioner", *args], stdin=slave,
                            stderr=slave, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **env, "COLUMNS": "200"},
                            cwd=Path(__file__).resolve().parents[1],
                            start_new_session=True)  # no controlling terminal: stdin's is used
    os.close(slave)
    seen = ""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096).decode(errors="replace")
            except OSError:
                break
            seen += chunk
            if answer is not None and not answered and "Send " in seen and "[y/N]" in seen:
                os.write(master, (answer + "\n").encode())
                answered = True
        elif proc.poll() is not None:
            break
    stdout, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, stdout, seen


REAL_API_ENV = {**ENV, "FIVETRAN_API_KEY": "sandbox", "FIVETRAN_API_SECRET": "sandbox"}


def test_on_a_terminal_apply_to_a_real_api_asks_first_and_no_sends_nothing(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3)
    code, stdout, terminal = _apply_on_a_terminal(
        ["apply", str(sheet), "--api-url", box.url, "--reports-dir", str(tmp_path / "r"),
         "--run-id", "t1"], "n", REAL_API_ENV)
    assert "apply: sending 3 creates" in terminal
    assert "Send 3 requests to the Fivetran API? [y/N]" in terminal
    assert box.ledger()["creates"] == [] and code == 4
    assert "--resume t1" in stdout
    code, _, terminal = _apply_on_a_terminal(
        ["apply", str(sheet), "--api-url", box.url, "--reports-dir", str(tmp_path / "r"),
         "--resume", "t1"], "y", REAL_API_ENV)
    assert code == 0 and len(box.ledger()["creates"]) == 3


def test_yes_skips_the_question_and_without_a_terminal_apply_proceeds_and_logs_it(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2)
    code, _, terminal = _apply_on_a_terminal(
        ["apply", str(sheet), "--api-url", box.url, "--reports-dir", str(tmp_path / "r"),
         "--yes"], None, REAL_API_ENV)
    assert code == 0 and "[y/N]" not in terminal
    box.reset()
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", "apply", str(sheet),
                           "--api-url", box.url, "--reports-dir", str(tmp_path / "r2"),
                           "--log-format", "json"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, **REAL_API_ENV})
    assert done.returncode == 0, done.stderr
    assert '"run.unattended"' in done.stderr and len(box.ledger()["creates"]) == 2


def test_a_rehearsal_on_a_terminal_does_not_ask(tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2)
    code, _, terminal = _apply_on_a_terminal(
        ["apply", str(sheet), "--sandbox-url", box.url, "--reports-dir", str(tmp_path / "r")],
        None, ENV)
    assert code == 0 and "[y/N]" not in terminal and "apply: sending 2 creates" in terminal


def test_ctrl_c_at_the_question_ends_the_run_at_once_and_sends_nothing(
        tmp_path: Path, box: SandboxHandle) -> None:
    """Review finding: the question was read in a thread; Ctrl-C left it waiting for a line."""
    sheet = write_sheet(tmp_path / "in.csv", 3)
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_provisioner", "apply", str(sheet), "--api-url", box.url,
         "--reports-dir", str(tmp_path / "r"), "--run-id", "q1"],
        stdin=slave, stderr=slave, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **REAL_API_ENV}, cwd=Path(__file__).resolve().parents[1],
        start_new_session=True)
    os.close(slave)
    seen = ""
    deadline = time.monotonic() + 60
    while "[y/N]" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 4096).decode(errors="replace")
    assert "[y/N]" in seen
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    took = time.monotonic() - asked
    os.close(master)
    assert proc.returncode == 4 and took < 10, (proc.returncode, took, stdout)
    assert box.ledger()["creates"] == []
    assert "--resume q1" in stdout
