"""The run journal: append-only JSONL, every record fsynced before it is acknowledged (records
appended together share one fsync: a group commit), so a crash loses nothing acknowledged.

Records: ``run`` (header: input fingerprint), ``inputs`` (where the input files are),
``start`` (before a request is sent, with its op: create or update), ``outcome`` (a row's
word in this invocation), ``invocation`` (one invocation's figures, at its end) and
``rollback``. ``load`` is the one reader: it tolerates a torn last line from a kill mid-write,
and every append starts on a fresh line. Every record passes through the redactor as it is
serialised (``_line``), except the fields read back to find keys, rows, ids, times and input
files (``VERBATIM_FIELDS``): a secret is never one of those, but one of those can contain a
registered value (the sandbox's default API key is ``sandbox``) and must round-trip intact.

Everything is keyed by the connection's identity, (group_id, schema), not by row number, so a
row inserted, deleted or moved between invocations never inherits another row's outcome. A key
with a ``start`` stays *in doubt* (its create may have landed) until an outcome settles it: a
final outcome, or a runner outcome that says ``in_doubt: false``. A key in doubt is looked up
before anything is resent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from batch_provisioner.errors import InputError, OutputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.safety import REDACTOR
from batch_provisioner.settings import VERSION as __version__

JOURNAL_NAME = "journal.jsonl"
FINAL_STATUSES = frozenset({Status.CREATED, Status.EXISTS, Status.UPDATED, Status.CONFLICT,
                            Status.ROLLED_BACK})


#: Record fields kept byte for byte: what ``load`` and resume read back to identify things.
VERBATIM_FIELDS = frozenset({
    "type", "key", "row", "group_id", "schema", "connection_id", "run_id", "command", "input",
    "input_sha256", "sheet", "sheet_name", "defaults", "custom_reports", "version", "t",
    "started_at", "finished_at", "created_at", "sent_at", "final", "in_doubt", "status",
    "action",
})
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def checked_run_id(run_id: str) -> str:
    """A run id is a plain folder name: letters, digits and ``. _ -``, not starting with a dot
    (``.claims`` and ``..`` are not runs), at most 128 characters. Else ``InputError``."""
    if not _RUN_ID.fullmatch(run_id) or run_id.strip(".") == "":
        raise InputError(f"run id {run_id!r} may use only letters, digits and . _ - (not "
                         "starting with a dot, at most 128 characters)", column="--run-id")
    return run_id


def recent_runs(reports_dir: Path, limit: int = 5) -> list[str]:
    """The newest run ids in ``reports_dir`` (folders with a journal), newest first."""
    try:
        runs = [p for p in reports_dir.iterdir() if (p / JOURNAL_NAME).is_file()]
    except OSError:
        return []
    runs.sort(key=lambda p: (p / JOURNAL_NAME).stat().st_mtime, reverse=True)
    return [p.name for p in runs[:limit]]


def fingerprint(*paths: Path | None) -> str:
    """The SHA-256 of the input files' bytes, one after the other (``-`` for one not given):
    a resume refuses other input. A downloaded input is fingerprinted by its local copy, so
    by the bytes that arrived, wherever it came from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path is not None and path.is_file() else b"-")
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_final(outcome: Outcome, retriable: bool = False) -> bool:
    """A final outcome is not tried again on resume: done, or failed for a reason of its own."""
    return outcome.status in FINAL_STATUSES or (outcome.status is Status.FAILED and not retriable)


Key = tuple[str, str]


@dataclass(frozen=True)
class Doubt:
    """A key whose request was started and not settled: it may have been applied."""

    row: int  # the row it had when it was started
    op: str  # "create" or "update"
    since: str  # when the first attempt that may have landed was sent (ISO 8601, UTC)
    last_send: str | None = None  # when the last create of it was sent (a ``send`` record)


@dataclass
class JournalState:
    """What earlier invocations of the same run left behind."""

    header: dict[str, Any] | None = None  # the first ``run`` record
    inputs: dict[str, Any] | None = None  # the last ``inputs`` record
    outcomes: dict[Key, Outcome] = field(default_factory=dict)  # the final ones
    latest: dict[Key, Outcome] = field(default_factory=dict)  # every key's last, final or not
    started: dict[Key, Doubt] = field(default_factory=dict)  # in doubt
    rolled_back: dict[Key, Outcome] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    torn_lines: int = 0
    _row_keys: dict[int, Key] = field(default_factory=dict, repr=False)  # old records

    def final(self, key: Key | None) -> Outcome | None:
        return self.outcomes.get(key) if key is not None else None


@dataclass(eq=False)
class _Batch:
    """Records that share one write and one fsync (a group commit).

    ``turn`` is set when the commit before this batch has ended: one of its waiters then
    leads it. ``done`` is set once its records are durable, or ``error`` says why not.
    """

    lines: list[str] = field(default_factory=list)
    turn: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: OutputError | None = None

    def finish(self, error: OutputError | None) -> None:
        self.error = error
        self.done.set()
        self.turn.set()


class Journal:
    """Appends records to ``<run_dir>/journal.jsonl``; none is acknowledged before its fsync.

    The async appends (``awrite``, ``astart``, ``asend``, ``aoutcome``...) are a group commit:
    a record joins the open batch; when no commit is under way, its first waiter leads: it
    lets the records of this pass of the event loop join, then writes the whole batch and
    fsyncs it once in a worker thread (the loop keeps serving the other rows) while the next
    batch fills up. Each await returns only once its own record is durable, or raises
    ``OutputError`` (every waiter of a failed batch does, and every append after it).

    A commit, once begun, is shielded from cancellation: a cancelled leader finishes the
    write and fsync of every record in its batch first. A waiter cancelled before its batch
    is committed leaves its record in the batch; the batch's other waiters commit it, or the
    next append, a synchronous write or ``close`` does. The synchronous appends (``write``,
    ``header``, ``invocation``) write and fsync at once, records still waiting first; they
    run on the event loop's thread (or with no async append under way).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_NAME
        self._failed: OutputError | None = None  # a write failed: nothing more is written
        self._lock = threading.Lock()  # one writer at a time: a worker thread or a sync write
        self._open: _Batch | None = None  # the batch filling up
        self._committing = False  # a batch is being written and fsynced
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            torn_tail = _ends_mid_line(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
        except OSError as exc:  # a full disk, a read-only folder: exit 2, naming the path
            raise OutputError.from_os_error(self.path, exc) from None
        if torn_tail:  # a kill tore the last line: never glue the next record onto it
            self.write_raw("\n")

    def write(self, record: dict[str, Any]) -> None:
        """Synchronous append + fsync (before or after the async appends)."""
        self.write_raw(_line(record))

    def write_raw(self, text: str) -> None:
        batch, self._open = self._open, None  # records still waiting go first, in order
        try:
            self._commit([*(batch.lines if batch is not None else ()), text])
        except OutputError as exc:
            if batch is not None:
                batch.finish(exc)
            raise
        if batch is not None:
            batch.finish(None)

    async def awrite(self, record: dict[str, Any]) -> None:
        """Append ``record`` and return once it is fsynced; ``OutputError`` (for every record
        waiting on it) if the write or the fsync fails, and for every record after it."""
        line = _line(record)
        self._check()
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
        batch.lines.append(line)
        if self._committing:  # the batch before is on its way to the disk: wait for it
            await batch.turn.wait()
        if not batch.done.is_set() and not self._committing:
            await self._lead(batch)
        await batch.done.wait()
        if batch.error is not None:
            raise OutputError(batch.error.message, path=batch.error.path)

    async def _lead(self, batch: _Batch) -> None:
        """Commit ``batch`` (the open one): one write and one fsync in a worker thread."""
        self._committing = True
        error: OutputError | None = None
        try:
            with anyio.CancelScope(shield=True):  # the batch holds other tasks' records too
                await anyio.lowlevel.checkpoint()  # records of this pass of the loop join in
                self._open = None
                await anyio.to_thread.run_sync(self._commit, batch.lines)
        except OutputError as exc:
            error = exc
        except BaseException:  # never acknowledge records whose commit did not finish
            error = OutputError(f"cannot write {self.path}: the write was interrupted",
                                path=str(self.path))
            raise
        finally:
            self._committing = False
            if self._open is batch:  # interrupted before it was taken: never reopened
                self._open = None
            batch.finish(error)
            following = self._open
            if following is not None:
                if self._failed is not None:  # nothing more is written after a failure
                    self._open = None
                    following.finish(self._copy_failure())
                else:
                    following.turn.set()

    def _commit(self, lines: list[str]) -> None:
        """Write ``lines`` and fsync them (in a worker thread for the async appends)."""
        with self._lock:
            self._check()
            try:
                self._handle.write("".join(lines))
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise self._fail(exc) from None

    async def astart(self, row: int, key: tuple[str, str], kind: str = "create") -> None:
        await self.awrite(_start(row, key, kind))

    async def asend(self, key: tuple[str, str]) -> str:
        """Journal that a create of ``key`` is about to be sent; returns its time."""
        moment = now_iso()
        await self.awrite({"type": "send", "key": list(key), "t": moment})
        return moment

    async def aoutcome(self, outcome: Outcome, *, retriable: bool | None = None,
                       settles: bool = True) -> None:
        """Journal an outcome. ``settles``: its ``in_doubt`` says whether the key is still in
        doubt (the runner's outcomes); False for outcomes that sent nothing (invalid rows, rows
        not attempted), which leave an earlier doubt standing."""
        retriable = outcome.retriable if retriable is None else retriable
        await self.awrite(_outcome_record(outcome, retriable, settles))

    def invocation(self, figures: dict[str, Any]) -> None:
        """One invocation's figures (calls, 429s, retries, active time...), at its end."""
        self.write(_invocation_record(figures))

    async def ainvocation(self, figures: dict[str, Any]) -> None:
        await self.awrite(_invocation_record(figures))

    def header(self, run_id: str, input_path: Path | str, input_sha: str, command: str,
               t: str | None = None) -> None:
        """The invocation's first record; ``t`` is when it started (default: now)."""
        self.write(_header_record(run_id, input_path, input_sha, command, t))

    async def aheader(self, run_id: str, input_path: Path | str, input_sha: str, command: str,
                      t: str | None = None) -> None:
        await self.awrite(_header_record(run_id, input_path, input_sha, command, t))

    def close(self) -> None:
        """Commit any record still waiting (its waiter was cancelled), then close the file."""
        batch, self._open = self._open, None
        try:
            if batch is not None and batch.lines and self._failed is None:
                try:
                    self._commit(batch.lines)
                except OutputError as exc:
                    batch.finish(exc)
                    raise
                batch.finish(None)
        finally:
            with self._lock:  # after a commit under way in a worker thread
                try:
                    self._handle.close()
                except OSError as exc:
                    if self._failed is None:  # after a failed write, the error is known
                        raise OutputError.from_os_error(self.path, exc) from None

    def _fail(self, exc: OSError) -> OutputError:
        """Remember the first failed write: nothing more is written."""
        self._failed = self._failed or OutputError.from_os_error(self.path, exc)
        return self._copy_failure()

    def _copy_failure(self) -> OutputError:
        assert self._failed is not None
        return OutputError(self._failed.message, path=self._failed.path)

    def _check(self) -> None:
        if self._failed is not None:
            raise self._copy_failure()


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _line(record: dict[str, Any]) -> str:
    """One record as a JSON line, every field but the verbatim ones through the redactor."""
    scrubbed = REDACTOR.scrub_value({k: v for k, v in record.items()
                                     if k not in VERBATIM_FIELDS})
    clean = {k: record[k] if k in VERBATIM_FIELDS else scrubbed[k] for k in record}
    return json.dumps(clean, ensure_ascii=False, default=str) + "\n"


def _header_record(run_id: str, input_path: Path | str, input_sha: str, command: str,
                   t: str | None) -> dict[str, Any]:
    return {"type": "run", "run_id": run_id, "command": command, "input": str(input_path),
            "input_sha256": input_sha, "version": __version__, "t": t or now_iso()}


def _invocation_record(figures: dict[str, Any]) -> dict[str, Any]:
    return {"type": "invocation", **figures, "t": now_iso()}


def _start(row: int, key: tuple[str, str], kind: str) -> dict[str, Any]:
    return {"type": "start", "row": row, "key": list(key), "op": kind, "t": now_iso()}


def _outcome_record(outcome: Outcome, retriable: bool, settles: bool) -> dict[str, Any]:
    record = {"type": "outcome", "final": is_final(outcome, retriable), **outcome.as_dict(),
              "t": now_iso()}
    if outcome.key is not None:
        record["key"] = list(outcome.key)
    if not settles:  # says nothing about whether a create landed: leaves any doubt as it is
        record.pop("in_doubt")
    return record


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
    elif kind == "inputs":
        state.inputs = record
    elif kind == "invocation":
        state.invocations.append(record)
    elif kind == "start":
        key = _as_key(record.get("key"))
        if key is None:
            return
        row = int(record["row"])
        state._row_keys[row] = key
        earlier = state.started.get(key)
        since = earlier.since if earlier else str(record.get("t") or "")
        state.started[key] = Doubt(row, str(record.get("op") or "create"), since)
    elif kind == "send":
        key = _as_key(record.get("key"))
        doubt = state.started.get(key) if key is not None else None
        if key is not None and doubt is not None:
            state.started[key] = Doubt(doubt.row, doubt.op, doubt.since, str(record.get("t")))
    elif kind == "outcome":
        outcome = outcome_from_record(record)
        key = (_as_key(record.get("key")) or outcome.key
               or state._row_keys.get(int(record["row"])))
        if key is None:
            return
        state.latest[key] = outcome
        if outcome.status is Status.ROLLED_BACK:
            state.rolled_back[key] = outcome
        if record.get("final"):
            state.outcomes[key] = outcome
            state.started.pop(key, None)
            return
        state.outcomes.pop(key, None)
        if record.get("in_doubt") is False:
            state.started.pop(key, None)
        elif record.get("in_doubt") and key not in state.started:
            state.started[key] = Doubt(outcome.row, str(outcome.action),
                                       outcome.sent_at or str(record.get("t") or ""))


def _as_key(value: Any) -> Key | None:
    if isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(part, str) and part for part in value):
        return (value[0], value[1])
    return None


def outcome_from_record(record: dict[str, Any]) -> Outcome:
    names = Outcome.__dataclass_fields__
    values = {k: v for k, v in record.items() if k in names}
    values["status"] = Status(values["status"])
    action = str(values.get("action") or "")
    known = {str(kind) for kind in ActionKind}
    values["action"] = ActionKind(action) if action in known else ActionKind.CREATE
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
