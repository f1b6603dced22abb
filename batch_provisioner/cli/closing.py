"""The last lines of every command: what happened, and the next command to run.

Each command ends with ``next: ...`` lines a person can paste: the resume command after exit 4,
the cause and what to check after exit 3, the failed-rows file only when rows failed, the
connect-cards command when clients must act. The commands are rebuilt from the flags the
command was given (quoted for a POSIX shell), so they work as printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from batch_provisioner.cli.common import plain_err, plain_out, shown
from batch_provisioner.errors import ExitCode
from batch_provisioner.run.invocation import Invocation as Invocation
from batch_provisioner.run.next_actions import NextAction


def say(line: str) -> None:
    plain_out.print(shown(line, 4_000))


def say_next(command: str, why: str | None = None) -> None:
    say(f"next: {command}" + (f"   # {why}" if why else ""))


def apply_closing(actions: Sequence[NextAction], exit_code: int, run_id: str, *,
                  fatal: str | None, stopped: str | None) -> None:
    """The closing lines of ``apply``, from the run's next actions (summary.json's
    ``next_actions``): the error first (on stderr), then each action's sentence and command."""
    code = int(exit_code)
    if code == ExitCode.INTERNAL:  # a bug stopped the run: nothing new was sent
        internal = next((a for a in actions if a.kind == "internal"), None)
        plain_err.print(shown(internal.message if internal and internal.message else
                              f"internal error: {stopped or 'see run.log.jsonl'}; please "
                              f"report it (run {run_id})", 2_000))
    elif code == ExitCode.FATAL_API and fatal:
        plain_err.print(shown(f"error: {fatal}", 2_000))
    for action in actions:
        if action.message and action.kind not in ("internal", "fatal"):
            say(action.message)
        if action.command:
            say_next(action.command, action.why)
    say_exit(code)


def exit_label(code: int) -> str:
    """The name of an exit code, as ``--help`` and the README's table give it: ``ok``,
    ``rows_failed``, ``input_error``, ``fatal_api``, ``interrupted``, ``changes_pending``,
    ``internal`` (``errors.ExitCode``)."""
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return "unknown"


def say_exit(code: int) -> None:
    """A command's last line: ``exit code 1 (rows_failed)``."""
    say(f"exit code {int(code)} ({exit_label(int(code))})")
