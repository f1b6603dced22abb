"""What ``rollback`` may delete: only connections the run created, never ones it merely touched."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from tests.apply_helpers import ENV, TOKEN

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["group_id", "schema", "sync_mode", "access_token", "sync_frequency"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread(profile="fast") as handle:
        yield handle


@pytest.fixture()
def box(sandbox: SandboxHandle) -> SandboxHandle:
    sandbox.reset()
    return sandbox


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"sync_mode": "AllAccounts", "sync_frequency": "1440",
                             "access_token": "env:TT_TOKEN", **row})
    return path


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, **ENV}, cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    return done


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rollback_of_an_update_run_keeps_the_connections_it_only_patched(
        tmp_path: Path, box: SandboxHandle) -> None:
    reports = tmp_path / "reports"
    target = ("--sandbox-url", box.url, "--reports-dir", reports)
    old = [{"group_id": "decent_dropsy", "schema": f"tt_old_{i}"} for i in range(2)]
    first = cli("apply", write_rows(tmp_path / "old.csv", old), *target, "--run-id", "before")
    assert first.returncode == 0, first.stdout + first.stderr
    rows = [{**old[0], "sync_frequency": "360"}, old[1],
            {"group_id": "happy_harbor", "schema": "tt_new"}]
    second = cli("apply", write_rows(tmp_path / "changed.csv", rows), *target, "--run-id", "upd",
                 "--update")
    assert second.returncode == 0, second.stdout + second.stderr
    ids = {r["schema"]: (r["status"], r["connection_id"])
           for r in csv_rows(reports / "upd" / "results.csv")}
    assert {schema: status for schema, (status, _id) in ids.items()} == {
        "tt_old_0": "updated", "tt_old_1": "exists", "tt_new": "created"}

    done = cli("rollback", "upd", "--yes", *target)
    assert done.returncode == 0, done.stdout + done.stderr
    rolled = {r["connection_id"]: r["status"] for r in
              csv_rows(reports / "upd" / "rollback" / "results.csv")}
    assert rolled == {ids["tt_new"][1]: "rolled_back"}  # the one it created, nothing else
    patched = httpx.get(f"{box.url}/v1/connections/{ids['tt_old_0'][1]}", auth=box.auth)
    assert patched.status_code == 200, "rollback deleted a connection the run only updated"
    assert patched.json()["data"]["sync_frequency"] == 360
    gone = httpx.get(f"{box.url}/v1/connections/{ids['tt_new'][1]}", auth=box.auth)
    assert gone.status_code == 404
    assert box.health()["connections"] == 2
