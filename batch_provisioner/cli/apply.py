"""``plan`` and ``apply``: flags → limits, the progress display, signals, the closing lines."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated

import anyio
import polars as pl
import structlog
import typer
from rich.table import Table as RichTable
from rich.text import Text

import batch_provisioner as bp
from batch_provisioner import logs
from batch_provisioner.cli.closing import Invocation, apply_closing, say, say_exit, say_next
from batch_provisioner.cli.common import (
    ApiUrlOpt,
    ConcurrencyOpt,
    DefaultsOpt,
    JsonOpt,
    LogFormat,
    LogFormatOpt,
    MaxConcurrencyOpt,
    QuietOpt,
    ReportsDirOpt,
    ReportsOpt,
    RunIdOpt,
    SandboxConnectionsOpt,
    SandboxGroupsOpt,
    SandboxOpt,
    SandboxProfileOpt,
    SandboxUrlOpt,
    SecretsDirOpt,
    SheetArg,
    SheetNameOpt,
    cell,
    err,
    hush,
    out,
    parse_duration,
    plain_err,
    plain_out,
    print_carry_notice,
    print_problems,
    show_target,
    speak,
)
from batch_provisioner.cli.json_out import apply_document, emit, json_command, plan_document
from batch_provisioner.cli.progress import Display, ProgressReporter, echo_above
from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.models import ActionKind, counted
from batch_provisioner.report.files import ensure_dir
from batch_provisioner.run.target import check_target_options
from batch_provisioner.settings import Limits

_log = structlog.get_logger("batch_provisioner.cli")
MAX_PRINTED = 200
_CANARY = 5  # the canary size the closing lines suggest
PlanSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Start the embedded Fivetran sandbox (profile fast unless "
                      "--sandbox-profile, state kept in <reports-dir>/sandbox/state.sqlite) "
                      "and plan against it.")]
PlanSandboxUrlOpt = Annotated[str | None, typer.Option(
    "--sandbox-url", metavar="URL",
    help="Use a sandbox already serving at URL; adopt its limits.")]
PlanLogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="What the log shows on stderr: auto (only warnings and errors), json "
                         "(every event as JSON) or console (every event, readable). The whole "
                         "log is in the run's run.log.jsonl.")]


@json_command("plan")
def plan(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    api_url: ApiUrlOpt = None, sandbox: PlanSandboxOpt = False,
    sandbox_url: PlanSandboxUrlOpt = None, reports_dir: ReportsDirOpt = Path("reports"),
    run_id: RunIdOpt = None, sandbox_groups: SandboxGroupsOpt = None,
    sandbox_profile: SandboxProfileOpt = None, log_format: PlanLogFormatOpt = LogFormat.AUTO,
    quiet: QuietOpt = False, json_output: JsonOpt = False,
    sandbox_connections: SandboxConnectionsOpt = None,
) -> None:
    """Compare the sheet with the live connections; change nothing; write plan.csv.

    Each row is create, exists (same config), drift (mutable fields differ: old -> new),
    conflict (schema taken by another service, or a field fixed at creation such as
    timeframe_months differs) or invalid (validation error, unknown or ambiguous group_name).
    Only the fields a row sets are compared; auth is never compared (Fivetran masks it).

    Exit 0 (ok) nothing to change; 5 (changes_pending) creates or drifts pending: apply
    would change something; 1 (rows_failed) some rows are invalid or conflict (wins over 5,
    as an error wins in terraform plan -detailed-exitcode); 2 (input_error); 3 (fatal_api).
    """
    hush(quiet)
    profile = str(sandbox_profile) if sandbox_profile else None
    groups = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                  sandbox_groups=sandbox_groups, sandbox_profile=profile,
                                  sandbox_connections=sandbox_connections,
                                  reports_dir=reports_dir)  # read (or downloaded) once, here
    prepared = bp.load(sheet, defaults=defaults, custom_reports=custom_reports,
                       sheet_name=sheet_name, secrets_dir=secrets_dir)
    print_carry_notice(prepared, err)
    if prepared.invalid:
        print_problems(prepared, err)
    run_id = bp.checked_run_id(run_id or bp.new_run_id())
    _configure_logging(log_format, quiet, reports_dir / run_id / "run.log.jsonl")
    try:
        result = bp.plan(prepared, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                         reports_dir=reports_dir, run_id=run_id, sandbox_groups=groups,
                         sandbox_profile=profile, sandbox_connections=sandbox_connections,
                         on_target=show_target)
    finally:
        logs.close_run_log()
    _print_plan(result.frame, result.counts)
    plain_out.print(f"plan written to {result.paths['plan.csv']}")
    how = Invocation(sheet=sheet, defaults=defaults, custom_reports=custom_reports,
                     sheet_name=sheet_name, secrets_dir=secrets_dir, reports_dir=reports_dir,
                     api_url=api_url, sandbox=sandbox, sandbox_url=sandbox_url,
                     sandbox_groups=sandbox_groups, sandbox_profile=profile)
    if quiet and result.exit_code:
        speak()
    _plan_closing(result, how)
    emit(plan_document, result, run_id)
    raise typer.Exit(result.exit_code)


def _plan_closing(result: bp.PlanResult, how: Invocation) -> None:
    counts, code = result.counts, result.exit_code
    if result.estimate is not None and result.estimate.calls:
        say(f"apply would send {result.estimate.describe()}")
    left_out = counts.get("invalid", 0) + counts.get("conflict", 0)
    if left_out:
        one = left_out == 1
        say(f"{counts.get('invalid', 0)} invalid and {counts.get('conflict', 0)} conflicting "
            f"{'row is' if one else 'rows are'} listed with the reason and what to do in "
            f"plan.csv (detail); apply leaves {'it' if one else 'them'} out")
    if counts.get("drift"):
        say(f"{counted(counts['drift'], 'row')} drifted: apply --update PATCHes the mutable "
            "fields")
    if counts.get("create", 0) > _CANARY:
        say_next(how.command("apply", "--limit", str(_CANARY)),
                 f"a canary of {_CANARY} creates first; apply --resume RUN_ID carries on")
    elif counts.get("create"):
        say_next(how.command("apply"))
    elif code == int(ExitCode.OK):
        say("nothing to change")
    say_exit(code)


def _print_plan(frame: pl.DataFrame, counts: Mapping[str, int]) -> None:
    shown = frame.filter(pl.col("action") != str(ActionKind.EXISTS))
    if shown.height:
        table = RichTable(title="plan (rows that exist unchanged are not listed)")
        for name in ("row", "group_id", "schema", "action", "connection", "detail"):
            table.add_column(name, overflow="fold")
        colours = {"create": "green", "drift": "yellow", "conflict": "magenta", "invalid": "red"}
        for rec in shown.head(MAX_PRINTED).iter_rows(named=True):
            table.add_row(cell(rec["source_row"]), cell(rec["group_id"] or rec["group_name"]),
                          cell(rec["schema"]),
                          Text(rec["action"], style=colours.get(rec["action"], "")),
                          cell(rec["connection_id"]), cell(rec["detail"]))
        plain_out.print(table)
        if shown.height > MAX_PRINTED:
            plain_out.print(f"... and {shown.height - MAX_PRINTED} more rows in plan.csv")
    kinds = ("create", "exists", "drift", "conflict", "invalid")
    plain_out.print("plan: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in kinds))


def _configure_logging(log_format: LogFormat, quiet: bool, run_log: Path) -> None:
    """The whole log to ``run_log``; on stderr what ``--log-format`` and ``--quiet`` ask for,
    printed above the progress display."""
    logs.configure(log_format=str(log_format), run_log=run_log, echo=echo_above(plain_err),
                   quiet=quiet)


def _display(log_format: LogFormat, quiet: bool) -> Display:
    """A bar when stderr is a terminal, a line every 10 s when it is not; with --quiet or
    JSON logs, only the ``run.progress`` event (with console logs piped, that event's line)."""
    if quiet or log_format == LogFormat.JSON:
        return Display.LOG
    if plain_err.is_terminal:
        return Display.BAR
    return Display.LINES if log_format == LogFormat.AUTO else Display.LOG


def _limits(concurrency: int | None, calls_per_hour: int | None, creates_per_minute: int | None,
            setup_tests_per_minute: int | None, setup_tests_per_hour: int | None,
            max_attempts: int | None, max_wait: str | None, connect_timeout: float | None,
            read_timeout: float | None, max_concurrency: int | None = None) -> Limits:
    return Limits(concurrency=concurrency, max_concurrency=max_concurrency,
                  calls_per_hour=calls_per_hour,
                  creates_per_minute=creates_per_minute,
                  setup_tests_per_minute=setup_tests_per_minute,
                  setup_tests_per_hour=setup_tests_per_hour, max_attempts=max_attempts,
                  max_wait_seconds=parse_duration(max_wait) if max_wait else None,
                  connect_timeout=connect_timeout, read_timeout=read_timeout)


@json_command("apply")
def apply(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    api_url: ApiUrlOpt = None, sandbox: SandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
    concurrency: ConcurrencyOpt = None, run_id: RunIdOpt = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="ID",
        help="Carry on an earlier run: skip its finished rows, look up the ones left in "
             "doubt before resending.")] = None,
    max_concurrency: MaxConcurrencyOpt = None,
    deadline: Annotated[str | None, typer.Option(
        "--deadline", metavar="DURATION",
        help="Start no new row after this long (e.g. 45m, 1h30m); in-flight rows finish, "
             "exit 4, resumable.")] = None,
    update: Annotated[bool, typer.Option(
        "--update", help="PATCH drifted connections (mutable fields only).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Resume even though the input file changed.")] = False,
    reports_dir: ReportsDirOpt = Path("reports"),
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", min=1, metavar="N", help="Tries per row (default 5).")] = None,
    max_wait: Annotated[str | None, typer.Option(
        "--max-wait", metavar="DURATION",
        help="Longest single wait (a budget, a Retry-After, a backoff; default 1h): a longer "
             "one stops the run, exit 4, resumable.")]
    = None,
    calls_per_hour: Annotated[int | None, typer.Option(
        "--calls-per-hour", min=0, metavar="N",
        help="Budget of all API calls per rolling hour (default 20000, Fivetran's; 0 = off).")]
    = None,
    creates_per_minute: Annotated[int | None, typer.Option(
        "--creates-per-minute", min=0, metavar="N",
        help="Budget of creates per rolling minute (off unless set, e.g. the historical 20; "
             "0 = off).")] = None,
    setup_tests_per_minute: Annotated[int | None, typer.Option(
        "--setup-tests-per-minute", min=0, metavar="N",
        help="Budget of setup tests per rolling minute (default 250, Fivetran's; 0 = off).")]
    = None,
    setup_tests_per_hour: Annotated[int | None, typer.Option(
        "--setup-tests-per-hour", min=0, metavar="N",
        help="Budget of setup tests per rolling hour (default 2500, Fivetran's; 0 = off).")]
    = None,
    connect_timeout: Annotated[float | None, typer.Option(
        "--connect-timeout", min=0.1, metavar="SECONDS",
        help="Seconds to wait for a connection to the API (default 10).")] = None,
    read_timeout: Annotated[float | None, typer.Option(
        "--read-timeout", min=0.1, metavar="SECONDS",
        help="Seconds to wait for an answer once a request is sent (default 60); a create "
             "with no answer is looked up before it is sent again.")] = None,
    log_format: LogFormatOpt = LogFormat.AUTO, quiet: QuietOpt = False,
    sandbox_groups: SandboxGroupsOpt = None, sandbox_profile: SandboxProfileOpt = None,
    sandbox_connections: SandboxConnectionsOpt = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask before sending to a real API (on a terminal, apply "
                            "shows the estimate and asks).")] = False,
    rows: Annotated[str | None, typer.Option(
        "--rows", metavar="ROWS",
        help="Only these sheet rows, as the file numbers them (e.g. 2-11,40); the rest are not "
             "attempted, and --resume carries on.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, metavar="N",
        help="Send at most N creates/updates (a canary); the rest are not attempted, and "
             "--resume carries on.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Create every valid row's connection, inside Fivetran's budgets; write the reports.

    Before sending it prints what it will send and the least time the budgets allow; on a
    terminal, against a real API, it asks first (--yes skips the question; without a
    terminal it proceeds, as cron needs, and logs that it did).

    Exit 0 (ok) every row created, exists or updated; 1 (rows_failed) some rows invalid,
    failed or in conflict (failed_rows.csv); 2 (input_error) nothing sent; 3 (fatal_api) the
    run stopped; 4 (interrupted) rows left for --resume (deadline, --max-wait, Ctrl-C, a
    canary); 70 (internal) a bug: please report it."""
    if resume and run_id and resume != run_id:
        raise InputError("--resume and --run-id name different runs; give one of them")
    hush(quiet)
    profile = str(sandbox_profile) if sandbox_profile else None
    groups = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                  sandbox_groups=sandbox_groups, sandbox_profile=profile,
                                  sandbox_connections=sandbox_connections,
                                  reports_dir=reports_dir)  # read (or downloaded) once, here
    prepared = bp.load(sheet, defaults=defaults, custom_reports=custom_reports,
                       sheet_name=sheet_name, secrets_dir=secrets_dir)
    print_carry_notice(prepared, err)
    if prepared.invalid:
        print_problems(prepared, err)
    bp.select_rows(rows, prepared)  # a bad --rows is exit 2 before anything is written
    limits = _limits(concurrency, calls_per_hour, creates_per_minute, setup_tests_per_minute,
                     setup_tests_per_hour, max_attempts, max_wait, connect_timeout, read_timeout,
                     max_concurrency)
    seconds = parse_duration(deadline) if deadline else None
    run_id = bp.checked_run_id(resume or run_id or bp.new_run_id())
    if resume:
        bp.find_run_to_resume(run_id, reports_dir)  # before anything is written
    run_dir = ensure_dir(reports_dir / run_id)  # a file in the way: exit 2, named
    _configure_logging(log_format, quiet, run_dir / "run.log.jsonl")
    flags = _repeated_flags(
        ("--update", update), ("--force", force), ("--concurrency", concurrency),
        ("--max-concurrency", max_concurrency), ("--max-attempts", max_attempts),
        ("--max-wait", max_wait),
        ("--calls-per-hour", calls_per_hour), ("--creates-per-minute", creates_per_minute),
        ("--setup-tests-per-minute", setup_tests_per_minute),
        ("--setup-tests-per-hour", setup_tests_per_hour),
        ("--connect-timeout", connect_timeout), ("--read-timeout", read_timeout),
        ("--log-format", None if log_format == LogFormat.AUTO else str(log_format)))
    how = Invocation(sheet=sheet, defaults=defaults, custom_reports=custom_reports,
                     sheet_name=sheet_name, secrets_dir=secrets_dir, reports_dir=reports_dir,
                     api_url=api_url, sandbox=sandbox, sandbox_url=sandbox_url,
                     sandbox_groups=sandbox_groups, sandbox_profile=profile, apply_flags=flags)
    start = functools.partial(
        bp.apply_async, prepared, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
        reports_dir=reports_dir, run_id=run_id, limits=limits, deadline=seconds, update=update,
        force=force, resume=resume is not None,
        input_paths=prepared.inputs.all() if prepared.inputs else (sheet, defaults,
                                                                   custom_reports),
        sandbox_groups=groups, sandbox_profile=profile,
        sandbox_connections=sandbox_connections, rows=rows, limit=limit, invocation=how)
    asking = yes is False and sys.stdin.isatty()  # a person can answer (stderr may be piped)
    try:
        with ProgressReporter(len(prepared.rows), _display(log_format, quiet),
                              plain_err) as reporter:
            result = anyio.run(_apply_watching_signals, start, reporter, asking, yes)
    finally:
        logs.close_run_log()
    if quiet and result.exit_code:
        speak()
    _print_summary(result)
    apply_closing(result.next_actions, int(result.exit_code), result.run_id,
                  fatal=result.fatal_message, stopped=result.stop_message)
    emit(apply_document, result)
    raise typer.Exit(int(result.exit_code))


def _repeated_flags(*given: tuple[str, object]) -> tuple[str, ...]:
    """The behaviour flags this apply was given, for the resume command it prints (not
    ``--deadline``: how long the next invocation may take is its own choice)."""
    words: list[str] = []
    for flag, value in given:
        if value is True:
            words.append(flag)
        elif value is not None and value is not False:
            words += [flag, str(value)]
    return tuple(words)


async def _apply_watching_signals(start: Callable[..., Awaitable[bp.ApplyResult]],
                                  reporter: ProgressReporter, asking: bool,
                                  yes: bool) -> bp.ApplyResult:
    """The first Ctrl-C (or SIGTERM) sends nothing new; the second gives up on in-flight ones.

    ``asking``: on a terminal, ask before sending to a real API (not to a sandbox).
    """
    control = bp.RunControl()
    real_api = True

    def on_target(target: bp.Target) -> None:
        nonlocal real_api
        real_api = not target.adopt_sandbox_limits
        show_target(target)

    def on_preview(preview: bp.Estimate) -> None:
        reporter.say(f"apply: sending {preview.describe()}")
        if real_api and not asking and not yes and preview.calls:
            _log.info("run.unattended", note="no terminal: sending without a question (cron); "
                                             "--yes says so explicitly")

    async def confirm(preview: bp.Estimate) -> bool:
        if await asked(preview):
            reporter.sending()
            return True
        return False

    async def asked(preview: bp.Estimate) -> bool:
        if not (asking and real_api):
            return True
        with anyio.CancelScope() as scope:
            control.on_stop(lambda _reason, _message: scope.cancel())
            with reporter.paused():
                return await _ask(f"Send {preview.calls:,} requests to the Fivetran API?")
        return False  # Ctrl-C while asking: nothing is sent

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not control.interrupted:
                    control.interrupt()
                    _log.warning("run.interrupted", signal=signal.Signals(signum).name,
                                 note="no new rows; in-flight requests finish; again to abort")
                else:
                    _log.warning("run.aborted", note="in-flight rows are looked up on resume")
                    control.abort()

    # the receiver leaves SIGTERM at its default when it closes (asyncio's way): put back the
    # handler the command ran with, so a SIGTERM after the run still interrupts cleanly
    previous = signal.getsignal(signal.SIGTERM)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals)
            tg.start_soon(reporter.run)
            result = await start(control=control, on_outcome=reporter, on_plan=reporter.on_plan,
                                 on_target=on_target, on_preview=on_preview, confirm=confirm)
            tg.cancel_scope.cancel()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result


async def _ask(question: str) -> bool:
    """``question [y/N]`` on the terminal (``/dev/tty``, so a piped stderr still shows it);
    the answer is read without blocking the event loop, so Ctrl-C ends the wait at once."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        read_fd, write_fd, owned = fd, fd, True
    except OSError:  # no controlling terminal: the terminal on stdin, the question on stderr
        read_fd, write_fd, owned = sys.stdin.fileno(), sys.stderr.fileno(), False
    try:
        os.write(write_fd, f"{question} [y/N]: ".encode())
        answer = b""
        while not answer.endswith(b"\n"):
            await anyio.wait_readable(read_fd)
            chunk = os.read(read_fd, 1024)
            if not chunk:
                break
            answer += chunk
        return answer.strip().lower() in (b"y", b"yes")
    finally:
        if owned:
            os.close(read_fd)


def _print_summary(result: bp.ApplyResult) -> None:
    table = RichTable(title=f"run {result.summary['run_id']}")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status, count in result.summary["counts"].items():
        if count:
            table.add_row(status, str(count))
    out.print(table)
    s = result.summary
    out.print(f"wall {s['wall_seconds']} s (ideal {s['ideal_seconds']} s), "
              f"{counted(s['calls'], 'call')}, {s['throttled_429']} throttled, "
              f"{counted(s['retries'], 'retry', 'retries')}, {s['reconciliations']} reconciled")
    out.print(f"results: {result.paths['results.csv']}")


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command("plan")(plan)
