"""The command line: parses flags and env once, sets up logging, maps errors to exit codes.

This package is the only one that prints for the user, exits, or configures logging. Each
command family lives in its own module (``sheet``: validate, render, template; ``apply``: plan,
apply; ``runs``: status, connect-cards, rollback; ``groups``: groups; ``export``: export;
``sandbox``: sandbox serve) and calls the public library (:mod:`batch_provisioner`);
``common`` holds what they share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Annotated

import typer
import typer.core
from typer._click import exceptions as typer_errors  # typer vendors click: its own errors

from batch_provisioner.cli import (
    apply as apply_commands,
    export as export_commands,
    groups as group_commands,
    runs as run_commands,
    sheet as sheet_commands,
)
from batch_provisioner.cli.common import HelpCommand, HelpGroup, err, first_error, out, shown, speak
from batch_provisioner.cli.json_out import usage_error
from batch_provisioner.cli.sandbox import sandbox_app
from batch_provisioner.errors import ExitCode, ProvisionerError
from batch_provisioner.safety import REDACTOR
from batch_provisioner.settings import VERSION

__all__ = ["app", "main"]

#: What typer returns for a Ctrl-C inside a command (it turns the KeyboardInterrupt into
#: ``Exit(130)``): read as the interruption it is, exit 4 as documented.
_TYPER_INTERRUPTED = 130

app = typer.Typer(cls=HelpGroup, add_completion=False, pretty_exceptions_enable=False,
                  help="Onboard many TikTok Ads advertiser groups into Fivetran from a sheet.",
                  no_args_is_help=True)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"batch-provisioner {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version (batch-provisioner X.Y.Z) and exit.")] = False) -> None:
    """Onboard many TikTok Ads advertiser groups into Fivetran from one spreadsheet."""


def _register_subcommands() -> None:
    """Add every command once, however often ``main`` runs in one process."""
    if any(group.typer_instance is sandbox_app for group in app.registered_groups):
        return
    sheet_commands.register(app)
    apply_commands.register(app)
    app.add_typer(sandbox_app, name="sandbox", help="Run the embedded Fivetran API sandbox.")
    run_commands.register(app)
    group_commands.register(app)
    export_commands.register(app)
    for command in (*app.registered_commands, *sandbox_app.registered_commands):
        if command.cls in (None, typer.core.TyperCommand):  # typer's default
            command.cls = HelpCommand  # --help as the README shows it


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``timeout``, cron's and systemd's stop) interrupts as Ctrl-C does.

    By default SIGTERM ends the process at once. ``finally`` blocks and atexit handlers do
    not run then, so a download's copy of the sheet stays in the temp folder. This handler
    applies only where the process has not set one of its own (an embedding program keeps
    its own). While ``apply`` runs, its own signal receiver stops the run gracefully instead.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> None:
    """Entry point: never a traceback for the user; the exit code says what happened."""
    _register_subcommands()
    try:
        try:
            with _sigterm_interrupts():
                code = app(args=argv, standalone_mode=False, prog_name="batch-provisioner")
            if code == _TYPER_INTERRUPTED:
                raise KeyboardInterrupt
        except BaseExceptionGroup as group:  # a task group's error: report its first cause
            raise first_error(group) from None
        finally:
            speak()  # after --quiet: an error is always printed
    except typer.Abort:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except typer_errors.NoArgsIsHelpError as exc:
        exc.show()
        code = ExitCode.OK if argv == [] else ExitCode.INPUT_ERROR
    except typer_errors.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        usage_error(exc, argv)
        code = ExitCode.INPUT_ERROR
    except ProvisionerError as exc:  # InputError included: a file's own text is made inert
        err.print(shown(f"error: {REDACTOR.scrub(exc.message)}", 2_000))
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as exc:  # the last net, for bugs only: a scrubbed one-line message
        err.print(shown(f"internal error: {type(exc).__name__}: {REDACTOR.scrub(str(exc))} "
                        "(a bug: please report it, with run.log.jsonl; "
                        "BATCH_PROVISIONER_DEBUG=1 prints the traceback)", 2_000))
        if os.environ.get("BATCH_PROVISIONER_DEBUG"):
            err.print(REDACTOR.scrub("".join(traceback.format_exception(exc))), markup=False)
        code = ExitCode.INTERNAL
    sys.exit(int(code) if isinstance(code, int) else 0)
