"""The sandbox answers like Fivetran: same fields and types as the documented answers, and
valid against the OpenAPI spec's response schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openapi as openapi_schema
import pytest

from batch_provisioner.sandbox import SandboxHandle

from .helpers import make_payload

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fivetran_responses"
CARD_CONFIG = {"redirect_uri": "https://your.site/path", "hide_setup_guide": True}


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _seed_payload(schema: str) -> dict[str, Any]:
    """Every field of the seed, with concrete values."""
    return make_payload(
        schema,
        connect_card_config=CARD_CONFIG,
        proxy_agent_id="proxy_agent_id",
        private_link_id="private_link_id",
        hybrid_deployment_agent_id="hybrid_deployment_agent_id",
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", list: "array", dict: "object"}[type(value)]


def shape_differences(documented: Any, answered: Any, where: str = "$") -> list[str]:
    """Where ``answered`` has other fields or JSON types than ``documented``.

    Lists compare every answered item with the first documented one. A documented null
    accepts null or a string (timestamps that are null until something happens).
    """
    expected, actual = _json_type(documented), _json_type(answered)
    if expected == "null":
        return [] if actual in ("null", "string") else [f"{where}: {actual} instead of null"]
    if expected != actual:
        return [f"{where}: {actual} instead of {expected}"]
    problems: list[str] = []
    if isinstance(documented, dict):
        missing = documented.keys() - answered.keys()
        extra = answered.keys() - documented.keys()
        problems += [f"{where}.{key}: missing" for key in sorted(missing)]
        problems += [f"{where}.{key}: not documented" for key in sorted(extra)]
        for key in documented.keys() & answered.keys():
            problems += shape_differences(documented[key], answered[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented:
        for index, item in enumerate(answered):
            problems += shape_differences(documented[0], item, f"{where}[{index}]")
    return problems


@pytest.fixture
def answers(sandbox: SandboxHandle, client: httpx.Client) -> dict[str, httpx.Response]:
    """One answer of each kind, from a connection created with the full seed payload."""
    created = client.post("/v1/connections", json=_seed_payload("tiktok_ads_acme"))
    connection_id = created.json()["data"]["id"]
    client.post("/v1/connections", json=_seed_payload("tiktok_ads_other"))
    return {
        "create": created,
        "get": client.get(f"/v1/connections/{connection_id}"),
        "list": client.get("/v1/connections", params={"limit": 1}),
        "group_list": client.get("/v1/groups/decent_dropsy/connections", params={"limit": 1}),
        "groups": client.get("/v1/groups", params={"limit": 2}),
        "group": client.get("/v1/groups/decent_dropsy"),
        "patch": client.patch(f"/v1/connections/{connection_id}", json={"paused": True}),
        "connect_card": client.post(
            f"/v1/connections/{connection_id}/connect-card",
            json={"connect_card_config": CARD_CONFIG},
        ),
        "error_404_group": client.get("/v1/groups/nope/connections"),
        "error_400": client.post(
            "/v1/connections", json={"service": "tiktok_ads", "group_id": "x"}
        ),
        "error_409": client.post("/v1/connections", json=_seed_payload("tiktok_ads_acme")),
        "delete": client.delete(f"/v1/connections/{connection_id}"),
    }


FIXTURE_OF = {
    "create": "create_connection_tiktok_ads_201.json",
    "get": "get_connection_tiktok_ads_200.json",
    "list": "list_connections_200.json",
    "group_list": "list_connections_200.json",
    "groups": "list_groups_200.json",
    "patch": "get_connection_tiktok_ads_200.json",
    "connect_card": "connect_card_200.json",
    "delete": "delete_connection_200.json",
    "error_404_group": "error_404_group.json",
    "error_400": "error_400_invalid_input.json",
    "error_409": "error_409_conflict.json",
}


@pytest.mark.parametrize("kind", list(FIXTURE_OF))
def test_answer_has_the_documented_fields_and_types(
    kind: str, answers: dict[str, httpx.Response]
) -> None:
    documented = _fixture(FIXTURE_OF[kind])

    assert shape_differences(documented, answers[kind].json()) == []


def test_error_fixtures_and_429_share_one_envelope() -> None:
    for name in sorted(p.name for p in FIXTURES.glob("error_*.json")):
        assert set(_fixture(name)) == {"code", "message"}, name


def test_shape_check_notices_differences() -> None:
    documented = {"a": 1, "b": [{"c": "x"}], "d": None}

    assert shape_differences(documented, {"a": 1, "b": [{"c": "y"}], "d": "t"}) == []
    assert sorted(shape_differences(documented, {"a": "1", "b": [{"c": 2}], "e": 0})) == [
        "$.a: string instead of integer",
        "$.b[0].c: integer instead of string",
        "$.d: missing",
        "$.e: not documented",
    ]


# --- against the OpenAPI spec ----------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi_schema._spec()


ENVELOPES = {
    "create": ("/v1/connections", "post", "201"),
    "get": ("/v1/connections/{connectionId}", "get", "200"),
    "list": ("/v1/connections", "get", "200"),
    "group_list": ("/v1/groups/{groupId}/connections", "get", "200"),
    "groups": ("/v1/groups", "get", "200"),
    "group": ("/v1/groups/{groupId}", "get", "200"),
    "patch": ("/v1/connections/{connectionId}", "patch", "200"),
    "connect_card": ("/v1/connections/{connectionId}/connect-card", "post", "200"),
    "delete": ("/v1/connections/{connectionId}", "delete", "200"),
}


@pytest.mark.parametrize("kind", list(ENVELOPES))
def test_answer_is_valid_against_the_spec(
    kind: str, spec: dict[str, Any], answers: dict[str, httpx.Response]
) -> None:
    validator = openapi_schema.response_validator(*ENVELOPES[kind])

    assert openapi_schema.validator_errors(validator, answers[kind].json()) == []


@pytest.mark.parametrize("kind", ["create", "get", "patch"])
def test_connection_data_is_a_valid_tiktok_ads_response(
    kind: str, spec: dict[str, Any], answers: dict[str, httpx.Response]
) -> None:
    validator = openapi_schema.component_validator("tiktok_ads_ConnectorResponseV1")

    assert openapi_schema.validator_errors(validator, answers[kind].json()["data"]) == []


@pytest.mark.parametrize(
    ("fixture", "envelope"),
    [(FIXTURE_OF[k], ENVELOPES[k]) for k in ENVELOPES if k in FIXTURE_OF and k != "group_list"],
)
def test_fixtures_are_valid_against_the_spec(
    fixture: str, envelope: tuple[str, str, str], spec: dict[str, Any]
) -> None:
    validator = openapi_schema.response_validator(*envelope)

    assert openapi_schema.validator_errors(validator, _fixture(fixture)) == []


def test_test_payload_is_a_valid_tiktok_ads_request(spec: dict[str, Any]) -> None:
    validator = openapi_schema.component_validator("tiktok_ads_NewConnectorRequestV1")

    assert openapi_schema.validator_errors(validator, _seed_payload("tiktok_ads_acme")) == []


def test_spec_validation_catches_a_wrong_answer(spec: dict[str, Any]) -> None:
    validator = openapi_schema.component_validator("tiktok_ads_ConnectorResponseV1")
    wrong = _fixture("get_connection_tiktok_ads_200.json")["data"]
    wrong["config"]["sync_mode"] = "Everything"
    wrong["sync_frequency"] = 45
    del wrong["status"]

    assert len(openapi_schema.validator_errors(validator, wrong)) == 3
