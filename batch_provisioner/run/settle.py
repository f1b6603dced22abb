"""Outcomes settled without sending anything: what an earlier invocation already finished,
what the plan decides (exists, drift left alone, conflict, a group problem), rows now invalid.

Matching is by the connection's identity, (group_id, schema), never by row number. A final
outcome from the journal wins over a re-validation of its row: the row keeps its status and
connection id, and the report notes the new problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import polars as pl

from batch_provisioner.models import Action, ActionKind, ConnectionRequest, Outcome, Status
from batch_provisioner.run.drift import format_changes
from batch_provisioner.run.journal import Doubt, JournalState, Key, now_iso
from batch_provisioner.run.plan import GroupProblem, Plan
from batch_provisioner.sheet.read import ROW


def carried(requests: Sequence[ConnectionRequest], previous: JournalState) -> dict[int, Outcome]:
    """Rows whose key an earlier invocation finished: that outcome, under today's row."""
    done: dict[int, Outcome] = {}
    for request in requests:
        final = previous.final(request.key if request.group_id else None)
        if final is not None:
            done[request.row] = replace(final, row=request.row)
    return done


def invalid_rows(frame: pl.DataFrame, invalid: Mapping[int, str],
                 previous: JournalState) -> dict[int, Outcome]:
    """``invalid`` for rows that fail validation, unless their key was already finished."""
    keys = _frame_keys(frame)
    done: dict[int, Outcome] = {}
    for row, error in invalid.items():
        final = previous.final(keys.get(row))
        if final is not None:
            note = f"now invalid, kept from an earlier invocation: {error}"
            done[row] = replace(final, row=row, error_message=_joined(final.error_message, note))
            continue
        done[row] = Outcome(row=row, status=Status.INVALID, action=ActionKind.INVALID,
                            error_code="InvalidRow", error_message=error)
    return done


def _frame_keys(frame: pl.DataFrame) -> dict[int, Key]:
    if "group_id" not in frame.columns or "schema" not in frame.columns:
        return {}
    return {row: (group_id, schema) for row, group_id, schema in frame.select(
        ROW, "group_id", "schema").iter_rows() if group_id and schema}


def _joined(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def settle_planned(plan: Plan, requests: Mapping[int, ConnectionRequest],
                   started: Mapping[Key, Doubt], update: bool
                   ) -> tuple[dict[int, Outcome], list[Action]]:
    """Outcomes for rows the plan settles without a request; the actions left to run.

    A key an earlier invocation left in doubt goes to the runner even when the listing shows
    it: the runner looks it up and claims it only on proof (see ``run.ownership``). Drift that
    is not applied (no ``--update``) is an ``exists`` row whose error_code is ``Drift``.
    """
    done: dict[int, Outcome] = {}
    to_run: list[Action] = []
    for row, problem in plan.group_problems.items():
        done[row] = _group_problem(requests[row], problem)
    for action in plan.actions:
        request = action.request
        doubt = started.get(request.key)
        base: dict[str, Any] = {
            "row": request.row, "action": action.kind, "group_id": request.group_id,
            "schema": request.schema, "connection_id": action.connection_id,
            "finished_at": now_iso()}
        existing = plan.existing.get((request.group_id or "", request.schema), {})
        state = existing.get("status", {}).get("setup_state") if existing else None
        if action.kind is ActionKind.CREATE:
            to_run.append(action)
        elif action.kind is ActionKind.CONFLICT:
            done[request.row] = Outcome(status=Status.CONFLICT, error_code="Conflict",
                                        error_message=action.detail, **base)
        elif doubt is not None and doubt.op == str(ActionKind.CREATE):
            to_run.append(Action(ActionKind.CREATE, request))  # reconciled by the runner
        elif action.kind is ActionKind.UPDATE and update:
            to_run.append(action)
        elif doubt is not None and doubt.op == str(ActionKind.UPDATE) and (
                action.kind is ActionKind.EXISTS):
            done[request.row] = Outcome(status=Status.UPDATED, reconciled=True,
                                        setup_state=state, **base)  # the lost PATCH landed
        elif action.kind in (ActionKind.DRIFT, ActionKind.UPDATE):
            done[request.row] = Outcome(
                status=Status.EXISTS, setup_state=state, error_code="Drift",
                error_message="drift left alone (apply --update to PATCH it): "
                + format_changes(action.changes), **base)
        else:
            done[request.row] = Outcome(status=Status.EXISTS, setup_state=state, **base)
    return done, to_run


def _group_problem(request: ConnectionRequest, problem: GroupProblem) -> Outcome:
    return Outcome(row=request.row, status=Status.FAILED, action=ActionKind.CREATE,
                   group_id=request.group_id, schema=request.schema,
                   http_status=problem.http_status, error_code=problem.code,
                   error_message=problem.message, finished_at=now_iso(),
                   retriable=problem.retriable)
