"""Requests, replies and routes: the small HTTP vocabulary shared by the handlers.

Replies use Fivetran's envelope: ``{"code": "Success", "message": ..., "data": ...}``
on success and ``{"code": ..., "message": ...}`` (no ``data``) on errors.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_CONTENT_TYPE = b"application/json;charset=utf-8"


class ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclass(slots=True)
class Request:
    """One HTTP request, read in full."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[bytes, bytes]
    body: bytes
    json: Any = None
    json_error: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json_object(self) -> dict[str, Any]:
        """The body when it is a JSON object, else an empty dict."""
        return self.json if isinstance(self.json, dict) else {}


@dataclass(slots=True)
class Reply:
    """One HTTP answer: status, JSON document (None: empty body) and extra headers."""

    status: int
    body: dict[str, Any] | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def success(data: Any, message: str, status: int = 200) -> Reply:
    """A ``Success`` envelope carrying ``data``."""
    return Reply(status, {"code": "Success", "message": message, "data": data})


def error(status: int, code: str, message: str) -> Reply:
    """An error envelope (no ``data``)."""
    return Reply(status, {"code": code, "message": message})


async def read_request(scope: Scope, receive: Receive) -> Request:
    """Read the whole body and parse the query string and (lenient) JSON."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    query_string: bytes = scope.get("query_string", b"")
    query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    headers = {name: value for name, value in scope.get("headers", ())}
    request = Request(scope["method"], scope["path"], query, headers, body)
    if body.strip():
        try:
            request.json = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            request.json_error = f"Malformed JSON body: {exc}"
    else:
        request.json = {}
    return request


async def send_reply(send: Send, reply: Reply) -> None:
    """Write a reply as JSON with a Content-Length."""
    body = b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", _JSON_CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def is_json_content_type(value: bytes | None) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``*/*+json``)."""
    if value is None:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def accepts_json(value: bytes | None) -> bool:
    """Whether an Accept header allows a JSON answer (a missing header allows anything)."""
    if value is None or not value.strip():
        return True
    for item in value.split(b","):
        media = item.split(b";", 1)[0].strip().lower()
        if media in (b"*/*", b"application/*", b"application/json") or media.endswith(b"+json"):
            return True
    return False


Handler = Callable[[Request], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    """A path template (``{name}`` segments) and its handler per method."""

    template: str
    handlers: Mapping[str, Handler]

    @property
    def segments(self) -> tuple[str, ...]:
        """The template split on ``/``."""
        return tuple(self.template.strip("/").split("/"))


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A route matched against a concrete path."""

    route: Route
    params: dict[str, str]

    @property
    def template(self) -> str:
        """The matched template, e.g. ``/v1/connections/{id}``."""
        return self.route.template


class Router:
    """Matches paths against templates by segment count and literal segments."""

    def __init__(self, routes: list[Route]) -> None:
        self._by_length: dict[int, list[tuple[tuple[str, ...], Route]]] = {}
        for route in routes:
            segments = route.segments
            self._by_length.setdefault(len(segments), []).append((segments, route))

    def match(self, path: str) -> RouteMatch | None:
        """The route for ``path`` (a trailing slash is tolerated), or None."""
        parts = path.strip("/").split("/")
        for segments, route in self._by_length.get(len(parts), ()):
            params: dict[str, str] = {}
            for pattern, part in zip(segments, parts, strict=True):
                if pattern.startswith("{"):
                    if not part:
                        break
                    params[pattern[1:-1]] = part
                elif pattern != part:
                    break
            else:
                return RouteMatch(route, params)
        return None
