"""``sandbox serve``: the URL line, requests, clean stops, and its one (argparse) parser."""

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

from batch_provisioner.cli.sandbox import sandbox_app
from batch_provisioner.sandbox.cli import main, serve_option_names

from .helpers import make_payload

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"^Fivetran sandbox listening on (http://127\.0\.0\.1:\d+) \(profile (\w+)\)$")
SERVE_OPTIONS = (
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
    "--connections",
)


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
    for option in SERVE_OPTIONS:
        assert option in help_text.output



def test_the_parser_has_exactly_the_documented_options() -> None:
    assert sorted(serve_option_names()) == sorted(SERVE_OPTIONS)


def test_main_returns_usage_errors_and_help_without_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "error: port 70000 is out of range" in capsys.readouterr().err
    assert main(["serve", "--seed", "many"]) == 2
    assert "argument --seed: invalid int value: 'many'" in capsys.readouterr().err
    assert main(["serve", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "usage: python -m batch_provisioner.sandbox serve" in err
    assert "unrecognized arguments: --no-such-option" in err
    assert main(["serve", "--prof", "fast"]) == 2  # no abbreviations: the names are the contract
    capsys.readouterr()
    assert main(["bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err
    assert main(["serve", "--help"], prog="prog") == 0
    assert "usage: prog serve" in capsys.readouterr().out


def test_the_typer_group_forwards_everything_to_the_one_parser() -> None:
    runner = CliRunner()
    app = typer.Typer()
    app.add_typer(sandbox_app, name="sandbox")

    listing = runner.invoke(app, ["sandbox", "--help"])
    unknown = runner.invoke(app, ["sandbox", "serve", "--bogus", "1"])
    short_help = runner.invoke(app, ["sandbox", "serve", "-h"])
    joined = runner.invoke(app, ["sandbox", "serve", "--port=70000"])

    assert listing.exit_code == 0 and "serve" in listing.output
    assert unknown.exit_code == 2
    assert "batch-provisioner sandbox serve: error: unrecognized arguments: --bogus 1" in (
        unknown.output
    )
    assert "Traceback" not in unknown.output
    assert short_help.exit_code == 0 and "--create-limit" in short_help.output
    assert joined.exit_code == 2 and "port 70000 is out of range" in joined.output


def test_the_environment_supplies_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from batch_provisioner.sandbox import cli as sandbox_cli

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(
        sandbox_cli, "serve_forever", lambda config, announce: seen.append(
            (config.api_key, config.api_secret)
        )
    )
    monkeypatch.setenv("FIVETRAN_SANDBOX_API_KEY", "env-key")
    monkeypatch.setenv("FIVETRAN_SANDBOX_API_SECRET", "")  # empty counts as unset
    assert main(["serve"]) == 0
    assert main(["serve", "--api-key", "flag-key", "--api-secret", "flag-secret"]) == 0
    assert seen == [("env-key", "sandbox"), ("flag-key", "flag-secret")]


def test_a_usage_error_in_a_process_is_one_message_and_exit_2() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "batch_provisioner.sandbox", "serve", "--profile", "slowest"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "argument --profile: invalid choice: 'slowest'" in done.stderr
    assert "Traceback" not in done.stderr
