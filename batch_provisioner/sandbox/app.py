"""The sandbox as a raw ASGI application.

Every ``/v1`` request goes through the same steps, in this order:

1. read the body, match the route, note the request in the ledger (with the number of
   ``/v1`` requests in flight at its arrival, itself included);
2. choose its fault (:mod:`batch_provisioner.sandbox.faults`); ``reset`` closes the
   connection (after any latency), ``429``/``429_date``/``500``/``502``/``503`` answer (after
   any latency), and nothing is applied or counted against the budgets;
3. at arrival, HTTP Basic auth (401), Accept (406) and rate limits (429 with Retry-After):
   a request is counted against the budgets the moment it arrives, as a rate limiter in front
   of an API counts it, and a refusal answers at once; then the added latency (the time the
   work takes: Fivetran runs setup tests before it answers), then routing (404/405),
   Content-Type (415) and JSON (400), then the endpoint itself;
4. ``drop_after_commit`` then closes the connection with no answer, ``slow`` holds the
   answer back for ``slow_ms`` (giving up if the client leaves or the server stops).

Every ``/v1`` answer carries ``X-Rate-Limit`` / ``X-Rate-Limit-Remaining`` (the hourly
all-calls budget) when the profile has one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import time
from email.utils import formatdate

import anyio

from batch_provisioner.sandbox.config import SandboxConfig
from batch_provisioner.sandbox.control import ControlApi
from batch_provisioner.sandbox.faults import PRE_EFFECT_FAULTS
from batch_provisioner.sandbox.handlers import CONNECTION, CONNECTIONS, V1Api, is_setup_test
from batch_provisioner.sandbox.limits import (
    APPLIES_TO_ALL,
    APPLIES_TO_CREATE,
    APPLIES_TO_SETUP_TEST,
    Clock,
)
from batch_provisioner.sandbox.protocol import ABORT_EXTENSION
from batch_provisioner.sandbox.seed import seed_connections
from batch_provisioner.sandbox.state import SandboxState
from batch_provisioner.sandbox.wire import (
    ClientGone,
    Receive,
    Reply,
    Request,
    RouteMatch,
    Scope,
    Send,
    accepts_json,
    error,
    is_json_content_type,
    read_request,
    send_reply,
)

_FAULT_REPLIES: dict[str, tuple[int, str, str]] = {
    "429": (429, "TooManyRequests", "Too many requests; retry after the delay in Retry-After"),
    "429_date": (429, "TooManyRequests", "Too many requests; retry after the delay in Retry-After"),
    "500": (500, "InternalServerError", "An unexpected error occurred; please try again later"),
    "502": (502, "BadGateway", "Bad gateway; please try again later"),
    "503": (
        503,
        "ServiceUnavailable",
        "The service is temporarily unavailable; please try again later",
    ),
}
_SLOW_POLL_SECONDS = 0.05


class SandboxApp:
    """ASGI callable emulating Fivetran's REST API (see the module docstring)."""

    def __init__(self, config: SandboxConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.state = SandboxState(config, clock)
        try:
            seed_connections(self.state, config.connections)
        except ValueError:
            self.state.close()
            raise
        self.v1 = V1Api(self.state)
        self.control = ControlApi(self.state)
        self.stopping = False
        self._in_flight = 0
        self._good_auth: bytes | None = None

    def begin_shutdown(self) -> None:
        """Stop holding ``slow`` answers back (called when the server is stopping)."""
        self.stopping = True

    def close(self) -> None:
        """Release resources (the state file)."""
        self.state.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        try:
            if path.startswith("/v1/"):
                await self._serve_v1(scope, receive, send)
            else:
                request = await read_request(scope, receive)
                await send_reply(send, self._serve_other(request))
        except ClientGone:
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _serve_other(self, request: Request) -> Reply:
        if not request.path.startswith("/sandbox/"):
            return error(404, "NotFound", f"Path '{request.path}' not found")
        match = self.control.router.match(request.path)
        if match is None:
            return error(404, "NotFound", f"Path '{request.path}' not found")
        handler = match.route.handlers.get(request.method)
        if handler is None:
            return self._method_not_allowed(match)
        request.params = match.params
        if request.json_error and request.method == "POST":
            return error(400, "InvalidInput", request.json_error)
        return handler(request)

    @staticmethod
    def _method_not_allowed(match: RouteMatch) -> Reply:
        reply = error(405, "MethodNotAllowed", "Method not allowed for this path")
        reply.headers.append((b"allow", ", ".join(sorted(match.route.handlers)).encode()))
        return reply

    async def _serve_v1(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, method, path = self.state, scope["method"], scope["path"]
        self._in_flight += 1
        entry = state.ledger.open(method, path, self._in_flight)
        status: int | None = None
        try:
            request = await read_request(scope, receive)
            match = self.v1.router.match(path)
            template = match.template if match is not None else path
            is_create = method == "POST" and template == CONNECTIONS
            body = request.json_object
            config = body.get("config")
            facts: dict[str, str | None] = {
                "group_id": _text(body.get("group_id")) or request.query.get("group_id"),
                "schema": _text(config.get("schema"))
                if isinstance(config, dict)
                else request.query.get("schema"),
                "connection_id": match.params.get("id") if match is not None else None,
            }
            identity = path
            if is_create:
                group_id, schema = facts["group_id"], facts["schema"]
                identity = f"{group_id}/{schema}"
                if group_id is not None and schema is not None:
                    state.ledger.create_attempt(entry, group_id, schema)
            elif method == "GET" and template == CONNECTIONS and facts["schema"]:
                entry.group_id, entry.schema = facts["group_id"], facts["schema"]  # a lookup
            decision = state.faults.choose(
                method, path, template, identity, facts, is_create=is_create
            )
            fault = entry.fault = decision.fault
            refused = (None if fault in PRE_EFFECT_FAULTS
                       else self._gatekeep(request, match, template, is_create))
            if refused is None and decision.latency_s > 0:
                await anyio.sleep(decision.latency_s)
            if fault == "reset":
                await self._close_without_answer(scope, receive, send, hard=True)
                return
            if fault in PRE_EFFECT_FAULTS:
                reply = self._fault_reply(fault)
            else:
                reply = refused or self._route(request, match, template)
                self._add_rate_headers(reply)
            if fault == "drop_after_commit":
                await self._close_without_answer(scope, receive, send, hard=False)
                return
            if fault == "slow" and not await self._hold(receive, state.faults.spec.slow_ms / 1000):
                return
            await send_reply(send, reply)
            status = reply.status
        finally:
            self._in_flight -= 1
            state.ledger.close(entry, status)

    def _gatekeep(
        self, request: Request, match: RouteMatch | None, template: str, is_create: bool
    ) -> Reply | None:
        """At arrival: auth (401), Accept (406) and the budgets (429, counted now); None when
        the request is admitted (and counted against every budget that applies)."""
        if not self._authorized(request.headers.get(b"authorization")):
            reply = error(401, "Unauthorized", "Invalid or missing API key and secret")
            reply.headers.append((b"www-authenticate", b'Basic realm="Fivetran API"'))
            return reply
        if not accepts_json(request.headers.get(b"accept")):
            return error(406, "NotAcceptable", "Only application/json answers are available")
        kinds = [APPLIES_TO_ALL]
        if is_create:
            kinds.append(APPLIES_TO_CREATE)
        existing = (
            self.state.store.get(match.params["id"]) if match and template == CONNECTION else None
        )
        if is_setup_test(request.method, template, request.json_object, existing):
            kinds.append(APPLIES_TO_SETUP_TEST)
        rejection = self.state.limiter.admit(kinds)
        if rejection is not None:
            reply = error(429, "TooManyRequests", rejection.budget.message)
            reply.headers.append((b"retry-after", str(rejection.retry_after).encode()))
            return reply
        return None

    def _route(self, request: Request, match: RouteMatch | None, template: str) -> Reply:
        """An admitted request: routing (404/405), Content-Type (415), JSON (400), endpoint."""
        if match is None:
            return error(404, "NotFound", f"Path '{request.path}' not found")
        handler = match.route.handlers.get(request.method)
        if handler is None:
            return self._method_not_allowed(match)
        if request.method in ("POST", "PATCH"):
            content_type = request.headers.get(b"content-type")
            if (content_type is not None or request.body) and not is_json_content_type(
                content_type
            ):
                return error(415, "UnsupportedMediaType", "Content-Type must be application/json")
            if request.json_error:
                return error(400, "InvalidInput", request.json_error)
        request.params = match.params
        return handler(request)

    def _authorized(self, header: bytes | None) -> bool:
        if header is None:
            return False
        if header == self._good_auth:
            return True
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, _, password = (
                base64.b64decode(token.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok = hmac.compare_digest(user.encode(), self.config.api_key.encode()) & hmac.compare_digest(
            password.encode(), self.config.api_secret.encode()
        )
        if ok:
            self._good_auth = header
        return ok

    def _add_rate_headers(self, reply: Reply) -> None:
        budget = self.state.limiter.calls_budget
        if budget is not None:
            remaining = self.state.limiter.remaining(budget)
            reply.headers.append((b"x-rate-limit", str(budget.limit).encode()))
            reply.headers.append((b"x-rate-limit-remaining", str(remaining).encode()))

    def _fault_reply(self, fault: str) -> Reply:
        status, code, message = _FAULT_REPLIES[fault]
        reply = error(status, code, message)
        if fault == "429":
            reply.headers.append((b"retry-after", b"1"))
        elif fault == "429_date":
            when = formatdate(math.ceil(time.time()) + 1, usegmt=True)
            reply.headers.append((b"retry-after", when.encode()))
        self._add_rate_headers(reply)
        return reply

    async def _close_without_answer(
        self, scope: Scope, receive: Receive, send: Send, *, hard: bool
    ) -> None:
        """Close the TCP connection with no HTTP answer (``hard``: with a RST)."""
        extension = scope.get("extensions", {}).get(ABORT_EXTENSION)
        if extension is not None:
            extension["abort"](hard)
            return
        # Another server: promise a body that never comes, so the client sees a cut answer.
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]}
        )

    async def _hold(self, receive: Receive, seconds: float) -> bool:
        """Wait ``seconds`` before answering; False when the client left meanwhile."""
        gone = False
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch)
            deadline = anyio.current_time() + seconds
            # Polled, not an Event: the stop flag is set from other threads and signal handlers.
            while not self.stopping and (left := deadline - anyio.current_time()) > 0:  # noqa: ASYNC110
                await anyio.sleep(min(left, _SLOW_POLL_SECONDS))
            group.cancel_scope.cancel()
        return not gone


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
