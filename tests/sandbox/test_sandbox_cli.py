"""``python -m batch_provisioner.sandbox serve``: the URL line, requests, clean stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from batch_provisioner.sandbox.cli import sandbox_app

from .helpers import make_payload

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"^Fivetran sandbox listening on (http://127\.0\.0\.1:\d+) \(profile (\w+)\)$")


@contextmanager
def _serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_provisioner.sandbox", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().rstrip("\n")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_serves_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    with _serve(
        "--profile", "fivetran", "--group", "acme=Acme Inc", "--api-key", "k", "--api-secret", "s"
    ) as (
        process,
        line,
    ):
        match = BANNER.match(line)
        assert match, line
        url, profile = match.groups()
        with httpx.Client(base_url=url, auth=("k", "s"), trust_env=False) as client:
            groups = client.get("/v1/groups").json()["data"]["items"]
            limits = client.get("/sandbox/limits").json()
        process.send_signal(stop_signal)
        code = process.wait(timeout=15)
        assert process.stderr is not None
        stderr = process.stderr.read()

    assert profile == "fivetran"
    assert [(g["id"], g["name"]) for g in groups] == [("acme", "Acme Inc")]
    assert limits["profile"] == "fivetran"
    assert code == 0
    assert "Traceback" not in stderr


def test_dropped_and_abandoned_answers_leave_stderr_clean() -> None:
    with _serve("--faults", "reset=1", "--slow-ms", "2000", "--create-limit", "0") as (
        process,
        line,
    ):
        match = BANNER.match(line)
        assert match, line
        with httpx.Client(
            base_url=match.group(1), auth=("sandbox", "sandbox"), trust_env=False
        ) as client:
            with pytest.raises(httpx.TransportError):
                client.get("/v1/groups")
            client.post("/sandbox/faults", json={"faults": "drop_after_commit=1"})
            with pytest.raises(httpx.TransportError):
                client.post("/v1/connections", json=make_payload("dropped"))
            client.post("/sandbox/faults", json={"faults": "slow=1"})
            with pytest.raises(httpx.ReadTimeout):
                client.get("/v1/groups", timeout=httpx.Timeout(5, read=0.2))
            client.post("/sandbox/faults", json={"faults": ""})
            creations = client.get("/sandbox/ledger").json()["counts"]["creations"]
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=15)
        assert process.stderr is not None
        stderr = process.stderr.read()

    assert creations == 1
    assert code == 0
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr


def test_bad_options_exit_with_usage_error() -> None:
    runner = CliRunner()
    app = typer.Typer()
    app.add_typer(sandbox_app, name="sandbox")

    bad_fault = runner.invoke(app, ["sandbox", "serve", "--faults", "503=2"])
    bad_profile = runner.invoke(app, ["sandbox", "serve", "--profile", "slowest"])
    bad_group = runner.invoke(app, ["sandbox", "serve", "--group", "=name"])
    help_text = runner.invoke(app, ["sandbox", "serve", "--help"])

    assert bad_fault.exit_code == bad_profile.exit_code == bad_group.exit_code == 2
    assert "within [0, 1]" in bad_fault.output
    assert help_text.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--profile",
        "--group",
        "--faults",
        "--seed",
        "--api-key",
        "--api-secret",
        "--state",
        "--create-limit",
        "--slow-ms",
    ):
        assert option in help_text.output
