"""``plan``, ``status``, ``connect-cards`` and ``rollback``: the commands around apply.

Registered on the main app by ``cli._register_subcommands``. Printing and exit codes live here;
the work is in :mod:`batch_provisioner.run.plan` and :mod:`batch_provisioner.run.lifecycle`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import polars as pl
import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from batch_provisioner import cli, logs
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.cli import (
    ApiUrlOpt,
    DefaultsOpt,
    ReportsDirOpt,
    ReportsOpt,
    RunIdOpt,
    SecretsDirOpt,
    SheetArg,
    SheetNameOpt,
    new_run_id,
    print_problems,
)
from batch_provisioner.cli.apply import PLAN_CHANGES_PENDING, Target, client_settings, target
from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.report.results import write_csv
from batch_provisioner.run import lifecycle as lc
from batch_provisioner.run.journal import Journal, RunLock, now_iso
from batch_provisioner.run.plan import DriftCheck, Plan, make_plan, plan_frame
from batch_provisioner.settings import ApiCredentials, ClientSettings
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.read import ROW
from batch_provisioner.sheet.secrets import SecretContext

T = TypeVar("T")
# No markup: cells and messages carry user and API text, printed as it is (controls escaped).
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
MAX_PRINTED = 200
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

RunIdArg = Annotated[str, typer.Argument(help="The run id apply printed (its reports folder).",
                                         show_default=False)]
RunSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Use the embedded sandbox, with the state apply --sandbox left in "
                      "<reports-dir>/sandbox/state.sqlite.")]
PlanSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Start the embedded Fivetran sandbox (profile fast, state kept in "
                      "<reports-dir>/sandbox/state.sqlite) and plan against it.")]
SandboxUrlOpt = Annotated[str | None, typer.Option(
    "--sandbox-url", help="Use a sandbox already serving at URL; adopt its limits.")]
RunReportsOpt = Annotated[Path, typer.Option("--reports-dir", help="Where run folders are.")]


def register(app: typer.Typer) -> None:
    if any(command.callback is plan for command in app.registered_commands):
        return
    app.command("plan")(plan)
    app.command("status")(status)
    app.command("connect-cards")(connect_cards)
    app.command("rollback")(rollback)


# -- plan --------------------------------------------------------------------------------------

def plan(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    api_url: ApiUrlOpt = None, sandbox: PlanSandboxOpt = False,
    sandbox_url: SandboxUrlOpt = None, reports_dir: ReportsDirOpt = Path("reports"),
    run_id: RunIdOpt = None,
) -> None:
    """Compare the sheet with the live connections; change nothing; write plan.csv.

    Each row is create, exists (same config), drift (mutable fields differ: old -> new),
    conflict (schema taken by another service, or a field fixed at creation such as
    timeframe_months differs) or invalid (validation error, unknown or ambiguous group_name).
    Only the fields a row sets are compared; auth is never compared (Fivetran masks it).

    Exit codes: 0 nothing to change; 5 creates or drifts pending (apply would change
    something); 1 some rows are invalid or conflict (wins over 5, as an error wins in
    terraform plan -detailed-exitcode); 2 input error; 3 fatal API error.
    """
    ctx = SecretContext(base_dir=sheet.resolve().parent, allowed_root=secrets_dir)
    prepared = prepare(sheet, sheet_name=sheet_name, defaults_path=defaults,
                       custom_reports=custom_reports, secrets=ctx)
    if prepared.invalid:
        print_problems(prepared, cli.err)  # its console renders its markup
    run_dir = reports_dir / (run_id or new_run_id())
    run_dir.mkdir(parents=True, exist_ok=True)
    logs.configure(log_format="auto", level="warning", run_log=run_dir / "run.log.jsonl")
    result = Plan()
    try:
        if prepared.requests:
            with target(api_url, sandbox, sandbox_url, prepared, reports_dir) as tgt:
                result = _call(tgt, lambda client: make_plan(
                    client, prepared.requests, drift=DriftCheck.FULL),
                    client_settings(prepared, {}))
    finally:
        logs.close_run_log()
    frame = plan_frame(prepared, result)
    write_csv(frame, run_dir / "plan.csv")
    code = _print_plan(frame)
    out.print(f"plan written to {run_dir / 'plan.csv'}")
    raise typer.Exit(code)


def _print_plan(frame: pl.DataFrame) -> int:
    counts = dict(frame.group_by("action").len().iter_rows())
    shown = frame.filter(pl.col("action") != str(ActionKind.EXISTS))
    if shown.height:
        table = RichTable(title="plan (rows that exist unchanged are not listed)")
        for name in ("row", "group_id", "schema", "action", "connection", "detail"):
            table.add_column(name, overflow="fold")
        colours = {"create": "green", "drift": "yellow", "conflict": "magenta", "invalid": "red"}
        for rec in shown.head(MAX_PRINTED).iter_rows(named=True):
            table.add_row(_cell(rec[ROW]), _cell(rec["group_id"] or rec["group_name"]),
                          _cell(rec["schema"]),
                          Text(rec["action"], style=colours.get(rec["action"], "")),
                          _cell(rec["connection_id"]), _cell(rec["detail"]))
        out.print(table)
        if shown.height > MAX_PRINTED:
            out.print(f"... and {shown.height - MAX_PRINTED} more rows in plan.csv")
    kinds = ("create", "exists", "drift", "conflict", "invalid")
    out.print("plan: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in kinds))
    code: int
    if counts.get("invalid") or counts.get("conflict"):
        code, why = ExitCode.ROWS_FAILED, "rows to fix"
    elif counts.get("create") or counts.get("drift"):
        code, why = PLAN_CHANGES_PENDING, "changes pending"
    else:
        code, why = ExitCode.OK, "no changes"
    out.print(f"exit code {int(code)} ({why})")
    return int(code)


# -- the RUN_ID commands -------------------------------------------------------------------

@contextlib.contextmanager
def run_target(api_url: str | None, sandbox: bool, sandbox_url: str | None,
               reports_dir: Path) -> Iterator[Target]:
    """Like apply's target, but the embedded sandbox reopens the state apply left behind."""
    if sandbox:
        from batch_provisioner.sandbox import run_in_thread

        state = reports_dir / "sandbox" / "state.sqlite"
        if not state.is_file():
            err.print(f"warning: no sandbox state at {state}: the embedded sandbox starts empty "
                      "(was the run made with --sandbox and this --reports-dir?)")
        with run_in_thread(profile="fast", state_path=state) as handle:
            err.print(f"Embedded Fivetran sandbox at {handle.url} (state {state})")
            yield Target(ApiCredentials(handle.api_key, handle.api_secret, handle.url), True)
        return
    creds = ApiCredentials.from_env(base_url=sandbox_url or api_url)
    if sandbox_url:
        yield Target(creds or ApiCredentials("sandbox", "sandbox", sandbox_url.rstrip("/")),
                     True)
        return
    if creds is None:
        raise InputError("set FIVETRAN_API_KEY and FIVETRAN_API_SECRET (or use --sandbox); "
                         "credentials are never taken on the command line")
    yield Target(creds, False)


@contextlib.contextmanager
def _locked_run(run_id: str, reports_dir: Path) -> Iterator[lc.RunState]:
    """The run's state, with its lock held (no apply or other command on it meanwhile)."""
    state = lc.load_run(reports_dir, run_id)
    logs.configure(log_format="auto", level="warning", run_log=state.run_dir / "run.log.jsonl")
    try:
        with RunLock(state.run_dir):
            yield state
    finally:
        logs.close_run_log()


@contextlib.contextmanager
def _session(run_id: str, reports_dir: Path, api_url: str | None, sandbox: bool,
             sandbox_url: str | None) -> Iterator[tuple[lc.RunState, Target]]:
    with _locked_run(run_id, reports_dir) as state, run_target(
            api_url, sandbox, sandbox_url, reports_dir) as tgt:
        yield state, tgt


def status(
    run_id: RunIdArg, reports_dir: RunReportsOpt = Path("reports"), api_url: ApiUrlOpt = None,
    sandbox: RunSandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
) -> None:
    """Re-read each connection of the run: who has authorised (connected) and who has not.

    Updates the run's results.csv/.parquet/.xlsx and report.html (setup_state, and a
    setup_tests column when tests ran) and writes status.csv. Exit 0 every connection read;
    1 some could not be read (e.g. deleted since); 2 unknown run; 3 fatal API error.
    """
    with _session(run_id, reports_dir, api_url, sandbox, sandbox_url) as (state, tgt):
        rows = state.connections()
        found = _call(tgt, lambda client: lc.read_connections(client, rows))
        checked = now_iso()
        lines = [lc.status_line(row, found[row.row]) for row in rows]
        updates = {line["row"]: {"setup_state": line["setup_state"],
                                 "setup_tests": line["setup_tests"]}
                   for line in lines if not line["error"]}
        states = [str(line["setup_state"]) for line in lines if line["setup_state"]]
        tally = {s: states.count(s) for s in sorted(set(states))}
        write_csv(_frame(lines, ("row", "group_id", "schema", "connection_id", *state.carry,
                                 "setup_state", "setup_tests", "error")),
                  state.run_dir / "status.csv")
        refreshed = lc.refresh_report(state, updates, {"status_checked_at": checked,
                                                       "setup_states": tally})
    _print_rows(f"status of run {run_id}", lines,
                ("row", "schema", "connection_id", "setup_state", "setup_tests", "error"))
    out.print("setup: " + (", ".join(f"{n} {s}" for s, n in tally.items()) or "no connections"))
    out.print(f"status written to {state.run_dir / 'status.csv'}"
              + ("; results and report.html updated" if refreshed else ""))
    raise typer.Exit(ExitCode.ROWS_FAILED if any(line["error"] for line in lines) else 0)


def connect_cards(
    run_id: RunIdArg, reports_dir: RunReportsOpt = Path("reports"), api_url: ApiUrlOpt = None,
    sandbox: RunSandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
) -> None:
    """Fresh connect-card URIs for the run's connections still incomplete (valid about 1 day).

    Writes connect_cards.csv (row, group_id, schema, connection_id, your carry-through
    columns, uri, expires_at) for a mail merge, and puts the new URIs in the run's report.
    redirect_uri and hide_setup_guide come from the connection's connect_card_config, else
    from the run's input files. Exit 0 all done; 1 some rows failed; 2 unknown run; 3 fatal.
    """
    with _session(run_id, reports_dir, api_url, sandbox, sandbox_url) as (state, tgt):
        rows = state.connections()
        results = _call(tgt, lambda client: lc.refresh_cards(
            client, rows, lambda: lc.input_card_configs(state.run_dir)))
        cards = [r for r in results if r.uri]
        lines = [{"row": r.row.row, "group_id": r.row.group_id, "schema": r.row.schema,
                  "connection_id": r.row.connection_id, **r.row.carry, "uri": r.uri,
                  "expires_at": r.expires_at} for r in cards]
        path = state.run_dir / "connect_cards.csv"
        write_csv(_frame(lines, ("row", "group_id", "schema", "connection_id", *state.carry,
                                 "uri", "expires_at")), path)
        lc.refresh_report(state, {r.row.row: {"connect_card_uri": r.uri,
                                              "setup_state": r.setup_state} for r in cards},
                          {"connect_cards_at": now_iso()})
    failed = [r for r in results if r.error]
    report = [{"row": r.row.row, "schema": r.row.schema, "connection_id": r.row.connection_id,
               "setup_state": r.setup_state, "expires_at": r.expires_at, "error": r.error}
              for r in results]
    _print_rows(f"connect cards of run {run_id}", report,
                ("row", "schema", "connection_id", "setup_state", "expires_at", "error"))
    connected = sum(1 for r in results if r.setup_state and r.setup_state != "incomplete")
    out.print(f"{len(cards)} fresh connect cards, {connected} already authorised, "
              f"{len(failed)} failed; written to {path}")
    raise typer.Exit(ExitCode.ROWS_FAILED if failed else 0)


def rollback(
    run_id: RunIdArg,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    reports_dir: RunReportsOpt = Path("reports"), api_url: ApiUrlOpt = None,
    sandbox: RunSandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64,
                                             help="Deletes in flight at once.")] = 8,
) -> None:
    """Delete exactly the connections this run created (never those that already existed).

    Asks first unless --yes (and refuses, exit 2, when stdin is not a terminal). Each
    deletion is journaled at once as rolled_back, so an interrupted rollback is finished by
    running it again; a connection already gone (404) counts as rolled back. Writes
    rollback/results.csv and rollback/summary.json and marks the rows in the run's report.
    Exit 0 all rolled back (or nothing to do); 1 some rows failed or were left, or you
    declined; 2 unknown run or no confirmation; 3 fatal API error.
    """
    with _locked_run(run_id, reports_dir) as state:
        todo, earlier, in_flight = lc.rollback_candidates(state)
        if in_flight:
            err.print(f"warning: rows {', '.join(map(str, in_flight))} had a create in flight "
                      f"when the run stopped; finish it first (apply --resume {run_id}), then "
                      "roll back again")
        if todo and not _confirmed(todo, run_id, yes):
            out.print("nothing deleted")
            raise typer.Exit(ExitCode.ROWS_FAILED)
        outcomes: list[Outcome] = []
        fatal = None
        if todo:
            with run_target(api_url, sandbox, sandbox_url, reports_dir) as tgt:
                journal = Journal(state.run_dir)
                journal.write({"type": "rollback", "run_id": run_id, "t": now_iso()})
                try:
                    outcomes, fatal = _call(tgt, lambda client: lc.delete_created(
                        client, todo, journal, concurrency),
                        ClientSettings(concurrency=concurrency))
                finally:
                    journal.close()
        now = sum(1 for o in outcomes if o.status is Status.ROLLED_BACK)
        outcomes += [Outcome(row=r.row, status=Status.ROLLED_BACK, action="rollback",
                             group_id=r.group_id, schema=r.schema, connection_id=r.connection_id,
                             error_message="rolled back by an earlier rollback") for r in earlier]
        outcomes += [Outcome(row=row, status=Status.NOT_ATTEMPTED, action="rollback",
                             error_code="InFlight", error_message="its create was in flight "
                             "when the run stopped: resume the apply, then roll back")
                     for row in in_flight]
        outcomes.sort(key=lambda o: o.row)
        code = (ExitCode.FATAL_API if fatal else ExitCode.ROWS_FAILED
                if any(o.status is not Status.ROLLED_BACK for o in outcomes) else ExitCode.OK)
        path = _write_rollback(state, outcomes, int(code))
        lc.refresh_report(state, {o.row: {"status": str(Status.ROLLED_BACK)} for o in outcomes
                                  if o.status is Status.ROLLED_BACK},
                          {"rolled_back_at": now_iso()})
    failed = sum(1 for o in outcomes if o.status is Status.FAILED)
    if not outcomes:
        out.print(f"rollback: run {run_id} created no connection; nothing to delete")
        raise typer.Exit(code)
    out.print(f"rollback: {now} deleted now, {len(earlier)} rolled back earlier, {failed} "
              f"failed, {len(in_flight)} left (create in flight), {len(todo) - now - failed} "
              "not attempted")
    if fatal:
        err.print(f"error: {fatal.message}", markup=False)
    out.print(f"rollback report: {path}; exit code {int(code)}")
    raise typer.Exit(code)


def _call(tgt: Target, work: Callable[[FivetranClient], Awaitable[T]],
          settings: ClientSettings | None = None) -> T:
    """Run ``work`` with a client inside the budgets (a sandbox's own, when adopted)."""
    async def main() -> T:
        async with lc.open_client(tgt.credentials, settings or ClientSettings(),
                                  adopt=tgt.adopt_sandbox_limits) as client:
            return await work(client)

    return anyio.run(main)


def _confirmed(rows: Sequence[lc.RunRow], run_id: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"refusing to delete {len(rows)} connections without confirmation: "
                         "stdin is not a terminal; pass --yes to delete without asking")
    _print_rows(f"connections run {run_id} created", [
        {"row": r.row, "group_id": r.group_id, "schema": r.schema,
         "connection_id": r.connection_id} for r in rows],
        ("row", "group_id", "schema", "connection_id"))
    return bool(typer.confirm(f"Delete these {len(rows)} connections?", default=False))


def _write_rollback(state: lc.RunState, outcomes: list[Outcome], code: int) -> Path:
    folder = state.run_dir / "rollback"
    carry = {r.row: r.carry for r in state.rows}
    lines = [{"row": o.row, "group_id": o.group_id, "schema": o.schema,
              "connection_id": o.connection_id, **carry.get(o.row, {}), "status": str(o.status),
              "http_status": o.http_status, "error_code": o.error_code,
              "error_message": o.error_message, "finished_at": o.finished_at}
             for o in outcomes]
    write_csv(_frame(lines, ("row", "group_id", "schema", "connection_id", *state.carry,
                             "status", "http_status", "error_code", "error_message",
                             "finished_at")), folder / "results.csv")
    summary = {"run_id": state.run_id, "finished_at": now_iso(), "exit_code": code,
               "counts": {str(s): sum(1 for o in outcomes if o.status is s) for s in Status}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return folder / "results.csv"


def _frame(lines: list[dict[str, Any]], columns: Sequence[str] = ()) -> pl.DataFrame:
    if not lines:
        return pl.DataFrame(schema={c: pl.String for c in columns})
    return pl.DataFrame(lines, infer_schema_length=None)


def _print_rows(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        return
    table = RichTable(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    for rec in rows[:MAX_PRINTED]:
        table.add_row(*(_cell(rec.get(c)) for c in columns))
    out.print(table)
    if len(rows) > MAX_PRINTED:
        out.print(f"... and {len(rows) - MAX_PRINTED} more rows")


def _cell(value: object) -> Text:
    """User or API text as an inert table cell: no markup, control characters escaped."""
    text = "" if value is None else str(value)
    return Text(_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text))
