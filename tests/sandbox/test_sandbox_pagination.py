"""Cursor pagination of connection and group lists: pages, order, filters, limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_thread

from .helpers import create

TOTAL = 250


@pytest.fixture(scope="module")
def populated() -> Iterator[tuple[SandboxHandle, list[str]]]:
    """A sandbox with 250 connections in decent_dropsy and 3 in happy_harbor."""
    groups = {"decent_dropsy": "Acme", "happy_harbor": "Blue", "g3": "C", "g4": "D", "g5": "E"}
    with (
        run_in_thread(create_limit=0, groups=groups) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        ids = [
            create(client, f"schema_{n}", run_setup_tests=False).json()["data"]["id"]
            for n in range(TOTAL)
        ]
        for n in range(3):
            assert (
                create(client, f"other_{n}", "happy_harbor", run_setup_tests=False).status_code
                == 201
            )
        yield sandbox, ids


@pytest.fixture
def client(populated: tuple[SandboxHandle, list[str]]) -> Iterator[httpx.Client]:
    sandbox, _ = populated
    with httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as http:
        yield http


def _pages(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = client.get(path, params=query)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        pages.append(data)
        cursor = data.get("next_cursor")
        if cursor is None:
            return pages


def test_250_connections_in_pages_of_100(
    client: httpx.Client, populated: tuple[SandboxHandle, list[str]]
) -> None:
    pages = _pages(client, "/v1/connections", group_id="decent_dropsy", limit=100)

    assert [len(p["items"]) for p in pages] == [100, 100, 50]
    assert ["next_cursor" in p for p in pages] == [True, True, False]
    assert [c["id"] for p in pages for c in p["items"]] == populated[1]


def test_group_endpoint_pages_only_its_group(
    client: httpx.Client, populated: tuple[SandboxHandle, list[str]]
) -> None:
    pages = _pages(client, "/v1/groups/decent_dropsy/connections", limit=100)
    other = _pages(client, "/v1/groups/happy_harbor/connections", limit=2)

    assert [c["id"] for p in pages for c in p["items"]] == populated[1]
    assert [[c["schema"] for c in p["items"]] for p in other] == [
        ["other_0", "other_1"],
        ["other_2"],
    ]


def test_default_limit_is_100_and_max_1000(client: httpx.Client) -> None:
    default = client.get("/v1/connections").json()["data"]
    largest = client.get("/v1/connections", params={"limit": 1000}).json()["data"]

    assert len(default["items"]) == 100 and "next_cursor" in default
    assert len(largest["items"]) == TOTAL + 3 and "next_cursor" not in largest


def test_schema_filter_is_an_exact_match(client: httpx.Client) -> None:
    items = client.get("/v1/connections", params={"schema": "schema_1"}).json()["data"]["items"]
    in_group = client.get(
        "/v1/groups/happy_harbor/connections", params={"schema": "schema_1"}
    ).json()["data"]["items"]

    assert [c["schema"] for c in items] == ["schema_1"]
    assert in_group == []


def test_cursor_survives_deleting_the_last_item_it_saw(
    client: httpx.Client, populated: tuple[SandboxHandle, list[str]]
) -> None:
    first = client.get("/v1/connections", params={"group_id": "decent_dropsy", "limit": 10})
    page = first.json()["data"]
    client.delete(f"/v1/connections/{page['items'][-1]['id']}")

    second = client.get(
        "/v1/connections",
        params={"group_id": "decent_dropsy", "limit": 10, "cursor": page["next_cursor"]},
    ).json()["data"]

    assert [c["id"] for c in second["items"]] == populated[1][10:20]


def test_groups_are_paginated(client: httpx.Client) -> None:
    pages = _pages(client, "/v1/groups", limit=2)

    assert [[g["id"] for g in p["items"]] for p in pages] == [
        ["decent_dropsy", "happy_harbor"],
        ["g3", "g4"],
        ["g5"],
    ]
