"""``export``: the account's tiktok_ads connections as a sheet in the input template's format.

What is read, inside the same budgets as every command (one client, one budget gate):

1. ``GET /v1/groups``, every page: the groups named by id or name are checked (an unknown or
   ambiguous one is exit 2, named, before anything is written);
2. what those groups hold, listed once the cheaper way (:mod:`batch_provisioner.run.listing`:
   each group's listing, or the account's, 1,000 a page), the new group's too for a move;
3. ``GET /v1/connections/{id}`` for each tiktok_ads connection (a listing item may leave
   fields out), a few at a time; ``on_progress(done, total)`` after each.

Each answer becomes a row (:mod:`batch_provisioner.sheet.export`) and the sheets are built
(:mod:`batch_provisioner.run.export_sheets`) and written (``report.export_files``). What a
row cannot express, connections of other services, connections deleted while exporting and
reads that failed are all listed in ``not_exported``; a failed read or group listing makes
the exit code 1 (the sheet lacks those connections). Nothing here prints or exits.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.api.client import FivetranClient
from batch_provisioner.api.wire import schema_of
from batch_provisioner.errors import ApiError, ExitCode, FatalApiError, InputError, NotFoundApiError
from batch_provisioner.models import SERVICE
from batch_provisioner.report.export_files import (
    NOT_EXPORTED_COLUMNS,
    checked_out_path,
    companion,
    write_export,
)
from batch_provisioner.run.concurrently import for_each
from batch_provisioner.run.export_sheets import (
    Source,
    adoption_sheet,
    move_run_id,
    move_sheets,
    next_steps,
    not_exported,
)
from batch_provisioner.run.invocation import Invocation
from batch_provisioner.run.listing import Groups, list_existing, list_groups_counted
from batch_provisioner.run.next_actions import NextAction
from batch_provisioner.run.results import AccountGroup
from batch_provisioner.run.sync import sync
from batch_provisioner.run.target import (
    ConnectionsSource,
    GroupsSource,
    Target,
    check_target_options,
    open_client,
    select_target,
)
from batch_provisioner.settings import Budget, Limits
from batch_provisioner.sheet.export import ExportedRow, exported_row, shown_value
from batch_provisioner.sheet.source import shown_name

PathLike = str | os.PathLike[str]
JSON = dict[str, Any]
_READ_CONCURRENCY = 16
_REDIRECT = re.compile(r"^https://[A-Za-z0-9.\-]+(:[0-9]+)?(/\S*)?$")


@dataclass(frozen=True)
class ExportedConnection:
    """One connection written as a row: where it lives and its state then."""

    connection_id: str
    group_id: str
    schema: str
    setup_state: str | None
    paused: bool | None


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` read and wrote. ``not_exported``: one line per thing of a connection
    the sheet does not hold (``NOT_EXPORTED_COLUMNS``); ``clashes``: schemas the new group
    holds already (``apply`` reports them ``exists``); ``ideal_seconds``: the least time the
    budgets allow for ``calls``."""

    connections: tuple[ExportedConnection, ...]
    groups: tuple[AccountGroup, ...]
    to_group: AccountGroup | None
    not_exported: pl.DataFrame
    clashes: tuple[str, ...]
    calls: int
    wall_seconds: float
    ideal_seconds: float
    budgets: tuple[Budget, ...]
    exit_code: ExitCode
    paths: Mapping[str, Path] = field(default_factory=dict)
    failed: int = 0  # connections whose read failed (not in the sheet)
    #: The commands to run next: ``plan`` the sheet; for a move ``apply``, ``connect_cards``,
    #: ``status`` and ``pause_old`` (``run.export_sheets.next_steps``).
    next_actions: tuple[NextAction, ...] = ()

    @property
    def sheet(self) -> Path:
        """The sheet to give ``plan``/``apply`` next."""
        return self.paths["connections"]


@dataclass(frozen=True)
class _Selection:
    ids: tuple[str, ...]
    names: tuple[str, ...]
    every: bool
    to_id: str | None
    to_name: str | None


@dataclass
class _Read:
    answers: list[JSON] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)
    clashes: tuple[str, ...] = ()
    failed: int = 0


async def export_async(
    *, groups: Sequence[str] = (), group_names: Sequence[str] = (), all_groups: bool = False,
    to_group: str | None = None, to_group_name: str | None = None,
    redirect_uri: str | None = None, out: PathLike = "export.xlsx",
    target: Target | None = None, sandbox: bool = False, sandbox_url: str | None = None,
    api_url: str | None = None, reports_dir: PathLike = "reports",
    sandbox_groups: GroupsSource | None = None, sandbox_profile: str | None = None,
    sandbox_connections: ConnectionsSource | None = None, limits: Limits | None = None,
    on_target: Callable[[Target], None] = lambda _t: None,
    on_progress: Callable[[int, int], None] = lambda _done, _total: None,
    invocation: Invocation | None = None,
) -> ExportResult:
    """Read the groups' tiktok_ads connections and write them as a sheet (.xlsx or .csv).

    Name the groups by id (``groups``), by name (``group_names``) or take ``all_groups``.
    ``to_group`` (or ``to_group_name``) makes a move: ``out`` then holds connect-card rows
    for that group (``redirect_uri`` required) and ``<out>_retire`` the old rows with
    ``paused = true``. ``limits``: budgets set on purpose (else Fivetran's, or a sandbox's).
    ``invocation``: the target flags the next commands repeat (default: these arguments').
    Raises ``InputError`` (exit 2) for bad flags and unknown groups, ``FatalApiError`` (3).
    """
    chosen = _checked_selection(groups, group_names, all_groups, to_group, to_group_name,
                                redirect_uri)
    path = checked_out_path(Path(out))
    exact = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                 sandbox_groups=sandbox_groups, sandbox_profile=sandbox_profile,
                                 sandbox_connections=sandbox_connections,
                                 reports_dir=Path(reports_dir))
    given = limits or Limits()
    settings = replace(given.client_settings(), explicit_budgets=given.budgets_set())
    with select_target(target=target, sandbox=sandbox, sandbox_url=sandbox_url,
                       api_url=api_url, reports_dir=Path(reports_dir), sandbox_groups=exact,
                       sandbox_profile=sandbox_profile,
                       sandbox_connections=sandbox_connections) as tgt:
        on_target(tgt)
        async with open_client(tgt, settings) as client:
            started = time.monotonic()
            listed, sources, new_group = await _resolve(client, chosen)
            read = await _read(client, listed, sources, new_group, on_progress)
            calls, budgets = client.stats.calls, tuple(client.gate.budgets)
            ideal = client.gate.ideal_seconds(calls)
    wall = time.monotonic() - started
    order = {g.id: i for i, g in enumerate(sources)}
    rows = sorted((exported_row(a) for a in read.answers),
                  key=lambda r: (order.get(r.group_id, len(order)), r.schema))
    left_out = not_exported(rows) + read.left_out
    paths = _write(path, rows, left_out, sources, new_group, redirect_uri)
    code = ExitCode.ROWS_FAILED if read.failed else ExitCode.OK
    how = invocation or Invocation(
        reports_dir=Path(reports_dir), api_url=api_url, sandbox=sandbox,
        sandbox_url=sandbox_url, sandbox_profile=sandbox_profile,
        sandbox_groups=shown_name(sandbox_groups) if isinstance(
            sandbox_groups, str | os.PathLike) else None)
    steps = next_steps(how, paths, len(rows), new_group.id if new_group else None)
    return ExportResult(tuple(_exported(r) for r in rows), tuple(sources), new_group,
                        pl.DataFrame(left_out, schema=dict.fromkeys(NOT_EXPORTED_COLUMNS,
                                                                    pl.String)),
                        read.clashes, calls, wall, ideal, budgets, code, paths, read.failed,
                        steps)


def _checked_selection(ids: Sequence[str], names: Sequence[str], every: bool,
                       to_id: str | None, to_name: str | None,
                       redirect_uri: str | None) -> _Selection:
    """The flags' groups, checked: exit 2 for a contradiction or a missing redirect."""
    if every and (ids or names):
        raise InputError("--all-groups exports every group: give it without --group or "
                         "--group-name")
    if not every and not ids and not names:
        raise InputError("say which groups to export: --group ID or --group-name NAME "
                         "(repeatable), or --all-groups")
    if to_id and to_name:
        raise InputError("--to-group and --to-group-name both name the new group; give one")
    if redirect_uri is not None and not _REDIRECT.match(redirect_uri):
        raise InputError(f"--redirect-uri {redirect_uri!r} is not an absolute https URL "
                         "(e.g. https://agency.example/done)")
    if (to_id or to_name) and redirect_uri is None:
        raise InputError("--to-group makes connect-card rows, which need --redirect-uri URL "
                         "(where the connect card sends the client back)")
    return _Selection(tuple(ids), tuple(names), every, to_id, to_name)


async def _resolve(client: FivetranClient, chosen: _Selection
                   ) -> tuple[Groups, list[AccountGroup], AccountGroup | None]:
    """The account's groups, the groups to export and the new group (unknown: exit 2)."""
    listed = await list_groups_counted(client)
    known = [AccountGroup(str(g["id"]), str(g.get("name") or "")) for g in listed.items
             if g.get("id")]
    new_group = None
    if chosen.to_id or chosen.to_name:
        new_group = _find(known, chosen.to_id, chosen.to_name,
                          "--to-group" if chosen.to_id else "--to-group-name")
    if chosen.every:
        sources = [g for g in known if new_group is None or g.id != new_group.id]
    else:
        found = [_find(known, gid, None, "--group") for gid in chosen.ids]
        found += [_find(known, None, name, "--group-name") for name in chosen.names]
        sources = list({g.id: g for g in found}.values())
    if new_group is not None and any(g.id == new_group.id for g in sources):
        raise InputError(f"{new_group.id} ({new_group.name}) is both exported and the new "
                         "group: a connection cannot move into its own group")
    return listed, sources, new_group


def _find(known: Sequence[AccountGroup], group_id: str | None, name: str | None,
          flag: str) -> AccountGroup:
    if group_id is not None:
        match = [g for g in known if g.id == group_id]
        what = f"{flag} {group_id!r}: no group has this id"
    else:
        assert name is not None
        match = [g for g in known if g.name.strip().casefold() == name.strip().casefold()]
        what = f"{flag} {name!r}: no group has this name"
        if len(match) > 1:
            ids = ", ".join(f"{g.id} ({g.name})" for g in match)
            raise InputError(f"{flag} {name!r}: {len(match)} groups have this name ({ids}); "
                             "name it by its id instead")
    if not match:
        shown = ", ".join(f"{g.id} ({g.name})" for g in known[:8])
        more = f" and {len(known) - 8} more" if len(known) > 8 else ""
        raise InputError(f"{what} (the account's groups: {shown or 'none'}{more}; "
                         "batch-provisioner groups lists them)")
    return match[0]


async def _read(client: FivetranClient, listed: Groups, sources: Sequence[AccountGroup],
                new_group: AccountGroup | None,
                on_progress: Callable[[int, int], None]) -> _Read:
    """The groups' connections listed once, then one GET per tiktok_ads connection."""
    ids = [g.id for g in sources] + ([new_group.id] if new_group else [])
    existing = await list_existing(client, ids, groups=listed)
    read = _Read()
    for group_id, problem in existing.problems.items():
        read.failed += 1
        read.left_out.append(_left(group_id, "", "", "(the group)", "",
                                   f"listing it failed: {problem.message}"))
    items: list[JSON] = []
    for group in sources:
        for schema, item in existing.found.get(group.id, {}).items():
            if item.get("service") == SERVICE:
                items.append(item)
            else:
                read.left_out.append(_left(group.id, schema, str(item.get("id")), "service",
                                           shown_value(item.get("service")),
                                           f"not {SERVICE}: this tool exports {SERVICE} "
                                           "connections only"))
    if new_group is not None:
        _check_one_schema_each(items, new_group)  # before the reads: no call wasted
        taken = set(existing.found.get(new_group.id, {}))
        read.clashes = tuple(sorted(taken & {schema_of(item) for item in items}))
    answers: dict[str, JSON] = {}
    done = 0

    async def read_one(item: JSON) -> None:
        nonlocal done
        connection_id = str(item.get("id"))
        try:
            answers[connection_id] = await client.get_connection(connection_id)
        except FatalApiError:
            raise
        except NotFoundApiError:
            read.left_out.append(_left(str(item.get("group_id")), str(item.get("schema")),
                                       connection_id, "(the connection)", "",
                                       "deleted while exporting"))
        except ApiError as exc:
            read.failed += 1
            read.left_out.append(_left(str(item.get("group_id")), str(item.get("schema")),
                                       connection_id, "(the connection)", "",
                                       f"reading it failed: {exc.message}; export again"))
        done += 1
        on_progress(done, len(items))

    await for_each(items, read_one, _READ_CONCURRENCY)
    read.answers = [answers[str(i.get("id"))] for i in items if str(i.get("id")) in answers]
    return read


def _left(group_id: str, schema: str, connection_id: str, what: str, value: str,
          reason: str) -> dict[str, str]:
    return {"group_id": group_id, "schema": schema, "connection_id": connection_id,
            "field": what, "value": value, "reason": reason}


def _check_one_schema_each(items: Sequence[JSON], new_group: AccountGroup) -> None:
    """Two connections of one schema (from two groups) would collide in the new group."""
    seen: dict[str, str] = {}
    twice: list[str] = []
    for item in items:
        schema, group_id = schema_of(item), str(item.get("group_id"))
        if schema in seen:
            twice.append(f"{schema!r} ({seen[schema]} and {group_id})")
        seen.setdefault(schema, group_id)
    if twice:
        raise InputError(f"the schema {', '.join(twice[:5])} would be used twice in "
                         f"{new_group.id}: a schema is unique within a group; move those "
                         "groups one export at a time, to different groups")


def _write(path: Path, rows: Sequence[ExportedRow], left_out: Sequence[Mapping[str, str]],
           sources: Sequence[AccountGroup], new_group: AccountGroup | None,
           redirect_uri: str | None) -> dict[str, Path]:
    """The sheets of an adoption, or of a move (the new group's and the retire sheet)."""
    names = ", ".join(f"{g.name} ({g.id})" for g in sources) or "no group"
    if new_group is None:
        sheet = adoption_sheet(rows, left_out, Source(names, path.name), redirect_uri)
        return write_export(path, sheet)
    assert redirect_uri is not None
    retire_path = companion(path, "retire")
    source = Source(names, path.name, retire_path.name, f"{new_group.name} ({new_group.id})",
                    move_run_id(new_group.id))
    moving, retiring = move_sheets(rows, left_out, source, new_group.id, redirect_uri)
    paths = write_export(path, moving)
    paths.update({"retire" if k == "connections" else f"retire_{k}": v
                  for k, v in write_export(retire_path, retiring).items()})
    return paths


def _exported(row: ExportedRow) -> ExportedConnection:
    paused = row.cells.get("paused")
    return ExportedConnection(row.cells.get("connection_id", ""), row.group_id, row.schema,
                              row.cells.get("setup_state"),
                              None if paused is None else paused == "true")


export = sync(export_async)
