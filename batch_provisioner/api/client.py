"""``FivetranClient``: the Fivetran REST API over one ``httpx.AsyncClient``.

This is the single place where httpx exceptions and HTTP statuses become the error tree of
:mod:`batch_provisioner.errors`. Every request goes through the shared :class:`BudgetGate`.
Reads are retried here (:func:`retry_idempotent`, over the job's one retry loop ``retrying``);
creates and updates are single attempts, and the runner retries them through the same loop and
decides what an ambiguous answer means (it looks the connection up first).

Error messages name the method, the path, the status and Fivetran's code and message. They never
carry headers, credentials or request body values, and are raised outside ``except`` blocks so
that no httpx exception (which holds the request) hangs off them as ``__context__``.
"""

from __future__ import annotations

import functools
import math
import random
import ssl
import urllib.request
from base64 import b64encode
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate, Slot
from batch_provisioner.api.edge import FirstContact, transport_cause
from batch_provisioner.api.retry import (
    error_for_status,
    error_for_transport,
    parse_limit_message,
    parse_retry_after,
    request_kind,
    retry_idempotent,
)
from batch_provisioner.api.wire import (
    budgets_of,
    data_of,
    header_int,
    read_envelope,
    schema_of,
    seg,
    skip_failing_sniffio_import,
)
from batch_provisioner.errors import (
    ApiError,
    FatalApiError,
    NotFoundApiError,
    ThrottledError,
)
from batch_provisioner.safety import REDACTOR, secret_values
from batch_provisioner.settings import VERSION, ApiCredentials, Budget, ClientSettings

__all__ = ["ClientStats", "FivetranClient", "Page"]

JSON = dict[str, Any]
T = TypeVar("T")
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_MAX_PAGE = 1000
#: Pages one listing may take: 1,000,000 items at the 1,000 a page holds. A listing that goes
#: on past this (a server that always answers a new cursor) is the API misbehaving: fatal.
MAX_PAGES = 1000
#: httpcore's trace event once a request is written in full (body sent).
_WRITTEN = "http11.send_request_body.complete"
#: Connections per httpx pool (see ``FivetranClient.__init__``).
POOL_CONNECTIONS = 8

_log = structlog.get_logger(__name__)


skip_failing_sniffio_import()


def api_base(url: str) -> str:
    """The base URL requests are joined to: Fivetran's docs write it ``.../v1``, and every path
    here starts with ``/v1``, so a trailing ``/v1`` (or ``/``) is dropped, not doubled into
    ``/v1/v1/...`` (which answers 404 for every group, read as bad rows)."""
    base = url.rstrip("/")
    if base.lower().endswith("/v1"):
        base = base[:-3].rstrip("/")
        _log.info("api.base_url_trimmed", note="a trailing /v1 of the API URL is dropped")
    return base


class Page(NamedTuple):
    """One page of a listing: its items, and whether it was the last (no ``next_cursor``)."""

    items: list[JSON]
    last: bool


@dataclass
class ClientStats:
    """Counters for the run summary."""

    calls: int = 0
    throttled: int = 0
    retries: int = 0
    transport_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    # (seconds since the client opened, method, HTTP status or 0 for no answer, budget kind
    # from ``request_kind``), per request
    timeline: list[tuple[float, str, int, str]] = field(default_factory=list)


class FivetranClient:
    """Async Fivetran API client. Use as ``async with FivetranClient(...) as client``."""

    def __init__(
        self,
        credentials: ApiCredentials,
        settings: ClientSettings | None = None,
        *,
        gate: BudgetGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        default_retry_after: float = 2.0,
        answered: bool = False,
    ) -> None:
        # ``answered``: this API already answered properly (a probe of the same target did),
        # so a transport error is a row's matter from the first request (see api/edge.py).
        self._settings = settings or ClientSettings()
        self._gate = gate or BudgetGate(
            self._settings.budgets,
            self._settings.in_flight_cap,
            max_wait=self._settings.retry.max_wait,
            adaptive=self._settings.adaptive,
        )
        self._rng = rng or random.Random()
        self._default_retry_after = default_retry_after
        basic = f"{credentials.api_key}:{credentials.api_secret}".encode()
        # Scrubbed from server messages: the key, the secret and the Authorization value
        # (not the sandbox's documented defaults: masking "sandbox" would garble messages).
        if not credentials.public:
            REDACTOR.add_all((credentials.api_key, credentials.api_secret,
                              b64encode(basic).decode()))
        timeouts = self._settings.timeouts
        # Requests go straight to httpx's transports (its connection pools): the client layer
        # (URL merging, auth flow, cookies, redirects, hooks) cost as much CPU per request as
        # the transport itself, and this client needs none of it. Several small pools, not one
        # big one: httpcore checks every pooled connection on each request, so its cost grows
        # with the pool; 8 connections a pool keep it flat. An injected transport (tests) is
        # one pool: it is the whole network there.
        cap = self._settings.in_flight_cap
        pools = 1 if transport is not None else max(1, math.ceil(cap / POOL_CONNECTIONS))
        per_pool = math.ceil(cap / pools)
        self._base = api_base(credentials.base_url)
        # Basic auth as a fixed header: the same bytes httpx.BasicAuth sends.
        self._headers = httpx.Headers({
            "Accept": "application/json;version=2",
            "User-Agent": f"batch-provisioner/{VERSION}",
            "Authorization": f"Basic {b64encode(basic).decode()}",
        })
        self._timeout = httpx.Timeout(connect=timeouts.connect, read=timeouts.read,
                                      write=timeouts.write, pool=timeouts.pool).as_dict()
        self._pools: list[httpx.AsyncBaseTransport] = (
            [transport] if transport is not None else [
                httpx.AsyncHTTPTransport(
                    verify=_tls_context(), proxy=_proxy_for(self._base),
                    limits=httpx.Limits(max_connections=per_pool,
                                        max_keepalive_connections=per_pool))
                for _ in range(pools)])
        self._busy = [0] * pools  # requests in flight per pool
        self.stats = ClientStats()
        self._opened = self._gate.now()
        self._contact = FirstContact(api_base(credentials.base_url), answered=answered)

    @property
    def gate(self) -> BudgetGate:
        """The budget gate every request of this client goes through."""
        return self._gate

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools."""
        for pool in self._pools:
            await pool.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    async def create_connection(self, payload: Mapping[str, Any]) -> JSON:
        """``POST /v1/connections``, one attempt. 5xx/timeouts after send are ambiguous."""
        return data_of(await self._send("POST", "/v1/connections", body=payload))

    async def get_connection(self, connection_id: str) -> JSON:
        """``GET /v1/connections/{id}`` (retried)."""
        path = f"/v1/connections/{seg(connection_id)}"
        return data_of(await self._read("GET", path))

    async def list_connections(
        self, group_id: str, *, schema: str | None = None, limit: int = _MAX_PAGE
    ) -> list[JSON]:
        """Every connection of a group (or those matching ``schema``), following ``next_cursor``."""
        if schema is None:
            return await self._paginate(f"/v1/groups/{seg(group_id)}/connections", {}, limit)
        params = {"group_id": group_id, "schema": schema}
        return await self._paginate("/v1/connections", params, limit)

    def group_connection_pages(self, group_id: str) -> AsyncGenerator[Page, None]:
        """A group's connections page by page (``GET /v1/groups/{id}/connections``); the
        caller counts the calls (one a page). 404 ``NotFound_Group`` for a missing group."""
        return self._pages(f"/v1/groups/{seg(group_id)}/connections", {}, _MAX_PAGE)

    def account_connection_pages(self) -> AsyncGenerator[Page, None]:
        """Every connection the key can see, page by page (``GET /v1/connections``, no
        ``group_id``); each item names its ``group_id``. Stop early by leaving the loop
        (inside ``contextlib.aclosing``): no further page is asked for."""
        return self._pages("/v1/connections", {}, _MAX_PAGE)

    async def find_connection(self, group_id: str, schema: str) -> JSON | None:
        """The connection with exactly this (group_id, schema), or None; used to reconcile."""
        for item in await self.list_connections(group_id, schema=schema):
            if schema_of(item) == schema and item.get("group_id", group_id) == group_id:
                return item
        return None

    async def list_groups(self) -> list[JSON]:
        """Every group of the account (``GET /v1/groups``, paginated)."""
        return await self._paginate("/v1/groups", {}, _MAX_PAGE)

    def group_pages(self) -> AsyncGenerator[Page, None]:
        """The account's groups page by page (``GET /v1/groups``)."""
        return self._pages("/v1/groups", {}, _MAX_PAGE)

    async def update_connection(self, connection_id: str, fields: Mapping[str, Any]) -> JSON:
        """``PATCH /v1/connections/{id}``, one attempt."""
        return data_of(
            await self._send("PATCH", f"/v1/connections/{seg(connection_id)}", body=fields)
        )

    async def delete_connection(self, connection_id: str) -> bool:
        """``DELETE /v1/connections/{id}`` (retried). True when a DELETE was answered 2xx;
        False when a retry found it gone (404: an earlier try, or someone else, deleted it)."""
        path = f"/v1/connections/{seg(connection_id)}"
        attempts = 0
        gone = False

        async def attempt() -> None:
            nonlocal attempts, gone
            attempts += 1
            try:
                await self._send("DELETE", path)
            except NotFoundApiError:
                if attempts == 1:
                    raise
                gone = True

        await self._retrying(attempt)
        return not gone

    async def connect_card(
        self, connection_id: str, redirect_uri: str, hide_setup_guide: bool = False
    ) -> JSON:
        """``POST /v1/connections/{id}/connect-card``; safe to repeat, so retried."""
        body = {
            "connect_card_config": {
                "redirect_uri": redirect_uri,
                "hide_setup_guide": hide_setup_guide,
            }
        }
        path = f"/v1/connections/{seg(connection_id)}/connect-card"
        return data_of(await self._read("POST", path, body=body))

    async def sandbox_limits(self) -> list[Budget]:
        """The sandbox profile's budgets (``GET /sandbox/limits``)."""
        budgets = budgets_of(await self._read("GET", "/sandbox/limits"))
        if budgets is None:
            raise FatalApiError(
                f"GET /sandbox/limits at {self._contact.base}: unexpected answer "
                "(expected {'budgets': [...]})",
                method="GET",
                path="/sandbox/limits",
            )
        return budgets

    # -- plumbing ----------------------------------------------------------------------------

    async def _paginate(self, path: str, params: dict[str, str], limit: int) -> list[JSON]:
        return [item async for page in self._pages(path, params, limit) for item in page.items]

    async def _pages(self, path: str, params: dict[str, str], limit: int
                     ) -> AsyncGenerator[Page, None]:
        """The items page by page, following ``next_cursor``; each page is one read
        (retried as reads are). At most :data:`MAX_PAGES` pages, and a repeated cursor is
        fatal: a listing that never ends is the API misbehaving."""
        cursor: str | None = None
        seen: set[str] = set()
        total = 0
        page_size = str(max(1, min(_MAX_PAGE, limit)))
        for page in range(1, MAX_PAGES + 1):
            query = {**params, "limit": page_size} | ({"cursor": cursor} if cursor else {})
            data = data_of(await self._read("GET", path, params=query))
            items = [item for item in data.get("items") or [] if isinstance(item, dict)]
            total += len(items)
            next_cursor = data.get("next_cursor")
            yield Page(items, last=not next_cursor)
            if not next_cursor:
                return
            cursor = str(next_cursor)
            if cursor in seen:
                raise FatalApiError(f"GET {path}: the API repeated a page cursor after {page} "
                                    "pages (a listing that never ends)", method="GET", path=path)
            seen.add(cursor)
        raise FatalApiError(f"GET {path}: the listing did not end after {MAX_PAGES} pages "
                            f"({total} items; at most {MAX_PAGES} pages are read): the "
                            "API keeps answering a new cursor", method="GET", path=path)

    async def _read(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> JSON:
        async def attempt() -> JSON:
            return await self._send(method, path, params=params, body=body, idempotent=True)

        return await self._retrying(attempt)

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        return await retry_idempotent(
            op,
            policy=self._settings.retry,
            gate=self._gate,
            rng=self._rng,
            on_retry=self._count_retry,
        )

    def _count_retry(self, attempt: int, error: ApiError, delay: float) -> None:
        self.stats.retries += 1

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> JSON:
        """One attempt through the gate; returns the envelope or raises from the error tree."""
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        self._contact.check()  # the base URL was given up: nothing more is sent
        kind = request_kind(method, path, body)
        async with self._gate.slot(kind) as slot:
            self.stats.calls += 1
            response: httpx.Response | None = None
            failure: ApiError | None = None
            index = self._busy.index(min(self._busy))  # the least busy pool
            self._busy[index] += 1
            try:
                response = await self._request(self._pools[index], method, path, params, body,
                                               slot)
            except _NOT_SENT as exc:
                slot.strain = True  # refused, or no place in the pool: the server is strained
                slot.not_sent()
                failure = error_for_transport(
                    method, path, type(exc).__name__, sent=False, idempotent=idempotent
                )
                failure = self._contact.no_answer(
                    method, path, type(exc).__name__, transport_cause(exc)) or failure
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                slot.not_sent()
                failure = self._contact.unusable(
                    method, path, type(exc).__name__, transport_cause(exc))
            except httpx.HTTPError as exc:
                slot.strain = True  # sent, and no answer (a timeout, a reset)
                failure = error_for_transport(
                    method, path, type(exc).__name__, sent=True, idempotent=idempotent
                )
                failure = self._contact.no_answer(
                    method, path, type(exc).__name__, transport_cause(exc)) or failure
            finally:
                self._busy[index] -= 1
            # Raised here, outside the except blocks: no httpx exception (which holds the
            # request, headers included) is chained to the error as its __context__.
            self.stats.timeline.append((
                round(self._gate.now() - self._opened, 4), method,
                response.status_code if response is not None else 0, kind))
            if response is None:
                assert failure is not None
                self.stats.transport_errors += 1
                _log.info("request.failed", method=method, path=path, error=failure.message)
                raise failure
            slot.strain = response.status_code >= 500
            self._observe_rate_headers(response, slot.sent_at)
            return self._answer(method, path, response, idempotent, _redactor_for(body))

    async def _request(self, pool: httpx.AsyncBaseTransport, method: str, path: str,
                       params: Mapping[str, str] | None, body: Mapping[str, Any] | None,
                       slot: Slot) -> httpx.Response:
        """One request through ``pool``, its body read in full (httpx errors propagate). The
        gate hears when the request has been written (httpcore's trace), so that it counts
        the request from there (see api/budgets.py)."""

        async def trace(event: str, _info: Mapping[str, Any]) -> None:
            if event == _WRITTEN:
                slot.written()

        request = httpx.Request(method, self._base + path, params=params, headers=self._headers,
                                json=dict(body) if body is not None else None,
                                extensions={"timeout": self._timeout, "trace": trace})
        response = await pool.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _answer(
        self,
        method: str,
        path: str,
        response: httpx.Response,
        idempotent: bool,
        redact: Callable[[str], str],
    ) -> JSON:
        status = response.status_code
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        envelope = read_envelope(response)
        _log.debug("request.completed", method=method, path=path, status=status)
        if envelope is not None:
            self._contact.proper_answer()
        else:  # HTML, non-JSON, no envelope: fatal at once, after the bound, or a row's 5xx
            stop = self._contact.not_an_answer(method, path, status,
                                               response.headers.get("content-type"),
                                               empty=not response.content.strip())
            if stop is not None:
                raise stop
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = error_for_status(
            method,
            path,
            status,
            envelope,
            idempotent=idempotent,
            retry_after=retry_after,
            redact=redact,
        )
        if isinstance(error, ThrottledError):
            self._throttled(error, envelope, redact)
        if error is not None:
            raise error
        return envelope or {}

    def _throttled(
        self, error: ThrottledError, envelope: JSON | None, redact: Callable[[str], str]
    ) -> None:
        """Learn what the 429 reveals and pause every worker (or stop the run past --max-wait)."""
        self.stats.throttled += 1
        message = redact(str(envelope.get("message") or "")) if envelope else ""
        revealed = parse_limit_message(message) if message else None
        if revealed is not None:
            self._gate.learn(*revealed)
        _log.warning(
            "request.throttled",
            method=error.method,
            path=error.path,
            retry_after=error.retry_after,
            code=error.code,
            message=message or None,
        )
        wait = error.retry_after if error.retry_after is not None else self._default_retry_after
        # past --max-wait (or the deadline) this raises RunStopped: the run sends nothing more
        self._gate.pause(wait, reason=message or "HTTP 429")

    def _observe_rate_headers(self, response: httpx.Response, sent_at: float) -> None:
        limit = header_int(response, "x-rate-limit")
        remaining = header_int(response, "x-rate-limit-remaining")
        if limit is not None or remaining is not None:
            self._gate.observe_headers(limit, remaining, sent_at)


def _proxy_for(base: str) -> httpx.Proxy | None:
    """The proxy the environment names for ``base`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, minus ``NO_PROXY``), as httpx's client would pick it; None for none."""
    url = httpx.URL(base)
    found = urllib.request.getproxies()
    proxy = found.get(url.scheme) or found.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return httpx.Proxy(proxy if "://" in proxy else f"http://{proxy}")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (the CA bundle loaded once, ~20 ms) for every pool of the process."""
    return httpx.create_ssl_context()


def _redactor_for(body: Mapping[str, Any] | None) -> Callable[[str], str]:
    """The process redactor, knowing every secret value of this request's body too."""
    REDACTOR.add_all(secret_values(body))
    return REDACTOR.scrub
