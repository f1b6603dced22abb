"""The apply job end to end: resume state, plan, run, and the outcome of every input row.

Pure orchestration over the stages; the CLI owns printing, signals, exit and the sandbox.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import ClientStats, FivetranClient
from batch_provisioner.api.retry import request_kind
from batch_provisioner.errors import ExitCode, FatalApiError, OutputError, RunStopped
from batch_provisioner.models import ActionKind, ConnectionRequest, Outcome, Status
from batch_provisioner.report.charts import TimelineEntry
from batch_provisioner.report.files import read_timeline
from batch_provisioner.run.control import RunControl
from batch_provisioner.run.estimate import Estimate, estimate
from batch_provisioner.run.journal import (
    Journal,
    JournalState,
    check_resumable,
    fingerprint,
    load,
    now_iso,
)
from batch_provisioner.run.ownership import Reservations
from batch_provisioner.run.plan import (
    DriftCheck,
    Plan,
    Resolved,
    make_plan,
    resolve_group_names,
)
from batch_provisioner.run.runner import Runner
from batch_provisioner.run.settle import carried, invalid_rows, settle_planned
from batch_provisioner.run.summary import invocation_figures, summary
from batch_provisioner.run.target import Target, client_settings_for
from batch_provisioner.settings import ApiCredentials, ClientSettings
from batch_provisioner.sheet.load import Prepared
from batch_provisioner.sheet.secrets import SecretContext
from batch_provisioner.sheet.source import Source, as_source

_log = structlog.get_logger("batch_provisioner.run.apply")
#: Stops that leave rows for a resume (exit 4).
_RESUMABLE_STOPS = frozenset({"interrupted", "deadline", "max_wait", "api_failing"})
#: Rows held back on purpose: a canary's unselected rows, a run the user declined.
HELD_BACK = frozenset({"not_selected", "declined"})


@dataclass(frozen=True)
class ApplyOptions:
    run_id: str
    run_dir: Path
    client: ClientSettings = field(default_factory=ClientSettings)
    deadline_seconds: float | None = None
    update: bool = False
    force: bool = False
    adopt_sandbox_limits: bool = False
    #: The sheet, defaults and custom reports (paths, or sources downloaded from URLs): what
    #: the run fingerprints (``check_resumable``) and records for later commands.
    input_paths: tuple[Path | Source | None, ...] = ()
    #: A canary: only these sheet rows (``--rows``), and at most ``limit`` sends (``--limit``);
    #: the rest are ``not_attempted`` (``not_selected``) and a resume carries on.
    rows: frozenset[int] | None = None
    rows_text: str | None = None
    limit: int | None = None


@dataclass
class RunResult:
    outcomes: list[Outcome]
    exit_code: ExitCode
    summary: dict[str, Any]
    plan: Plan | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    estimate: Estimate | None = None
    writes_sent: bool = False  # this invocation sent a POST, PATCH or DELETE


def exit_code_for(outcomes: list[Outcome], control: RunControl) -> ExitCode:
    """70 a bug stopped the run; 3 fatal API error; 4 stopped (a signal, the deadline, a wait
    past --max-wait) with rows left for a resume; 1 some rows not ok; 4 a canary
    (``--rows``/``--limit``) or a declined run whose sent rows are all ok; else 0."""
    if control.internal is not None:
        return ExitCode.INTERNAL
    if control.fatal is not None:
        return ExitCode.FATAL_API
    waiting = [o for o in outcomes if o.status is Status.NOT_ATTEMPTED]
    stopped = any(o.error_code in _RESUMABLE_STOPS for o in waiting)
    resumable = waiting or any(o.status is Status.FAILED and o.retriable for o in outcomes)
    if resumable and (control.interrupted or stopped
                      or control.stop_reason() in _RESUMABLE_STOPS):
        return ExitCode.INTERRUPTED
    held = any(o.error_code in HELD_BACK for o in waiting)
    # a canary's sent rows decide: an invalid row it did not select waits for the resume
    bad = {Status.FAILED, Status.CONFLICT} if held else {
        Status.INVALID, Status.FAILED, Status.CONFLICT}
    if any(o.status in bad for o in outcomes) or any(
            o.error_code not in HELD_BACK for o in waiting):
        return ExitCode.ROWS_FAILED
    return ExitCode.INTERRUPTED if waiting else ExitCode.OK


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
    on_preview: Callable[[Estimate], None] = lambda _e: None,
    confirm: Callable[[Estimate], Awaitable[bool]] | None = None,
) -> RunResult:
    """Plan and apply every valid row; returns one outcome per input row, in input order.

    Every outcome is journaled before it is reported (``on_outcome``), and the run's summary
    covers every invocation of the run. Once planned, ``on_preview`` gets the estimate of
    what is left to send, and ``confirm`` (when given) is awaited before anything is: False
    sends nothing (the rows are ``not_attempted``, ``declined``).
    """
    control = control or RunControl()
    started, wall0 = now_iso(), time.monotonic()
    if options.deadline_seconds is not None:
        control.deadline = anyio.current_time() + options.deadline_seconds
    # file reads, writes and fsyncs run in worker threads: the event loop only waits for them
    inputs = [as_source(p) if p is not None else None for p in options.input_paths]
    sha = await anyio.to_thread.run_sync(
        fingerprint, *(source.local if source is not None else None for source in inputs))
    previous = await anyio.to_thread.run_sync(load, options.run_dir)
    check_resumable(previous, sha, force=options.force, run_dir=options.run_dir)
    if previous.torn_lines:
        _log.warning("journal.torn_line_skipped", lines=previous.torn_lines)
    journal = await anyio.to_thread.run_sync(Journal, options.run_dir)
    shown = inputs[0].name if inputs and inputs[0] else (prepared.table.name
                                                         or str(prepared.table.path))
    await journal.aheader(options.run_id, shown, sha, "apply", t=started)
    await journal.awrite(_inputs_record(prepared, inputs))
    _log.info("input.carry_columns", columns=prepared.carry_columns)
    settings = options.client
    gate: BudgetGate | None = None
    client_stats: ClientStats | None = None
    done = invalid_rows(prepared.frame, prepared.invalid, previous)
    known = _known_before(prepared, previous, done, update=options.update)
    for outcome in known.values():  # before any request: a resume's progress starts from them
        on_outcome(outcome)
    plan: Plan | None = None
    runner: Runner | None = None
    preview: Estimate | None = None
    unwritten: OutputError | None = None

    async def report(outcomes: dict[int, Outcome]) -> None:
        for outcome in outcomes.values():
            await journal.aoutcome(outcome, settles=False)
            on_outcome(outcome)
        done.update(outcomes)

    try:
        if options.adopt_sandbox_limits:
            settings = await client_settings_for(Target(credentials, True), settings, transport)
        gate = _bounded_gate(settings, control)
        async with FivetranClient(credentials, settings, gate=gate, transport=transport,
                                  answered=options.adopt_sandbox_limits) as client:
            client_stats = client.stats
            with _reads_bounded(control):
                requests, name_problems, known_groups = await _resolved(client, prepared)
            earlier = _unless_patched(carried(
                [r for r in requests if r.row not in name_problems], previous), options.update)
            for outcome in earlier.values():
                if outcome.row not in known:  # a row named by group_name: known only now
                    on_outcome(outcome)
            done.update(earlier)
            await report({row: o for row, o in done.items() if o.status is Status.INVALID})
            pending = [r for r in requests if r.row not in done and r.row not in name_problems]
            if options.rows is not None:
                left_out = {r.row: r for r in pending if r.row not in options.rows}
                await report(_held(left_out.values(), options.run_id, "not_selected",
                                   f"not selected: outside --rows {options.rows_text}"))
                pending = [r for r in pending if r.row not in left_out]
            if pending or name_problems:
                # --update reads every existing connection; otherwise drift is noted from
                # what the listing shows, at no extra call (see plan.DriftCheck).
                with _reads_bounded(control):
                    plan = await make_plan(
                        client, pending, update=options.update, groups=known_groups,
                        drift=DriftCheck.FULL if options.update else DriftCheck.LISTING)
                plan.group_problems.update(name_problems)
                on_plan(plan, gate)
                by_row = {r.row: r for r in prepared.requests} | {r.row: r for r in requests}
                settled, to_run = settle_planned(plan, by_row,
                                                 previous.started, options.update)
                await report(settled)
                if options.limit is not None and len(to_run) > options.limit:
                    beyond = [a.request for a in to_run[options.limit:]]
                    to_run = to_run[:options.limit]
                    await report(_held(beyond, options.run_id, "not_selected",
                                       f"not selected: beyond --limit {options.limit}"))
                preview = estimate(to_run, gate.budgets)
                _log.info("run.preview", **preview.as_dict(), note=preview.describe())
                on_preview(preview)
                if confirm is not None and to_run and not await _asked(confirm, preview,
                                                                        control, gate):
                    _log.warning("run.declined", note="nothing sent")
                    await report(_held([a.request for a in to_run], options.run_id, "declined",
                                       "not sent: the run was not confirmed"))
                    to_run = []
                runner = Runner(client=client, secrets=secrets, policy=settings.retry,
                                sleep=gate.sleep, journal=journal, control=control,
                                on_outcome=on_outcome,
                                started_before={k: d.since for k, d in previous.started.items()},
                                last_sends={k: d.last_send for k, d in previous.started.items()
                                            if d.last_send},
                                landing_seconds=settings.timeouts.read,
                                reservations=Reservations(options.run_dir.parent,
                                                          options.run_id))
                with anyio.CancelScope() as scope:
                    control.abort_scope = scope
                    await runner.run(to_run, settings.in_flight_cap)
                done.update(runner.outcomes)
    except FatalApiError as exc:
        control.fatal = control.fatal or exc
        _log.error("run.fatal", http_status=exc.http_status, error=exc.message)
    except RunStopped as stop:  # a listing's wait refused (deadline, --max-wait)
        control.halt(stop.reason, stop.message)
        _log.warning("run.stopped", reason=stop.reason, error=stop.message)
    except OutputError as exc:  # the journal cannot be written: stop, send nothing more
        unwritten = exc
        control.halt("output", exc.message)
        _log.error("run.output_failed", path=exc.path, error=exc.message)
    except BaseException:  # a bug outside any row (exit 70), a cancellation: file closed
        with contextlib.suppress(OutputError):
            journal.close()
        raise

    def unwritable(exc: OutputError) -> OutputError:
        """What was journaled is consistent (every send's record is durable): a resume
        carries on. Exit 4 once something was sent, else 2."""
        with contextlib.suppress(OutputError):
            journal.close()
        return exc.after_sending(
            _writes_sent(client_stats),
            f"every request sent is in {journal.path}: fix the cause, then apply --resume "
            f"{options.run_id} carries on (it looks up what may have landed)")

    if unwritten is not None:
        raise unwritable(unwritten)
    stopped = {}
    for request in prepared.requests:
        if request.row not in done:
            reason = control.stop_reason() or "stopped"
            stopped[request.row] = Outcome(
                row=request.row, status=Status.NOT_ATTEMPTED, action=ActionKind.CREATE,
                group_id=request.group_id, schema=request.schema, error_code=reason,
                error_message=_fatal_message(control) or (
                "aborted while in flight: a resume looks it up before resending"
                if control.aborted and runner is not None and request.row in runner.started
                else _stop_message(control, reason)))
    try:
        with anyio.CancelScope(shield=True):
            await report(stopped)
    except OutputError as exc:
        raise unwritable(exc) from None
    outcomes = [done[row] for row in prepared.rows]
    code = exit_code_for(outcomes, control)
    gate = gate or BudgetGate(settings.budgets, settings.in_flight_cap,
                              max_wait=settings.retry.max_wait)
    stats = client_stats or ClientStats()
    figures = _figures(prepared, runner, stats, started, time.monotonic() - wall0, code,
                       control)
    try:
        with anyio.CancelScope(shield=True):  # the invocation's record is written whole
            await journal.ainvocation(figures)
            journal.close()
            earlier_timeline = await anyio.to_thread.run_sync(read_timeline, options.run_dir)
    except OutputError as exc:
        raise unwritable(exc) from None
    invocations = [*previous.invocations, figures]
    offset = sum(float(i.get("active_seconds") or 0) for i in previous.invocations)
    timeline = [*earlier_timeline,
                *((round(t + offset, 4), m, s, k) for t, m, s, k in stats.timeline)]
    figures_summary = summary(options.run_id, outcomes, code, gate, invocations,
                              options.client.in_flight_cap,
                              first_start=(previous.header or {}).get("t"),
                              carry_columns=prepared.carry_columns)
    if preview is not None:  # what this invocation set out to send, before it did
        figures_summary["estimate"] = preview.as_dict()
    return RunResult(outcomes=outcomes, exit_code=code, plan=plan, timeline=timeline,
                     summary=figures_summary, estimate=preview,
                     writes_sent=_writes_sent(client_stats))


def _known_before(prepared: Prepared, previous: JournalState, invalid: dict[int, Outcome], *,
                  update: bool) -> dict[int, Outcome]:
    """What earlier invocations finished, known from the journal alone: the rows that name
    their group by id, and rows invalid now whose key was finished (they keep that outcome)."""
    kept = {row: o for row, o in invalid.items() if o.status is not Status.INVALID}
    return _unless_patched(carried(prepared.requests, previous), update) | kept


def _unless_patched(earlier: dict[int, Outcome], update: bool) -> dict[int, Outcome]:
    """Without drift an earlier invocation left alone when ``--update`` PATCHes it now."""
    if not update:
        return earlier
    return {row: o for row, o in earlier.items() if o.error_code != "Drift"}


async def _resolved(client: FivetranClient, prepared: Prepared) -> Resolved:
    """The requests with their group ids (names resolved once, the groups listing kept for
    planning), so keys match the journal."""
    return await resolve_group_names(client, prepared.requests)


def _figures(prepared: Prepared, runner: Runner | None, stats: ClientStats, started: str,
             wall: float, code: ExitCode, control: RunControl) -> dict[str, Any]:
    made = [o for o in (runner.outcomes.values() if runner else ())
            if o.status is Status.CREATED]
    payloads = {r.row: r.payload for r in prepared.requests}
    # by the rule the gate counts them with: a create with auth runs setup tests unless
    # run_setup_tests is false (Fivetran's default is true)
    setup_tests = sum(1 for o in made if request_kind("POST", "/v1/connections",
                                                      payloads.get(o.row)) == "setup_test_create")
    run_stats = runner.stats if runner else None
    return invocation_figures(
        started_at=started, active_seconds=wall, calls=stats.calls, throttled=stats.throttled,
        retries=(run_stats.retries if run_stats else 0) + stats.retries,
        reconciliations=run_stats.reconciliations if run_stats else 0,
        lookups=run_stats.lookups if run_stats else 0,
        write_attempts=run_stats.attempts if run_stats else 0, creates=len(made),
        setup_tests=setup_tests, exit_code=code, stop_reason=control.stop_reason())


def _inputs_record(prepared: Prepared, inputs: list[Source | None]) -> dict[str, Any]:
    """Where this run's input came from, so that later commands (connect-cards) can re-read
    it: absolute paths, or URLs as shown (query secrets masked)."""
    paths = [source.recorded if source is not None else None for source in inputs]
    paths += [None] * (3 - len(paths))
    return {"type": "inputs", "sheet": paths[0] or str(prepared.table.path.resolve()),
            "sheet_name": prepared.table.sheet, "defaults": paths[1],
            "custom_reports": paths[2], "t": now_iso()}


def _held(requests: Iterable[ConnectionRequest], run_id: str, code: str, message: str
          ) -> dict[int, Outcome]:
    """Rows held back on purpose (``not_attempted``); a resume carries them on."""
    note = f"{message}; apply --resume {run_id} carries on"
    return {r.row: Outcome(row=r.row, status=Status.NOT_ATTEMPTED, action=ActionKind.CREATE,
                           group_id=r.group_id, schema=r.schema, error_code=code,
                           error_message=note) for r in requests}


def _writes_sent(stats: ClientStats | None) -> bool:
    """Whether this invocation sent a request that changes something (POST, PATCH, DELETE)."""
    return stats is not None and any(method in ("POST", "PATCH", "DELETE")
                                     for _t, method, *_ in stats.timeline)


@contextlib.contextmanager
def _reads_bounded(control: RunControl) -> Iterator[None]:
    """Listings and lookups for the plan: reads, safe to abandon, so they end at the deadline
    and at the second Ctrl-C even while a request is in flight (a create never is)."""
    scope = anyio.CancelScope(
        deadline=control.deadline if control.deadline is not None else math.inf)
    control.abort_scope = scope
    with scope:
        yield
    control.abort_scope = None
    if scope.cancelled_caught:
        if control.aborted:
            raise RunStopped("not sent: the run was aborted while listing", reason="interrupted")
        raise RunStopped("not sent: the run's deadline passed before the listings finished",
                         reason="deadline")


async def _asked(confirm: Callable[[Estimate], Awaitable[bool]], preview: Estimate,
                 control: RunControl, gate: BudgetGate) -> bool:
    """The person's answer; the time spent answering does not count against the deadline."""
    started = anyio.current_time()
    answer = await confirm(preview)
    waited = anyio.current_time() - started
    if control.deadline is not None:
        control.deadline += waited
    if gate.deadline is not None:
        gate.deadline += waited
    return answer


def _bounded_gate(settings: ClientSettings, control: RunControl) -> BudgetGate:
    """The run's gate: no wait past the deadline or ``--max-wait``; closed (nothing more
    sent, queued requests included) the moment the run stops, and vice versa."""
    gate = BudgetGate(settings.budgets, settings.in_flight_cap,
                      max_wait=settings.retry.max_wait, adaptive=settings.adaptive)
    if control.deadline is not None:
        gate.deadline = gate.now() + (control.deadline - anyio.current_time())
    control.on_stop(gate.close)
    gate.on_close = control.halt
    return gate


def _stop_message(control: RunControl, reason: str) -> str:
    return f"not started: {control.stop_message() or 'run ' + reason}"


def _fatal_message(control: RunControl) -> str | None:
    if control.fatal is None:
        return None
    return f"not started: the run stopped on a fatal API error ({control.fatal.message})"
