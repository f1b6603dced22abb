"""``RunControl``: why new work must stop (a fatal API error, a bug, a signal, the deadline, a
wait past ``--max-wait``), and who must hear of it at once (the budget gate's waiters)."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from batch_provisioner.errors import FatalApiError

#: Why a run stops sending; the ``error_code`` of its ``not_attempted`` rows.
STOP_REASONS = ("fatal", "internal", "interrupted", "deadline", "max_wait", "api_failing")


class RunControl:
    """Why new work must stop: a fatal API error, a signal, the deadline, a wait too long.

    ``interrupt()`` (the first Ctrl-C), ``halt()`` (a wait past the deadline or ``--max-wait``)
    and a fatal error tell every listener (``on_stop``) at once, so that requests queued behind
    a budget are never sent. Setting ``interrupted = True`` is the same as ``interrupt()``.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline  # anyio.current_time() value
        self.aborted = False
        self.abort_scope: anyio.CancelScope | None = None
        self._fatal: FatalApiError | None = None
        self._internal: str | None = None  # a bug's message (scrubbed): exit 70
        self._interrupted = False
        self._halted: str | None = None
        self.halt_message: str | None = None
        self._listeners: list[Callable[[str, str], object]] = []

    # -- why --------------------------------------------------------------------------------

    @property
    def fatal(self) -> FatalApiError | None:
        return self._fatal

    @fatal.setter
    def fatal(self, error: FatalApiError | None) -> None:
        first = self._fatal is None and error is not None
        self._fatal = error
        if first and error is not None:
            self._tell("fatal", error.message)

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    @interrupted.setter
    def interrupted(self, value: bool) -> None:
        if value:
            self.interrupt()
        else:
            self._interrupted = False

    def interrupt(self) -> None:
        """First Ctrl-C (or SIGTERM): start no new row and send nothing new; in-flight
        requests finish."""
        if not self._interrupted:
            self._interrupted = True
            self._tell("interrupted", "the run was interrupted")

    @property
    def internal(self) -> str | None:
        """The message of the bug that stopped the run (None: no bug)."""
        return self._internal

    def fail(self, message: str) -> None:
        """A bug (an unexpected exception): like a fatal stop, nothing new is sent, and the
        run ends with exit 70 so that it is reported rather than retried row after row."""
        if self._internal is None:
            self._internal = message
            if self._fatal is None:
                self._tell("internal", message)

    def halt(self, reason: str, message: str) -> None:
        """Stop sending because a wait would pass the deadline or ``--max-wait``."""
        if (self._halted is None and self._fatal is None and self._internal is None
                and not self._interrupted):
            self._halted, self.halt_message = reason, message
            self._tell(reason, message)

    def abort(self) -> None:
        """Second Ctrl-C: give up on in-flight requests too (resume looks them up)."""
        self.interrupt()
        self.aborted = True
        if self.abort_scope is not None:
            self.abort_scope.cancel()

    def stop_reason(self) -> str | None:
        if self._fatal is not None:
            return "fatal"
        if self._internal is not None:
            return "internal"
        if self._interrupted:
            return "interrupted"
        if self._halted is not None:
            return self._halted
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            return "deadline"
        return None

    # -- who hears --------------------------------------------------------------------------

    def on_stop(self, listener: Callable[[str, str], object]) -> None:
        """Call ``listener(reason, message)`` once the run stops (at once if it has)."""
        self._listeners.append(listener)
        reason = self.stop_reason()
        if reason is not None and reason != "deadline":
            listener(reason, self._message(reason))

    def stop_message(self) -> str | None:
        """Why the run stopped, in words (None while it runs)."""
        reason = self.stop_reason()
        return None if reason is None else self._message(reason)

    def _message(self, reason: str) -> str:
        if reason == "fatal" and self._fatal is not None:
            return self._fatal.message
        if reason == "internal" and self._internal is not None:
            return f"the run stopped on an internal error ({self._internal})"
        if reason == "interrupted":
            return "the run was interrupted"
        if reason == "deadline" and self._halted is None:
            return "the run's deadline has passed"
        return self.halt_message or reason

    def _tell(self, reason: str, message: str) -> None:
        for listener in list(self._listeners):
            listener(reason, message)
