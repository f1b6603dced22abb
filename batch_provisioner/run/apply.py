"""The apply job end to end: resume state, plan, run, and the outcome of every input row.

Pure orchestration over the stages; the CLI owns printing, signals, exit and the sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import ClientStats, FivetranClient
from batch_provisioner.errors import ExitCode, FatalApiError
from batch_provisioner.models import Action, ActionKind, ConnectionRequest, Outcome, Status
from batch_provisioner.run.drift import format_changes
from batch_provisioner.run.journal import (
    Journal,
    JournalState,
    check_resumable,
    fingerprint,
    load,
    now_iso,
)
from batch_provisioner.run.plan import DriftCheck, Plan, make_plan
from batch_provisioner.run.runner import RunControl, Runner
from batch_provisioner.run.target import Target, client_settings_for
from batch_provisioner.settings import VERSION as __version__, ApiCredentials, ClientSettings
from batch_provisioner.sheet.load import Prepared
from batch_provisioner.sheet.secrets import SecretContext

_log = structlog.get_logger("batch_provisioner.run.apply")


@dataclass(frozen=True)
class ApplyOptions:
    run_id: str
    run_dir: Path
    client: ClientSettings = field(default_factory=ClientSettings)
    deadline_seconds: float | None = None
    update: bool = False
    force: bool = False
    adopt_sandbox_limits: bool = False
    input_paths: tuple[Path | None, ...] = ()


@dataclass
class RunResult:
    outcomes: list[Outcome]
    exit_code: ExitCode
    summary: dict[str, Any]
    plan: Plan | None = None
    timeline: list[tuple[float, str, int]] = field(default_factory=list)


def exit_code_for(outcomes: list[Outcome], control: RunControl) -> ExitCode:
    """3 fatal API error; 4 stopped by a signal or the deadline; 1 some rows not ok; else 0."""
    if control.fatal is not None:
        return ExitCode.FATAL_API
    skipped = any(o.status is Status.NOT_ATTEMPTED for o in outcomes)
    if control.interrupted or (skipped and control.stop_reason() == "deadline"):
        return ExitCode.INTERRUPTED
    bad = {Status.INVALID, Status.FAILED, Status.CONFLICT, Status.NOT_ATTEMPTED}
    return ExitCode.ROWS_FAILED if any(o.status in bad for o in outcomes) else ExitCode.OK


async def run_apply(
    prepared: Prepared,
    options: ApplyOptions,
    credentials: ApiCredentials,
    secrets: SecretContext,
    *,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    on_plan: Callable[[Plan, BudgetGate], None] = lambda _p, _g: None,
) -> RunResult:
    """Plan and apply every valid row; returns one outcome per input row, in input order."""
    control = control or RunControl()
    started, wall0 = now_iso(), time.monotonic()
    if options.deadline_seconds is not None:
        control.deadline = anyio.current_time() + options.deadline_seconds
    sha = fingerprint(*options.input_paths)
    previous = load(options.run_dir)
    check_resumable(previous, sha, force=options.force, run_dir=options.run_dir)
    if previous.torn_lines:
        _log.warning("journal.torn_line_skipped", lines=previous.torn_lines)
    journal = Journal(options.run_dir)
    journal.header(options.run_id, prepared.table.path, sha, "apply")
    journal.write(_inputs_record(prepared, options))
    settings = options.client
    gate: BudgetGate | None = None
    client_stats: ClientStats | None = None
    done: dict[int, Outcome] = dict(previous.outcomes)
    for row, error in prepared.invalid.items():
        done[row] = Outcome(row=row, status=Status.INVALID, action=ActionKind.INVALID,
                            error_code="InvalidRow", error_message=error)
    pending = [r for r in prepared.requests if r.row not in done]
    plan: Plan | None = None
    runner: Runner | None = None
    try:
        if options.adopt_sandbox_limits:
            settings = await client_settings_for(Target(credentials, True), settings, transport)
        gate = BudgetGate(settings.budgets, settings.concurrency,
                          max_wait=settings.retry.max_wait)
        async with FivetranClient(credentials, settings, gate=gate, transport=transport) as client:
            client_stats = client.stats
            if pending:
                # --update reads every existing connection; otherwise drift is noted from
                # what the listing shows, at no extra call (see plan.DriftCheck).
                plan = await make_plan(
                    client, pending, update=options.update,
                    drift=DriftCheck.FULL if options.update else DriftCheck.LISTING)
                on_plan(plan, gate)
                runner = Runner(client=client, secrets=secrets, policy=settings.retry,
                                sleep=gate.sleep, journal=journal, control=control,
                                on_outcome=on_outcome,
                                started_before=frozenset(previous.started))
                to_run = _settle_planned(plan, previous.started, done, options.update,
                                         {r.row: r for r in pending},
                                         _started_updates(previous))
                for row_outcome in [done[r.row] for r in pending if r.row in done]:
                    on_outcome(row_outcome)
                with anyio.CancelScope() as scope:
                    control.abort_scope = scope
                    await runner.run(to_run, settings.concurrency)
                done.update(runner.outcomes)
    except FatalApiError as exc:
        control.fatal = control.fatal or exc
        _log.error("run.fatal", http_status=exc.http_status, error=exc.message)
    finally:
        journal.close()
    for request in prepared.requests:
        if request.row not in done:
            reason = control.stop_reason() or "stopped"
            done[request.row] = Outcome(
                row=request.row, status=Status.NOT_ATTEMPTED, action=ActionKind.CREATE,
                group_id=request.group_id, schema=request.schema, error_code=reason,
                error_message=_fatal_message(control) or (
                "aborted while in flight: a resume looks it up before resending"
                if control.aborted else f"not started: run {reason}"))
    outcomes = [done[row] for row in prepared.rows]
    code = exit_code_for(outcomes, control)
    created = {o.row for o in outcomes if o.status is Status.CREATED}
    setup_tests = sum(1 for r in prepared.requests if r.row in created and "auth" in r.payload
                      and r.payload.get("run_setup_tests") is True)
    gate = gate or BudgetGate(settings.budgets, settings.concurrency,
                              max_wait=settings.retry.max_wait)
    stats = client_stats or ClientStats()
    summary = _summary(outcomes, code, started, time.monotonic() - wall0, gate,
                       client_stats=stats, runner=runner, control=control, options=options,
                       setup_tests=setup_tests)
    return RunResult(outcomes=outcomes, exit_code=code, summary=summary, plan=plan,
                     timeline=list(stats.timeline))


def _inputs_record(prepared: Prepared, options: ApplyOptions) -> dict[str, Any]:
    """Where this run's input came from, so that later commands (connect-cards) can re-read it."""
    paths = [str(p.resolve()) if p is not None else None for p in options.input_paths]
    paths += [None] * (3 - len(paths))
    return {"type": "inputs", "sheet": paths[0] or str(prepared.table.path.resolve()),
            "sheet_name": prepared.table.sheet, "defaults": paths[1],
            "custom_reports": paths[2], "t": now_iso()}


def _started_updates(previous: JournalState) -> set[int]:
    """Rows whose unfinished request was a PATCH (an update), not a create."""
    return {row for row in previous.started
            if previous.started_ops.get(row) == str(ActionKind.UPDATE)}


def _settle_planned(plan: Plan, started_before: set[int], done: dict[int, Outcome],
                    update: bool, requests: dict[int, ConnectionRequest],
                    started_updates: AbstractSet[int] = frozenset()) -> list[Action]:
    """Outcomes for rows the plan settles without a request; the actions left to run.

    Drift that is not applied (no ``--update``) is an ``exists`` row whose error_code is
    ``Drift`` and whose error_message lists the differences.
    """
    to_run: list[Action] = []
    for row, problem in plan.group_problems.items():
        request = requests[row]
        done[row] = Outcome(row=row, status=Status.FAILED, action=ActionKind.CREATE,
                            group_id=request.group_id, schema=request.schema,
                            http_status=problem.http_status, error_code=problem.code,
                            error_message=problem.message, finished_at=now_iso())
    for action in plan.actions:
        request = action.request
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
        elif action.kind is ActionKind.UPDATE and update:
            to_run.append(action)
        elif request.row in started_updates and action.kind is ActionKind.EXISTS:
            done[request.row] = Outcome(status=Status.UPDATED, reconciled=True,
                                        setup_state=state, **base)  # the lost PATCH landed
        elif action.kind in (ActionKind.DRIFT, ActionKind.UPDATE):
            done[request.row] = Outcome(
                status=Status.EXISTS, setup_state=state, error_code="Drift",
                error_message="drift left alone (apply --update to PATCH it): "
                + format_changes(action.changes), **base)
        elif request.row in started_before and request.row not in started_updates:
            # a crashed run sent the create: it is ours
            done[request.row] = Outcome(status=Status.CREATED, reconciled=True,
                                        setup_state=state, **base)
        else:
            done[request.row] = Outcome(status=Status.EXISTS, setup_state=state, **base)
    return to_run


def _fatal_message(control: RunControl) -> str | None:
    if control.fatal is None:
        return None
    return f"not started: the run stopped on a fatal API error ({control.fatal.message})"


def _summary(outcomes: list[Outcome], code: ExitCode, started: str, wall: float,
             gate: BudgetGate, *, client_stats: ClientStats, runner: Runner | None,
             control: RunControl, options: ApplyOptions, setup_tests: int) -> dict[str, Any]:
    counts: dict[str, int] = {str(s): 0 for s in Status}
    for outcome in outcomes:
        counts[str(outcome.status)] += 1
    creates = counts[str(Status.CREATED)]
    ideal = gate.ideal_seconds(n_calls=client_stats.calls, n_creates=creates,
                               n_setup_tests=setup_tests)
    return {
        "run_id": options.run_id, "version": __version__, "exit_code": int(code),
        "started_at": started, "finished_at": now_iso(), "rows": len(outcomes),
        "counts": counts, "wall_seconds": round(wall, 3), "ideal_seconds": round(ideal, 3),
        "calls": client_stats.calls,
        "throttled_429": client_stats.throttled,
        "retries": (runner.stats.retries if runner else 0) + client_stats.retries,
        "reconciliations": runner.stats.reconciliations if runner else 0,
        "lookups": runner.stats.lookups if runner else 0,
        "write_attempts": runner.stats.attempts if runner else 0,
        "stop_reason": control.stop_reason(),
        "budgets": [{"name": b.name, "limit": b.limit, "window_seconds": b.window_seconds,
                     "applies_to": b.applies_to} for b in gate.budgets],
        "concurrency": options.client.concurrency,
    }
