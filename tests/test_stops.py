"""Stops end on time and send nothing new: Ctrl-C, ``--deadline`` and ``--max-wait``.

Against the embedded sandbox, on real time: each test bounds its own duration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import batch_provisioner as bp
from batch_provisioner.models import Outcome, Status
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from tests.apply_helpers import ENV, cli, csv_rows, write_sheet


@pytest.fixture(scope="module")
def fivetran_box() -> Iterator[SandboxHandle]:
    """Fivetran's own numbers: 20 creates per real minute."""
    with run_in_thread(profile="fivetran") as handle:
        yield handle


def test_first_ctrl_c_sends_none_of_the_creates_queued_behind_the_create_budget(
        tmp_path: Path, fivetran_box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    fivetran_box.reset()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sheet = write_sheet(tmp_path / "in.csv", 30)
    control = bp.RunControl()
    created: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        if outcome.status is Status.CREATED:
            created.append(outcome)
            if len(created) == 20:  # the minute's creates are spent; 10 wait for the next
                control.interrupt()

    async def main() -> bp.ApplyResult:
        prepared = bp.load(sheet)
        with anyio.fail_after(30):
            return await bp.apply_async(
                prepared, sandbox_url=fivetran_box.url, reports_dir=tmp_path / "reports",
                run_id="r1", control=control, on_outcome=on_outcome)

    started = time.monotonic()
    result = anyio.run(main)
    took = time.monotonic() - started
    ledger = fivetran_box.ledger()
    posts = [r for r in ledger["requests"] if r["method"] == "POST"]
    assert len(posts) == 20, "a create queued behind the budget was sent after Ctrl-C"
    assert took < 20, f"the stop waited for the budget ({took:.1f} s)"
    statuses = [o.status for o in result.outcomes]
    assert statuses.count(Status.CREATED) == 20
    assert statuses.count(Status.NOT_ATTEMPTED) == 10
    assert int(result.exit_code) == 4
    assert {o.error_code for o in result.outcomes if o.status is Status.NOT_ATTEMPTED} == {
        "interrupted"}


def test_a_spent_hourly_budget_ends_the_run_at_the_deadline_with_reports_and_a_resume_finishes(
        tmp_path: Path, box: SandboxHandle) -> None:
    """Other tools spent the account's calls: X-Rate-Limit-Remaining is nearly 0."""
    sheet = write_sheet(tmp_path / "in.csv", 12, groups=("decent_dropsy",))
    limit = next(b["limit"] for b in box.limits()["budgets"] if b["applies_to"] == "all")
    box.use_budget(limit - 3)  # three calls left in the window
    reports = tmp_path / "reports"
    started = time.monotonic()
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "cron1", "--deadline", "10s", "--max-wait", "20s",
               "--log-format", "json")
    took = time.monotonic() - started
    assert done.returncode == 4, done.stderr
    assert took < 10 + 8, f"exited {took:.1f} s after start (deadline 10 s)"
    summary = json.loads((reports / "cron1" / "summary.json").read_text())
    assert summary["exit_code"] == 4 and summary["stop_reason"] in ("deadline", "max_wait")
    rows = csv_rows(reports / "cron1" / "results.csv")
    assert len(rows) == 12
    waiting = [r for r in rows if r["status"] == "not_attempted"]
    assert waiting and all(r["error_code"] in ("deadline", "max_wait") for r in waiting)
    assert all("wait" in r["error_message"] for r in waiting)
    assert (reports / "cron1" / "report.html").is_file()

    box.clear_usage()  # the hour has passed
    again = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
                "--resume", "cron1", "--deadline", "60s")
    assert again.returncode == 0, again.stderr
    final = csv_rows(reports / "cron1" / "results.csv")
    assert {r["status"] for r in final} == {"created"}
    creates = box.ledger()["creates"]
    assert len(creates) == 12 and all(c["creations"] == 1 for c in creates)


def test_a_429_asking_longer_than_max_wait_stops_the_run_at_once(
        tmp_path: Path, fivetran_box: SandboxHandle) -> None:
    """The fivetran profile refuses the 21st create of a minute with Retry-After ~60 s."""
    fivetran_box.reset()
    sheet = write_sheet(tmp_path / "in.csv", 25)
    reports = tmp_path / "reports"
    started = time.monotonic()
    done = cli("apply", sheet, "--sandbox-url", fivetran_box.url, "--reports-dir", reports,
               "--run-id", "mw", "--max-wait", "5s", "--creates-per-minute", "0",
               "--log-format", "json")
    took = time.monotonic() - started
    assert done.returncode == 4, done.stderr
    assert took < 20
    rows = csv_rows(reports / "mw" / "results.csv")
    assert sum(r["status"] == "created" for r in rows) == 20
    assert {r["error_code"] for r in rows if r["status"] != "created"} == {"max_wait"}


def test_an_api_that_fails_every_row_stops_the_run_as_an_outage_and_a_resume_finishes(
        tmp_path: Path, box: SandboxHandle) -> None:
    """Review finding: an outage read as 25 failed rows "to fix", after every row's retries."""
    sheet = write_sheet(tmp_path / "in.csv", 20)
    box.script([{"fault": "503", "method": "POST", "times": 10_000}])  # every create
    reports = tmp_path / "reports"
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "down", "--concurrency", "1", "--max-attempts", "2")
    assert done.returncode == 4, done.stdout + done.stderr
    rows = csv_rows(reports / "down" / "results.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 5  # then the run stopped: the API looks down
    waiting = [r for r in rows if r["status"] == "not_attempted"]
    assert len(waiting) == 15 and {r["error_code"] for r in waiting} == {"api_failing"}
    assert "to fix, each with its error" not in done.stdout and "--resume down" in done.stdout
    box.script([], clear=True)
    again = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
                "--resume", "down")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {r["status"] for r in csv_rows(reports / "down" / "results.csv")} == {"created"}
