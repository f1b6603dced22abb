"""``export``: what exists, as a sheet; or, with ``--to-group``, a move to a new group."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import batch_provisioner as bp
from batch_provisioner import logs
from batch_provisioner.cli.closing import Invocation, say, say_next
from batch_provisioner.cli.common import (
    ApiUrlOpt,
    SandboxConnectionsOpt,
    SandboxGroupsOpt,
    SandboxProfileOpt,
    SandboxUrlOpt,
    err,
    print_rows,
    show_target,
)
from batch_provisioner.run.estimate import describe_budget, format_duration
from batch_provisioner.run.export_sheets import SECRETS_NOTE
from batch_provisioner.run.target import check_target_options
from batch_provisioner.sheet.source import shown_name

ExportSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="Export from the embedded sandbox: the state earlier --sandbox runs left "
                      "in <reports-dir>/sandbox/state.sqlite, plus --sandbox-connections.")]
ExportReportsOpt = Annotated[Path, typer.Option(
    "--reports-dir", metavar="DIR",
    help="Where the runs of the next commands go (and, with --sandbox, the "
                          "embedded sandbox's state: <DIR>/sandbox/state.sqlite).")]
_SHOWN_LEFT_OUT = 5
#: (a move?, what a file holds) -> how the closing lines name it.
_WRITTEN = {
    (False, "connections"): "one row per connection, pinned by connection_id",
    (True, "connections"): "the new group's connect-card rows",
    (True, "retire"): "the old connections with paused = true",
}


def export(
    group: Annotated[list[str] | None, typer.Option(
        "--group", metavar="ID",
        help="Export this group's connections, by id (repeatable).")] = None,
    group_name: Annotated[list[str] | None, typer.Option(
        "--group-name", metavar="NAME",
        help="Export this group's connections, by name (repeatable).")] = None,
    all_groups: Annotated[bool, typer.Option(
        "--all-groups", help="Export every group's connections.")] = False,
    to_group: Annotated[str | None, typer.Option(
        "--to-group", metavar="ID",
        help="Move them: write the rows retargeted at this group (by id) as "
                           "connect-card rows, and <out>_retire with the old ones paused.")]
    = None,
    to_group_name: Annotated[str | None, typer.Option(
        "--to-group-name", metavar="NAME",
        help="As --to-group, naming the new group by its name.")] = None,
    redirect_uri: Annotated[str | None, typer.Option(
        "--redirect-uri", metavar="URL",
        help="Where the connect card returns the client (https URL): every "
                               "row of a move; rows without one otherwise.")] = None,
    out_file: Annotated[Path, typer.Option(
        "--out", metavar="FILE",
        help="The sheet to write: .xlsx (the template's format) or .csv (with "
                      "_custom_reports.csv and _not_exported.csv beside it).")]
    = Path("export.xlsx"),
    api_url: ApiUrlOpt = None, sandbox: ExportSandboxOpt = False,
    sandbox_url: SandboxUrlOpt = None, reports_dir: ExportReportsOpt = Path("reports"),
    sandbox_groups: SandboxGroupsOpt = None, sandbox_profile: SandboxProfileOpt = None,
    sandbox_connections: SandboxConnectionsOpt = None,
) -> None:
    """Write the groups' tiktok_ads connections as a sheet in the input template's format.

    The sheet plans unchanged as every row exists with no drift; secrets are blank (the API
    masks them) and connection_id pins each row to its connection. Whatever a row cannot hold
    is listed (not_exported). With --to-group: the rows retargeted at that group as
    connect-card rows (apply, connect-cards, status), and <out>_retire to pause the old ones
    with apply --update. Exit 0 exported; 1 some connections could not be read; 2 usage
    error or unknown group; 3 fatal API error.
    """
    profile = str(sandbox_profile) if sandbox_profile else None
    groups = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                  sandbox_groups=sandbox_groups, sandbox_profile=profile,
                                  sandbox_connections=sandbox_connections,
                                  reports_dir=reports_dir)  # read (or downloaded) once, here
    logs.configure(log_format="auto", level="warning")
    how = Invocation(reports_dir=reports_dir, api_url=api_url, sandbox=sandbox,
                     sandbox_url=sandbox_url,
                     sandbox_groups=shown_name(sandbox_groups) if sandbox_groups else None,
                     sandbox_profile=profile)
    with _progress() as on_progress:
        result = bp.export(
            groups=group or (), group_names=group_name or (), all_groups=all_groups,
            to_group=to_group, to_group_name=to_group_name, redirect_uri=redirect_uri,
            out=out_file, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
            reports_dir=reports_dir, sandbox_groups=groups, sandbox_profile=profile,
            sandbox_connections=sandbox_connections, on_target=show_target,
            on_progress=on_progress, invocation=how)
    print_rows("exported", [{**vars(c), "paused": _bool_text(c.paused)}
                            for c in result.connections],
               ("group_id", "schema", "connection_id", "setup_state", "paused"))
    _closing(result)
    raise typer.Exit(int(result.exit_code))


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A bar on stderr while connections are read (on a terminal only); yields the
    ``on_progress`` callback."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    bar = Progress(TextColumn("[bold]export: reading connections"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("export", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _bool_text(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _closing(result: bp.ExportResult) -> None:
    names = ", ".join(f"{g.name} ({g.id})" for g in result.groups) or "no group"
    count = len(result.connections)
    say(f"exported {count} tiktok_ads connection{'s' if count != 1 else ''} of {names}: "
        f"{result.calls:,} calls in {result.wall_seconds:.1f} s ({_budget_line(result)})")
    left = result.not_exported
    if left.height:
        where = result.paths.get("not_exported", result.sheet)
        shown = "; ".join(f"{r['schema'] or r['group_id']}: {r['field']} ({r['reason']})"
                          for r in left.head(_SHOWN_LEFT_OUT).iter_rows(named=True))
        extra = left.height - _SHOWN_LEFT_OUT
        more = f"; and {extra} more" if extra > 0 else ""
        say(f"not exported, listed in {where}"
            f"{' (sheet not_exported)' if where == result.sheet else ''}: {shown}{more}")
    else:
        say("not exported: nothing (every setting has a column)")
    if result.failed:
        say(f"{result.failed} reads failed (connections or group listings, listed with the "
            "reason): what they hold is not in the sheet; export again to take it in")
    if count:
        say(SECRETS_NOTE)
    if result.to_group is not None and result.clashes:
        say(f"{len(result.clashes)} of these schemas exist in {result.to_group.id} already "
            f"({', '.join(result.clashes[:5])}): apply reports them exists and creates the "
            "others")
    moving = result.to_group is not None
    for name, path in result.paths.items():
        say(f"written: {path} ({_WRITTEN.get((moving, name), name.replace('_', ' '))})")
    first = True
    for action in result.next_actions:
        if action.command is None:
            continue
        if first:
            say_next(action.command, action.why)
            first = False
        else:
            say(f"then: {action.command}   # {action.why}")
    say(f"exit code {int(result.exit_code)}")


def _budget_line(result: bp.ExportResult) -> str:
    """``within one window of 20,000 calls/h`` or ``≥ 3 min at 1,000 calls/min``: what the
    budget on every call allows for the calls made."""
    calls = [b for b in result.budgets if b.applies_to == "all"]
    if not calls:
        return "no budget limits the calls"
    budget = describe_budget(min(calls, key=lambda b: b.limit / b.window_seconds))
    if result.ideal_seconds <= 0:
        return f"within one window of {budget}"
    return f"≥ {format_duration(result.ideal_seconds, at_least=True)} at {budget}"


def register(app: typer.Typer) -> None:
    app.command("export")(export)
