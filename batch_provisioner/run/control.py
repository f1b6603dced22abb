"""``RunControl``: why new work must stop (a fatal API error, a signal, the deadline)."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from batch_provisioner.errors import FatalApiError


@dataclass
class RunControl:
    """Why new work must stop: a fatal API error, a signal, or the deadline."""

    deadline: float | None = None  # anyio.current_time() value
    fatal: FatalApiError | None = None
    interrupted: bool = False
    aborted: bool = False
    abort_scope: anyio.CancelScope | None = None

    def abort(self) -> None:
        """Second Ctrl-C: give up on in-flight requests too (resume looks them up)."""
        self.interrupted = self.aborted = True
        if self.abort_scope is not None:
            self.abort_scope.cancel()

    def stop_reason(self) -> str | None:
        if self.fatal is not None:
            return "fatal"
        if self.interrupted:
            return "interrupted"
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            return "deadline"
        return None
