"""``status``, ``connect-cards`` and ``rollback``: the commands on a run, by its id."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import batch_provisioner as bp
from batch_provisioner import logs
from batch_provisioner.cli.closing import Invocation, say, say_next
from batch_provisioner.cli.common import (
    ApiUrlOpt,
    JsonOpt,
    plain_err,
    plain_out,
    print_rows,
    show_target,
    shown,
)
from batch_provisioner.cli.json_out import (
    connect_cards_document,
    emit,
    json_command,
    status_document,
)
from batch_provisioner.errors import InputError
from batch_provisioner.run.target import check_target_options

RunIdArg = Annotated[str, typer.Argument(help="The run id apply printed (its reports folder).",
                                         show_default=False)]
RunSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Use the embedded sandbox, with the state apply --sandbox left in "
                      "<reports-dir>/sandbox/state.sqlite.")]
SandboxUrlOpt = Annotated[str | None, typer.Option(
    "--sandbox-url", help="Use a sandbox already serving at URL; adopt its limits.")]
RunReportsOpt = Annotated[Path, typer.Option("--reports-dir", help="Where run folders are.")]
AllRowsOpt = Annotated[bool, typer.Option(
    "--all", help="List every connection (by default only those someone must still act on; "
                  "the CSV file holds every row either way).")]


def _logging_for(run_id: str, reports_dir: Path, *, sandbox: bool, sandbox_url: str | None,
                 api_url: str | None) -> Path:
    """The run's folder (exit 2 if there is none, or the target flags contradict each
    other), with its run.log.jsonl tee set up."""
    check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    run_dir = bp.find_run(run_id, reports_dir)
    logs.configure(log_format="auto", level="warning", run_log=run_dir / "run.log.jsonl")
    return run_dir


@json_command("status")
def status(
    run_id: RunIdArg, reports_dir: RunReportsOpt = Path("reports"), api_url: ApiUrlOpt = None,
    sandbox: RunSandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
    all_rows: AllRowsOpt = False, json_output: JsonOpt = False,
) -> None:
    """Re-read each connection of the run: who has authorised (connected) and who has not.

    Lists the connections not connected yet (--all: every one), with your own columns.
    Updates the run's results.csv/.parquet/.xlsx and report.html (setup_state, and a
    setup_tests column when tests ran) and writes status.csv (every connection). Exit 0 every
    connection read; 1 some could not be read (e.g. deleted since); 2 unknown run; 3 fatal
    API error.
    """
    _logging_for(run_id, reports_dir, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    try:
        result = bp.status(run_id, reports_dir=reports_dir, sandbox=sandbox,
                           sandbox_url=sandbox_url, api_url=api_url, on_target=show_target)
    finally:
        logs.close_run_log()
    carry = result.carry_columns
    shown_lines = result.lines if all_rows else result.waiting
    print_rows(f"status of run {run_id}", shown_lines,
               ("row", "schema", *carry, "connection_id", "setup_state", "setup_tests", "error"))
    _say_left_out(len(result.lines) - len(shown_lines), "connected")
    tally = result.setup_states
    plain_out.print("setup: " + (", ".join(f"{n} {s}" for s, n in tally.items())
                                 or "no connections"))
    plain_out.print(f"status written to {result.paths['status.csv']}"
                    + ("; results and report.html updated" if result.report_refreshed else ""))
    how = Invocation(reports_dir=reports_dir, api_url=api_url, sandbox=sandbox,
                     sandbox_url=sandbox_url)
    waiting = sum(n for state, n in tally.items() if state != "connected")
    unread = sum(1 for line in result.lines if line.get("error"))
    if unread:
        say(f"{unread} connections could not be read: see the error column of status.csv")
    if waiting:
        say_next(how.command("connect-cards", run_id, inputs=False),
                 f"fresh links for the {waiting} connections not connected yet")
    elif tally:
        say("every connection of the run is connected")
    say(f"exit code {int(result.exit_code)}")
    emit(status_document, result)
    raise typer.Exit(result.exit_code)


@json_command("connect-cards")
def connect_cards(
    run_id: RunIdArg, reports_dir: RunReportsOpt = Path("reports"), api_url: ApiUrlOpt = None,
    sandbox: RunSandboxOpt = False, sandbox_url: SandboxUrlOpt = None,
    all_rows: AllRowsOpt = False, json_output: JsonOpt = False,
) -> None:
    """Fresh connect-card URIs for the run's connections still incomplete (valid about 1 day).

    Lists the connections whose clients must still act, and any that failed (--all: every
    one), with your own columns. Writes connect_cards.csv (row, group_id, schema,
    connection_id, your carry-through columns, uri, expires_at) for a mail merge, and puts
    the new URIs in the run's report.
    redirect_uri and hide_setup_guide come from the connection's connect_card_config, else
    from the run's input files. Exit 0 all done; 1 some rows failed; 2 unknown run; 3 fatal.
    """
    _logging_for(run_id, reports_dir, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    try:
        result = bp.connect_cards(run_id, reports_dir=reports_dir, sandbox=sandbox,
                                  sandbox_url=sandbox_url, api_url=api_url,
                                  on_target=show_target)
    finally:
        logs.close_run_log()
    carry = result.carry_columns
    shown_cards = result.results if all_rows else result.waiting
    report = [{"row": r.row.row, "schema": r.row.schema, **r.row.carry,
               "connection_id": r.row.connection_id, "setup_state": r.setup_state,
               "expires_at": r.expires_at, "error": r.error} for r in shown_cards]
    print_rows(f"connect cards of run {run_id}", report,
               ("row", "schema", *carry, "connection_id", "setup_state", "expires_at", "error"))
    _say_left_out(len(result.results) - len(shown_cards), "already connected")
    plain_out.print(f"{len(result.cards)} fresh connect cards, {result.connected} already "
                    f"authorised, {len(result.failed)} failed; written to "
                    f"{result.paths['connect_cards.csv']}")
    how = Invocation(reports_dir=reports_dir, api_url=api_url, sandbox=sandbox,
                     sandbox_url=sandbox_url)
    if result.cards:
        say(f"send each client its link (uri in {result.paths['connect_cards.csv']}; valid "
            "about a day, see expires_at)")
        say_next(how.command("status", run_id, inputs=False), "who has authorised since")
    say(f"exit code {int(result.exit_code)}")
    emit(connect_cards_document, result)
    raise typer.Exit(result.exit_code)


def _say_left_out(count: int, what: str) -> None:
    """The line under a table that lists only the rows someone must act on."""
    if count:
        plain_out.print(f"not listed: {count} {what} (--all lists every row)")


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
    _logging_for(run_id, reports_dir, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    try:
        result = bp.rollback(run_id, confirm=lambda plan: _confirmed(plan, yes),
                             reports_dir=reports_dir, sandbox=sandbox, sandbox_url=sandbox_url,
                             api_url=api_url, concurrency=concurrency, on_target=show_target)
    finally:
        logs.close_run_log()
    if not result.confirmed:
        plain_out.print("nothing deleted")
        raise typer.Exit(result.exit_code)
    if not result.outcomes:
        plain_out.print(f"rollback: run {run_id} created no connection; nothing to delete")
        raise typer.Exit(result.exit_code)
    plan = result.plan
    plain_out.print(f"rollback: {result.deleted_now} deleted now, "
                    f"{len(plan.rolled_back_earlier)} rolled back earlier, "
                    f"{result.already_gone} already gone, "
                    f"{result.failed} failed, {len(plan.in_flight)} left (create in flight), "
                    f"{result.not_provably_ours} left (not provably ours), "
                    f"{result.not_attempted} not attempted")
    if result.fatal_message:
        plain_err.print(shown(f"error: {result.fatal_message}", 2_000))
    plain_out.print(f"rollback report: {result.paths['rollback/results.csv']}")
    how = Invocation(reports_dir=reports_dir, api_url=api_url, sandbox=sandbox,
                     sandbox_url=sandbox_url)
    if plan.in_flight:
        say_next(how.command("apply", "SHEET", "--resume", run_id, inputs=False),
                 "settles the creates left in flight; then roll back again")
    if result.failed or result.not_attempted or result.fatal_message:
        say_next(how.command("rollback", run_id, "--yes", inputs=False),
                 "again: it carries on where this one stopped")
    say(f"exit code {int(result.exit_code)}")
    raise typer.Exit(result.exit_code)


def _confirmed(plan: bp.RollbackPlan, yes: bool) -> bool:
    if plan.in_flight:
        plain_err.print(f"warning: rows {', '.join(map(str, plan.in_flight))} had a create in "
                        f"flight when the run stopped; finish it first (apply --resume "
                        f"{plan.run_id}), then roll back again")
    rows = plan.to_delete
    if yes or not rows:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"refusing to delete {len(rows)} connections without confirmation: "
                         "stdin is not a terminal; pass --yes to delete without asking")
    print_rows(f"connections run {plan.run_id} created", [
        {"row": r.row, "group_id": r.group_id, "schema": r.schema,
         "connection_id": r.connection_id} for r in rows],
        ("row", "group_id", "schema", "connection_id"))
    return bool(typer.confirm(f"Delete these {len(rows)} connections?", default=False))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("connect-cards")(connect_cards)
    app.command("rollback")(rollback)
