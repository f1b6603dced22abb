"""The last lines of every command say what happened and the next command to run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import ENV, cli, write_dict_rows, write_sheet

ROOT = Path(__file__).resolve().parents[1]


def next_commands(stdout: str) -> list[str]:
    return [line.removeprefix("next: ").split("   #")[0] for line in stdout.splitlines()
            if line.startswith("next: ")]


def run_printed(command: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    """Run a ``next:`` line exactly as printed (batch-provisioner is this checkout's CLI)."""
    words = shlex.split(command)
    assert words[0] == "batch-provisioner"
    return subprocess.run([sys.executable, "-m", "batch_provisioner", *words[1:]],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          stdin=subprocess.DEVNULL, env={**os.environ, **ENV, **(env or {})})


def test_after_exit_4_the_last_lines_give_the_resume_command_that_works_as_printed(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 4)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "d1", "--deadline", "0s")
    assert done.returncode == 4, done.stderr
    assert "rows to fix" not in done.stdout  # nothing failed: it is a resume, not a fix
    assert "stopped: the run's deadline has passed" in done.stdout
    [resume] = next_commands(done.stdout)
    assert "--resume d1" in resume and "--sandbox-url" in resume
    assert done.stdout.rstrip().endswith("exit code 4 (interrupted)")
    again = run_printed(resume)
    assert again.returncode == 0, again.stderr
    assert len(box.ledger()["creates"]) == 4


def test_after_a_401_the_last_lines_give_the_cause_and_the_variables_to_check(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2)
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", "apply", str(sheet),
                           "--api-url", box.url, "--reports-dir", str(tmp_path / "r"),
                           "--run-id", "bad", "--yes", "--log-format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, **ENV, "FIVETRAN_API_KEY": "wrong",
                               "FIVETRAN_API_SECRET": "wrong"})
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and "401" in errors[-1] and "FIVETRAN_API_KEY" in errors[-1]
    assert any("--resume bad" in c for c in next_commands(done.stdout))


def test_the_failed_rows_file_is_named_only_when_rows_failed(tmp_path: Path,
                                                             box: SandboxHandle) -> None:
    good = write_sheet(tmp_path / "good.csv", 2)
    done = cli("apply", good, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r")
    assert done.returncode == 0 and "failed_rows.csv" not in done.stdout
    assert any(c.startswith("batch-provisioner status ") for c in next_commands(done.stdout))
    bad = write_dict_rows(tmp_path / "bad.csv", [
        {"group_id": "decent_dropsy", "schema": "tt_ok"},
        {"group_id": "no_such_group", "schema": "tt_lost"}],
        ["group_id", "schema", "sync_mode", "sync_frequency", "access_token"])
    done = cli("apply", bad, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r")
    assert done.returncode == 1
    assert "1 rows to fix:" in done.stdout and "failed_rows.csv" in done.stdout


def test_connect_card_rows_point_to_the_connect_cards_command(tmp_path: Path,
                                                              box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3, connect_card_every=3)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "cc")
    assert done.returncode == 0, done.stderr
    assert "1 connect-card rows wait for their clients" in done.stdout
    cards = [c for c in next_commands(done.stdout) if " connect-cards " in c]
    assert cards == [f"batch-provisioner connect-cards cc --sandbox-url {box.url} "
                     f"--reports-dir {tmp_path / 'r'}"]
    assert run_printed(cards[0]).returncode == 0


def test_validate_and_plan_end_with_the_next_step(tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 8)
    done = cli("validate", sheet, "--reports-dir", tmp_path / "r")
    assert done.returncode == 0
    assert next_commands(done.stdout) == [f"batch-provisioner plan {sheet} --sandbox "
                                          f"--reports-dir {tmp_path / 'r'}"]
    planned = cli("plan", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r")
    assert planned.returncode == 5
    assert "apply would send 8 creates" in planned.stdout
    [apply] = next_commands(planned.stdout)
    assert apply.startswith(f"batch-provisioner apply {sheet} --limit 5 --sandbox-url")
    assert planned.stdout.rstrip().endswith("exit code 5 (changes pending)")
