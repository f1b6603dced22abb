"""The run journal: append-only JSONL, one fsync per record, so a crash loses nothing.

Records: ``run`` (header: input fingerprint), ``start`` (before a request is sent) and
``outcome`` (the row's final word in this run). ``load`` tolerates a torn last line from a kill
mid-write. A row with a ``start`` and no ``outcome`` is looked up before anything is resent.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batch_provisioner.errors import InputError
from batch_provisioner.models import Outcome, Status
from batch_provisioner.settings import VERSION as __version__

JOURNAL_NAME = "journal.jsonl"
FINAL_STATUSES = frozenset({Status.CREATED, Status.EXISTS, Status.UPDATED, Status.CONFLICT,
                            Status.ROLLED_BACK})


def fingerprint(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path is not None and path.is_file() else b"-")
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_final(outcome: Outcome, retriable: bool = False) -> bool:
    """A final outcome is not tried again on resume: done, or failed for a reason of its own."""
    return outcome.status in FINAL_STATUSES or (outcome.status is Status.FAILED and not retriable)


@dataclass
class JournalState:
    """What an earlier run of the same id left behind."""

    header: dict[str, Any] | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # final ones only
    started: set[int] = field(default_factory=set)  # started, with no outcome after
    rolled_back: dict[int, Outcome] = field(default_factory=dict)
    torn_lines: int = 0


class Journal:
    """Appends records to ``<run_dir>/journal.jsonl``; none is acknowledged before its fsync.

    ``awrite`` is a group commit: records that arrive while an fsync is under way (in a worker
    thread, so the event loop keeps serving the other rows) share the next fsync.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")
        self._pending: list[str] = []
        self._queued = 0  # records handed to awrite
        self._durable = 0  # records known to be on disk
        self._flushing = False
        self._flushed: anyio.Event | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Synchronous append + fsync (used outside the event loop)."""
        self._handle.write(_line(record))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    async def awrite(self, record: dict[str, Any]) -> None:
        """Append ``record`` and return once it is fsynced."""
        self._pending.append(_line(record))
        self._queued += 1
        mine = self._queued
        if self._flushing:
            while self._durable < mine:
                if self._flushed is None:
                    self._flushed = anyio.Event()
                await self._flushed.wait()
            return
        self._flushing = True
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                upto = self._queued
                self._handle.write("".join(batch))
                self._handle.flush()
                await anyio.to_thread.run_sync(os.fsync, self._handle.fileno())
                self._durable = upto
                if self._flushed is not None:
                    self._flushed.set()
                    self._flushed = None
        finally:
            self._flushing = False

    async def astart(self, row: int, key: tuple[str, str], kind: str = "create") -> None:
        await self.awrite(_start(row, key, kind))

    async def aoutcome(self, outcome: Outcome, *, retriable: bool = False) -> None:
        await self.awrite(_outcome_record(outcome, retriable))

    def header(self, run_id: str, input_path: Path, input_sha: str, command: str) -> None:
        self.write({"type": "run", "run_id": run_id, "command": command,
                    "input": str(input_path), "input_sha256": input_sha,
                    "version": __version__, "t": now_iso()})

    def start(self, row: int, key: tuple[str, str], kind: str = "create") -> None:
        self.write(_start(row, key, kind))

    def outcome(self, outcome: Outcome, *, retriable: bool = False) -> None:
        self.write(_outcome_record(outcome, retriable))

    def close(self) -> None:
        self._handle.close()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def _start(row: int, key: tuple[str, str], kind: str) -> dict[str, Any]:
    return {"type": "start", "row": row, "key": list(key), "op": kind, "t": now_iso()}


def _outcome_record(outcome: Outcome, retriable: bool) -> dict[str, Any]:
    return {"type": "outcome", "final": is_final(outcome, retriable), **outcome.as_dict(),
            "t": now_iso()}


def load(run_dir: Path) -> JournalState:
    """Read an earlier journal; a torn (half-written) line is skipped and counted."""
    state = JournalState()
    path = run_dir / JOURNAL_NAME
    if not path.exists():
        return state
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            state.torn_lines += 1
            continue
        if not isinstance(record, dict):
            state.torn_lines += 1
            continue
        _apply(state, record)
    return state


def _apply(state: JournalState, record: dict[str, Any]) -> None:
    kind = record.get("type")
    if kind == "run":
        state.header = state.header or record
    elif kind == "start":
        state.started.add(int(record["row"]))
    elif kind == "outcome":
        row = int(record["row"])
        state.started.discard(row)
        outcome = outcome_from_record(record)
        if outcome.status is Status.ROLLED_BACK:
            state.rolled_back[row] = outcome
        if record.get("final"):
            state.outcomes[row] = outcome
        else:
            state.outcomes.pop(row, None)


def outcome_from_record(record: dict[str, Any]) -> Outcome:
    names = Outcome.__dataclass_fields__
    values = {k: v for k, v in record.items() if k in names}
    values["status"] = Status(values["status"])
    return Outcome(**values)


def check_resumable(state: JournalState, input_sha: str, *, force: bool, run_dir: Path) -> None:
    """Refuse to resume a run with a different input file, unless forced."""
    if state.header is None or force:
        return
    if state.header.get("input_sha256") != input_sha:
        raise InputError(
            f"run {run_dir.name} was started with different input "
            f"({state.header.get('input')}); use a new --run-id, or --force to resume anyway",
            path=str(run_dir / JOURNAL_NAME),
        )


class RunLock:
    """``<run_dir>/lock`` holds the pid and host of the run that owns the directory.

    A second run on the same id is refused while that pid lives; a lock left by a dead
    process (a crash or a kill -9) is taken over, with a warning.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "lock"
        self.took_over_from: dict[str, Any] | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "t": now_iso()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise InputError(
                        f"run {self.path.parent.name} is already running (pid "
                        f"{holder.get('pid')} on {holder.get('host')}); wait for it or pick "
                        "another --run-id", path=str(self.path)) from None
                self.took_over_from = holder or {}
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            return self
        raise InputError("could not take the run lock", path=str(self.path))

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _alive(holder: dict[str, Any]) -> bool:
    """Is the lock's process still running? Another host's lock is assumed alive."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
