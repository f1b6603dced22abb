"""The run lock: one process at a time works on a run folder.

``<run_dir>/lock`` is held with an OS-level ``flock``, so the kernel, not a pid check, decides
who owns it: a lock left by a dead process (a crash, a kill -9) is free at once, and two runs
can never both take over a stale one. The file also holds the owner's pid and host, for the
message a second run gets and for the warning when a dead run's lock is taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO, Any

from batch_provisioner.errors import InputError, OutputError
from batch_provisioner.report.files import ensure_dir
from batch_provisioner.run.journal import now_iso


class RunLock:
    """``with RunLock(run_dir) as lock:``; ``lock.took_over_from`` names a dead previous owner."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "lock"
        self.took_over_from: dict[str, Any] | None = None
        self._handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock; ``OutputError`` (exit 2) when its file cannot be written."""
        ensure_dir(self.path.parent)
        try:
            return self._acquire()
        except OSError as exc:  # a full disk or a read-only folder: nothing is sent
            raise OutputError.from_os_error(self.path, exc) from None

    def _acquire(self) -> RunLock:
        for _ in range(8):
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                handle.close()
                raise InputError(
                    f"run {self.path.parent.name} is already running (pid "
                    f"{(holder or {}).get('pid', '?')} on {(holder or {}).get('host', '?')}); "
                    "wait for it or pick another --run-id", path=str(self.path)) from None
            if not _same_file(handle, self.path):  # released and removed while we waited
                handle.close()
                continue
            previous = _holder(handle)
            if previous:
                self.took_over_from = previous
            handle.seek(0)
            handle.truncate()
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "t": now_iso()},
                      handle)
            handle.flush()
            self._handle = handle
            return self
        raise InputError("could not take the run lock", path=str(self.path))

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: a waiter then sees a new file
        self._handle.close()
        self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _holder(handle: IO[str]) -> dict[str, Any] | None:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False
