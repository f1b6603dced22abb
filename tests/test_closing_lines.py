"""The last lines of every command say what happened and the next command to run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import ENV, cli, csv_rows, write_dict_rows, write_sheet

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
    assert "to fix, each with its error" not in done.stdout  # a resume, not a fix
    [stopped] = [line for line in done.stdout.splitlines() if line.startswith("stopped: ")]
    assert "deadline" in stopped
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
    assert "1 row to fix, each with its error in" in done.stdout
    assert "failed_rows.csv" in done.stdout


def test_the_printed_command_reruns_the_fixed_failed_rows_file_with_its_secret_files(
        tmp_path: Path, box: SandboxHandle) -> None:
    """failed_rows.csv lives in the run's folder: its relative ``file:`` secrets and the
    sheet's folder they must stay in still hold when it is fed back as printed."""
    box.reset()
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "t.txt").write_text("tok-rerun-0123456789\n")
    sheet = write_dict_rows(tmp_path / "in.csv", [
        {"group_id": "decent_dropsy", "schema": "tt_fine", "access_token": "file:tokens/t.txt"},
        {"group_id": "decent_dropsy", "schema": "tt_typo", "access_token": "file:tokens/t.txt",
         "sync_frequency": "1441"}],
        ["group_id", "schema", "sync_mode", "sync_frequency", "access_token"])
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "first")
    assert done.returncode == 1, done.stdout + done.stderr
    rerun = [c for c in next_commands(done.stdout) if "failed_rows.csv" in c]
    assert len(rerun) == 1 and "--secrets-dir" in rerun[0]
    failed = tmp_path / "r" / "first" / "failed_rows.csv"
    rows = csv_rows(failed)
    assert [r["schema"] for r in rows] == ["tt_typo"]
    failed.write_text(failed.read_text().replace(",1441,", ",1440,"))
    again = run_printed(rerun[0])
    assert again.returncode == 0, again.stdout + again.stderr
    made = {(c["schema"], c["creations"]) for c in box.ledger()["creates"]}
    assert made == {("tt_fine", 1), ("tt_typo", 1)}  # each once: the fixed row, not the other


def test_connect_card_rows_point_to_the_connect_cards_command(tmp_path: Path,
                                                              box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3, connect_card_every=3)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "cc")
    assert done.returncode == 0, done.stderr
    assert "1 connect-card row waits for its client" in done.stdout
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
    assert planned.stdout.rstrip().endswith("exit code 5 (changes_pending)")  # ExitCode's name


def test_the_resume_command_repeats_the_flags_that_change_what_apply_does(
        tmp_path: Path, box: SandboxHandle) -> None:
    """Review finding: a pasted resume without --update silently left drift alone."""
    sheet = write_sheet(tmp_path / "in.csv", 3)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "u1", "--update", "--force", "--concurrency", "3", "--limit", "1",
               "--max-wait", "10m")
    assert done.returncode == 4, done.stderr
    [resume] = next_commands(done.stdout)
    words = shlex.split(resume)
    assert {"--update", "--force", "--resume"} <= set(words)
    assert words[words.index("--concurrency") + 1] == "3"
    assert words[words.index("--max-wait") + 1] == "10m"
    assert "--limit" not in words and "--run-id" not in words


def test_a_next_line_never_shows_credentials_written_into_a_url(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 1)
    done = cli("apply", sheet, "--api-url", "http://someone:S3cr3tPW@127.0.0.1:1/",
               "--reports-dir", tmp_path / "r", "--yes", env_extra={
                   "FIVETRAN_API_KEY": "k", "FIVETRAN_API_SECRET": "s"})
    assert done.returncode == 3
    assert "S3cr3tPW" not in done.stdout + done.stderr
    assert any("--api-url http://127.0.0.1:1" in c for c in next_commands(done.stdout))


def test_regression_a_resume_with_update_patches_drift_an_earlier_invocation_left_alone(
        tmp_path: Path, box: SandboxHandle) -> None:
    """Review finding: drift left alone by an invocation without --update was final, so a
    later ``--resume ID --update`` never PATCHed it."""
    first = write_sheet(tmp_path / "in.csv", 2)
    assert cli("apply", first, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r"
               ).returncode == 0
    text = first.read_text().replace(",1440,", ",720,")
    changed = tmp_path / "changed.csv"
    changed.write_text(text)
    alone = cli("apply", changed, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
                "--run-id", "d2")
    assert alone.returncode == 0, alone.stdout + alone.stderr  # drift noted, left alone
    patched = cli("apply", changed, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
                  "--resume", "d2", "--update")
    assert patched.returncode == 0, patched.stdout + patched.stderr
    rows = csv_rows(tmp_path / "r" / "d2" / "results.csv")
    assert [r["status"] for r in rows] == ["updated", "updated"]
