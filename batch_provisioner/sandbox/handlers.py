"""The ``/v1`` endpoints: connections, connect cards and groups.

Handlers are synchronous: they run to completion without awaiting, so a create's
"does the schema exist? then store it" is atomic. Auth, rate limits, faults and the
ledger are the app's business (:mod:`batch_provisioner.sandbox.app`), not theirs.
"""

from __future__ import annotations

from typing import Any

from batch_provisioner.sandbox.ids import new_connect_card_token, new_connection_id
from batch_provisioner.sandbox.model import (
    SETTING_FIELDS,
    TIKTOK_CONFIG_DEFAULTS,
    Connection,
    connect_card_uri,
    passed_setup_tests,
    stored_auth,
    utc_timestamp,
)
from batch_provisioner.sandbox.state import SandboxState
from batch_provisioner.sandbox.store import BadCursor, decode_cursor, encode_cursor
from batch_provisioner.sandbox.validation import (
    TIKTOK_ADS,
    TOP_LEVEL_FIELDS,
    InvalidInput,
    has_auth,
    validate_create,
    validate_update,
)
from batch_provisioner.sandbox.wire import Reply, Request, Route, Router, error, success

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

CONNECTIONS = "/v1/connections"
CONNECTION = "/v1/connections/{id}"
CONNECT_CARD = "/v1/connections/{id}/connect-card"


def _no_connection(connection_id: str) -> Reply:
    return error(404, "NotFound_Connection", f"Connection with id '{connection_id}' doesn't exist")


def _no_group(group_id: str) -> Reply:
    return error(404, "NotFound_Group", f"Group with id '{group_id}' doesn't exist")


def _invalid(message: str) -> Reply:
    return error(400, "InvalidInput", message)


def _failed_setup_tests() -> list[dict[str, Any]]:
    return [
        {
            "title": "Validating access token",
            "status": "FAILED",
            "message": "No credentials were provided; complete the connect card or send auth",
            "details": {},
        }
    ]


def _page_params(request: Request) -> tuple[int, int]:
    """(after, limit) from ``cursor`` and ``limit``; raises InvalidInput when bad."""
    raw_limit = request.query.get("limit")
    limit = DEFAULT_PAGE_SIZE
    if raw_limit is not None:
        stripped = raw_limit.strip()
        valid = stripped.lstrip("-").isdigit() and 1 <= int(stripped) <= MAX_PAGE_SIZE
        if not valid:
            raise InvalidInput(
                f"Field 'limit' has invalid value '{raw_limit}'; "
                f"expected an integer from 1 to {MAX_PAGE_SIZE}"
            )
        limit = int(stripped)
    cursor = request.query.get("cursor")
    if not cursor:
        return 0, limit
    try:
        return decode_cursor(cursor), limit
    except BadCursor:
        raise InvalidInput(f"Field 'cursor' has invalid value '{cursor}'") from None


def _page(items: list[dict[str, Any]], next_position: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"items": items}
    if next_position is not None:
        data["next_cursor"] = encode_cursor(next_position)
    return data


def is_setup_test(
    method: str, template: str, body: dict[str, Any], existing: Connection | None
) -> bool:
    """Whether a create/PATCH runs setup tests with some credential (a setup-test event).

    A create runs them unless ``run_setup_tests`` is false (Fivetran's default is true);
    a PATCH only when it says ``run_setup_tests: true``.
    """
    if method == "POST" and template == CONNECTIONS:
        return body.get("run_setup_tests", True) is not False and has_auth(body.get("auth"))
    if method == "PATCH" and template == CONNECTION and body.get("run_setup_tests") is True:
        stored = existing is not None and (
            has_auth(existing.auth) or existing.setup_state == "connected"
        )
        return stored or has_auth(body.get("auth"))
    return False


def make_connection(
    state: SandboxState,
    body: dict[str, Any],
    *,
    connection_id: str | None = None,
    setup_state: str | None = None,
    created_at: str | None = None,
    connected_by: str | None = None,
) -> Connection:
    """The connection a valid create ``body`` makes (not stored yet): defaults filled, auth
    masked, setup tests run unless ``run_setup_tests`` is false.

    A seed (:mod:`batch_provisioner.sandbox.seed`) gives its own ``setup_state`` (a connected
    one has passed setup tests), id, creation time and creator; a create gives none.
    """
    service = body["service"]
    config = dict(body["config"])
    if service == TIKTOK_ADS:
        config = {**TIKTOK_CONFIG_DEFAULTS, **config}
    auth = dict(body.get("auth") or {})
    credentialed = has_auth(auth)
    if setup_state is None:
        run_tests = body.get("run_setup_tests", True) is not False
        setup_state = "connected" if credentialed and run_tests else "incomplete"
        if not run_tests:
            tests = None
        else:
            tests = passed_setup_tests(service) if credentialed else _failed_setup_tests()
    else:
        tests = passed_setup_tests(service) if setup_state == "connected" else None
    return Connection(
        id=connection_id or new_connection_id(state.rng, state.store),
        seq=state.store.next_seq(),
        group_id=body["group_id"],
        service=service,
        schema=body["config"]["schema"],
        created_at=created_at or utc_timestamp(),
        connected_by=connected_by or state.connected_by,
        settings={k: body[k] for k in SETTING_FIELDS if body.get(k) is not None},
        config=config,
        auth=stored_auth(auth),
        setup_state=setup_state,
        setup_tests=tests,
    )


class V1Api:
    """Handlers of the Fivetran endpoints the job uses."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.router = Router(
            [
                Route(CONNECTIONS, {"GET": self.list_connections, "POST": self.create_connection}),
                Route(
                    CONNECTION,
                    {
                        "GET": self.get_connection,
                        "PATCH": self.update_connection,
                        "DELETE": self.delete_connection,
                    },
                ),
                Route(CONNECT_CARD, {"POST": self.create_connect_card}),
                Route("/v1/groups", {"GET": self.list_groups}),
                Route("/v1/groups/{id}", {"GET": self.get_group}),
                Route("/v1/groups/{id}/connections", {"GET": self.list_group_connections}),
            ]
        )

    def _connect_card(
        self, connection: Connection, card_config: dict[str, Any] | None
    ) -> dict[str, str]:
        token = new_connect_card_token(connection.id, connection.group_id)
        return {"token": token, "uri": connect_card_uri(token, card_config)}

    def create_connection(self, request: Request) -> Reply:
        """``POST /v1/connections``: 201, 400 InvalidInput, 404 NotFound_Group, 409 Conflict."""
        try:
            body = validate_create(request.json)
        except InvalidInput as exc:
            return _invalid(str(exc))
        store, group_id = self.state.store, body["group_id"]
        if group_id not in store.groups:
            return _no_group(group_id)
        schema = body["config"]["schema"]
        if store.find(group_id, schema) is not None:
            return error(
                409,
                "Conflict",
                f"Connection with schema '{schema}' already exists in group '{group_id}'",
            )
        connection = make_connection(self.state, body)
        store.add(connection)
        self.state.ledger.creation(group_id, schema)
        data = dict(connection.public())
        card_config = body.get("connect_card_config")
        if card_config is not None:
            data["connect_card"] = self._connect_card(connection, card_config)
        return success(data, "Connection has been created", status=201)

    def get_connection(self, request: Request) -> Reply:
        """``GET /v1/connections/{id}``."""
        connection = self.state.store.get(request.params["id"])
        if connection is None:
            return _no_connection(request.params["id"])
        return success(connection.public(), "Connection details retrieved successfully")

    def update_connection(self, request: Request) -> Reply:
        """``PATCH /v1/connections/{id}``: 200, 400 (invalid or immutable field), 404."""
        connection = self.state.store.get(request.params["id"])
        if connection is None:
            return _no_connection(request.params["id"])
        current = {
            "service": connection.service,
            "group_id": connection.group_id,
            "config": connection.config,
        }
        try:
            body = validate_update(request.json, current)
        except InvalidInput as exc:
            return _invalid(str(exc))
        for key in SETTING_FIELDS:
            if body.get(key) is not None:
                connection.settings[key] = body[key]
        if body.get("config") is not None:
            connection.config.update({k: v for k, v in body["config"].items() if v is not None})
        if body.get("auth") is not None:
            connection.auth.update(stored_auth(body["auth"]))
        if body.get("run_setup_tests") is True:
            credentialed = has_auth(connection.auth) or connection.setup_state == "connected"
            connection.setup_state = "connected" if credentialed else "incomplete"
            connection.setup_tests = (
                passed_setup_tests(connection.service) if credentialed else _failed_setup_tests()
            )
        self.state.store.save(connection)
        return success(connection.public(), "Connection has been updated")

    def delete_connection(self, request: Request) -> Reply:
        """``DELETE /v1/connections/{id}``."""
        connection_id = request.params["id"]
        if self.state.store.delete(connection_id) is None:
            return _no_connection(connection_id)
        return Reply(
            200,
            {
                "code": "Success",
                "message": f"Connection with id '{connection_id}' has been deleted",
            },
        )

    def create_connect_card(self, request: Request) -> Reply:
        """``POST /v1/connections/{id}/connect-card``: a fresh token each time."""
        connection = self.state.store.get(request.params["id"])
        if connection is None:
            return _no_connection(request.params["id"])
        body = request.json_object
        card_config = body.get("connect_card_config")
        try:
            if not isinstance(request.json, dict):
                raise InvalidInput("Request body must be a JSON object")
            if card_config is None:
                raise InvalidInput("Field 'connect_card_config' is required")
            TOP_LEVEL_FIELDS["connect_card_config"]("connect_card_config", card_config)
        except InvalidInput as exc:
            return _invalid(str(exc))
        data = {
            "connector_id": connection.id,
            "connect_card": self._connect_card(connection, card_config),
            "connect_card_config": card_config,
        }
        return success(data, "Connection Connect Card has been created")

    def _list(self, request: Request, group_id: str | None) -> Reply:
        try:
            after, limit = _page_params(request)
        except InvalidInput as exc:
            return _invalid(str(exc))
        schema = request.query.get("schema") or None
        items, next_position = self.state.store.page_connections(group_id, schema, after, limit)
        return success(
            _page([c.public() for c in items], next_position),
            "Connections list retrieved successfully",
        )

    def list_connections(self, request: Request) -> Reply:
        """``GET /v1/connections?group_id=&schema=&cursor=&limit=``."""
        return self._list(request, request.query.get("group_id") or None)

    def list_group_connections(self, request: Request) -> Reply:
        """``GET /v1/groups/{id}/connections``: 404 NotFound_Group for an unknown group."""
        group_id = request.params["id"]
        if group_id not in self.state.store.groups:
            return _no_group(group_id)
        return self._list(request, group_id)

    def list_groups(self, request: Request) -> Reply:
        """``GET /v1/groups``."""
        try:
            after, limit = _page_params(request)
        except InvalidInput as exc:
            return _invalid(str(exc))
        groups, next_position = self.state.store.page_groups(after, limit)
        return success(
            _page([g.public() for g in groups], next_position), "Groups retrieved successfully"
        )

    def get_group(self, request: Request) -> Reply:
        """``GET /v1/groups/{id}``."""
        group = self.state.store.groups.get(request.params["id"])
        if group is None:
            return _no_group(request.params["id"])
        return success(group.public(), "Group details retrieved successfully")
