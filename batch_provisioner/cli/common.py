"""What every command shares: the consoles, the option types, inert printing of user data."""

from __future__ import annotations

import contextlib
import enum
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from batch_provisioner.errors import ProvisionerError
from batch_provisioner.models import counted
from batch_provisioner.run.target import Target
from batch_provisioner.sheet.load import Prepared
from batch_provisioner.sheet.validate import ERROR

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
# No markup: cells and messages carry user and API text, printed as it is (controls escaped).
plain_out = Console(highlight=False, soft_wrap=True, markup=False)
plain_err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
MAX_PRINTED_PROBLEMS = 200
MAX_PRINTED_ROWS = 200
_SHOWN_CHARS = 300  # a cell of the problem table; the whole text is in validation.csv
# Terminal controls a hostile cell could carry: C0/C1 controls (escape sequences, bells,
# carriage returns) and the bidirectional overrides that reorder what a reader sees.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _plain_help(params: list[Any]) -> list[Any]:
    """Arguments named as the README names them (``SHEET``, ``RUN_ID``), flags without a
    type (typer shows ``<bool>`` for ``--yes``, ``--help`` and every other switch)."""
    for param in params:
        if isinstance(param, typer.core.TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "").upper()
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer prints the metavar in place of the type
    return params


def _usage_pieces(command: Any, ctx: Any) -> list[str]:
    """``[OPTIONS] SHEET`` rather than typer's ``[OPTIONS] {sheet}``."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, typer.core.TyperArgument):
            name = param.metavar or (param.name or "").upper()
            pieces.append(name if param.required else f"[{name}]")
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


class HelpCommand(typer.core.TyperCommand):
    """A command whose ``--help`` reads as the README does (see ``_plain_help``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(list(super().get_params(ctx)))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage_pieces(self, ctx)


class HelpGroup(typer.core.TyperGroup):
    """A command group whose ``--help`` shows its flags without ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(list(super().get_params(ctx)))


SheetArg = Annotated[str, typer.Argument(
    help="Input sheet: .csv, .tsv, .xlsx or .parquet, a path or an https://, s3://, gs:// or "
         "az:// URL.", show_default=False)]
DefaultsOpt = Annotated[str | None, typer.Option(
    "--defaults", metavar="FILE",
    help="defaults.toml with job-wide values for any column (a non-blank cell wins), and its "
         "limits table (a path or a URL).")]
ReportsOpt = Annotated[str | None, typer.Option(
    "--custom-reports", metavar="FILE",
    help="Custom reports file, a path or a URL (else the workbook's custom_reports sheet).")]
SheetNameOpt = Annotated[str | None, typer.Option(
    "--sheet", metavar="NAME",
    help="XLSX sheet to read (default: the first visible one that is not custom_reports).")]
SecretsDirOpt = Annotated[Path | None, typer.Option(
    "--secrets-dir", metavar="DIR",
    help="Folder that file: secret references must stay inside (default: the sheet's folder; "
         "a sheet read from a URL needs it for file: references).")]
ReportsDirOpt = Annotated[Path, typer.Option("--reports-dir", metavar="DIR",
                                             help="Where run folders go.")]
RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", metavar="ID", help="Name of this run's folder (default: a new timestamped "
                                   "one).")]
ApiUrlOpt = Annotated[str | None, typer.Option(
    "--api-url", metavar="URL",
    help="Fivetran API base URL (default FIVETRAN_API_URL or api.fivetran.com).")]
SandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Start the embedded Fivetran sandbox (profile fast unless "
                      "--sandbox-profile) and run against it.")]
SandboxGroupsOpt = Annotated[str | None, typer.Option(
    "--sandbox-groups", metavar="FILE",
    help="With --sandbox: seed the sandbox with exactly these groups (a CSV id,name, e.g. from "
         "`groups --out`; a path or a URL), so a group mistake shows as invalid.")]
SandboxConnectionsOpt = Annotated[Path | None, typer.Option(
    "--sandbox-connections", metavar="FILE",
    help="With --sandbox: add these connections to the sandbox as if "
                                  "made earlier by hand (a JSON list of connection objects, or "
                                  "a CSV in the sheet's columns, e.g. an export's), to rehearse "
                                  "against what the account already holds.")]
SandboxUrlOpt = Annotated[str | None, typer.Option(
    "--sandbox-url", metavar="URL",
    help="Run against a sandbox already serving at URL; adopt its limits.")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", min=1, max=256, metavar="N",
    help="Pin the requests in flight at N (default: they follow what the budgets need at the "
         "latency seen, up to --max-concurrency, and back off when the API strains).")]
MaxConcurrencyOpt = Annotated[int | None, typer.Option(
    "--max-concurrency", min=1, max=256, metavar="N",
    help="The most requests in flight when they adapt (default 64).")]


class SandboxProfile(enum.StrEnum):
    FAST = "fast"
    FIVETRAN = "fivetran"
    UNLIMITED = "unlimited"


SandboxProfileOpt = Annotated[SandboxProfile | None, typer.Option(
    "--sandbox-profile", help="With --sandbox: fast (default; Fivetran's counts over 60x "
                              "shorter windows), fivetran (the real limits) or unlimited.")]


class LogFormat(enum.StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


LogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="What the log shows on stderr: auto (only warnings and errors; a "
                         "progress display on a terminal, a progress line every 10 s "
                         "otherwise), json (every event as JSON) or console (every event, "
                         "readable). The whole log is in the run's run.log.jsonl.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="For cron: no progress, tables or notes; errors always; the closing "
                          "lines only when the exit code is not 0.")]


def hush(quiet: bool) -> None:
    """``--quiet``: the consoles print nothing from here on, until ``speak``."""
    if quiet:
        for console in (out, err, plain_out, plain_err):
            console.quiet = True


def speak() -> None:
    """The consoles print again: the closing lines of a ``--quiet`` run that did not exit 0,
    and the error that ends a command (``main`` calls it before printing one)."""
    for console in (out, err, plain_out, plain_err):
        console.quiet = False


JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON document on stdout for scripts (see the README's \"JSON "
                   "output for scripts\"); every line for a person goes to stderr instead.")]


@contextlib.contextmanager
def human_lines_on_stderr() -> Iterator[None]:
    """The one switch of ``--json``: meanwhile, what the stdout consoles (``out``,
    ``plain_out``) print for a person goes to stderr, so stdout carries the document alone."""
    consoles = (out, plain_out)
    before = [console.stderr for console in consoles]
    for console in consoles:
        console.stderr = True
    try:
        yield
    finally:
        for console, was in zip(consoles, before, strict=True):
            console.stderr = was


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
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


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``45m``, ``1h``, ``1h30m`` → seconds."""
    match = re.fullmatch(r"\s*(?:([0-9]+(?:\.[0-9]+)?)h)?\s*(?:([0-9]+(?:\.[0-9]+)?)m)?\s*"
                         r"(?:([0-9]+(?:\.[0-9]+)?)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 45m or 1h")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


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
        console.print(f"[green]{counted(len(prepared.rows), 'row')} checked: no problems."
                      "[/green]")
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
        console.print(f"... and {counted(problems.height - MAX_PRINTED_PROBLEMS, 'more problem')}")
    n_err = prepared.error_count
    console.print(f"{counted(len(prepared.rows), 'row')}: {len(prepared.invalid)} invalid "
                  f"({counted(n_err, 'error')}, {counted(problems.height - n_err, 'warning')}), "
                  f"{len(prepared.requests)} ready to send.")


def print_carry_notice(prepared: Prepared, console: Console) -> None:
    """One line naming the user's own columns, which ride along to every output unchanged, and
    one naming the headers the reader dropped (``error``, ``source_row``: failed_rows.csv adds
    them, so a column of the user's own of that name would vanish without a word)."""
    if prepared.carry_columns:
        console.print(shown("carried through unchanged (your own columns): "
                            + ", ".join(prepared.carry_columns), 2_000))
    ignored = prepared.table.ignored
    if ignored:
        console.print(shown(f"ignored: {', '.join(ignored)} (columns failed_rows.csv adds; "
                            f"rename yours, e.g. x_{ignored[0]})", 2_000))


def cell(value: object) -> Text:
    """User or API text as an inert table cell, whole: no markup, control characters escaped."""
    return shown(value, limit=sys.maxsize)


def print_rows(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        return
    table = RichTable(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    for rec in rows[:MAX_PRINTED_ROWS]:
        table.add_row(*(cell(rec.get(c)) for c in columns))
    plain_out.print(table)
    if len(rows) > MAX_PRINTED_ROWS:
        plain_out.print(f"... and {counted(len(rows) - MAX_PRINTED_ROWS, 'more row')}")


def show_target(target: Target) -> None:
    """Say which API a command talks to when it is not Fivetran's (the embedded sandbox)."""
    if target.warning:
        plain_err.print(f"warning: {target.warning}")
    if target.description:
        plain_err.print(target.description)
