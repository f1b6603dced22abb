"""Usage errors exit 2 with typer's one-line explanation, never an internal error."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("args", "fragment"), [
    (["apply", "x.csv", "--log-format", "foo"], "Invalid value for '--log-format'"),
    (["validate"], "Missing argument"),
    (["apply", "x.csv", "--concurrency", "0"], "--concurrency"),
    (["render", "x.csv", "--no-such-flag"], "No such option"),
])
def test_regression_usage_errors_exit_2_not_internal_error(args: list[str], fragment: str) -> None:
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
