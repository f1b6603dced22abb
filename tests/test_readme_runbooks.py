"""The README's "Before a big run" and "Running from cron" run exactly as written.

The "real" Fivetran API is a sandbox on loopback: ``FIVETRAN_API_URL`` points at it and the
sandbox's own credentials are in ``FIVETRAN_API_KEY``/``FIVETRAN_API_SECRET``, so the commands
run word for word, with ``batch-provisioner`` on ``PATH``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import ENV
from tests.remote_helpers import aws_env, s3_bucket, s3_server

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def block(title: str) -> str:
    section = README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, f"README has no sh block under {title!r}"
    return match.group(1)


def write_clients(folder: Path, n: int) -> Path:
    """An agency's sheet: n clients over the sandbox's demo groups, tokens from the env."""
    groups = ["decent_dropsy", "happy_harbor", "quiet_quasar"]
    frame = pl.DataFrame({
        "group_id": [groups[i % 3] for i in range(n)],
        "schema": [f"tiktok_client_{i:03d}" for i in range(n)],
        "sync_mode": ["AllAccounts"] * n, "sync_frequency": ["1440"] * n,
        "access_token": ["env:TT_TOKEN"] * n, "client_name": [f"Client {i}" for i in range(n)],
    })
    path = folder / "clients.xlsx"
    frame.write_excel(path)
    return path


def environment(box: SandboxHandle) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **ENV, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "FIVETRAN_API_URL": box.url, "FIVETRAN_API_KEY": box.api_key,
            "FIVETRAN_API_SECRET": box.config.api_secret}


def test_before_a_big_run_works_as_written(tmp_path: Path, box: SandboxHandle) -> None:
    write_clients(tmp_path, 12)
    env = environment(box)
    codes: list[tuple[str, int]] = []
    for line in block("Before a big run").splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert "Traceback" not in done.stderr, done.stderr
        codes.append((command, done.returncode))
    expected = [0, 0, 5, 0, 5, 4, 0, 0]  # plan: 5 changes pending; the canary: 4, rows held
    assert [code for _, code in codes] == expected, codes
    creates = box.ledger()["creates"]  # the rehearsal sent nothing to the "real" API
    assert len(creates) == 12 and all(c["creations"] == 1 for c in creates)
    groups = (tmp_path / "groups.csv").read_text().splitlines()
    assert groups[0] == "id,name" and len(groups) == 4


def test_running_from_cron_works_as_written(tmp_path: Path, box: SandboxHandle) -> None:
    write_clients(tmp_path, 6)
    script = tmp_path / "nightly-onboarding.sh"
    script.write_text(block("Running from cron"), encoding="utf-8")
    env = environment(box)
    first = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL, cwd="/")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.strip() == "clients-2026-12: every row done"
    log = tmp_path / "cron-clients-2026-12.log"
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()
              if line.startswith("{")]
    assert "run.unattended" in events and "row.created" in events
    again = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL, cwd="/")
    assert again.returncode == 0 and len(box.ledger()["creates"]) == 6  # carried on: nothing new


def test_the_cron_job_reading_from_s3_works_as_written(tmp_path: Path,
                                                        box: SandboxHandle) -> None:
    """Quiet when every row is done; exit 2 and a line to act on when the sheet is gone."""
    script = tmp_path / "nightly-from-s3.sh"
    script.write_text(block("Reading inputs from a URL"), encoding="utf-8")
    sheet = write_clients(tmp_path, 4).read_bytes()
    with s3_server() as endpoint:
        bucket = s3_bucket(endpoint, "agency-onboarding")
        bucket.put_object(Bucket="agency-onboarding", Key="clients.xlsx", Body=sheet)
        env = {key: value for key, value in environment(box).items() if key != "AWS_PROFILE"}
        env |= aws_env(endpoint, tmp_path)

        def night() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL, cwd="/")

        first = night()
        assert (first.returncode, first.stdout) == (0, ""), first.stdout + first.stderr
        bucket.delete_object(Bucket="agency-onboarding", Key="clients.xlsx")
        gone = night()
    assert gone.returncode == 2
    assert "nothing sent: s3://agency-onboarding/clients.xlsx not read" in gone.stdout
    (results,) = (tmp_path / "reports").glob("clients-*/results.csv")
    assert set(pl.read_csv(results)["status"]) == {"created"}
    assert len(box.ledger()["creates"]) == 4
    (log,) = tmp_path.glob("cron-clients-*.log")
    assert "error: s3://agency-onboarding/clients.xlsx: not found" in log.read_text()
