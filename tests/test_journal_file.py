"""The journal as a file on disk: what a kill at any moment leaves for the resume to read."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from batch_provisioner.models import Action, ActionKind, ConnectionRequest, Status
from batch_provisioner.run.journal import Journal
from batch_provisioner.run.runner import Runner
from batch_provisioner.settings import RetryPolicy
from batch_provisioner.sheet.secrets import SecretContext
from tests.api.fakes import FakeClock

GROUP, SCHEMA = "decent_dropsy", "tt_00000"


def records(run_dir: Path) -> list[dict[str, Any]]:
    """The journal's records as another process (a resume after a kill) would read them."""
    lines = (run_dir / "journal.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class PeekingClient:
    """Answers a create with a new connection, noting the journal's records at that moment."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.at_send: list[list[dict[str, Any]]] = []

    async def create_connection(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.at_send.append(records(self.run_dir))
        return {"id": "new_conn", "schema": SCHEMA, "group_id": GROUP,
                "status": {"setup_state": "connected"}}

    async def find_connection(self, group_id: str, schema: str) -> dict[str, Any] | None:
        return None

    async def update_connection(self, connection_id: str, fields: dict[str, Any]
                                ) -> dict[str, Any]:
        raise AssertionError("no update in this test")

    async def connect_card(self, connection_id: str, redirect_uri: str,
                           hide_setup_guide: bool = False) -> dict[str, Any]:
        raise AssertionError("no connect card in this test")


@pytest.mark.anyio
async def test_the_start_record_is_on_disk_before_the_create_is_sent(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    client = PeekingClient(tmp_path)
    runner = Runner(client=client, secrets=SecretContext(env={}, base_dir=tmp_path),
                    policy=RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=4.0,
                                       max_wait=600.0),
                    sleep=FakeClock().sleep, rng=random.Random(7), journal=journal)
    request = ConnectionRequest(row=2, group_id=GROUP, group_name=None, schema=SCHEMA,
                                payload={"service": "tiktok_ads"})
    [outcome] = await runner.run([Action(ActionKind.CREATE, request)], concurrency=1)
    journal.close()
    assert outcome.status is Status.CREATED
    [seen] = client.at_send  # a kill right now must leave the create known to a resume
    starts = [r for r in seen if r.get("type") == "start"]
    assert [(r["row"], r["key"], r["op"]) for r in starts] == [(2, [GROUP, SCHEMA], "create")]
    assert not [r for r in seen if r.get("type") == "outcome"]
    final = [r for r in records(tmp_path) if r.get("type") == "outcome"]
    assert [(r["row"], r["status"], r["connection_id"]) for r in final] == [
        (2, "created", "new_conn")]
