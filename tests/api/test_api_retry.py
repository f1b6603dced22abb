"""Retry rules: Retry-After, backoff, 429 messages, classification and idempotent retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, strategies as st

from batch_provisioner.api.retry import (
    backoff_delay,
    error_for_status,
    error_for_transport,
    parse_limit_message,
    parse_retry_after,
    request_kind,
    retry_idempotent,
)
from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ConflictApiError,
    FatalApiError,
    NotFoundApiError,
    RetriableApiError,
    RowApiError,
    RunStopped,
    ThrottledError,
)
from batch_provisioner.safety import Redactor, secret_values
from batch_provisioner.settings import RetryPolicy

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class RecordingSleeper:
    """Stands in for the gate: records backoff sleeps instead of waiting."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: never negative
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_defaults_to_the_current_time() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    delay = parse_retry_after(in_a_minute)
    assert delay is not None
    assert 55.0 <= delay <= 60.0


# -- backoff ----------------------------------------------------------------------------------


@given(attempt=st.integers(min_value=1, max_value=200), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_within_the_exponential_cap(attempt: int, seed: int) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0)
    delay = backoff_delay(attempt, policy, random.Random(seed))
    assert 0.0 <= delay <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_backoff_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(1)
    delays = [backoff_delay(4, policy, rng) for _ in range(2000)]
    assert max(delays) <= 8.0
    assert min(delays) < 0.5  # full jitter reaches near zero ...
    assert max(delays) > 7.5  # ... and near the cap


# -- parse_limit_message ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "No more than 20 connectors can be created in one-minute time period",
            ("create", 20, 60.0),
        ),
        (
            "No more than 600 connectors can be created in one-hour time period",
            ("create", 600, 3600.0),
        ),
        ("Max 20000 api calls allowed in one-hour rolling time period", ("all", 20000, 3600.0)),
        ("Max 500 API calls allowed in one-hour rolling time period", ("all", 500, 3600.0)),
        (
            "Max 250 setup tests allowed in one-minute rolling time period",
            ("setup_test", 250, 60.0),
        ),
        ("Max 1,000 requests allowed in 10-minute rolling time period", ("all", 1000, 600.0)),
        ("Too many requests", None),
        ("Max 500 source calls allowed in one-minute rolling time period", None),
        ("", None),
    ],
)
def test_parse_limit_message(message: str, expected: tuple[str, int, float] | None) -> None:
    assert parse_limit_message(message) == expected


# -- classification ---------------------------------------------------------------------------


def test_5xx_is_retriable_when_idempotent_and_ambiguous_otherwise() -> None:
    env = {"code": "ServerError", "message": "boom"}
    read = error_for_status("GET", "/v1/x", 503, env, idempotent=True, retry_after=4.0)
    write = error_for_status("POST", "/v1/x", 503, env, idempotent=False)
    assert type(read) is RetriableApiError
    assert read.retry_after == 4.0
    assert type(write) is AmbiguousApiError


def test_2xx_is_no_error() -> None:
    assert error_for_status("GET", "/v1/x", 200, {"code": "Success"}, idempotent=True) is None


@pytest.mark.parametrize(
    ("status", "envelope", "expected"),
    [
        (404, {"code": "NotFound_Connector", "message": "gone"}, NotFoundApiError),
        (404, {"code": "NotFound_Integration", "message": "gone"}, NotFoundApiError),
        (404, None, FatalApiError),
        (
            400,
            {"code": "InvalidInput", "message": "A connection with schema 'x' exists already"},
            ConflictApiError,
        ),
        (
            400,
            {"code": "InvalidInput", "message": "Schema name must be unique in the group"},
            ConflictApiError,
        ),
        (400, {"code": "InvalidInput", "message": "Field 'schema' is required"}, RowApiError),
        (422, None, RowApiError),
        (302, None, FatalApiError),
        (429, {"code": "TooManyRequests", "message": "slow down"}, ThrottledError),
    ],
)
def test_classification_edges(
    status: int, envelope: dict[str, str] | None, expected: type[ApiError]
) -> None:
    error = error_for_status("POST", "/v1/connections", status, envelope, idempotent=False)
    assert type(error) is expected


def test_transport_errors_before_and_after_send() -> None:
    before = error_for_transport(
        "POST", "/v1/connections", "ConnectError", sent=False, idempotent=False
    )
    after_write = error_for_transport(
        "POST", "/v1/connections", "ReadTimeout", sent=True, idempotent=False
    )
    after_read = error_for_transport("GET", "/v1/groups", "ReadError", sent=True, idempotent=True)
    assert type(before) is RetriableApiError
    assert type(after_write) is AmbiguousApiError
    assert type(after_read) is RetriableApiError
    assert "ReadTimeout" in after_write.message and "POST /v1/connections" in after_write.message


def test_server_messages_are_scrubbed_of_known_and_body_secrets() -> None:
    redactor = Redactor()
    redactor.add("api-key-1234")
    redactor.add_all(secret_values({"auth": {"access_token": "tok-abcdef"}}))
    redact = redactor.scrub
    env = {"code": "InvalidInput", "message": "token tok-abcdef rejected for api-key-1234"}
    error = error_for_status("POST", "/v1/connections", 400, env, idempotent=False, redact=redact)
    assert error is not None
    assert "tok-abcdef" not in str(error) and "api-key-1234" not in str(error)
    assert "token ****** rejected" in str(error)


@pytest.mark.parametrize(
    ("method", "path", "body", "kind"),
    [
        (
            "POST",
            "/v1/connections",
            {"auth": {"access_token": "t"}, "run_setup_tests": True},
            "setup_test_create",
        ),
        ("POST", "/v1/connections", {"auth": {"access_token": "t"}}, "setup_test_create"),
        (
            "POST",
            "/v1/connections",
            {"auth": {"access_token": "t"}, "run_setup_tests": False},
            "create",
        ),
        ("POST", "/v1/connections", {"run_setup_tests": True}, "create"),  # no auth: connect card
        ("PATCH", "/v1/connections/c1", {"run_setup_tests": True}, "setup_test_update"),
        ("PATCH", "/v1/connections/c1", {"paused": True}, "call"),
        ("POST", "/v1/connections/c1/connect-card", {}, "call"),
        ("GET", "/v1/connections", None, "call"),
        ("DELETE", "/v1/connections/c1", None, "call"),
    ],
)
def test_request_kind(method: str, path: str, body: dict[str, object] | None, kind: str) -> None:
    assert request_kind(method, path, body) == kind


# -- retry_idempotent -------------------------------------------------------------------------


def _server_error(n: int) -> RetriableApiError:
    return RetriableApiError(f"GET /v1/groups: HTTP 503 attempt {n}", http_status=503)


@pytest.mark.anyio
async def test_retry_idempotent_retries_a_503_then_succeeds() -> None:
    sleeper = RecordingSleeper()
    calls: list[int] = []
    retried: list[tuple[int, float]] = []

    async def op() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise _server_error(len(calls))
        return "ok"

    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=10.0)
    result = await retry_idempotent(
        op,
        policy=policy,
        gate=sleeper,
        rng=random.Random(3),
        on_retry=lambda attempt, _err, delay: retried.append((attempt, delay)),
    )
    assert result == "ok"
    assert calls == [1, 2, 3]
    assert [attempt for attempt, _ in retried] == [1, 2]
    assert [d for _, d in retried] == sleeper.sleeps
    assert 0 <= sleeper.sleeps[0] <= 1.0 and 0 <= sleeper.sleeps[1] <= 2.0


@pytest.mark.anyio
async def test_retry_idempotent_gives_up_after_max_attempts_with_the_last_error() -> None:
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        raise _server_error(calls)

    with pytest.raises(RetriableApiError, match=r"attempt 4$"):
        await retry_idempotent(
            op, policy=RetryPolicy(max_attempts=4), gate=RecordingSleeper(), rng=random.Random(0)
        )
    assert calls == 4


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [
        AmbiguousApiError("POST /v1/connections: ReadTimeout"),
        FatalApiError("GET /v1/groups: HTTP 401"),
        RowApiError("GET /v1/groups: HTTP 400"),
        NotFoundApiError("GET /v1/connections/x: HTTP 404"),
    ],
    ids=type,
)
async def test_retry_idempotent_never_retries_non_retriable_errors(error: ApiError) -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retry_idempotent(
            op, policy=RetryPolicy(), gate=RecordingSleeper(), rng=random.Random(0)
        )
    assert calls == 1


@pytest.mark.anyio
async def test_throttles_are_retried_without_backoff_because_the_gate_paused() -> None:
    sleeper = RecordingSleeper()
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ThrottledError("GET /v1/groups: HTTP 429", retry_after=30.0, http_status=429)
        return "ok"

    result = await retry_idempotent(op, policy=RetryPolicy(), gate=sleeper, rng=random.Random(0))
    assert result == "ok" and calls == 2
    assert sleeper.sleeps == []


@pytest.mark.anyio
async def test_server_retry_after_is_honoured_but_not_beyond_max_wait() -> None:
    sleeper = RecordingSleeper()
    outcomes: list[RetriableApiError | str] = [
        RetriableApiError("503", retry_after=12.0),
        "ok",
    ]

    async def op() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert (
        await retry_idempotent(op, policy=RetryPolicy(), gate=sleeper, rng=random.Random(0)) == "ok"
    )
    assert sleeper.sleeps == [12.0]

    calls = 0

    async def too_long() -> None:
        nonlocal calls
        calls += 1
        raise RetriableApiError("429 for an hour", retry_after=3600.0)

    with pytest.raises(RunStopped, match=r"wait 3600s .*longer than --max-wait 600s") as caught:
        await retry_idempotent(
            too_long, policy=RetryPolicy(max_wait=600.0), gate=sleeper, rng=random.Random(0)
        )
    assert calls == 1 and caught.value.reason == "max_wait"
