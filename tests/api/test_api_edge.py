"""The API edge: a base URL that never answers as Fivetran does is fatal (exit 3), named.

Until a first answer in Fivetran's envelope, ``UNREACHABLE_AFTER`` failed tries (no answer, or a
transient status that is not an envelope) stop the client with a ``FatalApiError`` naming the
base URL; any other non-envelope answer stops it at once. After a proper answer, transport
errors and 5xx stay a row's matter. Over ``httpx.MockTransport``, plus real loopback sockets.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.api.edge import UNREACHABLE_AFTER, shown_url, transport_cause
from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ExitCode,
    FatalApiError,
    RetriableApiError,
    RowApiError,
)
from batch_provisioner.settings import ApiCredentials, ClientSettings, RetryPolicy
from tests.api.fakes import FakeClock

KEY = "key-Edge7731"
SECRET = "secret-Edge9902"
BASE = "https://api.example.test"
Handler = Callable[[httpx.Request], httpx.Response]
GROUPS = {"code": "Success", "data": {"items": [{"id": "g1", "name": "One"}]}}
PAYLOAD = {"service": "tiktok_ads", "group_id": "g1", "config": {"schema": "s1"}}
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"


class Script:
    """A MockTransport handler answering from a list of steps (the last one repeats)."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, type) and issubclass(step, httpx.TransportError):
            raise step("All connection attempts failed", request=request)
        status, body = step
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"content-type": "text/html"})
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)


def client_for(handler: Handler, *, attempts: int = 5, base: str = BASE,
               answered: bool = False) -> FivetranClient:
    clock = FakeClock()
    gate = BudgetGate([], 4, clock=clock, sleep=clock.sleep, max_wait=60.0)
    settings = ClientSettings(concurrency=4, retry=RetryPolicy(max_attempts=attempts))
    return FivetranClient(ApiCredentials(KEY, SECRET, base), settings, gate=gate,
                          transport=httpx.MockTransport(handler), answered=answered)


def assert_clean(error: ApiError) -> None:
    """Names no credential and chains no httpx exception (which holds the request)."""
    assert KEY not in error.message and SECRET not in error.message
    assert error.__cause__ is None


# -- no answer at all -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_connect_errors_on_the_first_calls_are_fatal_after_the_bound() -> None:
    script = Script(httpx.ConnectError)
    async with client_for(script) as client:
        with pytest.raises(FatalApiError) as caught:
            await client.list_groups()
        assert script.calls == UNREACHABLE_AFTER == 3  # not max_attempts (5)
        error = caught.value
        assert error.exit_code is ExitCode.FATAL_API
        assert error.message.startswith(f"cannot reach the Fivetran API at {BASE}: ")
        assert "(ConnectError) on 3 tries" in error.message and "--api-url" in error.message
        assert_clean(error)
        with pytest.raises(FatalApiError, match="cannot reach"):  # given up: nothing is sent
            await client.get_connection("c1")
        assert script.calls == 3


@pytest.mark.anyio
async def test_failures_count_across_requests_and_kinds_before_any_answer() -> None:
    script = Script(httpx.ConnectError, (502, HTML), httpx.ReadTimeout)
    async with client_for(script, attempts=1) as client:
        for _ in range(2):
            with pytest.raises(RetriableApiError):
                await client.get_connection("c1")
        with pytest.raises(FatalApiError) as caught:
            await client.get_connection("c1")
    assert caught.value.message.startswith(
        f"cannot reach the Fivetran API at {BASE}: no answer within the read timeout")
    assert script.calls == 3


@pytest.mark.anyio
async def test_concurrent_first_calls_all_stop_soon_after_the_bound() -> None:
    script = Script(httpx.ConnectTimeout)
    errors: list[BaseException] = []
    async with client_for(script) as client:

        async def one(group: str) -> None:
            try:
                await client.list_connections(group)
            except ApiError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for group in ("g1", "g2", "g3", "g4", "g5", "g6"):
                tg.start_soon(one, group)
    assert len(errors) == 6 and all(isinstance(e, FatalApiError) for e in errors)
    assert script.calls <= UNREACHABLE_AFTER + 4  # the bound, plus what was already in flight
    assert "no connection within the connect timeout" in errors[0].args[0]


@pytest.mark.anyio
async def test_a_transport_error_after_a_proper_answer_stays_a_row_matter() -> None:
    script = Script((200, GROUPS), httpx.ConnectError)
    async with client_for(script) as client:
        assert await client.list_groups() == [{"id": "g1", "name": "One"}]
        with pytest.raises(RetriableApiError, match="ConnectError before the request was sent"):
            await client.get_connection("c1")  # retried 5 times, never fatal
        assert script.calls == 1 + 5
        with pytest.raises(RetriableApiError):
            await client.create_connection(PAYLOAD)


@pytest.mark.anyio
async def test_a_read_timeout_on_a_create_after_a_proper_answer_stays_ambiguous() -> None:
    script = Script((200, GROUPS), httpx.ReadTimeout)
    async with client_for(script) as client:
        await client.list_groups()
        for _ in range(UNREACHABLE_AFTER + 1):
            with pytest.raises(AmbiguousApiError):
                await client.create_connection(PAYLOAD)


@pytest.mark.anyio
async def test_a_client_told_the_api_answered_never_gives_the_url_up() -> None:
    script = Script(httpx.ConnectError)
    async with client_for(script, answered=True) as client:
        with pytest.raises(RetriableApiError):
            await client.get_connection("c1")
    assert script.calls == 5


# -- answers that are not Fivetran's ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, "<html>a login page</html>", "text/html"),
        (200, {"items": []}, "application/json"),  # JSON, but no code/data envelope
        (200, [1, 2], "application/json"),
        (200, b"", "empty body"),
        (301, "<html>Moved</html>", "text/html"),
        (400, b"Bad Request", "no content type"),
        (404, b"", "empty body"),
    ],
    ids=["html-200", "json-no-envelope", "json-list", "empty-200", "html-301", "text-400",
         "empty-404"],
)
async def test_a_first_answer_that_is_not_an_envelope_is_fatal_at_once(
    status: int, body: Any, kind: str
) -> None:
    script = Script((status, body))
    async with client_for(script) as client:
        with pytest.raises(FatalApiError) as caught:
            await client.list_groups()
    error = caught.value
    assert script.calls == 1 and error.http_status == status
    assert error.message == (f"not a Fivetran API answer from {BASE}: GET /v1/groups: HTTP "
                             f"{status} ({kind}); check --api-url / FIVETRAN_API_URL (or "
                             "--sandbox-url)")
    assert_clean(error)


@pytest.mark.anyio
async def test_html_502s_before_any_proper_answer_are_fatal_after_the_bound() -> None:
    script = Script((502, HTML))
    async with client_for(script) as client:
        with pytest.raises(FatalApiError) as caught:
            await client.list_groups()
    assert script.calls == UNREACHABLE_AFTER
    assert caught.value.message.startswith(
        f"not a Fivetran API answer from {BASE}: GET /v1/groups: HTTP 502 (text/html) on 3 tries")


@pytest.mark.anyio
async def test_after_a_proper_answer_html_502_is_retried_and_a_4xx_page_is_the_rows() -> None:
    script = Script((200, GROUPS), (502, HTML), (502, HTML), (502, HTML), (200, GROUPS),
                    (400, "<html>bad</html>"))
    async with client_for(script) as client:
        await client.list_groups()
        assert await client.list_groups() == [{"id": "g1", "name": "One"}]  # 3 x 502, then ok
        with pytest.raises(RowApiError):
            await client.create_connection(PAYLOAD)
    assert script.calls == 6


@pytest.mark.anyio
async def test_after_a_proper_answer_an_html_200_is_still_fatal_and_names_the_url() -> None:
    script = Script((200, GROUPS), (200, "<html>portal</html>"))
    async with client_for(script) as client:
        await client.list_groups()
        with pytest.raises(FatalApiError) as caught:
            await client.get_connection("c1")
    assert caught.value.message.startswith(f"not a Fivetran API answer from {BASE}: GET ")


@pytest.mark.anyio
async def test_401_without_an_envelope_stays_a_credentials_error() -> None:
    async with client_for(Script((401, "<html>Unauthorized</html>"))) as client:
        with pytest.raises(FatalApiError, match="FIVETRAN_API_KEY / FIVETRAN_API_SECRET"):
            await client.list_groups()


@pytest.mark.anyio
async def test_a_sandbox_limits_probe_of_a_dead_url_names_it() -> None:
    async with client_for(Script(httpx.ConnectError), base="http://127.0.0.1:9") as client:
        with pytest.raises(FatalApiError, match=r"at http://127\.0\.0\.1:9: "):
            await client.sandbox_limits()


@pytest.mark.anyio
async def test_the_url_shown_never_carries_a_user_or_password() -> None:
    base = f"https://{KEY}:{SECRET}@api.example.test:8443/base"
    async with client_for(Script(httpx.ConnectError), base=base) as client:
        with pytest.raises(FatalApiError) as caught:
            await client.list_groups()
    assert "https://api.example.test:8443/base:" in caught.value.message
    assert_clean(caught.value)


# -- real sockets -----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.anyio
async def test_a_refused_loopback_port_is_fatal_with_the_cause_in_words() -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    settings = ClientSettings(retry=RetryPolicy(max_attempts=5, backoff_base=0.01))
    async with FivetranClient(ApiCredentials(KEY, SECRET, base), settings) as client:
        with anyio.fail_after(5):
            with pytest.raises(FatalApiError) as caught:
                await client.list_groups()
    assert caught.value.message.startswith(
        f"cannot reach the Fivetran API at {base}: connection refused (ConnectError) on 3 tries")
    assert client.stats.transport_errors == 3


def test_transport_cause_names_dns_tls_and_refusals() -> None:
    def wrapped(inner: BaseException) -> httpx.ConnectError:
        outer = httpx.ConnectError("All connection attempts failed")
        outer.__cause__ = inner
        return outer

    dns = transport_cause(wrapped(socket.gaierror(-2, "Name or service not known")))
    assert dns == "host not found (Name or service not known)"
    tls = ssl.SSLCertVerificationError(1, "certificate verify failed")
    tls.verify_message = "self-signed certificate"
    assert transport_cause(wrapped(tls)) == "TLS failure: self-signed certificate"
    assert transport_cause(wrapped(ConnectionRefusedError(111, "refused"))) == "connection refused"
    assert transport_cause(httpx.ConnectError("")) == "ConnectError"
    assert transport_cause(httpx.ConnectError("x " * 200)).endswith("...")


def test_shown_url_keeps_scheme_host_port_and_path_only() -> None:
    assert shown_url("http://u:p@127.0.0.1:1/") == "http://127.0.0.1:1"
    assert shown_url("https://api.fivetran.com?x=1") == "https://api.fivetran.com"
    assert shown_url("http://[::1]:8080/v") == "http://[::1]:8080/v"
    assert shown_url("api.fivetran.com") == "api.fivetran.com"


@pytest.mark.parametrize("url", ["http://api.test/v1", "http://api.test/v1/", "http://api.test/"])
def test_regression_a_base_url_ending_in_v1_is_not_doubled_into_v1_v1(url: str) -> None:
    """Review finding: ``--api-url https://api.fivetran.com/v1`` (as Fivetran's docs write
    it) sent ``/v1/v1/groups/...``: every row came back NotFound as if its group were wrong."""
    from batch_provisioner.api.client import api_base

    assert api_base(url) == "http://api.test"
