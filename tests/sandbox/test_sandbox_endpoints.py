"""Status, code and message of every endpoint and error path, over a real loopback socket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle

from .helpers import create, make_payload


@dataclass(frozen=True)
class Case:
    """One request and the answer it must get. ``{id}`` in the path is an existing connection."""

    name: str
    method: str
    path: str
    status: int
    code: str | None
    message: str | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "good"  # good | none | bad | bearer


INVALID_SYNC_MODE = make_payload("new_schema")
INVALID_SYNC_MODE["config"]["sync_mode"] = "X"
NO_SCHEMA = make_payload("new_schema")
del NO_SCHEMA["config"]["schema"]
CARD = {"connect_card_config": {"redirect_uri": "https://your.site/path", "hide_setup_guide": True}}

CASES = [
    # --- auth
    Case("no_auth", "GET", "/v1/groups", 401, "Unauthorized", auth="none"),
    Case("wrong_secret", "GET", "/v1/groups", 401, "Unauthorized", auth="bad"),
    Case("bearer_scheme", "GET", "/v1/groups", 401, "Unauthorized", auth="bearer"),
    Case("right_auth", "GET", "/v1/groups", 200, "Success", "Groups retrieved successfully"),
    # --- create
    Case(
        "create",
        "POST",
        "/v1/connections",
        201,
        "Success",
        "Connection has been created",
        json=make_payload("new_schema"),
    ),
    Case(
        "create_duplicate_schema",
        "POST",
        "/v1/connections",
        409,
        "Conflict",
        "Connection with schema 'existing' already exists in group 'decent_dropsy'",
        json=make_payload("existing"),
    ),
    Case(
        "create_same_schema_other_group",
        "POST",
        "/v1/connections",
        201,
        "Success",
        json=make_payload("existing", "happy_harbor"),
    ),
    Case(
        "create_unknown_group",
        "POST",
        "/v1/connections",
        404,
        "NotFound_Group",
        "Group with id 'no_such_group' doesn't exist",
        json=make_payload("x", "no_such_group"),
    ),
    Case(
        "create_bad_enum",
        "POST",
        "/v1/connections",
        400,
        "InvalidInput",
        "Field 'config.sync_mode' has invalid value 'X'; expected one of AllAccounts, "
        "SpecificAccounts",
        json=INVALID_SYNC_MODE,
    ),
    Case(
        "create_no_schema",
        "POST",
        "/v1/connections",
        400,
        "InvalidInput",
        "Field 'config.schema' is required",
        json=NO_SCHEMA,
    ),
    Case(
        "create_malformed_json",
        "POST",
        "/v1/connections",
        400,
        "InvalidInput",
        "Malformed JSON body",
        content=b'{"group_id": ',
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "create_not_json",
        "POST",
        "/v1/connections",
        415,
        "UnsupportedMediaType",
        content=b"group_id=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "create_accept_html",
        "POST",
        "/v1/connections",
        406,
        "NotAcceptable",
        json=make_payload("new_schema"),
        headers={"Accept": "text/html"},
    ),
    Case(
        "create_sdk_accept",
        "POST",
        "/v1/connections",
        201,
        "Success",
        json=make_payload("new_schema"),
        headers={"Accept": "application/json;version=2"},
    ),
    # --- read / update / delete
    Case("get", "GET", "/v1/connections/{id}", 200, "Success", "Connection details retrieved"),
    Case(
        "get_unknown",
        "GET",
        "/v1/connections/nope_nope",
        404,
        "NotFound_Connection",
        "Connection with id 'nope_nope' doesn't exist",
    ),
    Case(
        "patch",
        "PATCH",
        "/v1/connections/{id}",
        200,
        "Success",
        "Connection has been updated",
        json={"paused": True, "config": {"attribution_window_size": "ONE"}},
    ),
    Case(
        "patch_same_schema",
        "PATCH",
        "/v1/connections/{id}",
        200,
        "Success",
        json={"config": {"schema": "existing", "timeframe_months": "TWELVE"}},
    ),
    Case(
        "patch_schema",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Field 'config.schema' can not be changed",
        json={"config": {"schema": "other"}},
    ),
    Case(
        "patch_timeframe",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Field 'config.timeframe_months' can not be changed",
        json={"config": {"timeframe_months": "SIX"}},
    ),
    Case(
        "patch_service",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Field 'service' can not be changed",
        json={"service": "google_ads"},
    ),
    Case(
        "patch_group",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Field 'group_id' can not be changed",
        json={"group_id": "happy_harbor"},
    ),
    Case(
        "patch_bad_type",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Field 'paused' has invalid value 'yes'; expected a boolean",
        json={"paused": "yes"},
    ),
    Case(
        "patch_unknown",
        "PATCH",
        "/v1/connections/nope_nope",
        404,
        "NotFound_Connection",
        json={"paused": True},
    ),
    Case(
        "patch_not_json",
        "PATCH",
        "/v1/connections/{id}",
        415,
        "UnsupportedMediaType",
        content=b"paused",
        headers={"Content-Type": "text/plain"},
    ),
    Case(
        "patch_malformed",
        "PATCH",
        "/v1/connections/{id}",
        400,
        "InvalidInput",
        "Malformed JSON body",
        content=b"{",
        headers={"Content-Type": "application/json"},
    ),
    Case("delete", "DELETE", "/v1/connections/{id}", 200, "Success", "has been deleted"),
    Case("delete_unknown", "DELETE", "/v1/connections/nope_nope", 404, "NotFound_Connection"),
    # --- connect card
    Case(
        "connect_card",
        "POST",
        "/v1/connections/{id}/connect-card",
        200,
        "Success",
        "Connect Card has been created",
        json=CARD,
    ),
    Case(
        "connect_card_unknown",
        "POST",
        "/v1/connections/nope_nope/connect-card",
        404,
        "NotFound_Connection",
        json=CARD,
    ),
    Case(
        "connect_card_no_config",
        "POST",
        "/v1/connections/{id}/connect-card",
        400,
        "InvalidInput",
        "Field 'connect_card_config' is required",
        json={},
    ),
    Case(
        "connect_card_no_redirect",
        "POST",
        "/v1/connections/{id}/connect-card",
        400,
        "InvalidInput",
        "Field 'connect_card_config.redirect_uri' is required",
        json={"connect_card_config": {"hide_setup_guide": True}},
    ),
    # --- lists
    Case("list", "GET", "/v1/connections?group_id=decent_dropsy&schema=existing", 200, "Success"),
    Case("list_limit_zero", "GET", "/v1/connections?limit=0", 400, "InvalidInput", "'limit'"),
    Case("list_limit_too_big", "GET", "/v1/connections?limit=1001", 400, "InvalidInput", "'limit'"),
    Case("list_limit_text", "GET", "/v1/connections?limit=ten", 400, "InvalidInput", "'limit'"),
    Case(
        "list_bad_cursor",
        "GET",
        "/v1/connections?cursor=not-a-cursor",
        400,
        "InvalidInput",
        "'cursor'",
    ),
    Case("group_connections", "GET", "/v1/groups/decent_dropsy/connections", 200, "Success"),
    Case("group_connections_unknown", "GET", "/v1/groups/nope/connections", 404, "NotFound_Group"),
    Case("groups", "GET", "/v1/groups?limit=1000", 200, "Success"),
    Case("groups_bad_limit", "GET", "/v1/groups?limit=-1", 400, "InvalidInput"),
    Case("group", "GET", "/v1/groups/happy_harbor", 200, "Success"),
    Case("group_unknown", "GET", "/v1/groups/nope", 404, "NotFound_Group"),
    # --- routing
    Case("unknown_v1_path", "GET", "/v1/nope", 404, "NotFound"),
    Case("unknown_path", "GET", "/nope", 404, "NotFound"),
    Case("wrong_method", "PUT", "/v1/connections", 405, "MethodNotAllowed"),
    Case("wrong_method_groups", "DELETE", "/v1/groups", 405, "MethodNotAllowed"),
    # --- sandbox endpoints (no auth)
    Case("health", "GET", "/sandbox/health", 200, None, auth="none"),
    Case("limits", "GET", "/sandbox/limits", 200, None, auth="none"),
    Case("ledger", "GET", "/sandbox/ledger?since=1", 200, None, auth="none"),
    Case("ledger_bad_since", "GET", "/sandbox/ledger?since=x", 400, "InvalidInput", auth="none"),
    Case("faults_get", "GET", "/sandbox/faults", 200, None, auth="none"),
    Case(
        "faults_bad",
        "POST",
        "/sandbox/faults",
        400,
        "InvalidInput",
        "unknown fault",
        json={"faults": "teapot=0.1"},
        auth="none",
    ),
    Case(
        "faults_bad_script",
        "POST",
        "/sandbox/faults",
        400,
        "InvalidInput",
        json={"script": [{"fault": "teapot"}]},
        auth="none",
    ),
    Case("reset", "POST", "/sandbox/reset", 200, None, json={}, auth="none"),
    Case("reset_wrong_method", "GET", "/sandbox/reset", 405, "MethodNotAllowed", auth="none"),
    Case(
        "authorize_unknown",
        "POST",
        "/sandbox/connections/nope/authorize",
        404,
        "NotFound_Connection",
        json={},
        auth="none",
    ),
    Case(
        "authorize",
        "POST",
        "/sandbox/connections/{id}/authorize",
        200,
        "Success",
        json={},
        auth="none",
    ),
]


def _auth(case: Case, sandbox: SandboxHandle) -> dict[str, Any]:
    if case.auth == "good":
        return {"auth": sandbox.auth}
    if case.auth == "bad":
        return {"auth": (sandbox.api_key, "wrong")}
    if case.auth == "bearer":
        return {"headers": {**case.headers, "Authorization": "Bearer sandbox"}}
    return {}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_status_code_and_message(case: Case, sandbox: SandboxHandle) -> None:
    with httpx.Client(
        base_url=sandbox.url, auth=sandbox.auth, timeout=10, trust_env=False
    ) as authed:
        existing_id = create(authed, "existing").json()["data"]["id"]
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as http:
        kwargs: dict[str, Any] = {"headers": case.headers, **_auth(case, sandbox)}
        if case.json is not None:
            kwargs["json"] = case.json
        if case.content is not None:
            kwargs["content"] = case.content
        answer = http.request(case.method, case.path.replace("{id}", existing_id), **kwargs)

    assert answer.status_code == case.status, answer.text
    document = answer.json()
    if case.code is not None:
        assert document["code"] == case.code
        assert isinstance(document["message"], str) and document["message"]
        if case.code != "Success":
            assert "data" not in document
    if case.message is not None:
        assert case.message in document["message"]
    if case.path.startswith("/v1/"):
        assert answer.headers["X-Rate-Limit"] == "20000"
        assert 0 <= int(answer.headers["X-Rate-Limit-Remaining"]) < 20000
    if case.status == 405:
        assert answer.headers["Allow"]
