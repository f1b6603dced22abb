"""Plan before send: one paginated listing per group, then an action per request.

A group of 500 rows costs a few list calls, not 500 lookups. A row whose (group_id, schema)
already exists is ``exists`` and is never sent, which makes a rerun idempotent. A schema taken
by another service is a ``conflict``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio

from batch_provisioner import SERVICE
from batch_provisioner.errors import ApiError, FatalApiError, NotFoundApiError
from batch_provisioner.models import Action, ActionKind, ConnectionRequest
from batch_provisioner.payload import with_group_id

JSON = dict[str, Any]
_LIST_CONCURRENCY = 4


class PlanningClient(Protocol):
    async def list_connections(self, group_id: str) -> list[JSON]: ...
    async def list_groups(self) -> list[JSON]: ...


@dataclass(frozen=True)
class GroupProblem:
    """Why a row's group could not be used: unknown, ambiguous name, or listing failed."""

    message: str
    code: str | None = None
    http_status: int | None = None


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    # Row → problem for rows whose group could not be resolved or listed.
    group_problems: dict[int, GroupProblem] = field(default_factory=dict)
    existing: dict[tuple[str, str], JSON] = field(default_factory=dict)
    list_calls: int = 0

    def count(self, kind: ActionKind) -> int:
        return sum(1 for action in self.actions if action.kind is kind)


async def resolve_group_names(
    client: PlanningClient, requests: Sequence[ConnectionRequest]
) -> tuple[list[ConnectionRequest], dict[int, GroupProblem]]:
    """Give every request a group_id; a name matching no group, or several, is a row problem."""
    if all(r.group_id for r in requests):
        return list(requests), {}
    groups = await client.list_groups()
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
    return resolved, problems


async def list_existing(
    client: PlanningClient, group_ids: Sequence[str]
) -> tuple[dict[str, dict[str, JSON]], dict[str, GroupProblem]]:
    """schema → connection, per group, listed concurrently; a missing group is a problem."""
    found: dict[str, dict[str, JSON]] = {}
    problems: dict[str, GroupProblem] = {}
    fatal: list[FatalApiError] = []
    limiter = anyio.CapacityLimiter(_LIST_CONCURRENCY)

    async def list_one(group_id: str) -> None:
        async with limiter:
            if fatal:
                return
            try:
                items = await client.list_connections(group_id)
            except FatalApiError as exc:
                fatal.append(exc)
                return
            except NotFoundApiError as exc:
                problems[group_id] = GroupProblem(f"group {group_id!r} does not exist",
                                                  exc.code, exc.http_status)
                return
            except ApiError as exc:
                problems[group_id] = GroupProblem(f"listing group {group_id!r} failed: "
                                                  f"{exc.message}", exc.code, exc.http_status)
                return
        found[group_id] = {_schema_of(item): item for item in items if _schema_of(item)}

    async with anyio.create_task_group() as tg:
        for group_id in group_ids:
            tg.start_soon(list_one, group_id)
    if fatal:
        raise fatal[0]
    return found, problems


async def make_plan(client: PlanningClient, requests: Sequence[ConnectionRequest]) -> Plan:
    """Resolve group names, list each group once, and decide an action for every request."""
    resolved, problems = await resolve_group_names(client, requests)
    group_ids = sorted({r.group_id for r in resolved if r.group_id and r.row not in problems})
    existing, group_errors = await list_existing(client, group_ids)
    plan = Plan(group_problems=problems, list_calls=len(group_ids))
    for request in resolved:
        if request.row in problems:
            continue
        assert request.group_id is not None
        if request.group_id in group_errors:
            plan.group_problems[request.row] = group_errors[request.group_id]
            continue
        current = existing.get(request.group_id, {}).get(request.schema)
        if current is None:
            plan.actions.append(Action(ActionKind.CREATE, request))
            continue
        plan.existing[(request.group_id, request.schema)] = current
        service = current.get("service")
        if service and service != SERVICE:
            plan.actions.append(Action(
                ActionKind.CONFLICT, request, connection_id=str(current.get("id")),
                detail=f"schema {request.schema!r} is already used by a {service} connection"))
        else:
            plan.actions.append(Action(ActionKind.EXISTS, request,
                                       connection_id=str(current.get("id"))))
    return plan


def _schema_of(item: JSON) -> str:
    schema = item.get("schema")
    if not schema and isinstance(item.get("config"), dict):
        schema = item["config"].get("schema")
    return str(schema) if schema else ""
