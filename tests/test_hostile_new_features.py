"""A hostile user against ``--json``, the exit codes and the masking of input URLs: what a script
reads on stdout, and what a person reads, when a command is stopped or given a bad command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog

import batch_provisioner
from batch_provisioner import cli, logs
from batch_provisioner.errors import ExitCode
from batch_provisioner.safety import REDACTOR, redacted_url
from tests.apply_helpers import write_sheet


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """The CLI in this process: (its exit code, stdout, stderr)."""
    saved = structlog.get_config()
    try:
        with pytest.raises(SystemExit) as done:
            cli.main([str(a) for a in args])
    finally:
        logs.close_run_log()
        structlog.configure(**saved)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    code = done.value.code
    return (int(code) if isinstance(code, int) else 0), captured.out, captured.err


def _one_document(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    found: dict[str, Any] = json.loads(lines[0])
    return found


def test_ctrl_c_inside_a_command_is_exit_4_said_and_its_json_agrees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # a Ctrl-C while the sheet is read (or downloaded)

    monkeypatch.setattr(batch_provisioner, "validate", interrupted)
    sheet = write_sheet(tmp_path / "clients.csv", 2)
    code, stdout, stderr = _run(capsys, "validate", sheet, "--json")
    assert code == ExitCode.INTERRUPTED  # typer's own 130 is not the documented 4
    assert "interrupted" in stderr
    found = _one_document(stdout)
    assert (found["exit_code"], found["error"]["code"]) == (ExitCode.INTERRUPTED, "interrupted")
    code, stdout, stderr = _run(capsys, "validate", sheet, "--quiet")
    assert (code, stdout, stderr.strip()) == (ExitCode.INTERRUPTED, "", "interrupted")


@pytest.mark.parametrize(("args", "message"), [
    (("validate", "--json"), "Missing argument 'SHEET'."),
    (("validate", "clients.csv", "--json", "--bogus"), "No such option: --bogus"),
    (("apply", "clients.csv", "--sandbox", "--json", "--concurrency", "many"),
     "Invalid value for '--concurrency'"),
    (("connect-cards", "--json"), "Missing argument 'RUN_ID'."),
])
def test_a_usage_error_under_json_still_leaves_one_error_document_on_stdout(
        args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = _run(capsys, *args)
    assert code == ExitCode.INPUT_ERROR
    assert message in stderr  # for a person, as before
    found = _one_document(stdout)
    assert (found["command"], found["exit_code"]) == (args[0], ExitCode.INPUT_ERROR)
    assert found["error"]["code"] == "usage_error" and message in found["error"]["message"]


def test_a_usage_error_without_json_writes_nothing_on_stdout(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, "validate", "clients.csv", "--bogus")
    assert (code, stdout) == (ExitCode.INPUT_ERROR, "")


@pytest.mark.parametrize(("url", "shown", "secret"), [
    # a token as the user name (GitHub's, GitLab's deploy tokens), no password
    ("https://ghp_0123456789abcdefSECRET@raw.example/a/clients.csv",
     "https://******@raw.example/a/clients.csv", "ghp_0123456789abcdefSECRET"),
    # a bare token as the whole query, no key=
    ("https://files.example/clients.csv?a1b2c3d4e5f6SECRETtoken",
     "https://files.example/clients.csv?******", "a1b2c3d4e5f6SECRETtoken"),
    ("https://files.example/clients.csv?output=csv&t0k3nW1thoutEquals",
     "https://files.example/clients.csv?output=csv&******", "t0k3nW1thoutEquals"),
])
def test_a_url_token_outside_a_key_value_query_is_masked_too(
        url: str, shown: str, secret: str) -> None:
    with REDACTOR.scoped():
        assert redacted_url(url) == shown
        assert REDACTOR.scrub(f"cannot fetch {url}") == f"cannot fetch {shown}"
        assert secret not in REDACTOR.scrub(f"GET {url}")
        assert redacted_url(shown) == shown
