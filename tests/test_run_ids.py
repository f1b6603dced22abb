"""Run ids are plain folder names, checked before anything is written; --resume needs a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.run.journal import checked_run_id

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "input_templates" / "advertiser_groups.csv"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("bad", ["../evil", ".claims", "..", "a/b", "x" * 129, "", "a b",
                                 "run\x00"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="may use only letters"):
        checked_run_id(bad)


def test_a_safe_run_id_passes() -> None:
    assert checked_run_id("20261201T204500Z-1a2b") == "20261201T204500Z-1a2b"
    assert checked_run_id("nightly_2026.12.01") == "nightly_2026.12.01"


def test_apply_with_a_run_id_outside_the_reports_dir_exits_2_and_writes_nothing(
        tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = cli("apply", TEMPLATE, "--sandbox", "--reports-dir", reports, "--run-id", "../evil")
    assert done.returncode == ExitCode.INPUT_ERROR, done.stdout + done.stderr
    assert "may use only letters" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "evil").exists() and not reports.exists()


def test_resume_of_an_unknown_run_exits_2_and_lists_the_recent_ones(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    first = cli("apply", TEMPLATE, "--sandbox", "--reports-dir", reports, "--run-id", "known")
    assert first.returncode == 0, first.stdout + first.stderr
    done = cli("apply", TEMPLATE, "--sandbox", "--reports-dir", reports, "--resume", "knwon")
    assert done.returncode == ExitCode.INPUT_ERROR, done.stdout + done.stderr
    assert "no run 'knwon'" in done.stderr and "recent runs there: known" in done.stderr
    assert not (reports / "knwon").exists()


def test_regression_a_run_killed_before_its_journal_began_is_resumed_as_a_fresh_start(
        tmp_path: Path) -> None:
    """The fault matrix killed an apply 1 s in, before its journal existed (nothing sent:
    every send is journaled first); ``--resume`` then said "no run" and exit 2."""
    from batch_provisioner.sandbox import run_in_thread
    from tests.apply_helpers import cli, csv_rows, write_sheet

    sheet = write_sheet(tmp_path / "in.csv", 3)
    run_dir = tmp_path / "reports" / "early"
    run_dir.mkdir(parents=True)
    (run_dir / "lock").write_text("")  # what the killed apply had made
    (run_dir / "run.log.jsonl").write_text("")
    with run_in_thread(profile="fast") as box:
        done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "reports",
                   "--resume", "early")
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(box.ledger()["creates"]) == 3
    assert {r["status"] for r in csv_rows(run_dir / "results.csv")} == {"created"}
    unknown = cli("apply", sheet, "--sandbox-url", "http://127.0.0.1:9", "--reports-dir",
                  tmp_path / "reports", "--resume", "never")
    assert unknown.returncode == 2 and "no run 'never'" in unknown.stderr
