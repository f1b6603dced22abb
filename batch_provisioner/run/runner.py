"""apply: workers, retries and reconciliation. One ``Outcome`` per row; never raises per row.

Every worker shares one ``BudgetGate`` (through the client). Creates and updates are retried by
the job's one retry loop (``api.retry.retrying``). A create whose answer was lost (timeout or
reset after send, 5xx on the POST) is reconciled (``Runner._reconcile``: looked up by
(group_id, schema)) before any resend, and once more when its attempts are used up. A 401/403
stops the run: in-flight rows finish, no further request goes out for them, and the rest become
``not_attempted``. Each failed outcome says whether a resume may retry it (``retriable``).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from batch_provisioner.api.retry import resumable, retrying
from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ConflictApiError,
    FatalApiError,
    RetriableApiError,
    RowApiError,
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
                        await self.journal.aoutcome(outcome, retriable=outcome.retriable)
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
            return _outcome(action, Status.FAILED, started_at=started, retriable=True,
                            error_code="InternalError", error_message=f"{type(exc).__name__}")

    async def _create(self, action: Action, log: Any, started: str) -> Outcome:
        """A create, retried; an attempt that may have been applied is reconciled first."""
        row = _CreateRow(maybe_sent=action.request.row in self.started_before)

        async def attempt(number: int) -> Outcome:
            row.attempt = number
            try:
                return await self._create_once(action, row, log, started)
            except ApiError as exc:
                row.last = exc
                raise

        try:  # the attempt returns every outcome it can settle and raises what is worth a retry
            return await self._retrying(attempt, log, retry_on=(ApiError,))
        except ApiError as exc:  # attempts used up, a wait beyond max_wait, or the run stopping
            if row.maybe_sent:
                looked = await self._reconcile(action, log)
                if looked.connection is not None:
                    return self._reconciled(action, looked.connection, row.attempt, started, log)
            log.warning("row.failed", attempts=row.attempt, error=exc.message)
            return _failed(action, exc, row.attempt, started)

    async def _create_once(self, action: Action, row: _CreateRow, log: Any,
                           started: str) -> Outcome:
        """One attempt: reconcile when an earlier one may have landed, then POST."""
        if row.maybe_sent:  # look before resending
            looked = await self._reconcile(action, log)
            if looked.connection is not None:
                return self._reconciled(action, looked.connection, row.attempt - 1, started, log)
            if looked.error is not None:
                raise looked.error  # a failed lookup uses up this attempt
            row.maybe_sent = False
            if row.attempt > 1 and row.last is not None and self._should_stop():
                return _failed(action, row.last, row.attempt - 1, started)
        self.stats.attempts += 1
        try:
            payload = resolved(action.request.payload, self.secrets)
        except ValueError as exc:
            return _outcome(action, Status.FAILED, attempts=row.attempt, started_at=started,
                            error_code="SecretUnavailable", error_message=str(exc),
                            retriable=True)
        try:
            data = await self.client.create_connection(payload)
        except FatalApiError as exc:
            self._fatal(exc, log)
            return _failed(action, exc, row.attempt, started)
        except AmbiguousApiError as exc:
            row.maybe_sent = row.ambiguous = True
            log.warning("request.ambiguous", attempt=row.attempt, error=exc.message)
            raise
        except ConflictApiError as exc:
            return await self._conflict(action, row, exc, log, started)
        except RowApiError as exc:
            log.warning("row.failed", http_status=exc.http_status, code=exc.code)
            return _failed(action, exc, row.attempt, started)
        log.info("row.created", connection_id=data.get("id"), attempts=row.attempt)
        return _from_connection(action, data, Status.CREATED, row.attempt, started)

    async def _conflict(self, action: Action, row: _CreateRow, exc: ConflictApiError, log: Any,
                        started: str) -> Outcome:
        """A 409: ours (created, reconciled) after an ambiguous attempt of this run, else exists."""
        looked = await self._reconcile(action, log)
        if looked.connection is None:
            # a lookup the fatal stop refused (or a 401 on it) leaves the row to a resume
            error = looked.error if isinstance(looked.error, FatalApiError) else exc
            return _failed(action, error, row.attempt, started)
        if row.ambiguous:
            return self._reconciled(action, looked.connection, row.attempt, started, log)
        return _from_connection(action, looked.connection, Status.EXISTS, row.attempt, started)

    async def _update(self, action: Action, log: Any, started: str) -> Outcome:
        """A PATCH, retried: it sets absolute values, so sending it again is safe."""
        connection_id = action.connection_id
        assert connection_id is not None
        fields = _patch_body(action.changes)
        tried = 0

        async def attempt(number: int) -> Outcome:
            nonlocal tried
            tried = number
            self.stats.attempts += 1
            try:
                data = await self.client.update_connection(connection_id, fields)
            except FatalApiError as exc:
                self._fatal(exc, log)
                return _failed(action, exc, number, started)
            except RowApiError as exc:
                return _failed(action, exc, number, started)
            log.info("row.updated", connection_id=connection_id)
            outcome = _from_connection(action, data, Status.UPDATED, number, started)
            return replace(outcome, error_message="updated " + format_changes(action.changes))

        retry_on = (RetriableApiError, AmbiguousApiError)
        try:
            return await self._retrying(attempt, log, retry_on=retry_on)
        except retry_on as exc:
            return _failed(action, exc, tried, started)

    async def _reconcile(self, action: Action, log: Any) -> Reconciliation:
        """Look the row's connection up by (group_id, schema): found, absent or lookup failed.

        Sends nothing once the run is fatal (the lookup then fails with that fatal error).
        """
        if self.control.fatal is not None:
            return Reconciliation(Lookup.FAILED, error=self.control.fatal)
        request = action.request
        assert request.group_id is not None
        self.stats.lookups += 1
        try:
            found = await self.client.find_connection(request.group_id, request.schema)
        except FatalApiError as exc:
            self._fatal(exc, log)
            return Reconciliation(Lookup.FAILED, error=exc)
        except ApiError as exc:
            log.warning("request.lookup_failed", error=exc.message)
            return Reconciliation(Lookup.FAILED, error=exc)
        if found is None:
            return Reconciliation(Lookup.ABSENT)
        return Reconciliation(Lookup.FOUND, connection=found)

    def _reconciled(self, action: Action, connection: JSON, attempts: int, started: str,
                    log: Any) -> Outcome:
        """Our create landed although its answer was lost: created, reconciled."""
        self.stats.reconciliations += 1
        log.info("row.reconciled", connection_id=connection.get("id"))
        return _from_connection(action, connection, Status.CREATED, attempts, started,
                                reconciled=True)

    async def _retrying(self, op: Callable[[int], Awaitable[Outcome]], log: Any,
                        retry_on: tuple[type[ApiError], ...]) -> Outcome:
        return await retrying(op, policy=self.policy, sleep=self.sleep, rng=self.rng,
                              retry_on=retry_on, on_retry=self._count_retry,
                              should_stop=self._should_stop, log=log)

    def _count_retry(self, _attempt: int, _error: ApiError, _delay: float) -> None:
        self.stats.retries += 1

    def _should_stop(self) -> bool:
        """No more attempts once the run is fatal or interrupted."""
        return self.control.fatal is not None or self.control.interrupted

    def _fatal(self, exc: FatalApiError, log: Any) -> None:
        self.control.fatal = self.control.fatal or exc
        log.error("run.fatal", http_status=exc.http_status, error=exc.message)


class Lookup(enum.Enum):
    FOUND = "found"
    ABSENT = "absent"
    FAILED = "lookup_failed"


@dataclass(frozen=True)
class Reconciliation:
    """What a lookup by (group_id, schema) said about a create that may have been applied."""

    result: Lookup
    connection: JSON | None = None
    error: ApiError | None = None


@dataclass
class _CreateRow:
    """One create across its attempts."""

    maybe_sent: bool  # an earlier attempt (or a crashed run) may have been applied
    ambiguous: bool = False  # an attempt of this run got no clear answer
    attempt: int = 0
    last: ApiError | None = None


def _patch_body(changes: dict[str, tuple[Any, Any]]) -> JSON:
    """The PATCH body that sets every changed dotted path to its new value."""
    fields: JSON = {}
    for path, (_old, new) in changes.items():
        target = fields
        parts = path.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = new
    return fields


def _outcome(action: Action, status: Status, connection_id: str | None = None,
             **fields: Any) -> Outcome:
    request = action.request
    return Outcome(row=request.row, status=status, action=action.kind,
                   group_id=request.group_id, schema=request.schema,
                   connection_id=connection_id or action.connection_id, finished_at=now_iso(),
                   **fields)


def _failed(action: Action, exc: ApiError, attempts: int, started: str) -> Outcome:
    """A failed row; whether a resume may retry it is decided here, from the error's type."""
    code = exc.code or _default_code(exc)
    return _outcome(action, Status.FAILED, http_status=exc.http_status, error_code=code,
                    error_message=exc.message, attempts=attempts, started_at=started,
                    retriable=resumable(exc))


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
