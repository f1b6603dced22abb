"""Plan before send: list what exists (paginated), then an action per request.

What exists is listed once, per group or for the whole account, whichever costs fewer calls
(the rule is in :mod:`batch_provisioner.run.listing`): a group of 500 rows costs a few list
calls, not 500 lookups, and 2,000 rows in 2,000 groups cost the account's pages plus the
groups listing, not 2,000 calls. A row whose (group_id, schema) already exists is ``exists``
and is never sent, which makes a rerun idempotent. A schema taken by another service is a
``conflict``.

An existing connection is compared with its row (:mod:`batch_provisioner.run.drift`) as
``DriftCheck`` says: ``full`` reads each one (``GET /v1/connections/{id}``, one call per
existing row; ``plan`` and ``apply --update``), ``listing`` compares what the listing already
returned (no extra call; fields the listing leaves out are not compared), ``off`` compares
nothing. A row pinned to a connection (its ``connection_id``, as ``export`` writes it) is
planned against that connection only: another one under its key is a ``conflict``, none at
all a row problem; it is never a create. A mutable difference is ``drift`` (``update`` when
updating); an immutable one (schema, timeframe_months) is a ``conflict``.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import polars as pl

from batch_provisioner.errors import ApiError, FatalApiError, NotFoundApiError
from batch_provisioner.models import SERVICE, Action, ActionKind, ConnectionRequest
from batch_provisioner.run.concurrently import for_each
from batch_provisioner.run.drift import Changes, diff, format_changes
from batch_provisioner.run.listing import (
    GroupProblem,
    Groups,
    ListingClient,
    ListingStrategy,
    list_existing,
    list_groups_counted,
)
from batch_provisioner.sheet.expand import with_group_id
from batch_provisioner.sheet.read import ROW

if TYPE_CHECKING:
    from batch_provisioner.sheet.load import Prepared

__all__ = ["DriftCheck", "GroupProblem", "Groups", "ListingStrategy", "Plan", "PlanningClient",
           "Resolved", "list_existing", "make_plan", "plan_frame", "resolve_group_names"]

JSON = dict[str, Any]
_GET_CONCURRENCY = 8


class DriftCheck(enum.StrEnum):
    OFF = "off"
    LISTING = "listing"
    FULL = "full"


class PlanningClient(ListingClient, Protocol):
    """What planning asks of the API: the listings (groups, a group's connections, the
    account's connections, page by page) and, for ``DriftCheck.FULL``, one read each."""

    async def get_connection(self, connection_id: str) -> JSON: ...


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    # Row → problem for rows whose group could not be resolved or listed.
    group_problems: dict[int, GroupProblem] = field(default_factory=dict)
    existing: dict[tuple[str, str], JSON] = field(default_factory=dict)
    # List requests (one a page; a retried page once) planning made, the groups listing of
    # name resolution included, and which way the connections were listed.
    list_calls: int = 0
    listing: ListingStrategy | None = None

    def count(self, kind: ActionKind) -> int:
        return sum(1 for action in self.actions if action.kind is kind)


class Resolved(NamedTuple):
    """Requests with their group ids, the rows whose name did not resolve, and the groups
    listing it took (``None`` when every row had a group_id): planning reuses it."""

    requests: list[ConnectionRequest]
    problems: dict[int, GroupProblem]
    groups: Groups | None = None


async def resolve_group_names(
    client: PlanningClient, requests: Sequence[ConnectionRequest]
) -> Resolved:
    """Give every request a group_id; a name matching no group, or several, is a row problem."""
    if all(r.group_id for r in requests):
        return Resolved(list(requests), {})
    listing = await list_groups_counted(client)
    groups = listing.items
    by_name: dict[str, list[JSON]] = defaultdict(list)
    for group in groups:
        by_name[str(group.get("name", "")).strip().casefold()].append(group)
    resolved: list[ConnectionRequest] = []
    problems: dict[int, GroupProblem] = {}
    for request in requests:
        if request.group_id or request.group_name is None:
            resolved.append(request)
            continue
        matches = by_name.get(request.group_name.strip().casefold(), [])
        if len(matches) == 1:
            group_id = str(matches[0]["id"])
            resolved.append(replace(request, group_id=group_id,
                                    payload=with_group_id(request.payload, group_id)))
        elif not matches:
            names = sorted(str(g.get("name")) for g in groups)
            close = [n for n in names if request.group_name.casefold()[:3] in n.casefold()]
            hint = ", ".join((close or names)[:5])
            problems[request.row] = GroupProblem(
                f"no group is named {request.group_name!r}; candidates: {hint or 'none'}",
                code="NotFound_Group")
        else:
            ids = ", ".join(f"{g['id']} ({g.get('name')})" for g in matches)
            problems[request.row] = GroupProblem(
                f"{len(matches)} groups are named {request.group_name!r}: {ids}; "
                "use group_id instead", code="Ambiguous_Group")
    return Resolved(resolved, problems, listing)


def _duplicate_keys(requests: Sequence[ConnectionRequest],
                    problems: dict[int, GroupProblem]) -> dict[int, GroupProblem]:
    """Rows that name one group differently (group_id vs group_name) but share a schema: the
    sheet's own duplicate check cannot see them until the names are resolved."""
    first: dict[tuple[str, str], int] = {}
    duplicates: dict[int, GroupProblem] = {}
    for request in requests:
        if request.row in problems or request.group_id is None:
            continue
        key = (request.group_id, request.schema)
        if key in first:
            duplicates[request.row] = GroupProblem(
                f"schema {request.schema!r} in group {request.group_id!r} is also row "
                f"{first[key]} (one names the group by id, the other by name)",
                code="Duplicate_Key")
        else:
            first[key] = request.row
    return duplicates


async def make_plan(client: PlanningClient, requests: Sequence[ConnectionRequest], *,
                    drift: DriftCheck = DriftCheck.OFF, update: bool = False,
                    groups: Groups | None = None,
                    listing: ListingStrategy | None = None) -> Plan:
    """Resolve group names, list what exists once, and decide an action for every request.

    ``groups``: the groups listing an earlier name resolution made (reused, and counted in
    ``list_calls``). ``listing``: force a listing strategy (benchmarks, tests); by default
    :func:`list_existing` picks the cheaper one.
    """
    resolved, problems, listed = await resolve_group_names(client, requests)
    groups = listed or groups
    problems.update(_duplicate_keys(resolved, problems))
    group_ids = sorted({r.group_id for r in resolved if r.group_id and r.row not in problems})
    listed_now = await list_existing(client, group_ids, groups=groups, strategy=listing)
    existing, group_errors = listed_now.found, listed_now.problems
    plan = Plan(group_problems=problems, listing=listed_now.strategy,
                list_calls=listed_now.calls + (groups.calls if groups else 0))
    found: list[tuple[ConnectionRequest, JSON]] = []
    for request in resolved:
        if request.row in problems:
            continue
        assert request.group_id is not None
        if request.group_id in group_errors:
            plan.group_problems[request.row] = group_errors[request.group_id]
            continue
        in_group = existing.get(request.group_id, {})
        current = in_group.get(request.schema)
        if request.connection_id is not None and (
                current is None or str(current.get("id")) != request.connection_id):
            _pin_unmet(request, current, in_group, plan)
            continue
        if current is None:
            plan.actions.append(Action(ActionKind.CREATE, request))
            continue
        service = current.get("service")
        if service and service != SERVICE:
            plan.existing[(request.group_id, request.schema)] = current
            plan.actions.append(Action(
                ActionKind.CONFLICT, request, connection_id=str(current.get("id")),
                detail=f"schema {request.schema!r} is already used by a {service} connection "
                       f"in this group ({current.get('id')}) — {OTHER_SERVICE_ADVICE}"))
        else:
            found.append((request, current))
    if drift is DriftCheck.FULL:
        found = await _read_each(client, found, plan)
    for request, current in found:
        assert request.group_id is not None
        plan.existing[(request.group_id, request.schema)] = current
        plan.actions.append(_compare(request, current, drift, update))
    order = {r.row: i for i, r in enumerate(requests)}
    plan.actions.sort(key=lambda a: order.get(a.request.row, 0))
    return plan


#: What to do about a conflict: a person must change the row (apply never sends it).
OTHER_SERVICE_ADVICE = ("give this row another schema name (a schema is unique within a group "
                        "and fixed at creation), or remove the row")


def immutable_advice(immutable: Changes) -> str:
    """What to do when a field fixed at creation differs: Fivetran cannot change it, so keep
    the connection (the row takes the connection's value again) or make a new one."""
    values = ", ".join(f"{path.removeprefix('config.')} {old!r}"
                       for path, (old, _new) in immutable.items())
    return (f"to keep the connection, set the row back to its {values}; for the new value, "
            "give the row a new schema name (apply creates a second connection; delete the "
            "old one in Fivetran if it is no longer wanted)")


def _pin_unmet(request: ConnectionRequest, current: JSON | None, in_group: dict[str, JSON],
               plan: Plan) -> None:
    """A pinned row (``connection_id``) whose group and schema do not hold that connection:
    another connection under the key is a ``conflict``; none is a row problem. Never a create:
    a pinned row stands for a connection that exists."""
    pin, group_id = request.connection_id, request.group_id
    assert pin is not None and group_id is not None
    if current is not None:
        plan.existing[(group_id, request.schema)] = current
        plan.actions.append(Action(
            ActionKind.CONFLICT, request, connection_id=str(current.get("id")),
            detail=f"schema {request.schema!r} in group {group_id!r} is connection "
                   f"{current.get('id')}, not {pin} (this row's connection_id); clear "
                   "connection_id to adopt that one"))
        return
    moved = next((schema for schema, item in in_group.items()
                  if str(item.get("id")) == pin), None)
    where = (f"has the schema {moved!r}, fixed at creation: put it back" if moved
             else "is no longer in this group (deleted, or in another group)")
    plan.group_problems[request.row] = GroupProblem(
        f"connection {pin} (this row's connection_id) {where}, or clear connection_id to "
        "create a new connection", code="NotFound_Connection")


def _compare(request: ConnectionRequest, current: JSON, drift: DriftCheck,
             update: bool) -> Action:
    """exists, drift/update or (immutable difference) conflict for an existing connection."""
    connection_id = str(current.get("id"))
    if drift is DriftCheck.OFF:
        return Action(ActionKind.EXISTS, request, connection_id=connection_id)
    mutable, immutable = diff(request.payload, current,
                              known_only=drift is DriftCheck.LISTING)
    if immutable:
        return Action(ActionKind.CONFLICT, request, connection_id=connection_id,
                      changes=immutable,
                      detail="fixed at creation, can't change: " + format_changes(immutable)
                      + " — " + immutable_advice(immutable))
    if mutable:
        kind = ActionKind.UPDATE if update else ActionKind.DRIFT
        return Action(kind, request, connection_id=connection_id, changes=mutable,
                      detail=format_changes(mutable))
    return Action(ActionKind.EXISTS, request, connection_id=connection_id)


async def _read_each(client: PlanningClient, found: list[tuple[ConnectionRequest, JSON]],
                     plan: Plan) -> list[tuple[ConnectionRequest, JSON]]:
    """``GET`` every existing connection; a row whose read fails becomes a row problem."""
    current: dict[int, JSON] = {}

    async def read_one(pair: tuple[ConnectionRequest, JSON]) -> None:
        request, listed = pair
        connection_id = str(listed.get("id"))
        try:
            current[request.row] = await client.get_connection(connection_id)
        except FatalApiError:
            raise
        except ApiError as exc:
            gone = isinstance(exc, NotFoundApiError)
            plan.group_problems[request.row] = GroupProblem(
                f"connection {connection_id} vanished while planning; plan again" if gone
                else f"reading connection {connection_id} failed: {exc.message}",
                exc.code, exc.http_status, retriable=True)

    await for_each(found, read_one, _GET_CONCURRENCY)
    return [(request, current[request.row]) for request, _ in found if request.row in current]


def plan_frame(prepared: Prepared, result: Plan) -> pl.DataFrame:
    """One line per input row: key and carry-through columns, action, changes, detail."""
    decided: list[dict[str, Any]] = []
    for row, error in prepared.invalid.items():
        decided.append({ROW: row, "action": "invalid", "detail": error})
    for row, problem in result.group_problems.items():
        decided.append({ROW: row, "action": "invalid", "detail": problem.message})
    for action in result.actions:
        request = action.request
        drifted = action.kind in (ActionKind.DRIFT, ActionKind.UPDATE)
        decided.append({
            ROW: request.row, "resolved_group_id": request.group_id,
            "action": str(ActionKind.DRIFT if drifted else action.kind),
            "connection_id": action.connection_id,
            "changes": ", ".join(action.changes) or None, "detail": action.detail or None})
    schema = {ROW: pl.Int64, "resolved_group_id": pl.String, "action": pl.String,
              "connection_id": pl.String, "changes": pl.String, "detail": pl.String}
    actions = pl.DataFrame(decided, schema=schema)
    base = prepared.frame.select(ROW, "group_id", "group_name", "schema",
                                 *prepared.carry_columns)
    return (base.join(actions, on=ROW, how="left", maintain_order="left")
            .with_columns(pl.coalesce("resolved_group_id", "group_id").alias("group_id"))
            .drop("resolved_group_id"))
