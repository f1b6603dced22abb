"""``--state FILE``: groups and connections survive a restart of the sandbox."""

from __future__ import annotations

from pathlib import Path

import httpx

from batch_provisioner.sandbox import run_in_process, run_in_thread

from .helpers import create


def test_connections_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.sqlite"
    with (
        run_in_thread(state_path=state) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        first = create(client, "kept").json()["data"]
        dropped = create(client, "dropped").json()["data"]["id"]
        client.patch(f"/v1/connections/{first['id']}", json={"paused": True})
        client.delete(f"/v1/connections/{dropped}")

    with (
        run_in_thread(state_path=state) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        fetched = client.get(f"/v1/connections/{first['id']}")
        conflict = create(client, "kept")
        gone = client.get(f"/v1/connections/{dropped}")
        second = create(client, "new_one").json()["data"]
        listed = client.get("/v1/connections").json()["data"]["items"]

    assert fetched.status_code == 200
    assert fetched.json()["data"]["schema"] == "kept"
    assert fetched.json()["data"]["paused"] is True
    assert fetched.json()["data"]["created_at"] == first["created_at"]
    assert conflict.status_code == 409
    assert gone.status_code == 404
    assert [c["id"] for c in listed] == [first["id"], second["id"]]


def test_state_without_the_flag_is_in_memory(tmp_path: Path) -> None:
    with (
        run_in_thread() as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        create(client, "ephemeral")
    with (
        run_in_thread() as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        assert create(client, "ephemeral").status_code == 201
    assert list(tmp_path.iterdir()) == []


def test_process_restart_keeps_connections_and_groups(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    with (
        run_in_process(state_path=state, groups={"team_x": "Team X"}) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        connection_id = create(client, "persisted", "team_x").json()["data"]["id"]
        assert sandbox.process is not None

    with (
        run_in_process(state_path=state) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        fetched = client.get(f"/v1/connections/{connection_id}")
        groups = {g["id"] for g in client.get("/v1/groups").json()["data"]["items"]}
        conflict = create(client, "persisted", "team_x")

    assert sandbox.process is not None and sandbox.process.returncode == 0
    assert fetched.json()["data"]["group_id"] == "team_x"
    assert groups == {"team_x", "decent_dropsy", "happy_harbor", "quiet_quasar"}
    assert conflict.status_code == 409
