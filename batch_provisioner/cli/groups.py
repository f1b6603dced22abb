"""``groups``: the account's groups as a table, and as the file ``--sandbox-groups`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import batch_provisioner as bp
from batch_provisioner import logs
from batch_provisioner.cli.common import (
    ApiUrlOpt,
    ReportsDirOpt,
    SandboxUrlOpt,
    plain_out,
    print_rows,
    show_target,
)
from batch_provisioner.models import counted
from batch_provisioner.run.target import check_target_options

GroupsSandboxOpt = Annotated[bool, typer.Option(
    "--sandbox", help="List the embedded sandbox's groups, from the state earlier --sandbox "
                      "runs left in <reports-dir>/sandbox/state.sqlite.")]


def groups(
    api_url: ApiUrlOpt = None, sandbox: GroupsSandboxOpt = False,
    sandbox_url: SandboxUrlOpt = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE",
        help="Also write the groups to this CSV (id,name), which plan/apply --sandbox-groups "
             "reads back.")] = None,
    reports_dir: ReportsDirOpt = Path("reports"),
) -> None:
    """List the account's groups (GET /v1/groups, every page): id and name.

    With --out, also write them as a CSV id,name: feed it to plan/apply --sandbox --sandbox-groups
    to rehearse against the real account's groups. Exit 0 (ok) listed; 2 (input_error) usage
    error; 3 (fatal_api) credentials, base URL.
    """
    check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    logs.configure(log_format="auto", level="warning")
    result = bp.groups(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                       reports_dir=reports_dir, out=out_file, on_target=show_target)
    print_rows("groups", [{"id": g.id, "name": g.name} for g in result.groups], ("id", "name"))
    written = f"; written to {result.paths['groups.csv']}" if out_file is not None else ""
    plain_out.print(f"{counted(len(result.groups), 'group')}{written}")
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("groups")(groups)
