"""The runner's one retry path: a status → outcome table for creates, and named regressions.

A scripted fake client stands in for Fivetran and a ``FakeClock`` for the gate's sleep, so no
test waits for real. Errors are built by the real classification (``error_for_status`` and
``error_for_transport``), so each case reads as the HTTP answer the client would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batch_provisioner.api.retry import error_for_status, error_for_transport, retrying
from batch_provisioner.errors import ApiError, FatalApiError, RetriableApiError, ThrottledError
from batch_provisioner.models import Action, ActionKind, ConnectionRequest, Outcome, Status
from batch_provisioner.run.journal import Journal, load
from batch_provisioner.run.runner import RunControl, Runner
from batch_provisioner.settings import RetryPolicy
from batch_provisioner.sheet.secrets import SecretContext, SecretRef
from tests.api.fakes import FakeClock

GROUP, SCHEMA = "decent_dropsy", "tt_00000"
CREATED = {"id": "new_conn", "schema": SCHEMA, "status": {"setup_state": "connected"}}


def FOUND() -> dict[str, Any]:
    """The connection a lost create made, stamped by the API as it is looked up: inside the
    window in which a create of this run could have landed, so the runner may claim it."""
    return {"id": "found_conn", "schema": SCHEMA, "group_id": GROUP,
            "status": {"setup_state": "connected"},
            "created_at": datetime.now(UTC).isoformat()}
POLICY = RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=4.0, max_wait=600.0)

#: One scripted answer: a connection (or None: not found), an error to raise, or a callable that
#: returns either (for side effects at the moment of the request).
Answer = Any


def http(status: int, code: str | None = None, *, method: str = "POST",
         retry_after: float | None = None) -> ApiError:
    """The error the client raises for this HTTP answer (``code`` None: not a JSON envelope)."""
    envelope = {"code": code, "message": f"HTTP {status}"} if code else None
    path = "/v1/connections" if method == "POST" else "/v1/connections/conn_1"
    error = error_for_status(method, path, status, envelope, idempotent=False,
                             retry_after=retry_after)
    assert error is not None
    return error


def transport(name: str, *, sent: bool) -> ApiError:
    return error_for_transport("POST", "/v1/connections", name, sent=sent, idempotent=False)


class FakeClient:
    """Answers creates, lookups and updates from scripts; the last answer of each repeats."""

    def __init__(self, creates: list[Answer] | None = None, lookups: list[Answer] | None = None,
                 updates: list[Answer] | None = None) -> None:
        self.scripts = {"POST": creates or [CREATED], "GET": lookups or [None],
                        "PATCH": updates or [CREATED]}
        self.calls: list[str] = []

    def _answer(self, method: str) -> Any:
        self.calls.append(method)
        script = self.scripts[method]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if callable(answer):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def create_connection(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._answer("POST")
        return result

    async def find_connection(self, group_id: str, schema: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._answer("GET")
        return result

    async def update_connection(self, connection_id: str, fields: dict[str, Any]
                                ) -> dict[str, Any]:
        result: dict[str, Any] = self._answer("PATCH")
        return result


def action(row: int = 2, kind: ActionKind = ActionKind.CREATE,
           payload: dict[str, Any] | None = None, schema: str = SCHEMA) -> Action:
    request = ConnectionRequest(row=row, group_id=GROUP, group_name=None, schema=schema,
                                payload=payload or {"service": "tiktok_ads"})
    if kind is ActionKind.UPDATE:
        return Action(kind, request, connection_id="conn_1",
                      changes={"config.sync_mode": ("AllAccounts", "SpecificAccounts")})
    return Action(kind, request)


def make_runner(client: FakeClient, clock: FakeClock | None = None, *,
                policy: RetryPolicy = POLICY, **kw: Any) -> Runner:
    clock = clock or FakeClock()
    return Runner(client=client, secrets=SecretContext(env={}, base_dir=Path.cwd()),
                  policy=policy, sleep=clock.sleep, rng=random.Random(7), **kw)


# -- create: HTTP status → outcome (meltano-sdk style table) ----------------------------------

# name: (answers to successive POSTs, answers to successive lookups,
#        status, attempts, retriable, reconciled, requests in order)
CREATE_CASES: dict[str, tuple[list[Answer], list[Answer], Status, int, bool, bool, list[str]]] = {
    "201": ([CREATED], [], Status.CREATED, 1, False, False, ["POST"]),
    "400 invalid": ([http(400, "InvalidInput")], [], Status.FAILED, 1, False, False, ["POST"]),
    "401": ([http(401)], [], Status.FAILED, 1, True, False, ["POST"]),
    "403": ([http(403, "Forbidden")], [], Status.FAILED, 1, True, False, ["POST"]),
    "404 group": ([http(404, "NotFound_Group")], [], Status.FAILED, 1, False, False, ["POST"]),
    "409 first try": ([http(409, "Conflict")], [FOUND], Status.EXISTS, 1, False, False,
                      ["POST", "GET"]),
    # the lookup showed the key absent: the 500 did not land, so the 409 is someone else's
    "409 after a 500 and an absent lookup": (
        [http(500, "InternalError"), http(409, "Conflict")], [None, FOUND],
        Status.EXISTS, 2, False, False, ["POST", "GET", "POST", "GET"]),
    "429 then 201": ([http(429, "TooManyRequests", retry_after=30.0), CREATED], [],
                     Status.CREATED, 2, False, False, ["POST", "POST"]),
    "429 past max_wait": ([http(429, "TooManyRequests", retry_after=7200.0)], [],
                          Status.NOT_ATTEMPTED, 1, True, False, ["POST"]),
    "500 applied": ([http(500, "InternalError")], [FOUND], Status.CREATED, 1, False, True,
                    ["POST", "GET"]),
    "500 not applied": ([http(500, "InternalError"), CREATED], [None], Status.CREATED, 2,
                        False, False, ["POST", "GET", "POST"]),
    "502 html": ([http(502), CREATED], [None], Status.CREATED, 2, False, False,
                 ["POST", "GET", "POST"]),
    "503 every time": ([http(503, "Unavailable")], [None], Status.FAILED, 3, True, False,
                       ["POST", "GET", "POST", "GET", "POST", "GET"]),
    "read timeout applied": ([transport("ReadTimeout", sent=True)], [FOUND], Status.CREATED, 1,
                             False, True, ["POST", "GET"]),
    "connect error": ([transport("ConnectError", sent=False), CREATED], [], Status.CREATED, 2,
                      False, False, ["POST", "POST"]),
    "lookup fails then finds": ([http(500, "InternalError")],
                                [http(400, "InvalidInput", method="GET"), FOUND],
                                Status.CREATED, 2, False, True, ["POST", "GET", "GET"]),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CREATE_CASES))
async def test_create_status_to_outcome(name: str) -> None:
    creates, lookups, status, attempts, retriable, reconciled, calls = CREATE_CASES[name]
    client = FakeClient(creates=list(creates), lookups=list(lookups))
    runner = make_runner(client)
    outcome = await runner.process(action())
    assert outcome.status is status, outcome
    assert outcome.attempts == attempts
    assert outcome.retriable is retriable
    assert outcome.reconciled is reconciled
    assert client.calls == calls
    assert runner.stats.lookups == calls.count("GET")
    assert runner.stats.attempts == calls.count("POST")
    assert runner.stats.reconciliations == int(reconciled)


@pytest.mark.anyio
async def test_a_crashed_runs_create_is_looked_up_before_anything_is_sent() -> None:
    client = FakeClient(lookups=[FOUND])
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    runner = make_runner(client, started_before={(GROUP, SCHEMA): since})
    outcome = await runner.process(action())
    assert (outcome.status, outcome.reconciled, outcome.attempts) == (Status.CREATED, True, 0)
    assert client.calls == ["GET"]


@pytest.mark.anyio
async def test_an_unresolvable_secret_fails_the_row_as_retriable_without_a_request() -> None:
    client = FakeClient()
    row = action(payload={"auth": {"access_token": SecretRef("env", "NOT_SET")}})
    outcome = await make_runner(client).process(row)
    assert (outcome.status, outcome.error_code) == (Status.FAILED, "SecretUnavailable")
    assert outcome.retriable and client.calls == []


# -- named regressions ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_regression_update_does_not_sleep_after_last_attempt() -> None:
    clock = FakeClock()
    client = FakeClient(updates=[http(503, "Unavailable", method="PATCH")])
    runner = make_runner(client, clock)
    outcome = await runner.process(action(kind=ActionKind.UPDATE))
    assert len(clock.sleeps) == 2  # between the attempts, none after the last
    assert client.calls == ["PATCH"] * 3
    assert (outcome.status, outcome.attempts, outcome.retriable) == (Status.FAILED, 3, True)
    assert runner.stats.retries == 2


def _fatal_during_the_wait(control: RunControl, clock: FakeClock) -> Callable[[float], Any]:
    """A sleep during which another row's 401 makes the run fatal."""

    async def sleep(seconds: float) -> None:
        control.fatal = control.fatal or FatalApiError("POST /v1/connections: HTTP 401",
                                                       http_status=401)
        await clock.sleep(seconds)

    return sleep


@pytest.mark.anyio
@pytest.mark.parametrize("who", ["its own lookup", "another row"])
async def test_regression_create_stops_looking_up_once_fatal(who: str) -> None:
    control, clock = RunControl(), FakeClock()
    if who == "its own lookup":
        client = FakeClient(creates=[http(500, "InternalError")], lookups=[http(401, method="GET")])
        runner = make_runner(client, clock, control=control)
        expected_calls = ["POST", "GET"]
    else:
        client = FakeClient(creates=[http(500, "InternalError")])
        runner = make_runner(client, clock, control=control)
        runner.sleep = _fatal_during_the_wait(control, clock)
        expected_calls = ["POST"]
    outcome = await runner.process(action())
    assert client.calls == expected_calls  # no lookup, and no resend, once the run is fatal
    assert control.fatal is not None
    assert outcome.status is Status.FAILED and outcome.retriable
    assert runner.stats.lookups == expected_calls.count("GET")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "delays", "sleeps"),
    [
        (RetriableApiError("503", retry_after=7.0, http_status=503), [7.0], [7.0]),
        (ThrottledError("429", retry_after=30.0, http_status=429), [0.0], []),  # gate paused
        (RetriableApiError("503", retry_after=601.0, http_status=503), [], []),  # > max_wait
    ],
    ids=["retry-after honoured", "throttled waits nothing more", "past max_wait stops"],
)
async def test_regression_runner_backoff_honours_retry_after(
    error: ApiError, delays: list[float], sleeps: list[float]
) -> None:
    for kind in (ActionKind.CREATE, ActionKind.UPDATE):
        clock = FakeClock()
        client = FakeClient(creates=[error, CREATED], updates=[error, CREATED])
        runner = make_runner(client, clock)
        with capture_logs() as logs:
            outcome = await runner.process(action(kind=kind))
        assert clock.sleeps == sleeps, kind
        assert outcome.attempts == len(delays) + 1
        assert outcome.status is (Status.NOT_ATTEMPTED if not delays else
                                  Status.UPDATED if kind is ActionKind.UPDATE else Status.CREATED)
        scheduled = [e for e in logs if e["event"] == "request.retry_scheduled"]
        assert [e["delay"] for e in scheduled] == delays
        assert all(e["row"] == 2 and e["schema"] == SCHEMA for e in scheduled)
        assert runner.stats.retries == len(delays)


@pytest.mark.anyio
async def test_regression_a_401_outcome_is_retriable_but_a_400_is_final(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    outcomes: dict[int, Outcome] = {}
    for row, error in ((2, http(401)), (3, http(400, "InvalidInput"))):
        runner = make_runner(FakeClient(creates=[error]), journal=journal)
        [outcomes[row]] = await runner.run([action(row, schema=f"tt_{row}")], concurrency=1)
    journal.close()
    assert outcomes[2].retriable and not outcomes[3].retriable
    assert outcomes[2].as_dict()["retriable"] is True
    state = load(tmp_path)
    # the 400 is final; the 401 row is tried again on resume (no final outcome for its key)
    assert set(state.outcomes) == {(GROUP, "tt_3")}
    assert not state.started


# -- the primitive ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retrying_stops_when_the_run_stops_during_the_wait() -> None:
    clock, calls, stop = FakeClock(), [0], [False]

    async def op(attempt: int) -> str:
        calls[0] += 1
        raise RetriableApiError(f"503 attempt {attempt}", http_status=503)

    async def sleep(seconds: float) -> None:
        stop[0] = True
        await clock.sleep(seconds)

    with pytest.raises(RetriableApiError, match="attempt 1"):
        await retrying(op, policy=POLICY, sleep=sleep, rng=random.Random(0),
                       should_stop=lambda: stop[0])
    assert calls == [1] and len(clock.sleeps) == 1


@pytest.mark.anyio
async def test_an_interrupt_lets_the_row_finish_without_another_resend() -> None:
    control, clock = RunControl(), FakeClock()
    client = FakeClient(creates=[http(500, "InternalError"), CREATED], lookups=[None])
    runner = make_runner(client, clock, control=control)

    async def sleep(seconds: float) -> None:
        control.interrupted = True
        await clock.sleep(seconds)

    runner.sleep = sleep
    outcome = await runner.process(action())
    assert client.calls == ["POST", "GET"]  # one last look settles nothing: left to a resume
    assert (outcome.status, outcome.error_code, outcome.retriable) == (
        Status.FAILED, "InternalError", True)
