"""The command line: parses flags and env once, sets up logging, maps errors to exit codes.

This is the only module that prints for the user, exits, or configures logging.
"""

from __future__ import annotations

import enum
import json
import os
import re
import secrets as _random
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text
from typer._click import exceptions as typer_errors  # typer vendors click: its own errors

from batch_provisioner.errors import ExitCode, InputError, ProvisionerError
from batch_provisioner.settings import VERSION as __version__
from batch_provisioner.sheet.expand import masked
from batch_provisioner.sheet.load import Prepared, prepare
from batch_provisioner.sheet.secrets import REDACTOR, SecretContext
from batch_provisioner.sheet.templates import write_templates
from batch_provisioner.sheet.validate import ERROR

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Onboard many TikTok Ads advertiser groups into Fivetran from a sheet.",
                  no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
MAX_PRINTED_PROBLEMS = 200
_SHOWN_CHARS = 300  # a cell of the problem table; the whole text is in validation.csv
# Terminal controls a hostile cell could carry: C0/C1 controls (escape sequences, bells,
# carriage returns) and the bidirectional overrides that reorder what a reader sees.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

SheetArg = Annotated[Path, typer.Argument(help="Input sheet: .csv, .xlsx or .parquet.",
                                          show_default=False)]
DefaultsOpt = Annotated[Path | None, typer.Option("--defaults",
                                                  help="defaults.toml with job-wide values.")]
ReportsOpt = Annotated[Path | None, typer.Option(
    "--custom-reports", help="Custom reports file (else the workbook's custom_reports sheet).")]
SheetNameOpt = Annotated[str | None, typer.Option("--sheet", help="XLSX sheet to read.")]
SecretsDirOpt = Annotated[Path | None, typer.Option(
    "--secrets-dir", help="Folder that file: secret references must stay inside "
                          "(default: the sheet's folder).")]
ReportsDirOpt = Annotated[Path, typer.Option("--reports-dir", help="Where run folders go.")]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="Name of this run's folder.")]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(2)


def _load(sheet: Path, defaults: Path | None, custom_reports: Path | None,
          sheet_name: str | None, secrets_dir: Path | None) -> Prepared:
    ctx = SecretContext(base_dir=sheet.resolve().parent, allowed_root=secrets_dir)
    return prepare(sheet, sheet_name=sheet_name, defaults_path=defaults,
                   custom_reports=custom_reports, secrets=ctx)


def shown(text: object, limit: int = _SHOWN_CHARS) -> Text:
    """User data as inert terminal text: no markup, no control sequences, not endless."""
    value = "" if text is None else str(text)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return Text(_CONTROLS.sub(_escape_control, value))


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def print_problems(prepared: Prepared, console: Console) -> None:
    problems = prepared.problems
    if problems.is_empty():
        console.print(f"[green]{len(prepared.rows)} rows checked: no problems.[/green]")
        return
    table = RichTable(title=shown(f"Problems in {prepared.table.label}"), show_lines=False)
    for name in ("row", "column", "value", "severity", "message", "hint"):
        table.add_column(name, overflow="fold")
    for source, row, column, value, severity, message, hint in problems.head(
            MAX_PRINTED_PROBLEMS).iter_rows():
        style = "red" if severity == ERROR else "yellow"
        where = str(row) if source == prepared.table.label else f"{source} row {row}"
        table.add_row(shown(where), shown(column), shown(value, 60), Text(severity, style=style),
                      shown(message), shown(hint))
    console.print(table)
    if problems.height > MAX_PRINTED_PROBLEMS:
        console.print(f"... and {problems.height - MAX_PRINTED_PROBLEMS} more problems")
    n_err = problems.filter(pl.col("severity") == ERROR).height
    console.print(f"{len(prepared.rows)} rows: {len(prepared.invalid)} invalid "
                  f"({n_err} errors, {problems.height - n_err} warnings), "
                  f"{len(prepared.requests)} ready to send.")


@app.command()
def validate(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    reports_dir: ReportsDirOpt = Path("reports"), run_id: RunIdOpt = None,
) -> None:
    """Check every row and list every problem at once. Exit 0 clean, 1 invalid rows, 2 bad file."""
    prepared = _load(sheet, defaults, custom_reports, sheet_name, secrets_dir)
    run_dir = reports_dir / (run_id or new_run_id())
    run_dir.mkdir(parents=True, exist_ok=True)
    from batch_provisioner.report.results import write_csv

    write_csv(prepared.problems, run_dir / "validation.csv")
    print_problems(prepared, out)
    out.print(shown(f"Problems written to {run_dir / 'validation.csv'}", 10_000))
    raise typer.Exit(ExitCode.ROWS_FAILED if prepared.error_count else ExitCode.OK)


@app.command()
def render(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="JSONL file (default stdout).")]
    = None,
) -> None:
    """Write the payloads as JSON lines, secrets shown as ******. Invalid rows are left out."""
    prepared = _load(sheet, defaults, custom_reports, sheet_name, secrets_dir)
    lines = (json.dumps({"row": r.row, "key": {"group_id": r.group_id, "schema": r.schema},
                         "payload": masked(r.payload)}, ensure_ascii=False)
             for r in prepared.requests)
    if out_file is None:
        for line in lines:
            sys.stdout.write(line + "\n")
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with out_file.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
    if prepared.invalid:
        print_problems(prepared, err)
    raise typer.Exit(ExitCode.ROWS_FAILED if prepared.error_count else ExitCode.OK)


@app.command()
def template(out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")]
             = Path("input_templates")) -> None:
    """Write the input templates (XLSX, CSV, defaults.toml) generated from the code."""
    for path in write_templates(out_dir):
        out.print(f"wrote {path}")


ApiUrlOpt = Annotated[str | None, typer.Option(
    "--api-url", help="Fivetran API base URL (default FIVETRAN_API_URL or api.fivetran.com).")]
SandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Start the embedded Fivetran sandbox (profile fast) and run against it.")]
SandboxUrlOpt = Annotated[str | None, typer.Option(
    "--sandbox-url", help="Run against a sandbox already serving at URL; adopt its limits.")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", min=1, max=256, help="Requests in flight at once (default 8).")]
class LogFormat(enum.StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


LogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="auto (console on a TTY, JSON otherwise), json or console.")]


def _limit_flags(concurrency: int | None, calls_per_hour: int | None,
                 creates_per_minute: int | None, setup_tests_per_minute: int | None,
                 setup_tests_per_hour: int | None, max_attempts: int | None,
                 max_wait: str | None, connect_timeout: float | None,
                 read_timeout: float | None) -> dict[str, float | None]:
    from batch_provisioner.cli.apply import parse_duration

    return {
        "concurrency": concurrency, "calls_per_hour": calls_per_hour,
        "creates_per_minute": creates_per_minute,
        "setup_tests_per_minute": setup_tests_per_minute,
        "setup_tests_per_hour": setup_tests_per_hour, "max_attempts": max_attempts,
        "max_wait_seconds": parse_duration(max_wait) if max_wait else None,
        "connect_timeout": connect_timeout, "read_timeout": read_timeout,
    }


@app.command()
def apply(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    api_url: ApiUrlOpt = None, sandbox: SandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
    concurrency: ConcurrencyOpt = None, run_id: RunIdOpt = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Carry on an earlier run: skip its finished rows.")] = None,
    deadline: Annotated[str | None, typer.Option(
        "--deadline", help="Start no new row after this long (e.g. 45m); exit 4.")] = None,
    update: Annotated[bool, typer.Option(
        "--update", help="PATCH drifted connections (mutable fields only).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Resume even though the input file changed.")] = False,
    reports_dir: ReportsDirOpt = Path("reports"),
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", min=1,
                                                      help="Tries per row (default 5).")] = None,
    max_wait: Annotated[str | None, typer.Option(
        "--max-wait", help="Longest Retry-After to wait (default 1h); longer fails the row.")]
    = None,
    calls_per_hour: Annotated[int | None, typer.Option("--calls-per-hour", min=0)] = None,
    creates_per_minute: Annotated[int | None, typer.Option(
        "--creates-per-minute", min=0, help="Create budget (off unless set; 0 = off).")] = None,
    setup_tests_per_minute: Annotated[int | None, typer.Option("--setup-tests-per-minute",
                                                                min=0)] = None,
    setup_tests_per_hour: Annotated[int | None, typer.Option("--setup-tests-per-hour",
                                                              min=0)] = None,
    connect_timeout: Annotated[float | None, typer.Option("--connect-timeout", min=0.1)] = None,
    read_timeout: Annotated[float | None, typer.Option("--read-timeout", min=0.1)] = None,
    log_format: LogFormatOpt = LogFormat.AUTO,
) -> None:
    """Create every valid row's connection, inside Fivetran's budgets; write the reports."""
    from batch_provisioner.cli.apply import apply_command, parse_duration

    if resume and run_id and resume != run_id:
        raise InputError("--resume and --run-id name different runs; give one of them")
    prepared = _load(sheet, defaults, custom_reports, sheet_name, secrets_dir)
    if prepared.invalid:
        print_problems(prepared, err)
    ctx = SecretContext(base_dir=sheet.resolve().parent, allowed_root=secrets_dir)
    flags = _limit_flags(concurrency, calls_per_hour, creates_per_minute, setup_tests_per_minute,
                         setup_tests_per_hour, max_attempts, max_wait, connect_timeout,
                         read_timeout)
    code = apply_command(
        prepared, secrets=ctx, reports_dir=reports_dir, run_id=resume or run_id or new_run_id(),
        api_url=api_url, sandbox=sandbox, sandbox_url=sandbox_url, flags=flags,
        deadline=parse_duration(deadline) if deadline else None, update=update, force=force,
        log_format=str(log_format), input_paths=(sheet, defaults, custom_reports))
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"batch-provisioner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version_callback,
                                                 is_eager=True)] = False) -> None:
    """Onboard many TikTok Ads advertiser groups into Fivetran from one spreadsheet."""


def _register_subcommands() -> None:
    """Add the ``sandbox`` group once, however often ``main`` runs in one process."""
    from batch_provisioner.sandbox.cli import sandbox_app

    if any(group.typer_instance is sandbox_app for group in app.registered_groups):
        return
    app.add_typer(sandbox_app, name="sandbox", help="Run the embedded Fivetran API sandbox.")
    from batch_provisioner.cli.runs import register; register(app)  # noqa: E702, I001


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside (nested) exception groups, preferring our own errors."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, ProvisionerError)), leaves[0])


def main(argv: list[str] | None = None) -> None:
    """Entry point: never a traceback for the user; the exit code says what happened."""
    _register_subcommands()
    try:
        try:
            code = app(args=argv, standalone_mode=False, prog_name="batch-provisioner")
        except BaseExceptionGroup as group:  # a task group's error: report its first cause
            raise _first_leaf(group) from None
    except typer.Abort:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except typer_errors.NoArgsIsHelpError as exc:
        exc.show()
        code = ExitCode.OK if argv == [] else ExitCode.INPUT_ERROR
    except typer_errors.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        code = ExitCode.INPUT_ERROR
    except ProvisionerError as exc:  # InputError included: a file's own text is made inert
        err.print(shown(f"error: {REDACTOR.scrub(exc.message)}", 2_000))
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as exc:  # the last net: a scrubbed one-line message, never a raw traceback
        err.print(shown(f"internal error: {type(exc).__name__}: {REDACTOR.scrub(str(exc))}",
                        2_000))
        if os.environ.get("BATCH_PROVISIONER_DEBUG"):
            err.print(REDACTOR.scrub("".join(traceback.format_exception(exc))), markup=False)
        code = 70
    sys.exit(int(code) if isinstance(code, int) else 0)
