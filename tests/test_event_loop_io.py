"""No blocking file I/O on the event loop while requests are in flight (issue 14).

The journal's async appends share fsyncs (a group commit) and each still returns only once
its own record is durable; ``run.log.jsonl`` is written by a thread and is complete however
the process ends (short of ``kill -9``); ``file:`` secrets are read in a worker thread.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import structlog

from batch_provisioner import cli, logs
from batch_provisioner.errors import ExitCode, OutputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.run import journal as journal_module, runner as runner_module
from batch_provisioner.run.journal import Journal, load
from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import ENV, creations, load as load_sheet, run_job, write_dict_rows

REPO = Path(__file__).resolve().parents[1]


def lines_with_ends(path: Path) -> list[tuple[dict[str, Any], int]]:
    """The journal's records, each with the byte offset where its line ends."""
    found, end = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        end += len(line)
        found.append((json.loads(line), end))
    return found


@pytest.fixture()
def synced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The journal's size at each fsync, on a disk slow enough for records to pile up."""
    sizes: list[int] = []
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.003)
        real(fd)
        sizes.append(os.fstat(fd).st_size)

    monkeypatch.setattr(journal_module.os, "fsync", slow_fsync)
    return sizes


class GatedFsync:
    """An fsync whose first call waits until the test lets it go; ``fail`` makes the later
    calls fail as a full disk does."""

    def __init__(self, fail: bool = False) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0
        self.fail = fail
        self.real: Callable[[int], None] = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(10)
        elif self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd)

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.wait, 10)


def created(row: int, key: tuple[str, str]) -> Outcome:
    return Outcome(row=row, status=Status.CREATED, action=ActionKind.CREATE, group_id=key[0],
                   schema=key[1], connection_id=f"conn_{row}")


# -- the journal: group commit --------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_appends_share_fsyncs_and_each_is_durable_when_its_await_returns(
        tmp_path: Path, synced: list[int]) -> None:
    journal = Journal(tmp_path)
    path = tmp_path / "journal.jsonl"
    keys = [("decent_dropsy", f"tt_{i:03d}") for i in range(64)]

    def durable_end(kind: str, key: tuple[str, str]) -> int:
        [end] = [end for record, end in lines_with_ends(path)
                 if record["type"] == kind and record["key"] == list(key)]
        return end

    async def row(number: int, key: tuple[str, str]) -> None:
        await journal.astart(number, key)
        assert durable_end("start", key) <= synced[-1]  # written and fsynced
        moment = await journal.asend(key)
        assert durable_end("send", key) <= synced[-1]
        state = load(tmp_path)  # what a resume after a kill -9 right now would read
        assert state.started[key].last_send == moment  # the POST may leave now
        await journal.aoutcome(created(number, key))
        assert durable_end("outcome", key) <= synced[-1]

    async with anyio.create_task_group() as tg:
        for number, key in enumerate(keys, start=2):
            tg.start_soon(row, number, key)
    journal.close()
    records = [record for record, _end in lines_with_ends(path)]
    assert Counter((r["type"], tuple(r["key"])) for r in records) == {
        (kind, key): 1 for kind in ("start", "send", "outcome") for key in keys}
    assert len(synced) < len(records) / 3, (len(synced), len(records))  # shared fsyncs
    state = load(tmp_path)
    assert set(state.outcomes) == set(keys) and not state.started and not state.torn_lines


@pytest.mark.anyio
async def test_a_failed_fsync_reaches_every_waiter_of_its_batch_as_output_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = GatedFsync(fail=True)
    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    journal = Journal(tmp_path)
    results: dict[int, str] = {}

    async def append(number: int) -> None:
        try:
            await journal.astart(number, ("decent_dropsy", f"tt_{number:03d}"))
            results[number] = "durable"
        except OutputError as exc:
            results[number] = exc.message

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, 0)  # leads the first batch; its fsync is held
        await fsync.wait_entered()
        for number in range(1, 40):  # they pile up behind it: the next batch, which fails
            tg.start_soon(append, number)
        await anyio.wait_all_tasks_blocked()
        fsync.release.set()
    message = f"cannot write {tmp_path / 'journal.jsonl'}: No space left on device (errno 28)"
    assert results == {0: "durable", **{n: message for n in range(1, 40)}}
    assert fsync.calls == 2  # one fsync for the 39 records
    with pytest.raises(OutputError, match="No space left"):  # nothing more is written
        await journal.astart(99, ("decent_dropsy", "tt_099"))
    with pytest.raises(OutputError, match="No space left"):
        journal.write({"type": "invocation"})
    journal.close()
    assert ("decent_dropsy", "tt_000") in load(tmp_path).started


@pytest.mark.anyio
async def test_a_cancelled_append_neither_tears_the_file_nor_loses_another_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = GatedFsync()
    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    journal = Journal(tmp_path)
    scopes: dict[int, anyio.CancelScope] = {}
    acknowledged: set[int] = set()

    async def append(number: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[number] = scope
            await journal.astart(number, ("decent_dropsy", f"tt_{number:03d}"))
            acknowledged.add(number)

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, 0)  # the leader: cancelled while its fsync is under way
        await fsync.wait_entered()
        for number in range(1, 21):
            tg.start_soon(append, number)
        await anyio.wait_all_tasks_blocked()
        scopes[0].cancel()
        scopes[7].cancel()  # a waiter of the next batch, cancelled before it is committed
        fsync.release.set()
    journal.close()
    assert acknowledged == set(range(1, 21)) - {7}
    state = load(tmp_path)
    assert not state.torn_lines
    assert {key[1] for key in state.started} == {f"tt_{n:03d}" for n in range(21)}
    records = (tmp_path / "journal.jsonl").read_text("utf-8").splitlines()
    assert len(records) == 21  # each exactly once


# -- run.log.jsonl ----------------------------------------------------------------------------


@pytest.fixture()
def run_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run.log.jsonl"
    with open(os.devnull, "w", encoding="utf-8") as console:
        logs.configure(log_format="json", run_log=path, stream=console)
        try:
            yield path
        finally:
            logs.close_run_log()
            structlog.reset_defaults()


def test_logging_an_event_writes_nothing_on_the_callers_thread(run_log: Path) -> None:
    [tee] = logs._TEE
    real = tee._handle
    writers: list[str] = []

    class Recording:
        def write(self, text: str) -> int:
            writers.append(threading.current_thread().name)
            assert real is not None
            return real.write(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    tee._handle = Recording()  # type: ignore[assignment]
    log = structlog.get_logger("test")
    for row in range(200):
        log.info("row.created", row=row)
    deadline = time.monotonic() + 10
    while len(run_log.read_text("utf-8").splitlines()) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(writers) == {"run-log-writer"} and len(writers) < 20
    logs.close_run_log()
    rows = [json.loads(line)["row"] for line in run_log.read_text("utf-8").splitlines()]
    assert rows == list(range(200))


_LOGGING_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
import structlog
from batch_provisioner import logs
logs.configure(log_format="json", run_log=Path(sys.argv[1]), stream=open(os.devnull, "w"))
log = structlog.get_logger("test")
for row in range(3000):
    log.info("row.created", row=row)
log.warning("run.stopped")
if sys.argv[2] == "exception":
    raise RuntimeError("a bug")
if sys.argv[2] == "ctrl-c":
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
"""


@pytest.mark.parametrize("how", ["normal", "exception", "ctrl-c"])
def test_the_log_holds_every_event_however_the_process_ends(tmp_path: Path, how: str) -> None:
    path = tmp_path / "run.log.jsonl"
    done = subprocess.run([sys.executable, "-c", _LOGGING_SCRIPT, str(path), how],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode == 0) == (how == "normal"), done.stderr
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [r.get("row") for r in records[:-1]] == list(range(3000))
    assert records[-1]["event"] == "run.stopped"


def test_an_apply_run_logs_every_row_and_a_failed_one_every_event_before_it(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    rows = [{"group_id": "decent_dropsy", "schema": f"tt_{i:03d}"} for i in range(30)]
    sheet = write_dict_rows(tmp_path / "in.csv", rows, ["group_id", "schema", "sync_mode",
                                                        "sync_frequency", "access_token"])
    reports = tmp_path / "reports"

    def apply(run_id: str) -> int:
        try:
            with pytest.raises(SystemExit) as done:
                cli.main(["apply", str(sheet), "--sandbox-url", box.url, "--reports-dir",
                          str(reports), "--run-id", run_id, "--log-format", "json"])
        finally:
            structlog.reset_defaults()
        return int(done.value.code or 0)

    assert apply("ok") == 0
    events = [json.loads(line) for line in (reports / "ok" / "run.log.jsonl").read_text(
        "utf-8").splitlines()]
    assert sorted(e["schema"] for e in events if e["event"] == "row.created") == [
        r["schema"] for r in rows]

    real = runner_module.Runner._watch_for_outage

    def bug_after_ten(self: runner_module.Runner, outcome: Outcome) -> None:
        real(self, outcome)
        if len(self.outcomes) == 10:
            raise RuntimeError("a bug outside any row")

    monkeypatch.setattr(runner_module.Runner, "_watch_for_outage", bug_after_ten)
    box.reset()
    assert apply("bug") == ExitCode.INTERNAL  # the CLI says: a bug, please report it
    logged = [json.loads(line) for line in (reports / "bug" / "run.log.jsonl").read_text(
        "utf-8").splitlines()]
    assert len([e for e in logged if e["event"] == "row.created"]) >= 10


# -- file: secrets ------------------------------------------------------------------------------


def test_a_secret_file_gone_since_validate_fails_its_rows_retriably_read_off_the_loop(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token.txt"
    token.write_text("tt-file-token-0123456789\n", "utf-8")
    rows = [{"group_id": "decent_dropsy", "schema": f"tt_{i:03d}",
             "access_token": "file:token.txt"} for i in range(6)]
    prepared = load_sheet(write_dict_rows(tmp_path / "in.csv", rows, [
        "group_id", "schema", "sync_mode", "sync_frequency", "access_token"]))
    assert not prepared.invalid  # validate found the file
    token.unlink()
    readers: list[str] = []
    real = runner_module.resolved

    def spying(payload: dict[str, Any], secrets: Any) -> dict[str, Any]:
        readers.append(threading.current_thread().name)
        return real(payload, secrets)

    monkeypatch.setattr(runner_module, "resolved", spying)
    run_dir = tmp_path / "reports" / "r1"
    result = run_job(prepared, box.url, run_dir)
    assert {(o.status, o.error_code, o.retriable) for o in result.outcomes} == {
        (Status.FAILED, "SecretUnavailable", True)}
    assert "token.txt does not exist" in (result.outcomes[0].error_message or "")
    assert creations(box.ledger()) == {}  # nothing was sent for them
    assert readers and threading.main_thread().name not in readers  # read in worker threads
    token.write_text("tt-file-token-0123456789\n", "utf-8")  # back: the resume sends them
    again = run_job(prepared, box.url, run_dir)
    assert {o.status for o in again.outcomes} == {Status.CREATED}
