"""What ``rollback`` may delete: only connections the run created, never ones it merely touched."""

from __future__ import annotations

from pathlib import Path

import httpx

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import cli, csv_rows, write_dict_rows

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["group_id", "schema", "sync_mode", "access_token", "sync_frequency"]


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_dict_rows(path, rows, COLUMNS)


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
