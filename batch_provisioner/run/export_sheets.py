"""What ``export`` writes, built from the rows read (pure): the adoption sheet, or for a move
the new group's connect-card sheet and the old groups' retire sheet, with their instructions;
and the commands to run next (``next_steps``).

* **Adoption**: each connection as it is, pinned by its ``connection_id``. ``plan`` on it,
  unchanged, shows every row ``exists`` with no drift; a changed cell is drift that ``apply
  --update`` PATCHes. With ``redirect_uri``, a row without one gets it (so ``connect-cards``
  can send links for the connections still ``incomplete``).
* **A move**: the same rows retargeted at the new group as connect-card rows: no
  ``connection_id``, no ``setup_state``, no auth, the ``redirect_uri`` given, the custom
  reports following them. ``apply`` creates one connection per row; the clients authorise
  them through ``connect-cards``. The **retire** sheet is the adoption sheet with
  ``paused = true``: ``apply --update`` on it pauses the old connections (a PATCH of
  ``paused`` alone), and rollback never deletes them (no run created them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_provisioner.models import counted as plural
from batch_provisioner.report.export_files import ExportSheet
from batch_provisioner.run.invocation import Invocation
from batch_provisioner.run.next_actions import NextAction
from batch_provisioner.sheet.columns import EXPORT_COLUMNS
from batch_provisioner.sheet.export import ExportedRow

SECRETS_NOTE = (
    "access_token, client_id and client_secret are blank: the Fivetran API never returns "
    "secrets (it masks them).")


@dataclass(frozen=True)
class Source:
    """Where the rows came from, for the instructions: the groups, and the file names."""

    groups: str  # "Snowflake EU (warm_sunset)"
    sheet: str  # the file these instructions are in
    retire: str | None = None  # a move: the retire sheet's file
    to_group: str | None = None  # a move: "BigQuery EU (brave_meadow)"
    run_id: str | None = None  # a move: the run that creates the new connections


def not_exported(rows: Sequence[ExportedRow]) -> list[dict[str, str]]:
    """One line per field of a connection that its row cannot express."""
    return [{"group_id": row.group_id, "schema": row.schema,
             "connection_id": row.cells.get("connection_id", ""), "field": drop.field,
             "value": drop.value, "reason": drop.reason}
            for row in rows for drop in row.dropped]


def adoption_sheet(rows: Sequence[ExportedRow], left_out: Sequence[Mapping[str, str]],
                   source: Source, redirect_uri: str | None = None) -> ExportSheet:
    """Each connection as it is, pinned (see the module docstring)."""
    cells = [_with_redirect(row.cells, redirect_uri) for row in rows]
    reports = [report for row in rows for report in row.reports]
    lines = [
        f"batch-provisioner export: the tiktok_ads connections of {source.groups}, one row "
        "each, as Fivetran holds them.",
        "",
        f"1. {SECRETS_NOTE} A row without them is fine for plan and apply --update: its "
        "connection_id pins it to its connection, which is never created anew. To "
        "re-authorise one, fill them (env:NAME or file:PATH) or send a connect card.",
        *_common_lines(left_out),
        "",
        f"Check:  batch-provisioner plan {source.sheet}      (every row exists, no drift: "
        "exit 0)",
        f"Change: edit cells, then batch-provisioner apply {source.sheet} --update",
    ]
    return ExportSheet(cells, reports, left_out, lines)


def move_sheets(rows: Sequence[ExportedRow], left_out: Sequence[Mapping[str, str]],
                source: Source, group_id: str,
                redirect_uri: str) -> tuple[ExportSheet, ExportSheet]:
    """(the new group's connect-card sheet, the retire sheet) of a move."""
    new_rows = [_retargeted(row.cells, group_id, redirect_uri) for row in rows]
    new_reports = [{**report, "group_id": group_id} for row in rows for report in row.reports]
    retire = [{**row.cells, "paused": "true"} for row in rows]
    reports = [report for row in rows for report in row.reports]
    moving = [
        f"batch-provisioner export --to-group: the tiktok_ads connections of {source.groups}, "
        f"retargeted at {source.to_group} as connect-card rows.",
        "",
        f"1. {SECRETS_NOTE} Fivetran cannot move a connection between groups, so each row "
        "makes a new connection that its client authorises through a connect card "
        f"(redirect_uri {redirect_uri}).",
        *_common_lines(left_out, new=True),
        "",
        f"Run:     batch-provisioner apply {source.sheet} --run-id {source.run_id}",
        f"Links:   batch-provisioner connect-cards {source.run_id}   (send each client its link)",
        f"Watch:   batch-provisioner status {source.run_id}          (who has re-authorised)",
        f"Retire:  batch-provisioner apply {source.retire} --update   (pauses the old "
        "connections, once the new ones are connected)",
    ]
    retiring = [
        f"batch-provisioner export --to-group: the old connections of {source.groups}, "
        "paused = true.",
        "",
        f"1. apply {source.retire} --update pauses them: a PATCH of paused alone, once the "
        f"new connections in {source.to_group} are connected (status {source.run_id}). "
        "Pausing keeps "
        "each connection, its settings and its data, and undoes with paused = false; deleting "
        "cannot be undone.",
        f"2. {SECRETS_NOTE} connection_id pins each row to its connection: nothing is created.",
        *_common_lines(left_out)[1:],
    ]
    return (ExportSheet(new_rows, new_reports, left_out, moving),
            ExportSheet(retire, reports, left_out, retiring))


def _common_lines(left_out: Sequence[Mapping[str, str]], *, new: bool = False) -> list[str]:
    left = (f"What no row can hold ({plural(len(left_out), 'line')}: settings with no "
            "column, connections of other services, reads that failed) is listed in the "
            "'not_exported' sheet (or the _not_exported.csv file beside a CSV): it is not in "
            "these rows." if left_out else "Every setting was exported: nothing was left out.")
    pins = ("2. connection_id and setup_state are blank: each row makes a new connection."
            if new else "2. connection_id is the connection a row was exported from; "
            "setup_state whether it was authorised (connected) then. Both are read, never sent.")
    return [
        pins,
        f"3. {left}",
        "4. Custom reports are in the 'custom_reports' sheet (or the _custom_reports.csv file "
        "beside a CSV), keyed by schema and group_id.",
    ]


def _with_redirect(cells: Mapping[str, str], redirect_uri: str | None) -> dict[str, str]:
    if redirect_uri and not cells.get("redirect_uri"):
        return {**cells, "redirect_uri": redirect_uri}
    return dict(cells)


def _retargeted(cells: Mapping[str, str], group_id: str, redirect_uri: str) -> dict[str, str]:
    kept = {k: v for k, v in cells.items() if k not in EXPORT_COLUMNS}
    return {**kept, "group_id": group_id, "redirect_uri": redirect_uri}


def move_run_id(group_id: str) -> str:
    """The run id the commands of a move use: ``move-to-<new group id>``."""
    return f"move-to-{group_id}"


def next_steps(how: Invocation, paths: Mapping[str, Path], count: int,
               to_group: str | None) -> tuple[NextAction, ...]:
    """The commands that follow an export, as ``NextAction``s (kinds ``plan``; for a move
    ``apply``, ``connect_cards``, ``status``, ``pause_old``). ``how``: the target flags to
    repeat; ``paths``: what was written (``connections``, ``custom_reports``, ``retire``,
    ``retire_custom_reports``). None when nothing was exported."""
    if not count:
        return ()
    sheet = dataclasses.replace(how, sheet=paths["connections"],
                                custom_reports=paths.get("custom_reports"))
    if to_group is None:
        return (NextAction("plan", count, None, sheet.command("plan"),
                           "every row exists, no drift: exit 0"),)
    run_id = move_run_id(to_group)
    old = dataclasses.replace(how, sheet=paths["retire"],
                              custom_reports=paths.get("retire_custom_reports"))
    return (
        NextAction("apply", count, None, sheet.command("apply", "--run-id", run_id),
                   f"creates {plural(count, 'connect-card connection')} in {to_group}"),
        NextAction("connect_cards", count, None,
                   how.command("connect-cards", run_id, inputs=False, rehearsal=False),
                   "a link for each client to authorise the new connection"),
        NextAction("status", count, None,
                   how.command("status", run_id, inputs=False, rehearsal=False),
                   "who has authorised (connected)"),
        NextAction("pause_old", count, None,
                   old.command("apply", "--update", "--run-id", f"{run_id}-pause"),
                   "once all are connected: pauses the old connections (deletes nothing)"),
    )
