"""structlog configuration: console on a TTY, JSON otherwise; secrets scrubbed from every event.

Only the CLI calls ``configure``. Events are namespaced (``row.created``, ``budget.paused``...).
When a run directory is given, every event is also appended as JSON to ``run.log.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from batch_provisioner.errors import OutputError
from batch_provisioner.safety import REDACTOR

_FILE_LOCK = threading.Lock()


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Processor: mask every known secret value anywhere in the event, and secret-named keys."""
    scrubbed = REDACTOR.scrub_value(dict(event))
    event.clear()
    event.update(scrubbed)
    return event


class _JsonFileTee:
    """Processor: append the event as one JSON line to ``run.log.jsonl``.

    An event logged with ``exc_info`` (``log.exception``) carries its traceback, scrubbed, in
    the file only (``exception``). The log is the machine's diary, not the record of the run
    (the journal is): a write that fails (a full disk) stops the tee and says so once on the
    event at hand, never failing the command that logged it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle: TextIO | None = path.open("a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise OutputError.from_os_error(path, exc) from None

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        record = dict(event)
        if record.get("exc_info"):
            record = REDACTOR.scrub_value(structlog.processors.format_exc_info(None, "", record))
        line = json.dumps(record, default=str, ensure_ascii=False)
        with _FILE_LOCK:
            if self._handle is None:
                return event
            try:
                self._handle.write(line + "\n")
            except OSError as exc:
                event["run_log_error"] = (f"cannot write {self.path}: "
                                          f"{exc.strerror or exc}; it stops here")
                self._close()
        return event

    def close(self) -> None:
        with _FILE_LOCK:
            self._close()

    def _close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


def _drop_exc_info(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Processor: no traceback on the console (it may show local values); the run log has it."""
    event.pop("exc_info", None)
    return event


_TEE: list[_JsonFileTee] = []


def close_run_log() -> None:
    """Close the ``run.log.jsonl`` tee, if one is open (the CLI calls this at the end)."""
    while _TEE:
        _TEE.pop().close()


def configure(
    *, log_format: str = "auto", level: str = "info", run_log: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up the one logging pipeline of the process."""
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
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
    if use_json:
        processors.append(structlog.processors.JSONRenderer(default=str))
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def _level_number(level: str) -> int:
    import logging

    return int(logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
