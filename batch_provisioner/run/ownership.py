"""Truth about ownership: when a connection is this run's, and the per-key reservations that
keep two runs of one reports dir from ever sending the same create.

A run claims a connection (``created``) only on proof:

* a 201 answer to its own POST; or
* after a create whose answer was lost (timeout or reset after send, 5xx on the POST), a
  connection under that (group_id, schema) that was absent from this run's listing (the run
  only sends creates for keys its listing showed absent), whose ``created_at`` lies between
  the first send that may have landed and the last one plus the read timeout (each widened by
  ``CLOCK_SKEW_SECONDS``), whose settings equal what the run sent, and whose key this run
  holds the reservation for (so no other run of the reports dir can have sent it). Sends are
  journaled before they leave, so the window survives a kill.

Anything else found under the key is ``exists``, with the reason it is not claimed. A lookup
that shows the key absent settles the doubt: a 409 after it is someone else's connection.

Reservations live in ``<reports_dir>/.claims/``, one file per key, written before a run's
first POST of that key. A run keeps the file while the key is created by it or in
doubt, and removes it when its outcome shows it sent nothing that landed; rollback removes it
with the connection. Another run finding the file of a run that has the key in doubt does not
send, and reports the key ``conflict`` (resume that run first); a holder that settled the key
is taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from batch_provisioner.errors import OutputError
from batch_provisioner.models import Outcome, Status
from batch_provisioner.report.files import ensure_dir, write_text
from batch_provisioner.run.drift import diff, format_changes
from batch_provisioner.run.journal import JOURNAL_NAME, JournalState, Key, load, now_iso

#: How far the API's clock may be behind ours. A connection created up to this long before
#: our first send that may have landed still counts as ours (the safe side is the other one:
#: a clock far ahead of the API's makes our own lost creates ``exists``, never a false claim).
CLOCK_SKEW_SECONDS = 1.0
CLAIMS_DIR = ".claims"


def parse_time(text: object) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` or an offset), or None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def unproven(connection: dict[str, Any], since: str | None, last_send: str | None = None,
             landing_seconds: float | None = None,
             payload: Mapping[str, Any] | None = None) -> str | None:
    """Why a connection found after a lost answer is not provably ours, or None if it is.

    Ours means created inside the window in which one of our creates could have been applied:
    from the first send that may have landed (``since``) to the last one (``last_send``) plus
    the longest the API can take to apply it while we wait (``landing_seconds``: the read
    timeout), both widened by the clock-skew margin.
    """
    created = parse_time(connection.get("created_at"))
    sent = parse_time(since)
    if sent is None:
        return "no create of this run may have landed (a lookup since showed the key absent)"
    if created is None:
        return "the API gave no created_at for it, so it cannot be told from another's"
    skew = timedelta(seconds=CLOCK_SKEW_SECONDS)
    if created < sent - skew:
        return (f"it was created at {connection.get('created_at')}, before this run first "
                f"sent it ({since}; clock-skew margin {CLOCK_SKEW_SECONDS:g} s)")
    last = parse_time(last_send)
    if last is not None and landing_seconds is not None:
        latest = last + timedelta(seconds=landing_seconds) + skew
        if created > latest:
            return (f"it was created at {connection.get('created_at')}, after any create of "
                    f"this run could have landed (last sent {last_send}, read timeout "
                    f"{landing_seconds:g} s)")
    if payload is not None:  # what we sent: another tool's connection rarely matches it
        mutable, immutable = diff(payload, connection, known_only=True)
        if mutable or immutable:
            return ("its settings differ from what this run sent: "
                    + format_changes({**immutable, **mutable}))
    return None


@dataclass(frozen=True)
class Reservation:
    """What reserving a key gave: held by another run (``blocked_by``: do not send), or ours,
    never to be claimed as any of ``not_ours`` (connections other runs claimed)."""

    blocked_by: str | None = None
    not_ours: frozenset[str] = frozenset()


class Reservations:
    """Per-key reservations of one reports dir (see the module docstring).

    Every change happens under one ``flock`` of ``.claims/lock``, so two runs can never both
    take a key. A run writes its ``start`` record (fsynced) before it reserves, so a holder
    that has not settled its key is always visible as "in doubt" in its own journal.
    """

    def __init__(self, reports_dir: Path, run_id: str) -> None:
        self.reports_dir = reports_dir
        self.folder = reports_dir / CLAIMS_DIR
        self.run_id = run_id
        self._journals: dict[str, tuple[tuple[int, int], JournalState]] = {}

    def _path(self, key: Key) -> Path:
        digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:32]
        return self.folder / f"{digest}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_dir(self.folder)
        try:
            opened = (self.folder / "lock").open("a")
        except OSError as exc:  # a full disk or a read-only folder: the run stops (exit 2/4)
            raise OutputError.from_os_error(self.folder / "lock", exc) from None
        with opened as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def reserve(self, key: Key) -> Reservation:
        """Take the key for this run (the caller's listing showed it absent), unless another
        run has it in doubt: that run may still create it, so this one must not send it.

        A holder that settled the key is taken over: with nothing landed or rolled back, the
        key is free; with a connection it created that the listing no longer shows (deleted
        since, or made on another API target), the key is free too, and that connection's id
        is returned so that this run never claims it (see ``Reservation.not_ours``).
        """
        with self._locked():
            holder = self.holder(key)
            if holder is None or holder == self.run_id:
                if holder is None:
                    self._write(key)
                return Reservation()
            state = self._journal_of(holder)
            if key in state.started:
                return Reservation(blocked_by=holder)
            final = state.final(key)
            self._write(key)
            if final is not None and final.status is Status.CREATED and final.connection_id:
                return Reservation(not_ours=frozenset({final.connection_id}))
            return Reservation()

    def _journal_of(self, run_id: str) -> JournalState:
        """The holder's journal, re-read only when the file changed since the last read: many
        keys of one other run are checked in a row."""
        path = self.reports_dir / run_id / JOURNAL_NAME
        try:
            stamp = os.stat(path)
        except FileNotFoundError:
            return JournalState()
        mark = (stamp.st_size, stamp.st_mtime_ns)
        cached = self._journals.get(run_id)
        if cached is None or cached[0] != mark:
            cached = (mark, load(self.reports_dir / run_id))
            self._journals[run_id] = cached
        return cached[1]

    def _write(self, key: Key) -> None:
        record = {"run_id": self.run_id, "group_id": key[0], "schema": key[1], "t": now_iso()}
        write_text(self._path(key), json.dumps(record))  # atomic and fsynced

    def holder(self, key: Key) -> str | None:
        try:
            data = json.loads(self._path(key).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        run_id = data.get("run_id") if isinstance(data, dict) else None
        return str(run_id) if run_id else None

    def release(self, key: Key) -> None:
        """Give the key back if this run holds it."""
        with self._locked():
            if self.holder(key) == self.run_id:
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

    def settle(self, key: Key | None, outcome: Outcome) -> None:
        """Keep the reservation while the key is ours or in doubt; release it otherwise."""
        if key is None or outcome.status is Status.CREATED or outcome.in_doubt:
            return
        self.release(key)
