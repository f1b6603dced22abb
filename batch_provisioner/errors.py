"""The error tree. Every error carries structured fields; none carries a secret value.

Exit codes (see ``ExitCode``): 0 all rows ok, 1 some rows invalid or failed, 2 usage or input
error, or an output that cannot be written (nothing sent), 3 fatal API error (run stopped),
4 interrupted (resumable; also an output that cannot be written once something was sent),
5 (``plan`` only) changes pending, 70 internal error: a bug, never an input or the environment
(please report it, with run.log.jsonl). ``--help``, the closing lines and the README name each
code by its member here, lower-cased (``rows_failed``, ``fatal_api``, ...).
"""

from __future__ import annotations

import enum
import os
import re
import socket
import ssl
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    ROWS_FAILED = 1
    INPUT_ERROR = 2
    FATAL_API = 3
    INTERRUPTED = 4
    CHANGES_PENDING = 5  # plan only: creates or drift pending (terraform -detailed-exitcode)
    INTERNAL = 70  # a bug: please report it, with run.log.jsonl (BSD's EX_SOFTWARE)


class ProvisionerError(Exception):
    """Base of every error the job raises on purpose."""

    exit_code: ExitCode = ExitCode.ROWS_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(ProvisionerError):
    """A bad file, a missing column or a bad template: nothing is sent."""

    exit_code = ExitCode.INPUT_ERROR

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                path,
                f"row {row}" if row is not None else None,
                f"column {column!r}" if column else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.detail = message  # the message without where it is
        self.path = path
        self.row = row
        self.column = column

    def renamed(self, old: str, new: str) -> InputError:
        """The same error with the file name ``old`` replaced by ``new`` (a downloaded input's
        private copy by the URL it came from)."""
        return InputError(self.detail.replace(old, new),
                          path=self.path.replace(old, new) if self.path else self.path,
                          row=self.row, column=self.column)


class OutputError(ProvisionerError):
    """A file or folder the job must write cannot be written: a full disk, a read-only
    folder, a file where a folder belongs. The message names the path.

    Exit 2 when nothing was sent yet; 4 once something was (``sent=True``): the journal holds
    every outcome, so a resume (or ``status``) carries on once the cause is fixed.
    """

    def __init__(self, message: str, *, path: str, sent: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.sent = sent
        self.exit_code = ExitCode.INTERRUPTED if sent else ExitCode.INPUT_ERROR

    @classmethod
    def from_os_error(cls, path: object, exc: OSError, doing: str = "write") -> OutputError:
        """``cannot write PATH: No space left on device (errno 28)``."""
        why, number = exc.strerror, exc.errno
        rust = re.match(r"(.*?)\s*\(os error (\d+)\)", str(exc))  # polars: no strerror
        if not why and rust:
            why, number = rust.group(1), int(rust.group(2))
        code = f" (errno {number})" if number else ""
        return cls(f"cannot {doing} {path}: {why or exc or type(exc).__name__}{code}",
                   path=str(path))

    @classmethod
    def for_folder(cls, folder: Path, exc: OSError) -> OutputError:
        """A folder that cannot be made: ``PATH is a file, not a folder`` when one is."""
        blocker = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        if blocker is not None:
            return cls(f"cannot create the folder {folder}: {blocker} is a file, not a folder",
                       path=str(blocker))
        return cls.from_os_error(folder, exc, "create the folder")

    def after_sending(self, sent: bool = True, hint: str = "") -> OutputError:
        """The same error, with its exit code chosen by whether anything was sent."""
        if not sent or self.sent:
            return self
        message = self.message + (f"; {hint}" if hint else "")
        return OutputError(message, path=self.path, sent=True)


class ApiError(ProvisionerError):
    """An answer (or the lack of one) from the Fivetran API."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.method = method
        self.path = path


class RetriableApiError(ApiError):
    """Safe to send again: a 429, a 5xx on a read, or a transport error before the request left."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ThrottledError(RetriableApiError):
    """A 429: every worker pauses until ``retry_after`` seconds have passed."""


class AmbiguousApiError(ApiError):
    """The request may have been applied (timeout or reset after send, 5xx on a write).

    The caller must look the connection up by (group_id, schema) before any retry.
    """


class RowApiError(ApiError):
    """A 4xx that belongs to one row (validation, unknown group, schema exists)."""


class ConflictApiError(RowApiError):
    """The schema already exists in the group (409, or 400 that names the schema)."""


class NotFoundApiError(RowApiError):
    """A ``NotFound*`` code: a group or connection that does not exist."""


class FatalApiError(ApiError):
    """401/403 or a wrong base URL: stop the run, mark the rest ``not_attempted``."""

    exit_code = ExitCode.FATAL_API


class RunStopped(ProvisionerError):
    """Nothing more is sent: a signal, a wait that would pass ``--deadline`` or
    ``--max-wait``, or a fatal error elsewhere. The request it stopped never left, so its row
    is ``not_attempted`` (resumable). ``reason`` is one of ``run.control.STOP_REASONS``."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, reason: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.wait = wait


def network_cause(exc: BaseException) -> str | None:
    """What went wrong on the network, in a few words, from the OS-level errors in ``exc``'s
    chain (TLS, name lookup, refused, reset, any errno); None when none of them is there.
    Not scrubbed or shortened: the callers (the API's edge, downloads) do both."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, ssl.SSLError):
            reason = getattr(error, "verify_message", None) or error.reason or str(error)
            return f"TLS failure: {reason}"
        if isinstance(error, socket.gaierror):
            return f"host not found ({error.strerror or error})"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, ConnectionResetError):
            return "connection reset"
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno).lower()
    return None
