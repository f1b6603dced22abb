"""structlog configuration: the whole log to ``run.log.jsonl``; to the terminal only what is
asked for; secrets scrubbed from every event.

Only the CLI calls ``configure``. Events are namespaced (``row.created``, ``budget.paused``...).
When a run directory is given, every event is appended as JSON to ``run.log.jsonl`` (by a
writer thread: no file write on the event loop per event; see ``_JsonFileTee``). The terminal
gets, by ``log_format``: ``json``, every event as a JSON line; ``console``, every event as a
console line; ``auto``, only the warnings and errors a person must see, as short lines (not the
per-row ones: ``row.*`` and ``request.*`` events are counted in the closing lines and listed
in results.csv; nor why a run stopped, which its closing lines say); with ``quiet``, ``auto``
shows errors only. Console and ``auto`` lines go
through ``echo`` when given (the CLI prints them above its progress display).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from batch_provisioner.errors import OutputError
from batch_provisioner.safety import REDACTOR


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Processor: mask every known secret value anywhere in the event, and secret-named keys."""
    scrubbed = REDACTOR.scrub_value(dict(event))
    event.clear()
    event.update(scrubbed)
    return event


class _JsonFileTee:
    """Processor: append the event as one JSON line to ``run.log.jsonl``, off the event loop.

    Logging an event only queues its line (no file I/O on the caller's thread); a writer
    thread appends what is queued every ``FLUSH_SECONDS``, at once for a warning, and
    ``close`` writes the rest. An error (or an event with a traceback) is written by the
    caller before it returns, so that it is on disk before whatever follows it. Lines are
    written whole and in order (one writer at a time), so the file is complete after a
    normal exit, an exception or Ctrl-C (the CLI closes it in a ``finally``; an ``atexit``
    hook closes one left open). A ``kill -9`` loses at most the last ``FLUSH_SECONDS`` of
    info events: the journal, fsynced record by record, is the durable record of a run.

    An event logged with ``exc_info`` (``log.exception``) carries its traceback, scrubbed, in
    the file only (``exception``). The log is the machine's diary, not the record of the run
    (the journal is): a write that fails (a full disk) stops the tee and says so once, on the
    next event to pass (the event at hand, when the caller wrote it), never failing the
    command that logged it.
    """

    FLUSH_SECONDS = 0.25

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle: TextIO | None = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise OutputError.from_os_error(path, exc) from None
        self._queue: list[str] = []  # lines not written yet
        self._queued = threading.Lock()  # guards the queue and the handle (held briefly)
        self._writing = threading.Lock()  # one writer at a time, so lines stay in order
        self._failure: str | None = None  # a failed write the next event tells of
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_periodically, daemon=True,
                                        name="run-log-writer")
        self._writer.start()

    def __call__(self, _logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        record = dict(event)
        if record.get("exc_info"):
            record = REDACTOR.scrub_value(structlog.processors.format_exc_info(None, "", record))
        line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
        with self._queued:
            if self._handle is not None:
                self._queue.append(line)
        if name in _WRITTEN_AT_ONCE or "exception" in record:
            self.flush()
        elif name == "warning":
            self._wake.set()
        with self._queued:
            failure, self._failure = self._failure, None
        if failure is not None:
            event["run_log_error"] = failure
        return event

    def flush(self) -> None:
        """Write every queued line; a failed write stops the tee (the next event says so)."""
        with self._writing:
            with self._queued:
                lines, self._queue = self._queue, []
                handle = self._handle
            if not lines or handle is None:
                return
            try:
                handle.write("".join(lines))
                handle.flush()
            except OSError as exc:
                with self._queued:
                    self._close()
                    self._failure = (f"cannot write {self.path}: {exc.strerror or exc}; "
                                     "it stops here")

    def close(self) -> None:
        """Write what is queued and close the file (waits for the writer thread)."""
        self._closing = True
        self._wake.set()
        if self._writer is not threading.current_thread():
            self._writer.join()
        self.flush()
        with self._writing, self._queued:
            self._close()

    def _write_periodically(self) -> None:
        while not self._closing and self._handle is not None:
            self._wake.wait(self.FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def _close(self) -> None:
        """Close the file (the caller holds ``_queued``); queued lines are dropped."""
        handle, self._handle = self._handle, None
        self._queue = []
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


#: Events the caller writes itself, before it goes on (structlog method names).
_WRITTEN_AT_ONCE = frozenset({"error", "critical", "exception", "fatal"})


def _drop_exc_info(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Processor: no traceback on the console (it may show local values); the run log has it."""
    event.pop("exc_info", None)
    return event


_TEE: list[_JsonFileTee] = []


def close_run_log() -> None:
    """Close the ``run.log.jsonl`` tee, if one is open (the CLI calls this at the end; at
    exit, a tee still open is closed too): every event logged so far is then in the file."""
    while _TEE:
        _TEE.pop().close()


atexit.register(close_run_log)


def configure(
    *, log_format: str = "auto", level: str = "info", run_log: Path | None = None,
    stream: TextIO | None = None, echo: Callable[[str], None] | None = None,
    quiet: bool = False,
) -> None:
    """Set up the one logging pipeline of the process (see the module docstring)."""
    stream = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    close_run_log()
    if run_log is not None:
        try:
            run_log.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where the reports folder belongs: exit 2, named
            raise OutputError.for_folder(run_log.parent, exc) from None
        _TEE.append(_JsonFileTee(run_log))
        processors.append(_TEE[-1])
    processors.append(_drop_exc_info)
    write = echo or _writer(stream)
    if log_format == "json":  # JSON lines are for a machine: straight to the stream
        processors.append(structlog.processors.JSONRenderer(default=str))
        write = _writer(stream)
    elif log_format == "console":
        processors += [_inert_text, structlog.dev.ConsoleRenderer(
            colors=echo is not None or stream.isatty())]
    else:
        processors += [_TerminalFilter(_ERROR if quiet else _WARNING), _inert_text,
                       _short_line]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=lambda *_args: _LineLogger(write),
        cache_logger_on_first_use=False,
    )


class _LineLogger:
    """The end of the chain: hands each rendered event to ``write`` (structlog calls the
    method named after the event's level)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def msg(self, message: str) -> None:
        self._write(message)

    debug = info = warning = warn = error = critical = exception = fatal = failure = msg


def _writer(stream: TextIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write


_WARNING, _ERROR = 30, 40
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40,
           "critical": 50, "fatal": 50}
#: Events about one row: the closing lines count them, results.csv lists them.
_PER_ROW = ("row.", "request.")
#: Why a run stopped: the command's closing lines say it (``error: ...``, ``stopped: ...``).
_SAID_AT_THE_END = frozenset({"run.fatal", "run.stopped", "run.declined", "run.output_failed",
                              "run.api_failing", "budget.wait_refused", "row.internal_error"})


class _TerminalFilter:
    """Processor (after the run-log tee): drop what the terminal need not show in ``auto``."""

    def __init__(self, least: int) -> None:
        self.least = least

    def __call__(self, _logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        level = _LEVELS.get(str(event.get("level", name)), 20)
        what = str(event.get("event", ""))
        if level < self.least or what in _SAID_AT_THE_END or (
                level < _ERROR and what.startswith(_PER_ROW)):
            raise structlog.DropEvent
        return event


#: Terminal controls a logged value could carry (an API's message, a cell): shown escaped.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _inert_text(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Processor: no control sequence of a logged value reaches the terminal."""
    for key, value in event.items():
        if isinstance(value, str) and _CONTROLS.search(value):
            event[key] = _CONTROLS.sub(_escaped, value)
    return event


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _short_line(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """Renderer: ``warning: run.interrupted: no new rows; ... (signal=SIGINT)``."""
    fields = {k: v for k, v in event.items() if k not in ("level", "event", "timestamp")}
    text = fields.pop("note", None) or fields.pop("error", None)
    line = f"{event.get('level', 'info')}: {event.get('event', '')}"
    if text:
        line += f": {text}"
    if fields:
        line += " (" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
    return line


def _level_number(level: str) -> int:
    import logging

    return int(logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
