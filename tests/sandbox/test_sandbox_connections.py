"""What the connection endpoints do: setup states, masking, PATCH, delete, connect cards."""

from __future__ import annotations

import random
import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle, SandboxRequestError, run_in_thread
from batch_provisioner.sandbox.ids import new_connection_id

from .helpers import create, make_payload

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_create_answer_carries_the_full_connection(client: httpx.Client) -> None:
    answer = create(client, "acme_tiktok")

    data = answer.json()["data"]
    assert answer.status_code == 201
    assert data["group_id"] == "decent_dropsy"
    assert data["service"] == "tiktok_ads"
    assert data["schema"] == "acme_tiktok"
    assert re.match(r"^[a-z]+_[a-z]+\d*$", data["id"])
    assert ISO_Z.match(data["created_at"])
    assert data["succeeded_at"] is None and data["failed_at"] is None
    assert (data["sync_frequency"], data["daily_sync_time"]) == (1440, "14:00")
    assert data["status"]["setup_state"] == "connected"
    assert data["status"]["tasks"] == [] and data["status"]["warnings"] == []
    assert [t["status"] for t in data["setup_tests"]] == ["PASSED"] * len(data["setup_tests"])
    assert data["config"]["accounts"] == ["7012345678901234567", "7012345678901234568"]
    assert data["config"]["timeframe_months"] == "TWELVE"
    assert "auth" not in data
    assert "my_access_token" not in answer.text and "my_client_secret" not in answer.text


@pytest.mark.parametrize(
    ("auth", "run_setup_tests", "setup_state", "tests_reported"),
    [
        ({"access_token": "t"}, True, "connected", "PASSED"),
        ({"client_access": {"client_id": "i", "client_secret": "s"}}, None, "connected", "PASSED"),
        ({"access_token": "t"}, False, "incomplete", None),
        (None, False, "incomplete", None),
        (None, True, "incomplete", "FAILED"),
    ],
)
def test_setup_state_follows_auth_and_run_setup_tests(
    client: httpx.Client,
    auth: dict[str, object] | None,
    run_setup_tests: bool | None,
    setup_state: str,
    tests_reported: str | None,
) -> None:
    payload = make_payload("s1", auth=auth, run_setup_tests=run_setup_tests)

    data = client.post("/v1/connections", json=payload).json()["data"]

    assert data["status"]["setup_state"] == setup_state
    if tests_reported is None:
        assert "setup_tests" not in data
    else:
        assert {t["status"] for t in data["setup_tests"]} == {tests_reported}


def test_create_with_connect_card_config_returns_a_connect_card(client: httpx.Client) -> None:
    card_config = {"redirect_uri": "https://your.site/path", "hide_setup_guide": True}
    payload = make_payload("s1", auth=None, run_setup_tests=False, connect_card_config=card_config)

    data = client.post("/v1/connections", json=payload).json()["data"]

    uri = urlparse(data["connect_card"]["uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("https", "fivetran.com", "/connect-card/setup")
    assert parse_qs(uri.query)["auth"] == [data["connect_card"]["token"]]
    assert parse_qs(uri.query)["redirect_uri"] == ["https://your.site/path"]
    assert data["status"]["setup_state"] == "incomplete"


def test_connect_card_endpoint_issues_a_fresh_token_each_time(client: httpx.Client) -> None:
    connection_id = create(client, "s1", auth=None).json()["data"]["id"]
    body = {"connect_card_config": {"redirect_uri": "https://x.example/cb"}}

    first = client.post(f"/v1/connections/{connection_id}/connect-card", json=body).json()["data"]
    second = client.post(f"/v1/connections/{connection_id}/connect-card", json=body).json()["data"]

    assert first["connector_id"] == second["connector_id"] == connection_id
    assert first["connect_card"]["token"] != second["connect_card"]["token"]
    assert first["connect_card"]["token"] in first["connect_card"]["uri"]


def test_get_masks_config_secrets_and_never_echoes_auth(client: httpx.Client) -> None:
    payload = {
        "group_id": "decent_dropsy",
        "service": "some_database",
        "config": {"schema": "db_one", "user": "reader", "password": "hunter2"},
        "auth": {"access_token": "secret-token"},
    }
    connection_id = client.post("/v1/connections", json=payload).json()["data"]["id"]

    answer = client.get(f"/v1/connections/{connection_id}")

    assert answer.json()["data"]["config"] == {
        "schema": "db_one",
        "user": "reader",
        "password": "******",
    }
    assert "hunter2" not in answer.text and "secret-token" not in answer.text


def test_patch_merges_config_and_keeps_the_rest(client: httpx.Client) -> None:
    connection_id = create(client, "s1").json()["data"]["id"]

    patch = {"paused": True, "sync_frequency": 360, "config": {"attribution_window_size": "ONE"}}
    updated = client.patch(f"/v1/connections/{connection_id}", json=patch).json()["data"]
    fetched = client.get(f"/v1/connections/{connection_id}").json()["data"]

    assert updated == fetched
    assert fetched["paused"] is True and fetched["status"]["sync_state"] == "paused"
    assert fetched["sync_frequency"] == 360
    assert fetched["config"]["attribution_window_size"] == "ONE"
    assert fetched["config"]["accounts"] == ["7012345678901234567", "7012345678901234568"]


def test_patch_refuses_to_empty_accounts_of_specific_accounts(client: httpx.Client) -> None:
    connection_id = create(client, "s1").json()["data"]["id"]

    answer = client.patch(f"/v1/connections/{connection_id}", json={"config": {"accounts": []}})

    assert answer.status_code == 400
    assert "'config.accounts' must not be empty" in answer.json()["message"]


def test_patch_with_auth_and_setup_tests_connects_an_incomplete_connection(
    client: httpx.Client,
) -> None:
    connection_id = create(client, "s1", auth=None, run_setup_tests=False).json()["data"]["id"]

    patch = {"auth": {"access_token": "late-token"}, "run_setup_tests": True}
    data = client.patch(f"/v1/connections/{connection_id}", json=patch).json()["data"]

    assert data["status"]["setup_state"] == "connected"
    assert {t["status"] for t in data["setup_tests"]} == {"PASSED"}


def test_authorize_marks_a_connection_connected(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    connection_id = create(client, "s1", auth=None, run_setup_tests=False).json()["data"]["id"]

    sandbox.authorize(connection_id)

    fetched = client.get(f"/v1/connections/{connection_id}").json()["data"]
    assert fetched["status"]["setup_state"] == "connected"
    with pytest.raises(SandboxRequestError) as missing:
        sandbox.authorize("no_such_connection")
    assert missing.value.status == 404


def test_delete_frees_the_schema(client: httpx.Client) -> None:
    connection_id = create(client, "s1").json()["data"]["id"]

    deleted = client.delete(f"/v1/connections/{connection_id}")

    assert deleted.json() == {
        "code": "Success",
        "message": f"Connection with id '{connection_id}' has been deleted",
    }
    assert client.get(f"/v1/connections/{connection_id}").status_code == 404
    assert create(client, "s1").status_code == 201


def test_connection_ids_are_unique_over_http() -> None:
    with (
        run_in_thread(create_limit=0) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        ids = {create(client, f"schema_{n}").json()["data"]["id"] for n in range(60)}

    assert len(ids) == 60


def test_connection_id_generator_stays_unique_when_word_pairs_run_out() -> None:
    rng, taken = random.Random(3), set[str]()
    for _ in range(20_000):
        taken.add(new_connection_id(rng, taken))

    assert len(taken) == 20_000
    assert all(re.match(r"^[a-z]+_[a-z]+\d*$", i) for i in taken)


def test_groups_default_set(client: httpx.Client) -> None:
    items = client.get("/v1/groups").json()["data"]["items"]

    assert {g["id"]: g["name"] for g in items} == {
        "decent_dropsy": "Acme Retail",
        "happy_harbor": "Blue Fin Media",
        "quiet_quasar": "Crimson Coffee",
    }
    assert all(ISO_Z.match(g["created_at"]) for g in items)
