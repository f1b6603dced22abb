"""Seed connections (``connections=`` / ``serve --connections FILE``): connections that exist
already look exactly like created ones to GET and the listings, secrets masked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_provisioner.sandbox import run_in_thread
from batch_provisioner.sandbox.seed import read_seed_file

from .helpers import make_payload

SECRET = "tt-seeded-secret-0123456789"


def _listing(url: str, auth: tuple[str, str]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, auth=auth, trust_env=False) as client:
        items: list[dict[str, Any]] = client.get("/v1/connections").json()["data"]["items"]
        return items


def _created(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a sandbox answers for connections made by POST, as its listing shows them."""
    with run_in_thread() as box, httpx.Client(base_url=box.url, auth=box.auth,
                                               trust_env=False) as client:
        for body in bodies:
            assert client.post("/v1/connections", json=body).status_code == 201
        return _listing(box.url, box.auth)


def test_a_saved_listing_seeds_connections_that_answer_exactly_as_created_ones(
        tmp_path: Path) -> None:
    authorised = make_payload("acme_tiktok")
    card = make_payload("card_tiktok", auth=None, run_setup_tests=False,
                        connect_card_config={"redirect_uri": "https://agency.example/done"})
    made = _created([authorised, card])
    saved = tmp_path / "listing.json"
    saved.write_text(json.dumps({"items": made}), encoding="utf-8")
    with run_in_thread(connections=read_seed_file(saved)) as box:
        seeded = _listing(box.url, box.auth)
        with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
            one = client.get(f"/v1/connections/{made[0]['id']}").json()["data"]
    assert seeded == made  # ids, creation times, defaults, setup state and tests alike
    assert one == made[0]
    assert made[0]["status"]["setup_state"] == "connected"
    assert made[1]["status"]["setup_state"] == "incomplete" and "setup_tests" not in made[1]


def test_a_seed_is_stored_as_a_create_stores_it(tmp_path: Path) -> None:
    body = make_payload("bluefin", group_id="happy_harbor", sync_frequency=360,
                        daily_sync_time=None, paused=True)
    body["auth"] = {"access_token": SECRET}
    state = tmp_path / "state.sqlite"
    with run_in_thread(state_path=state, connections=[{**body, "id": "calm_reef"}]) as box:
        (seeded,) = _listing(box.url, box.auth)
    (made,) = _created([body])
    assert {k: v for k, v in seeded.items() if k not in ("id", "created_at")} == {
        k: v for k, v in made.items() if k not in ("id", "created_at")}
    assert seeded["id"] == "calm_reef" and seeded["paused"] is True
    assert "auth" not in seeded
    assert SECRET.encode() not in state.read_bytes()  # the state keeps credentials masked


def test_seeding_a_state_twice_keeps_one_of_each(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    seeds = [{**make_payload(f"s_{i}"), "id": f"seed_{i}"} for i in range(3)]
    with run_in_thread(state_path=state, connections=seeds) as box:
        first = _listing(box.url, box.auth)
    with run_in_thread(state_path=state, connections=seeds) as box:
        again = _listing(box.url, box.auth)
    assert again == first and len(first) == 3


def test_a_csv_in_the_sheets_columns_seeds_typed_connections(tmp_path: Path) -> None:
    path = tmp_path / "existing.csv"
    path.write_text(
        "group_id,schema,connection_id,setup_state,sync_mode,accounts,sync_frequency,"
        "daily_sync_time,paused,redirect_uri,client_name,access_token\n"
        "decent_dropsy,tiktok_acme,jolly_heron,incomplete,SpecificAccounts,"
        "\"7012345678901234567;7012345678901234568\",1440,06:00,yes,"
        "https://agency.example/done,Acme,env:IGNORED\n", encoding="utf-8")
    with run_in_thread(connections=read_seed_file(path)) as box:
        (item,) = _listing(box.url, box.auth)
    assert item["id"] == "jolly_heron" and item["status"]["setup_state"] == "incomplete"
    assert item["config"]["accounts"] == ["7012345678901234567", "7012345678901234568"]
    assert item["sync_frequency"] == 1440 and item["paused"] is True
    assert item["connect_card_config"] == {"redirect_uri": "https://agency.example/done"}


@pytest.mark.parametrize(("seed", "message"), [
    ({"group_id": "no_such_group", "config": {"schema": "x"}},
     "seed connection 1: its group 'no_such_group' is not one of the sandbox's groups"),
    ({"group_id": "decent_dropsy", "config": {"schema": "x", "sync_mode": "Some"}},
     "seed connection 1: Field 'config.sync_mode' has invalid value 'Some'"),
    ({"group_id": "decent_dropsy", "config": {"schema": "x"}, "setup_state": "done"},
     "setup_state 'done' is not one of connected, incomplete, broken"),
])
def test_a_seed_the_sandbox_refuses_is_named(seed: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)), run_in_thread(connections=[seed]):
        pass


def test_two_seeds_of_one_schema_in_one_group_are_refused() -> None:
    seeds = [make_payload("twice"), make_payload("twice")]
    refused = "seed connection 2: schema 'twice' in group 'decent_dropsy' is another connection's"
    with pytest.raises(ValueError, match=refused), run_in_thread(connections=seeds):
        pass


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", "{not json", "not JSON"),
    ("bad.json", '{"other": []}', "expected a list of connection objects"),
    ("bad.csv", "group_id,schema,sync_frequency\ng,s,daily\n",
     "row 2: sync_frequency 'daily' is not a whole number"),
])
def test_serve_refuses_a_bad_seed_file_with_a_usage_error(tmp_path: Path, name: str, text: str,
                                                          message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "batch_provisioner.sandbox", "serve",
                           "--connections", str(path)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
