"""The run journal: append-only JSONL, one fsync per record, so a crash loses nothing.

Records: ``run`` (header: input fingerprint), ``start`` (before a request is sent) and
``outcome`` (the row's final word in this run). ``load`` tolerates a torn last line from a kill
mid-write. A row with a ``start`` and no ``outcome`` is looked up before anything is resent.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch_provisioner import __version__
from batch_provisioner.errors import InputError
from batch_provisioner.models import Outcome, Status

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
    """Appends records to ``<run_dir>/journal.jsonl``, each one flushed and fsynced."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def header(self, run_id: str, input_path: Path, input_sha: str, command: str) -> None:
        self.write({"type": "run", "run_id": run_id, "command": command,
                    "input": str(input_path), "input_sha256": input_sha,
                    "version": __version__, "t": now_iso()})

    def start(self, row: int, key: tuple[str, str], kind: str = "create") -> None:
        self.write({"type": "start", "row": row, "key": list(key), "op": kind, "t": now_iso()})

    def outcome(self, outcome: Outcome, *, retriable: bool = False) -> None:
        self.write({"type": "outcome", "final": is_final(outcome, retriable),
                    **outcome.as_dict(), "t": now_iso()})

    def close(self) -> None:
        self._handle.close()


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
