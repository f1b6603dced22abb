"""Resuming a run: what an earlier invocation left in doubt or failed is settled, not forgotten.

A killed run leaves its journal as it was at the kill: a ``start`` record (fsynced before the
POST went out) and no outcome. The tests write exactly that through the package's ``Journal``,
make the killed run's POST land in the sandbox (before the resume, or while the resume is
planning), and read the truth from the sandbox's ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import ConnectionRequest, Status
from batch_provisioner.run.journal import Journal, fingerprint
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.sheet.expand import resolved
from batch_provisioner.sheet.load import Prepared
from batch_provisioner.sheet.secrets import SecretContext
from tests.apply_helpers import ENV, creations, load, run_job, settings, write_sheet


def killed_while_sending(run_dir: Path, prepared: Prepared, request: ConnectionRequest) -> None:
    """The journal a run killed with ``request``'s create in flight leaves behind."""
    journal = Journal(run_dir)
    journal.header(run_dir.name, prepared.table.path, fingerprint(prepared.table.path), "apply")
    anyio.run(journal.astart, request.row, request.key, "create")
    journal.close()


def land(box: SandboxHandle, prepared: Prepared, request: ConnectionRequest) -> str:
    """The killed run's POST reaches Fivetran after all: the connection exists now."""
    secrets = SecretContext(env=ENV, base_dir=prepared.table.path.parent)
    answer = httpx.post(f"{box.url}/v1/connections", auth=box.auth,
                        json=resolved(request.payload, secrets))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["id"])


def posts_for(box: SandboxHandle, since: int, schema: str) -> int:
    return sum(1 for r in box.ledger(since)["requests"]
               if r["method"] == "POST" and r["schema"] == schema)


def seq(box: SandboxHandle) -> int:
    return int(box.ledger()["counts"]["requests"])


class LandsDuringTheListing(httpx.AsyncBaseTransport):
    """Passes every request to the sandbox; once the listing that covers the group (its own,
    or the account's) has been answered, the killed run's in-flight create lands (so the
    listing said absent, and it is there now)."""

    def __init__(self, group_id: str, landing: Callable[[], Any]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.listings = (f"/v1/groups/{group_id}/connections", "/v1/connections")
        self.landing: Callable[[], Any] | None = landing

    def _is_listing(self, request: httpx.Request) -> bool:
        return (request.method == "GET" and request.url.path in self.listings
                and "schema" not in request.url.params)  # not a (group, schema) lookup

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.landing is not None and self._is_listing(request):
            await response.aread()
            landing, self.landing = self.landing, None
            landing()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_resume_claims_a_create_that_landed_before_the_kill(tmp_path: Path,
                                                            box: SandboxHandle) -> None:
    prepared = load(write_sheet(tmp_path / "in.csv", 3))
    run_dir = tmp_path / "reports" / "run"
    target = prepared.requests[1]
    killed_while_sending(run_dir, prepared, target)
    landed = land(box, prepared, target)
    before = seq(box)
    result = run_job(prepared, box.url, run_dir)
    outcome = result.outcomes[1]
    assert (outcome.status, outcome.reconciled, outcome.connection_id) == (
        Status.CREATED, True, landed), outcome  # ours: rollback will delete it
    assert [o.status for o in result.outcomes] == [Status.CREATED] * 3
    assert posts_for(box, before, target.schema) == 0  # never resent
    assert set(creations(box.ledger()).values()) == {1}
    assert result.exit_code is ExitCode.OK


def test_resume_looks_up_a_create_still_in_flight_before_resending(
        tmp_path: Path, box: SandboxHandle) -> None:
    prepared = load(write_sheet(tmp_path / "in.csv", 3))
    run_dir = tmp_path / "reports" / "run"
    target = prepared.requests[1]
    killed_while_sending(run_dir, prepared, target)
    landed: list[str] = []
    transport = LandsDuringTheListing(target.group_id or "",
                                      lambda: landed.append(land(box, prepared, target)))
    before = seq(box)
    result = run_job(prepared, box.url, run_dir, transport=transport)
    assert landed, "no listing of the row's group was read"
    outcome = result.outcomes[1]
    assert (outcome.status, outcome.reconciled, outcome.connection_id) == (
        Status.CREATED, True, landed[0]), outcome
    assert posts_for(box, before, target.schema) == 1  # the killed run's, none of the resume's
    assert set(creations(box.ledger()).values()) == {1}


def test_resume_retries_a_row_that_failed_for_a_passing_reason(tmp_path: Path,
                                                               box: SandboxHandle) -> None:
    prepared = load(write_sheet(tmp_path / "in.csv", 3))
    run_dir = tmp_path / "reports" / "run"
    target = prepared.requests[1]
    box.script([{"fault": "503", "method": "POST", "path": "/v1/connections",
                 "match": {"schema": target.schema}, "times": 2}])
    first = run_job(prepared, box.url, run_dir, client=settings(max_attempts=2))
    failed = first.outcomes[1]
    assert (failed.status, failed.retriable) == (Status.FAILED, True), failed
    assert first.exit_code is ExitCode.ROWS_FAILED
    before = seq(box)
    second = run_job(prepared, box.url, run_dir, client=settings(max_attempts=2))
    assert [o.status for o in second.outcomes] == [Status.CREATED] * 3, second.outcomes[1]
    assert second.exit_code is ExitCode.OK
    assert posts_for(box, before, target.schema) == 1  # tried again, once
    assert sum(posts_for(box, before, r.schema) for r in prepared.requests) == 1
    assert set(creations(box.ledger()).values()) == {1}
