"""FivetranClient over httpx.MockTransport: status table, headers, secrets, pagination, 429s."""

from __future__ import annotations

import base64
import json
import socket
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import structlog

import batch_provisioner
from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import FivetranClient
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
from batch_provisioner.settings import (
    ApiCredentials,
    Budget,
    ClientSettings,
    RetryPolicy,
    Timeouts,
)
from tests.api.fakes import FakeClock

KEY = "key-Zq81PxLm"
SECRET = "secret-Wv03RtYu"
TOKEN = "tiktok-token-9f8e7d6c5b4a"
CREDS = ApiCredentials(api_key=KEY, api_secret=SECRET, base_url="https://api.example.test")
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(
    data: dict[str, Any] | None = None, code: str = "Success", message: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return body


def make_client(
    handler: Handler,
    *,
    budgets: list[Budget] | None = None,
    max_attempts: int = 1,
    max_wait: float = 3600.0,
) -> tuple[FivetranClient, BudgetGate, FakeClock]:
    clock = FakeClock()
    gate = BudgetGate(budgets or [], 4, clock=clock, sleep=clock.sleep, max_wait=max_wait)
    settings = ClientSettings(
        concurrency=4,
        timeouts=Timeouts(connect=3.0, read=7.0, write=5.0, pool=2.0),
        retry=RetryPolicy(max_attempts=max_attempts, max_wait=max_wait),
    )
    client = FivetranClient(CREDS, settings, gate=gate, transport=httpx.MockTransport(handler))
    return client, gate, clock


def answer(status: int, body: Any = None, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(
                status, text=body, headers={"content-type": "text/html", **headers}
            )
        return httpx.Response(status, json=body, headers=headers)

    return handler


PAYLOAD = {
    "service": "tiktok_ads",
    "group_id": "grp_1",
    "run_setup_tests": True,
    "config": {"schema": "tiktok_a", "sync_mode": "AllAccounts"},
    "auth": {"access_token": TOKEN},
}


async def call(client: FivetranClient, method: str) -> dict[str, Any] | None:
    """Issue one public client call that uses ``method``."""
    if method == "POST":
        return await client.create_connection(PAYLOAD)
    if method == "PATCH":
        return await client.update_connection("conn_1", {"paused": True})
    if method == "DELETE":
        await client.delete_connection("conn_1")
        return None
    return await client.get_connection("conn_1")


# -- the status table -------------------------------------------------------------------------

HTML_404 = "<html><body>404 Not Found</body></html>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "status", "body", "expected"),
    [
        ("POST", 201, envelope({"id": "conn_1"}), None),
        ("GET", 200, envelope({"id": "conn_1"}), None),
        ("PATCH", 200, envelope({"id": "conn_1"}), None),
        (
            "POST",
            400,
            envelope(code="InvalidInput", message="Field 'schema' is required"),
            RowApiError,
        ),
        (
            "POST",
            400,
            envelope(
                code="InvalidInput", message="Schema 'tiktok_a' already exists in group 'grp_1'"
            ),
            ConflictApiError,
        ),
        ("GET", 401, envelope(code="AuthFailed", message="Invalid credentials"), FatalApiError),
        ("POST", 403, envelope(code="Forbidden", message="Not allowed"), FatalApiError),
        (
            "POST",
            404,
            envelope(code="NotFound_Group", message="Group 'grp_1' not found"),
            NotFoundApiError,
        ),
        ("GET", 404, envelope(code="NotFound_Connection", message="Not found"), NotFoundApiError),
        ("GET", 404, HTML_404, FatalApiError),
        ("POST", 409, envelope(code="Conflict", message="Connection exists"), ConflictApiError),
        ("POST", 406, envelope(code="NotAcceptable", message="Bad Accept"), RowApiError),
        ("POST", 415, envelope(code="UnsupportedMediaType", message="JSON only"), RowApiError),
        ("POST", 422, envelope(code="InvalidInput", message="Bad sync_frequency"), RowApiError),
        ("POST", 500, envelope(code="ServerError", message="oops"), AmbiguousApiError),
        ("POST", 502, "<html>Bad Gateway</html>", AmbiguousApiError),
        ("POST", 503, envelope(code="Unavailable", message="later"), AmbiguousApiError),
        ("PATCH", 502, envelope(code="ServerError", message="oops"), AmbiguousApiError),
        ("GET", 500, envelope(code="ServerError", message="oops"), RetriableApiError),
        ("GET", 502, "<html>Bad Gateway</html>", RetriableApiError),
        ("GET", 503, envelope(code="Unavailable", message="later"), RetriableApiError),
        ("DELETE", 503, envelope(code="Unavailable", message="later"), RetriableApiError),
        ("GET", 200, "<html>a web page, not the API</html>", FatalApiError),
    ],
)
async def test_status_maps_to_the_error_tree(
    method: str, status: int, body: Any, expected: type[ApiError] | None
) -> None:
    client, _, _ = make_client(answer(status, body))
    async with client:
        if expected is None:
            assert await call(client, method) == {"id": "conn_1"}
            return
        with pytest.raises(ApiError) as caught:
            await call(client, method)
    error = caught.value
    assert type(error) is expected
    assert error.http_status == status and error.method == method
    assert error.path is not None and error.path.startswith("/v1/connections")
    assert f"{method} {error.path}: HTTP {status}" in str(error)
    if isinstance(body, dict):
        assert error.code == body["code"]
        assert body["code"] in str(error) and body["message"] in str(error)
    assert client.stats.by_status == {status: 1}


@pytest.mark.anyio
async def test_429_with_seconds_pauses_every_worker() -> None:
    body = envelope(
        code="TooManyRequests",
        message="Max 20000 api calls allowed in one-hour rolling time period",
    )
    client, gate, clock = make_client(answer(429, body, **{"Retry-After": "7"}))
    async with client:
        with pytest.raises(ThrottledError) as caught:
            await client.create_connection(PAYLOAD)
        assert caught.value.retry_after == 7.0 and caught.value.http_status == 429
        assert gate.stats.throttles == 1 and client.stats.throttled == 1
        # Any worker's next request waits for the pause.
        async with gate.slot("call") as slot:
            pass
    assert slot.sent_at == 7.0 and clock.sleeps == [7.0]


@pytest.mark.anyio
async def test_429_with_an_http_date_pauses_until_that_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, gate, _ = make_client(
        answer(429, envelope(code="TooManyRequests"), **{"Retry-After": when})
    )
    async with client:
        with pytest.raises(ThrottledError) as caught:
            await client.get_connection("conn_1")
        async with gate.slot("call") as slot:
            pass
    assert caught.value.retry_after is not None and 25.0 < caught.value.retry_after <= 30.0
    assert slot.sent_at == pytest.approx(caught.value.retry_after)


@pytest.mark.anyio
async def test_429_without_retry_after_still_pauses_briefly() -> None:
    client, gate, _ = make_client(answer(429, envelope(code="TooManyRequests")))
    async with client:
        with pytest.raises(ThrottledError) as caught:
            await client.create_connection(PAYLOAD)
        async with gate.slot("call") as slot:
            pass
    assert caught.value.retry_after is None
    assert 1.0 <= slot.sent_at <= 5.0


@pytest.mark.anyio
async def test_429_revealing_an_unknown_create_budget_is_learned() -> None:
    body = envelope(
        code="TooManyRequests",
        message="No more than 20 connectors can be created in one-minute time period",
    )
    client, gate, _ = make_client(answer(429, body, **{"Retry-After": "60"}))
    with structlog.testing.capture_logs() as logs:
        async with client:
            with pytest.raises(ThrottledError):
                await client.create_connection(PAYLOAD)
    assert ("create", 20, 60.0) in [(b.applies_to, b.limit, b.window_seconds) for b in gate.budgets]
    events = [e["event"] for e in logs]
    assert (
        "budget.learned" in events and "budget.paused" in events and "request.throttled" in events
    )


@pytest.mark.anyio
async def test_429_longer_than_max_wait_stops_the_run_without_waiting() -> None:
    client, _, clock = make_client(
        answer(429, envelope(code="TooManyRequests"), **{"Retry-After": "3600"}), max_wait=300.0
    )
    async with client:
        with pytest.raises(RunStopped) as caught:
            await client.create_connection(PAYLOAD)
        with pytest.raises(RunStopped):  # nothing more is sent
            await client.get_connection("c1")
    assert caught.value.reason == "max_wait"
    assert "wait 3600s (Retry-After), longer than --max-wait 300s" in str(caught.value)
    assert client.stats.calls == 1 and clock.sleeps == []


@pytest.mark.anyio
async def test_reads_are_retried_through_a_429_after_the_pause() -> None:
    seen: list[float] = []
    clock_ref: list[FakeClock] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock_ref[0].now)
        if len(seen) == 1:
            return httpx.Response(
                429, json=envelope(code="TooManyRequests"), headers={"Retry-After": "12"}
            )
        return httpx.Response(200, json=envelope({"id": "conn_1"}))

    client, _, clock = make_client(handler, max_attempts=3)
    clock_ref.append(clock)
    async with client:
        assert await client.get_connection("conn_1") == {"id": "conn_1"}
    assert seen == [0.0, 12.0]
    assert client.stats.retries == 1 and client.stats.calls == 2


@pytest.mark.anyio
async def test_a_get_gives_up_after_max_attempts_of_503() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json=envelope(code="Unavailable", message=f"try {calls}"))

    client, _, _ = make_client(handler, max_attempts=3)
    async with client:
        with pytest.raises(RetriableApiError, match="try 3"):
            await client.get_connection("conn_1")
    assert calls == 3 and client.stats.retries == 2


# -- transport errors -------------------------------------------------------------------------


def raising(exc_type: type[httpx.TransportError], text: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "exc_type", "expected"),
    [
        ("POST", httpx.ReadTimeout, AmbiguousApiError),
        ("POST", httpx.RemoteProtocolError, AmbiguousApiError),
        ("PATCH", httpx.ReadError, AmbiguousApiError),
        ("POST", httpx.WriteError, AmbiguousApiError),
        ("GET", httpx.ReadTimeout, RetriableApiError),
        ("DELETE", httpx.ReadError, RetriableApiError),
    ],
)
async def test_transport_errors_after_send(
    method: str, exc_type: type[httpx.TransportError], expected: type[ApiError]
) -> None:
    client, gate, _ = make_client(raising(exc_type))
    async with client:
        with pytest.raises(ApiError) as caught:
            await call(client, method)
    assert type(caught.value) is expected
    assert exc_type.__name__ in str(caught.value)
    assert gate.stats.calls_sent == 1  # it may have reached the server: it stays counted


@pytest.mark.anyio
@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_errors_before_send_are_retriable_and_give_the_reservation_back(
    exc_type: type[httpx.TransportError],
) -> None:
    client, gate, clock = make_client(raising(exc_type), budgets=[Budget("calls", 1, 60.0)])
    async with client:
        with pytest.raises(RetriableApiError) as caught:
            await client.create_connection(PAYLOAD)
        assert type(caught.value) is RetriableApiError
        assert exc_type.__name__ in str(caught.value)
        assert gate.stats.calls_sent == 0
        async with gate.slot("call") as slot:
            pass
    assert slot.sent_at == 0.0 and clock.sleeps == []  # the budget's one place was free


@pytest.mark.anyio
async def test_a_refused_connection_on_a_real_socket_is_retriable_and_not_counted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: nothing listens
    clock = FakeClock()
    gate = BudgetGate([], 2, clock=clock, sleep=clock.sleep, max_wait=60.0)
    creds = ApiCredentials(api_key=KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{port}")
    settings = ClientSettings(concurrency=2, retry=RetryPolicy(max_attempts=1))
    async with FivetranClient(creds, settings, gate=gate) as client:
        with pytest.raises(RetriableApiError, match="ConnectError before the request was sent"):
            await client.create_connection(PAYLOAD)
    assert gate.stats.calls_sent == 0 and client.stats.transport_errors == 1


# -- headers and secrets ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_carry_auth_version_user_agent_and_timeouts() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(201, json=envelope({"id": "conn_1"}))

    client, _, _ = make_client(handler)
    async with client:
        await client.create_connection(PAYLOAD)
    request = requests[0]
    expected_auth = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == expected_auth
    assert request.headers["accept"] == "application/json;version=2"
    assert request.headers["user-agent"] == f"batch-provisioner/{batch_provisioner.__version__}"
    assert str(request.url) == "https://api.example.test/v1/connections"
    assert json.loads(request.content) == PAYLOAD
    assert request.extensions["timeout"] == {"connect": 3.0, "read": 7.0, "write": 5.0, "pool": 2.0}


def echo_secrets(status: int) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        text = f"rejected {request.content.decode()} from {auth} {KEY} {SECRET}"
        return httpx.Response(status, json=envelope(code="InvalidInput", message=text))

    return handler


def transport_error_quoting_the_request(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout(
        f"timed out on {request.content.decode()} {request.headers}", request=request
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [echo_secrets(400), echo_secrets(500), echo_secrets(429), transport_error_quoting_the_request],
    ids=["400-echo", "500-echo", "429-echo", "read-timeout"],
)
async def test_no_error_ever_shows_a_token_key_or_secret(handler: Handler) -> None:
    client, _, _ = make_client(handler)
    async with client:
        with pytest.raises(ApiError) as caught:
            await client.create_connection(PAYLOAD)
    error = caught.value
    shown = "\n".join([str(error), repr(error), *traceback.format_exception(error)])
    authorization = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    for secret in (TOKEN, KEY, SECRET, authorization):
        assert secret not in shown
    assert "POST /v1/connections" in str(error)
    assert error.__cause__ is None and error.__context__ is None


# -- pagination and endpoints -----------------------------------------------------------------


def paged(
    pages: dict[str | None, tuple[list[dict[str, Any]], str | None]], log: list[httpx.Request]
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        log.append(request)
        items, next_cursor = pages[request.url.params.get("cursor")]
        data: dict[str, Any] = {"items": items}
        if next_cursor:
            data["next_cursor"] = next_cursor
        return httpx.Response(200, json=envelope(data))

    return handler


@pytest.mark.anyio
async def test_list_connections_follows_next_cursor_across_three_pages() -> None:
    log: list[httpx.Request] = []
    pages = {
        None: ([{"id": "c1", "schema": "s1"}, {"id": "c2", "schema": "s2"}], "p2"),
        "p2": ([{"id": "c3", "schema": "s3"}], "p3"),
        "p3": ([{"id": "c4", "schema": "s4"}], None),
    }
    client, _, _ = make_client(paged(pages, log))
    async with client:
        items = await client.list_connections("grp_1")
    assert [item["id"] for item in items] == ["c1", "c2", "c3", "c4"]
    assert [r.url.path for r in log] == ["/v1/groups/grp_1/connections"] * 3
    assert [r.url.params.get("cursor") for r in log] == [None, "p2", "p3"]
    assert {r.url.params["limit"] for r in log} == {"1000"}


@pytest.mark.anyio
async def test_list_groups_is_paginated_too() -> None:
    log: list[httpx.Request] = []
    pages = {None: ([{"id": "g1", "name": "A"}], "n"), "n": ([{"id": "g2", "name": "B"}], None)}
    client, _, _ = make_client(paged(pages, log))
    async with client:
        groups = await client.list_groups()
    assert [g["name"] for g in groups] == ["A", "B"] and log[0].url.path == "/v1/groups"


@pytest.mark.anyio
async def test_a_cursor_that_repeats_stops_instead_of_looping_forever() -> None:
    pages: dict[str | None, tuple[list[dict[str, Any]], str | None]] = {
        None: ([], "same"),
        "same": ([], "same"),
    }
    client, _, _ = make_client(paged(pages, []))
    async with client:
        with pytest.raises(FatalApiError, match="repeated a page cursor"):
            await client.list_groups()


@pytest.mark.anyio
async def test_find_connection_uses_the_exact_schema_lookup() -> None:
    log: list[httpx.Request] = []
    items = [
        {"id": "c9", "group_id": "grp_1", "schema": "tiktok_a_old"},
        {"id": "c1", "group_id": "grp_1", "schema": "tiktok_a"},
    ]
    client, _, _ = make_client(paged({None: (items, None)}, log))
    async with client:
        found = await client.find_connection("grp_1", "tiktok_a")
        missing = await client.find_connection("grp_1", "tiktok_b")
    assert found is not None and found["id"] == "c1"
    assert missing is None
    assert log[0].url.path == "/v1/connections"
    assert dict(log[0].url.params) == {"group_id": "grp_1", "schema": "tiktok_a", "limit": "1000"}


@pytest.mark.anyio
async def test_ids_cannot_escape_their_path_segment() -> None:
    log: list[httpx.Request] = []
    client, _, _ = make_client(paged({None: ([], None)}, log))
    async with client:
        await client.list_connections("grp/../x?y=1")
    assert log[0].url.raw_path.startswith(b"/v1/groups/grp%2F..%2Fx%3Fy%3D1/connections")


@pytest.mark.anyio
async def test_delete_that_already_happened_on_an_earlier_try_counts_as_done() -> None:
    statuses = [503, 404]

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0)
        code = "NotFound_Connection" if status == 404 else "Unavailable"
        return httpx.Response(status, json=envelope(code=code))

    client, _, _ = make_client(handler, max_attempts=3)
    async with client:
        await client.delete_connection("conn_1")  # no NotFoundApiError: the 503 try worked
    assert statuses == []
    missing, _, _ = make_client(answer(404, envelope(code="NotFound_Connection")), max_attempts=3)
    async with missing:
        with pytest.raises(NotFoundApiError):
            await missing.delete_connection("conn_1")


@pytest.mark.anyio
async def test_connect_card_sends_its_config_and_is_retried() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(503, json=envelope(code="Unavailable"))
        card = {
            "connector_id": "conn_1",
            "connect_card": {"token": "t", "uri": "https://fivetran.com/connect-card/setup?auth=t"},
        }
        return httpx.Response(200, json=envelope(card))

    client, _, _ = make_client(handler, max_attempts=2)
    async with client:
        data = await client.connect_card(
            "conn_1", "https://example.com/done", hide_setup_guide=True
        )
    assert data["connect_card"]["uri"].startswith("https://fivetran.com/connect-card/")
    assert bodies[0] == {
        "connect_card_config": {
            "redirect_uri": "https://example.com/done",
            "hide_setup_guide": True,
        }
    }


@pytest.mark.anyio
@pytest.mark.parametrize("wrapped", [False, True])
async def test_sandbox_limits_become_budgets(wrapped: bool) -> None:
    limits = {
        "profile": "fast",
        "budgets": [
            {"name": "calls", "limit": 600, "window_seconds": 60, "applies_to": "all"},
            {"name": "creates", "limit": 20, "window_seconds": 60, "applies_to": "create"},
        ],
    }
    client, _, _ = make_client(answer(200, envelope(limits) if wrapped else limits))
    async with client:
        budgets = await client.sandbox_limits()
    assert budgets == [Budget("calls", 600, 60.0, "all"), Budget("creates", 20, 60.0, "create")]


# -- pacing from the answers ------------------------------------------------------------------


@pytest.mark.anyio
async def test_x_rate_limit_headers_tighten_the_hourly_budget() -> None:
    client, gate, _ = make_client(
        answer(
            200,
            envelope({"id": "conn_1"}),
            **{"X-Rate-Limit": "500", "X-Rate-Limit-Remaining": "499"},
        ),
        budgets=[Budget("calls_per_hour", 20_000, 3600.0)],
    )
    async with client:
        await client.get_connection("conn_1")
    assert gate.budgets == [Budget("calls_per_hour", 500, 3600.0, "all")]


@pytest.mark.anyio
async def test_setup_test_creates_are_paced_by_the_setup_test_budget() -> None:
    sent: list[tuple[bool, float]] = []
    clock_ref: list[FakeClock] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(("auth" in json.loads(request.content), clock_ref[0].now))
        return httpx.Response(201, json=envelope({"id": "c"}))

    client, _, clock = make_client(handler, budgets=[Budget("setup_tests", 1, 60.0, "setup_test")])
    clock_ref.append(clock)
    card_payload = {k: v for k, v in PAYLOAD.items() if k != "auth"} | {"run_setup_tests": False}
    async with client:
        await client.create_connection(PAYLOAD)
        await client.create_connection(card_payload)  # connect-card create: no setup test
        await client.create_connection(PAYLOAD)
    assert sent == [(True, 0.0), (False, 0.0), (True, 60.0)]


def test_regression_dot_segment_ids_stay_inside_their_path_segment() -> None:
    from batch_provisioner.api.wire import seg

    assert seg("..") == "%2E%2E" and seg(".") == "%2E"
    assert seg("a/../b") == "a%2F..%2Fb"
    assert seg("decent_dropsy") == "decent_dropsy"
