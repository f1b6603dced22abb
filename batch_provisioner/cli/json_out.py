"""``--json``: one JSON document on stdout for scripts, holding the facts of the files written.

A command decorated with ``json_command(name)`` takes ``--json`` (its ``json_output``
parameter). With it, every line for a person goes to stderr (``human_lines_on_stderr``, the
one switch) and stdout carries exactly one JSON document, on one line:

* the command's own, when it calls ``emit(build, ...)``: ``build`` (one of the ``*_document``
  functions here) is called only under ``--json``;
* an error document, ``{"error": {"code", "message"}}``, when the command stops before it has
  one (a bad input file, an unknown run, a usage error the command finds itself). The error is
  raised on, so the CLI prints it on stderr and exits with its code, the document's
  ``exit_code``.

Every document starts with ``schema_version`` (``SCHEMA_VERSION``, raised only when a key
changes meaning or goes away; new keys may appear at any time), ``command``, ``version`` and
``exit_code``. Every value passes through ``scrub_json`` (the REDACTOR): never a secret. The
JSON Schemas are package data: ``batch_provisioner/data/schemas/<command>.schema.json``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import polars as pl
import typer
from typer._click import exceptions as typer_errors

from batch_provisioner.cli.common import first_error, human_lines_on_stderr
from batch_provisioner.errors import (
    ApiError,
    ExitCode,
    FatalApiError,
    InputError,
    OutputError,
    ProvisionerError,
    RunStopped,
)
from batch_provisioner.report.scrub import scrub_json
from batch_provisioner.safety import REDACTOR
from batch_provisioner.settings import VERSION
from batch_provisioner.sheet.rules import PROBLEM_SCHEMA

if TYPE_CHECKING:
    import batch_provisioner as bp

__all__ = ["SCHEMA_VERSION", "apply_document", "connect_cards_document", "emit",
           "json_command", "plan_document", "status_document", "usage_error",
           "validation_document"]

SCHEMA_VERSION = 1
P = ParamSpec("P")
Document = dict[str, Any]
PLAN_ACTIONS = ("create", "exists", "drift", "conflict", "invalid")
#: Our errors, most specific first: the ``error.code`` of an error document.
_ERROR_CODES: tuple[tuple[type[ProvisionerError], str], ...] = (
    (InputError, "input_error"), (OutputError, "output_error"),
    (FatalApiError, "fatal_api_error"), (ApiError, "api_error"), (RunStopped, "interrupted"))


@dataclass
class _Sink:
    """Where a ``--json`` command's one document goes (stdout), and whether it went."""

    command: str
    written: bool = False

    def write(self, body: Mapping[str, Any]) -> None:
        """Write ``body`` in its envelope, unless a document was written already."""
        if self.written:
            return
        self.written = True
        document = {"schema_version": SCHEMA_VERSION, "command": self.command,
                    "version": VERSION, **body}
        text = json.dumps(_finite(scrub_json(document)), ensure_ascii=False, allow_nan=False)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


_SINK: ContextVar[_Sink | None] = ContextVar("json_sink", default=None)  # --json's, if on
#: The error the last ``--json`` command wrote its error document for (raised on to the CLI).
_REPORTED: ContextVar[BaseException | None] = ContextVar("json_reported", default=None)
_JSON_COMMANDS: set[str] = set()


def json_command(name: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Give a command (with a ``json_output: JsonOpt`` parameter) its ``--json`` behaviour."""

    def decorate(command: Callable[P, None]) -> Callable[P, None]:
        _JSON_COMMANDS.add(name)

        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            if not kwargs.get("json_output"):
                command(*args, **kwargs)
                return
            sink = _Sink(name)
            token = _SINK.set(sink)
            try:
                with human_lines_on_stderr():
                    command(*args, **kwargs)
            except typer.Exit as done:  # its end: the bare exit code if it emitted nothing
                sink.write({"exit_code": done.exit_code})
                raise
            except BaseException as exc:  # the CLI reports it on stderr, with this exit code
                sink.write(error_document(exc))
                _REPORTED.set(exc)
                raise
            else:
                sink.write({"exit_code": int(ExitCode.OK)})
            finally:
                _SINK.reset(token)

        return run

    return decorate


def emit(build: Callable[P, Mapping[str, Any]], *args: P.args, **kwargs: P.kwargs) -> None:
    """Under ``--json``, write the document ``build(*args, **kwargs)`` makes (once per
    command); otherwise do nothing (``build`` is not called)."""
    sink = _SINK.get()
    if sink is not None:
        sink.write(build(*args, **kwargs))


def usage_error(exc: typer_errors.ClickException, argv: Sequence[str] | None) -> None:
    """A usage error found before a ``--json`` command ran (a missing argument, an unknown
    option, a value of the wrong type): its error document on stdout, so that stdout holds
    one document then too. Nothing when the command wrote one for it, or has no ``--json``."""
    context = getattr(exc, "ctx", None)
    name = getattr(context, "info_name", None)
    words = sys.argv[1:] if argv is None else argv
    if name in _JSON_COMMANDS and "--json" in words and _REPORTED.get() is not exc:
        _Sink(str(name)).write(error_document(exc))


def error_document(exc: BaseException) -> Document:
    """``{"exit_code", "error": {"code", "message"}}`` for what stopped a command; the exit
    code is the one the CLI exits with for it."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    if isinstance(exc, ProvisionerError):
        code = next((c for kind, c in _ERROR_CODES if isinstance(exc, kind)), "error")
        exit_code, message = int(exc.exit_code), exc.message
    elif isinstance(exc, typer_errors.ClickException):  # a bad value the command checked
        code, exit_code, message = "usage_error", int(ExitCode.INPUT_ERROR), exc.format_message()
    elif isinstance(exc, KeyboardInterrupt | typer.Abort):
        code, exit_code, message = "interrupted", int(ExitCode.INTERRUPTED), "interrupted"
    else:  # a bug: the CLI's last net says so on stderr
        code, exit_code = "internal_error", int(ExitCode.INTERNAL)
        message = f"{type(exc).__name__}: {exc}"
    return {"exit_code": exit_code, "error": {"code": code, "message": REDACTOR.scrub(message)}}


# -- the documents -----------------------------------------------------------------------

def validation_document(result: bp.Validation) -> Document:
    """validate: the counts, every problem (validation.csv's columns), the paths."""
    sheet = result.sheet
    return {
        "exit_code": int(result.exit_code), "sheet": sheet.table.label,
        "counts": {"rows": len(sheet.rows), "invalid": len(result.invalid_rows),
                   "errors": result.errors, "warnings": result.warnings, "ready": result.ready},
        "invalid_rows": result.invalid_rows, "carry_columns": sheet.carry_columns,
        "ignored_columns": list(sheet.table.ignored),
        "problems": result.problems.select(list(PROBLEM_SCHEMA)).to_dicts(),
        "paths": _paths(result.paths),
    }


def plan_document(result: bp.PlanResult, run_id: str) -> Document:
    """plan: the count of each action, one entry per row (plan.csv's columns), the estimate."""
    counts = {action: 0 for action in PLAN_ACTIONS} | {
        str(action): int(n) for action, n in result.counts.items()}
    carry = result.sheet.carry_columns
    return {
        "exit_code": int(result.exit_code), "run_id": run_id, "counts": counts,
        "estimate": result.estimate.as_dict() if result.estimate is not None else None,
        "carry_columns": carry, "rows": _rows(result.frame, carry),
        "paths": _paths(result.paths),
    }


def apply_document(result: bp.ApplyResult) -> Document:
    """apply: summary.json as written, one entry per row (results.csv's columns), the paths."""
    summary = dict(result.summary)
    carry = [str(c) for c in summary.get("carry_columns") or ()]
    return {
        "exit_code": int(result.exit_code), "run_id": result.run_id, "counts": result.counts,
        "fatal_message": result.fatal_message, "stop_message": result.stop_message,
        "summary": summary, "carry_columns": carry, "rows": _rows(result.results(), carry),
        "paths": _paths(result.paths),
    }


def status_document(result: bp.StatusResult) -> Document:
    """status: one entry per connection (status.csv's columns, ``needs_action``), the tally."""
    lines = result.lines
    unread = sum(1 for line in lines if line.get("error"))
    connected = sum(1 for line in lines if not result.needs_action(line))
    carry = list(result.carry_columns)
    return {
        "exit_code": int(result.exit_code), "run_id": result.run_id,
        "counts": {"connections": len(lines), "connected": connected,
                   "not_connected": len(lines) - connected - unread, "unread": unread},
        "setup_states": dict(result.setup_states), "report_refreshed": result.report_refreshed,
        "carry_columns": carry,
        "rows": [{**_carried(line, carry), "needs_action": result.needs_action(line)}
                 for line in lines],
        "paths": _paths(result.paths),
    }


def connect_cards_document(result: bp.ConnectCardsResult) -> Document:
    """connect-cards: one entry per connection (a fresh uri where the client must act)."""
    carry = list(result.carry_columns)
    rows = [{"row": r.row.row, "group_id": r.row.group_id, "schema": r.row.schema,
             "connection_id": r.row.connection_id, "carry": _carry_of(r.row.carry, carry),
             "setup_state": r.setup_state, "uri": r.uri, "expires_at": r.expires_at,
             "error": r.error, "needs_action": result.needs_action(r)} for r in result.results]
    return {
        "exit_code": int(result.exit_code), "run_id": result.run_id,
        "counts": {"connections": len(result.results), "fresh_cards": len(result.cards),
                   "connected": result.connected, "failed": len(result.failed)},
        "carry_columns": carry, "rows": rows, "paths": _paths(result.paths),
    }


def _rows(frame: pl.DataFrame, carry: Sequence[str]) -> list[Document]:
    """One entry per line of ``frame``: its own columns, the user's under ``carry``."""
    return [_carried(line, carry) for line in frame.iter_rows(named=True)]


def _carried(line: Mapping[str, Any], carry: Sequence[str]) -> Document:
    names = set(carry)
    return {**{k: v for k, v in line.items() if k not in names},
            "carry": _carry_of(line, carry)}


def _carry_of(values: Mapping[str, Any], carry: Iterable[str]) -> Document:
    return {name: values.get(name) for name in carry}


def _paths(paths: Mapping[str, Path]) -> dict[str, str]:
    return {name: str(path) for name, path in paths.items()}


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (not JSON) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
