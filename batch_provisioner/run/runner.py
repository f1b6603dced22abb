"""apply: workers, retries and reconciliation. One ``Outcome`` per row; never raises per row.

Every worker shares one ``BudgetGate`` (through the client). A create whose answer was lost
(timeout or reset after send, 5xx on the POST) is looked up by (group_id, schema) before any
retry. A 401/403 stops the run: in-flight rows finish, the rest become ``not_attempted``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from batch_provisioner.api.retry import backoff_delay
from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ConflictApiError,
    FatalApiError,
    RetriableApiError,
    RowApiError,
    ThrottledError,
)
from batch_provisioner.models import Action, ActionKind, Outcome, Status
from batch_provisioner.run.drift import format_changes
from batch_provisioner.run.journal import Journal, now_iso
from batch_provisioner.settings import RetryPolicy
from batch_provisioner.sheet.expand import resolved
from batch_provisioner.sheet.secrets import SecretContext

JSON = dict[str, Any]
_log = structlog.get_logger("batch_provisioner.run.runner")


class ApplyClient(Protocol):
    async def create_connection(self, payload: JSON) -> JSON: ...
    async def find_connection(self, group_id: str, schema: str) -> JSON | None: ...
    async def update_connection(self, connection_id: str, fields: JSON) -> JSON: ...


@dataclass
class RunControl:
    """Why new work must stop: a fatal API error, a signal, or the deadline."""

    deadline: float | None = None  # anyio.current_time() value
    fatal: FatalApiError | None = None
    interrupted: bool = False
    aborted: bool = False
    abort_scope: anyio.CancelScope | None = None

    def abort(self) -> None:
        """Second Ctrl-C: give up on in-flight requests too (resume looks them up)."""
        self.interrupted = self.aborted = True
        if self.abort_scope is not None:
            self.abort_scope.cancel()

    def stop_reason(self) -> str | None:
        if self.fatal is not None:
            return "fatal"
        if self.interrupted:
            return "interrupted"
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            return "deadline"
        return None


@dataclass
class RunStats:
    attempts: int = 0
    retries: int = 0
    reconciliations: int = 0
    lookups: int = 0


@dataclass
class Runner:
    """Runs create (and update) actions with retries; reports each outcome as it lands."""

    client: ApplyClient
    secrets: SecretContext
    policy: RetryPolicy
    sleep: Callable[[float], Awaitable[None]]
    journal: Journal | None = None
    on_outcome: Callable[[Outcome], None] = lambda _o: None
    control: RunControl = field(default_factory=RunControl)
    rng: random.Random = field(default_factory=random.Random)
    stats: RunStats = field(default_factory=RunStats)
    started_before: frozenset[int] = frozenset()  # rows a crashed run started: look up first
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # survives an abort

    async def run(self, actions: Sequence[Action], concurrency: int) -> list[Outcome]:
        """Process ``actions`` with ``concurrency`` workers; returns outcomes in input order."""
        outcomes = self.outcomes
        send, receive = anyio.create_memory_object_stream[Action](max_buffer_size=math.inf)
        for action in actions:
            send.send_nowait(action)
        send.close()

        async def worker(queue: MemoryObjectReceiveStream[Action]) -> None:
            async with queue:
                async for action in queue:
                    outcome = await self.process(action)
                    outcomes[action.request.row] = outcome
                    if self.journal is not None:
                        await self.journal.aoutcome(outcome, retriable=_retriable(outcome))
                    self.on_outcome(outcome)

        async with anyio.create_task_group() as tg:
            with receive:
                for _ in range(max(1, min(concurrency, len(actions)))):
                    tg.start_soon(worker, receive.clone())
        return [outcomes[a.request.row] for a in actions]

    async def process(self, action: Action) -> Outcome:
        """One row, start to finish. Never raises for a row."""
        request = action.request
        log = _log.bind(row=request.row, schema=request.schema, group_id=request.group_id)
        reason = self.control.stop_reason()
        if reason is not None:
            return _outcome(action, Status.NOT_ATTEMPTED, error_code=reason,
                            error_message=f"not started: run stopped ({reason})")
        started = now_iso()
        if self.journal is not None:
            await self.journal.astart(request.row, request.key, str(action.kind))
        try:
            if action.kind is ActionKind.UPDATE:
                return await self._update(action, log, started)
            return await self._create(action, log, started)
        except Exception as exc:  # the last net: one row's surprise never ends the run
            log.error("row.internal_error", error=f"{type(exc).__name__}: {exc}")
            return _outcome(action, Status.FAILED, started_at=started,
                            error_code="InternalError", error_message=f"{type(exc).__name__}")

    async def _create(self, action: Action, log: Any, started: str) -> Outcome:
        request = action.request
        assert request.group_id is not None
        maybe_sent = request.row in self.started_before
        last: ApiError | None = None
        attempt = 0
        while attempt < self.policy.max_attempts:
            if maybe_sent:  # an earlier attempt may have been applied: look before resending
                found = await self._lookup(request.group_id, request.schema, log)
                if isinstance(found, ApiError):
                    last = found
                    attempt += 1
                    await self._backoff(attempt, found, log)
                    continue
                if found is not None:
                    self.stats.reconciliations += 1
                    log.info("row.reconciled", connection_id=found.get("id"))
                    return _from_connection(action, found, Status.CREATED, attempt, started,
                                            reconciled=True)
                maybe_sent = False
            if attempt > 0 and self.control.fatal is not None:
                break
            attempt += 1
            self.stats.attempts += 1
            try:
                payload = resolved(request.payload, self.secrets)
            except ValueError as exc:
                return _outcome(action, Status.FAILED, attempts=attempt, started_at=started,
                                error_code="SecretUnavailable", error_message=str(exc))
            try:
                data = await self.client.create_connection(payload)
            except FatalApiError as exc:
                self.control.fatal = self.control.fatal or exc
                log.error("run.fatal", http_status=exc.http_status, error=exc.message)
                return _failed(action, exc, attempt, started)
            except AmbiguousApiError as exc:
                last, maybe_sent = exc, True
                log.warning("request.ambiguous", attempt=attempt, error=exc.message)
                continue
            except ConflictApiError as exc:
                found = await self._lookup(request.group_id, request.schema, log)
                if isinstance(found, dict):
                    # Ours if an earlier attempt of this run may have created it.
                    mine = last is not None and isinstance(last, AmbiguousApiError)
                    status = Status.CREATED if mine else Status.EXISTS
                    if mine:
                        self.stats.reconciliations += 1
                    return _from_connection(action, found, status, attempt, started,
                                            reconciled=mine)
                return _failed(action, exc, attempt, started)
            except RetriableApiError as exc:
                last = exc
                if attempt < self.policy.max_attempts:
                    await self._backoff(attempt, exc, log)
                continue
            except RowApiError as exc:
                log.warning("row.failed", http_status=exc.http_status, code=exc.code)
                return _failed(action, exc, attempt, started)
            log.info("row.created", connection_id=data.get("id"), attempts=attempt)
            return _from_connection(action, data, Status.CREATED, attempt, started)
        if maybe_sent and last is not None:
            found = await self._lookup(request.group_id, request.schema, log)
            if isinstance(found, dict):
                self.stats.reconciliations += 1
                return _from_connection(action, found, Status.CREATED, attempt, started,
                                        reconciled=True)
        assert last is not None
        log.warning("row.failed", attempts=attempt, error=last.message)
        return _failed(action, last, attempt, started)

    async def _update(self, action: Action, log: Any, started: str) -> Outcome:
        assert action.connection_id is not None
        fields: JSON = {}
        for path, (_old, new) in action.changes.items():
            target = fields
            parts = path.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = new
        last: ApiError | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            self.stats.attempts += 1
            try:
                data = await self.client.update_connection(action.connection_id, fields)
            except FatalApiError as exc:
                self.control.fatal = self.control.fatal or exc
                return _failed(action, exc, attempt, started)
            except (RetriableApiError, AmbiguousApiError) as exc:
                last = exc  # a PATCH sets absolute values: sending it again is safe
                await self._backoff(attempt, exc, log)
                continue
            except RowApiError as exc:
                return _failed(action, exc, attempt, started)
            log.info("row.updated", connection_id=action.connection_id)
            outcome = _from_connection(action, data, Status.UPDATED, attempt, started)
            return replace(outcome, error_message="updated " + format_changes(action.changes))
        assert last is not None
        return _failed(action, last, self.policy.max_attempts, started)

    async def _lookup(self, group_id: str, schema: str, log: Any) -> JSON | ApiError | None:
        self.stats.lookups += 1
        try:
            return await self.client.find_connection(group_id, schema)
        except FatalApiError as exc:
            self.control.fatal = self.control.fatal or exc
            return exc
        except ApiError as exc:
            log.warning("request.lookup_failed", error=exc.message)
            return exc

    async def _backoff(self, attempt: int, error: ApiError, log: Any) -> None:
        if isinstance(error, ThrottledError):
            return  # the client already paused every worker until the Retry-After
        delay = backoff_delay(attempt, self.policy, self.rng)
        self.stats.retries += 1
        log.info("request.retry_scheduled", attempt=attempt, delay=round(delay, 3),
                 error=error.message)
        await self.sleep(delay)


_RETRIABLE_CODES = frozenset({"Retriable", "Ambiguous", "TooManyRequests", "InternalError",
                              "SecretUnavailable"})


def _retriable(outcome: Outcome) -> bool:
    """A failure that a later run may well get past (throttling, outages, lost answers)."""
    if outcome.status is not Status.FAILED:
        return False
    status = outcome.http_status
    return (outcome.error_code in _RETRIABLE_CODES or status is None or status == 429
            or status >= 500)


def _outcome(action: Action, status: Status, connection_id: str | None = None,
             **fields: Any) -> Outcome:
    request = action.request
    return Outcome(row=request.row, status=status, action=str(action.kind),
                   group_id=request.group_id, schema=request.schema,
                   connection_id=connection_id or action.connection_id, finished_at=now_iso(),
                   **fields)


def _failed(action: Action, exc: ApiError, attempts: int, started: str) -> Outcome:
    code = exc.code or _default_code(exc)
    return _outcome(action, Status.FAILED, http_status=exc.http_status, error_code=code,
                    error_message=exc.message, attempts=attempts, started_at=started)


def _default_code(exc: ApiError) -> str:
    if isinstance(exc, AmbiguousApiError):
        return "Ambiguous"
    if isinstance(exc, RetriableApiError):
        return "TooManyRequests" if exc.http_status == 429 else "Retriable"
    return type(exc).__name__


def _from_connection(action: Action, data: JSON, status: Status, attempts: int, started: str,
                     *, reconciled: bool = False) -> Outcome:
    state = data.get("status") if isinstance(data.get("status"), dict) else {}
    card = data.get("connect_card") if isinstance(data.get("connect_card"), dict) else {}
    return _outcome(action, status, connection_id=str(data.get("id") or "") or None,
                    setup_state=(state or {}).get("setup_state"),
                    connect_card_uri=(card or {}).get("uri"), attempts=attempts,
                    reconciled=reconciled, started_at=started, http_status=None)
