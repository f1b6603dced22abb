"""apply: workers, retries and reconciliation. One ``Outcome`` per row; never raises per row.

Every worker shares one ``BudgetGate`` (through the client). Creates and updates are retried by
the job's one retry loop (``api.retry.retrying``). A create whose answer was lost (timeout or
reset after send, 5xx on the POST) is reconciled (``Runner._reconcile``: looked up by
(group_id, schema)) before any resend, and once more when its attempts are used up. A 401/403
stops the run: in-flight rows finish, no further request goes out for them, and the rest become
``not_attempted``. Each failed outcome says whether a resume may retry it (``retriable``).

An unexpected exception in a row is a bug: new work stops as on a fatal error, the row keeps
its scrubbed message, ``run.log.jsonl`` its traceback, and the run exits 70. An unwritable
journal (``OutputError``) propagates: nothing is sent whose record is not durable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from batch_provisioner.api.retry import retrying
from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ConflictApiError,
    FatalApiError,
    OutputError,
    RetriableApiError,
    RowApiError,
    RunStopped,
)
from batch_provisioner.models import Action, ActionKind, Outcome, Status
from batch_provisioner.run.control import RunControl
from batch_provisioner.run.drift import format_changes
from batch_provisioner.run.journal import Journal, Key, now_iso
from batch_provisioner.run.offloop import ThreadRounds
from batch_provisioner.run.ownership import Reservation, Reservations, unproven
from batch_provisioner.run.row_outcome import (
    CreateRow,
    Lookup,
    Reconciliation,
    failed,
    from_connection,
    in_doubt,
    lookup_failed,
    new_outcome,
    patch_body,
)
from batch_provisioner.safety import REDACTOR
from batch_provisioner.settings import RetryPolicy
from batch_provisioner.sheet.expand import resolved, secret_refs
from batch_provisioner.sheet.secrets import SecretContext

JSON = dict[str, Any]
#: Rows in a row that the API failed (transport, 5xx, 429) before the run stops as an outage.
OUTAGE_AFTER = 5
#: Retriable failures that are not the API's doing (a secret file gone since validate).
_NOT_THE_API = frozenset({"SecretUnavailable"})
__all__ = ["ApplyClient", "RunControl", "RunStats", "Runner"]
_log = structlog.get_logger("batch_provisioner.run.runner")


class ApplyClient(Protocol):
    async def create_connection(self, payload: JSON) -> JSON: ...
    async def find_connection(self, group_id: str, schema: str) -> JSON | None: ...
    async def update_connection(self, connection_id: str, fields: JSON) -> JSON: ...
    async def connect_card(self, connection_id: str, redirect_uri: str,
                           hide_setup_guide: bool = False) -> JSON: ...


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
    #: Keys an earlier invocation left in doubt -> when their first send that may have landed
    #: went out: looked up before anything is resent, and claimed only on proof.
    started_before: Mapping[Key, str] = field(default_factory=dict)
    reservations: Reservations | None = None  # per-key reservations of the reports dir
    #: Keys in doubt -> when their last create was sent (journaled ``send`` records).
    last_sends: Mapping[Key, str] = field(default_factory=dict)
    #: The longest a create can take to be applied while we wait for it (the read timeout).
    landing_seconds: float = 60.0
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # survives an abort
    started: set[int] = field(default_factory=set)  # rows whose processing began
    _failing: int = field(default=0, repr=False)  # rows in a row the API itself failed
    _secret_reads: ThreadRounds[tuple[JSON, SecretContext], JSON] = field(
        default_factory=lambda: ThreadRounds(_read_secrets), repr=False)

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
                    self._watch_for_outage(outcome)
                    if self.journal is not None:
                        await self.journal.aoutcome(outcome)
                    if self.reservations is not None and action.kind is ActionKind.CREATE:
                        await self.reservations.asettle(action.request.key, outcome)
                    self.on_outcome(outcome)

        try:
            async with anyio.create_task_group() as tg:
                with receive:
                    for _ in range(max(1, min(concurrency, len(actions)))):
                        tg.start_soon(worker, receive.clone())
        except BaseExceptionGroup as group:  # a journal write failed: the run stops on it
            written, rest = group.split(OutputError)
            if written is None or rest is not None:
                raise
            raise _first_leaf(written) from None
        return [outcomes[a.request.row] for a in actions]

    async def process(self, action: Action) -> Outcome:
        """One row, start to finish. Never raises for a row."""
        request = action.request
        log = _log.bind(row=request.row, schema=request.schema, group_id=request.group_id)
        reason = self.control.stop_reason()
        if reason is not None:
            return new_outcome(action, Status.NOT_ATTEMPTED, error_code=reason,
                               error_message=f"not started: {self.control.stop_message()}")
        started = now_iso()
        self.started.add(request.row)
        if self.journal is not None:
            await self.journal.astart(request.row, request.key, str(action.kind))
        try:
            if action.kind is ActionKind.UPDATE:
                return await self._update(action, log, started)
            reservation = await self._reserve(action)
            if reservation.blocked_by is not None:
                holder = reservation.blocked_by
                return new_outcome(
                    action, Status.CONFLICT, error_code="ReservedByRun",
                    error_message=f"run {holder} of this reports dir has a create of this "
                    f"connection in flight or in doubt: not sent. Let it finish (or, if it was "
                    f"stopped, apply --resume {holder}), then run this again")
            return await self._create(action, log, started, reservation.not_ours)
        except RunStopped as stop:  # a wait refused (deadline, --max-wait) or a stop
            return self._stopped(action, stop, started, log)
        except OutputError:  # the journal (or a reservation) cannot be written: stop here
            raise
        except Exception as exc:  # a bug: stop new work, keep the message, log the traceback
            return self._internal_error(action, exc, started, log)

    async def _reserve(self, action: Action) -> Reservation:
        """Hold the key's reservation (after the start record is durable); or who holds it."""
        if self.reservations is None:
            return Reservation()
        return await self.reservations.areserve(action.request.key)

    async def _create(self, action: Action, log: Any, started: str,
                      not_ours: frozenset[str] = frozenset()) -> Outcome:
        """A create, retried; an attempt that may have been applied is reconciled first."""
        since = self.started_before.get(action.request.key)
        row = CreateRow(maybe_sent=since is not None, since=since, not_ours=not_ours,
                        last_send=self.last_sends.get(action.request.key) or since)

        async def attempt(number: int) -> Outcome:
            row.attempt = number
            try:
                return await self._create_once(action, row, log, started)
            except ApiError as exc:
                row.last, row.tried = exc, number
                raise

        try:  # the attempt returns every outcome it can settle and raises what is worth a retry
            return await self._retrying(attempt, log, retry_on=(ApiError,))
        except ApiError as exc:  # attempts used up, or the run stopping
            failure: ApiError = exc
        except RunStopped as stop:  # nothing more is sent for this row: a resume carries on
            return in_doubt(self._stopped(action, stop, started, log, row.tried), row)
        if row.maybe_sent:  # one last look before giving the row up
            try:
                looked = await self._reconcile(action, log)
            except RunStopped as stop:
                return in_doubt(self._stopped(action, stop, started, log, row.tried), row)
            if looked.connection is not None:
                return await self._reconciled(action, looked.connection, row, row.attempt,
                                              started, log)
            if looked.result is Lookup.ABSENT:
                row.since = None
            failure = looked.error or failure
        if row.since is not None and row.sent_error is not None and failure is not row.sent_error:
            failure = lookup_failed(row.sent_error, failure)  # never lose "it may have landed"
        log.warning("row.failed", attempts=row.attempt, error=failure.message)
        return in_doubt(failed(action, failure, row.attempt, started), row)

    async def _create_once(self, action: Action, row: CreateRow, log: Any,
                           started: str) -> Outcome:
        """One attempt: reconcile when an earlier one may have landed, then POST."""
        if row.maybe_sent:  # look before resending
            looked = await self._reconcile(action, log)
            if looked.connection is not None:
                return await self._reconciled(action, looked.connection, row,
                                              row.attempt - 1, started, log)
            if looked.error is not None:
                raise looked.error  # a failed lookup uses up this attempt
            row.maybe_sent, row.since = False, None  # absent: nothing of ours landed
            if row.attempt > 1 and row.last is not None and self._should_stop():
                return failed(action, row.last, row.attempt - 1, started)
        self.stats.attempts += 1
        try:
            payload = await _with_secrets(action.request.payload, self.secrets,
                                          self._secret_reads)
        except ValueError as exc:
            return new_outcome(action, Status.FAILED, attempts=row.attempt, started_at=started,
                            error_code="SecretUnavailable", error_message=str(exc),
                            retriable=True)
        sent_at = now_iso()
        if self.journal is not None:  # durable before the POST leaves: bounds a lost answer
            sent_at = await self.journal.asend(action.request.key)
        row.last_send = sent_at
        try:
            data = await self.client.create_connection(payload)
        except FatalApiError as exc:
            self._fatal(exc, log)
            return failed(action, exc, row.attempt, started)
        except AmbiguousApiError as exc:
            row.maybe_sent, row.sent_error = True, exc
            row.since = row.since or sent_at
            log.warning("request.ambiguous", attempt=row.attempt, error=exc.message)
            raise
        except ConflictApiError as exc:
            return await self._conflict(action, row, exc, log, started)
        except RowApiError as exc:
            log.warning("row.failed", http_status=exc.http_status, code=exc.code)
            return failed(action, exc, row.attempt, started)
        log.info("row.created", connection_id=data.get("id"), attempts=row.attempt)
        return from_connection(action, data, Status.CREATED, row.attempt, started)

    async def _conflict(self, action: Action, row: CreateRow, exc: ConflictApiError, log: Any,
                        started: str) -> Outcome:
        """A 409: ours (created, reconciled) only on proof (an attempt of this run still in
        doubt, and the connection's created_at after its send), else exists."""
        looked = await self._reconcile(action, log)
        if looked.connection is None:
            # a lookup the fatal stop refused (or a 401 on it) leaves the row to a resume
            error = looked.error if isinstance(looked.error, FatalApiError) else exc
            return in_doubt(failed(action, error, row.attempt, started), row)
        return await self._reconciled(action, looked.connection, row, row.attempt, started, log)

    async def _update(self, action: Action, log: Any, started: str) -> Outcome:
        """A PATCH, retried: it sets absolute values, so sending it again is safe."""
        connection_id = action.connection_id
        assert connection_id is not None
        fields = patch_body(action.changes)
        tried = answered = 0  # attempts started / attempts the API answered (or failed)

        async def attempt(number: int) -> Outcome:
            nonlocal tried, answered
            tried = number
            self.stats.attempts += 1
            try:
                data = await self.client.update_connection(connection_id, fields)
            except FatalApiError as exc:
                self._fatal(exc, log)
                return failed(action, exc, number, started)
            except RowApiError as exc:
                return failed(action, exc, number, started)
            except ApiError:
                answered = number
                raise
            log.info("row.updated", connection_id=connection_id)
            outcome = from_connection(action, data, Status.UPDATED, number, started)
            return replace(outcome, error_message="updated " + format_changes(action.changes))

        retry_on = (RetriableApiError, AmbiguousApiError)
        try:
            return await self._retrying(attempt, log, retry_on=retry_on)
        except retry_on as exc:
            return failed(action, exc, tried, started)
        except RunStopped as stop:
            return self._stopped(action, stop, started, log, answered)

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

    async def _reconciled(self, action: Action, connection: JSON, row: CreateRow,
                          attempts: int, started: str, log: Any) -> Outcome:
        """A connection found under the key: ours (created, reconciled) only on proof."""
        reason = (f"another run of this reports dir claimed connection {connection.get('id')}"
                  if str(connection.get("id")) in row.not_ours else
                  unproven(connection, row.since, row.last_send, self.landing_seconds,
                           action.request.payload))
        if reason is not None:
            log.info("row.not_claimed", connection_id=connection.get("id"), reason=reason)
            outcome = from_connection(action, connection, Status.EXISTS, attempts, started)
            return replace(outcome, error_code="NotClaimed",
                           error_message=f"exists, not claimed by this run: {reason}")
        self.stats.reconciliations += 1
        log.info("row.reconciled", connection_id=connection.get("id"))
        outcome = from_connection(action, connection, Status.CREATED, attempts, started,
                                   reconciled=True)
        return await self._with_card(action, outcome, log)

    async def _with_card(self, action: Action, outcome: Outcome, log: Any) -> Outcome:
        """A reconciled connect-card row gets its link now (the lookup's answer has none)."""
        config = action.request.payload.get("connect_card_config")
        if (outcome.connect_card_uri or "auth" in action.request.payload
                or not isinstance(config, dict) or not config.get("redirect_uri")
                or outcome.connection_id is None or self._should_stop()):
            return outcome
        try:
            data = await self.client.connect_card(outcome.connection_id,
                                                  str(config["redirect_uri"]),
                                                  bool(config.get("hide_setup_guide")))
        except FatalApiError as exc:
            self._fatal(exc, log)
            return outcome
        except (ApiError, RunStopped) as exc:  # `connect-cards RUN_ID` fetches it later
            log.warning("row.connect_card_failed", error=exc.message)
            return outcome
        card = data.get("connect_card") if isinstance(data.get("connect_card"), dict) else {}
        return replace(outcome, connect_card_uri=(card or {}).get("uri") or None)

    async def _retrying(self, op: Callable[[int], Awaitable[Outcome]], log: Any,
                        retry_on: tuple[type[ApiError], ...]) -> Outcome:
        return await retrying(op, policy=self.policy, sleep=self.sleep, rng=self.rng,
                              retry_on=retry_on, on_retry=self._count_retry,
                              should_stop=self._should_stop, log=log)

    def _count_retry(self, _attempt: int, _error: ApiError, _delay: float) -> None:
        self.stats.retries += 1

    def _watch_for_outage(self, outcome: Outcome) -> None:
        """``OUTAGE_AFTER`` rows in a row that failed for the API's reasons (no answer, 5xx,
        429) after their retries mean the API is down, not that the rows are wrong: stop
        sending (exit 4; a resume carries on) instead of burning every row's retries."""
        if outcome.status is not Status.FAILED:
            if outcome.status is not Status.NOT_ATTEMPTED:
                self._failing = 0
            return
        status = outcome.http_status
        if (not outcome.retriable or outcome.error_code in _NOT_THE_API
                or (status is not None and status < 500 and status != 429)):
            self._failing = 0
            return
        self._failing += 1
        if self._failing >= OUTAGE_AFTER and self.control.stop_reason() is None:
            message = (f"the API failed {self._failing} rows in a row after their retries "
                       f"(last: {outcome.error_message or outcome.error_code}); it looks down")
            _log.error("run.api_failing", rows=self._failing, error=outcome.error_message)
            self.control.halt("api_failing", message)

    def _should_stop(self) -> bool:
        """No more attempts once the run is fatal, interrupted or halted (not at a deadline:
        there the gate refuses the next send, and the row is not attempted again)."""
        return self.control.stop_reason() not in (None, "deadline")

    def _stopped(self, action: Action, stop: RunStopped, started: str, log: Any,
                 attempts: int = 0) -> Outcome:
        """A row the run stopped before (another) send: ``not_attempted``, resumable.

        A wait past ``--max-wait`` concerns the whole account, so the run stops there; a
        backoff that would pass the deadline stops only this row (the deadline stops the
        rest when it comes).
        """
        if stop.reason == "max_wait":
            self.control.halt(stop.reason, stop.message)
        log.warning("row.not_sent", reason=stop.reason, error=stop.message)
        return new_outcome(action, Status.NOT_ATTEMPTED, started_at=started, attempts=attempts,
                           error_code=stop.reason, error_message=stop.message, retriable=True)

    def _internal_error(self, action: Action, exc: Exception, started: str,
                        log: Any) -> Outcome:
        """A bug in this row: nothing new is sent (exit 70). Its create may have left, so
        the key stays in doubt: a resume looks it up before resending."""
        message = REDACTOR.scrub(f"{type(exc).__name__}: {exc}")[:2_000]
        log.exception("row.internal_error", error=message,
                      note="a bug: please report it, with run.log.jsonl")
        self.control.fail(f"row {action.request.row}: {message}")
        create = action.kind is ActionKind.CREATE
        return new_outcome(action, Status.FAILED, started_at=started, retriable=True,
                           in_doubt=create, sent_at=started if create else None,
                           error_code="InternalError", error_message=message)

    def _fatal(self, exc: FatalApiError, log: Any) -> None:
        self.control.fatal = self.control.fatal or exc
        log.error("run.fatal", http_status=exc.http_status, error=exc.message)


def _read_secrets(job: tuple[JSON, SecretContext]) -> JSON:
    return resolved(*job)


async def _with_secrets(payload: JSON, secrets: SecretContext,
                        reads: ThreadRounds[tuple[JSON, SecretContext], JSON]) -> JSON:
    """The payload with its secrets read now; ``ValueError`` when one cannot be read. A
    ``file:`` one is read in a worker thread (a file read per row must not hold up the other
    rows' requests), with the other rows that ask in the same pass of the loop."""
    if any(ref.kind == "file" for ref in secret_refs(payload)):
        return await reads((payload, secrets))
    return resolved(payload, secrets)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception inside (nested) exception groups."""
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
