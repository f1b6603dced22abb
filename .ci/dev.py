#!/usr/bin/env python3
"""One-command setup and tasks for batch-provisioner.

    python3 .ci/dev.py demo   # venv + locked install, then the main job on the embedded sandbox
    python3 .ci/dev.py test   # venv + locked install, then ruff, mypy (strict) and pytest
                              # (on every core; extra arguments go to pytest, -n 0 for one)
    python3 .ci/dev.py package  # build the wheel, install it in a fresh venv, run it there

Only the Python standard library is used here, so this runs on a fresh machine with
Python 3.11+ and access to the package registry. The virtual environment lives in
``.venv`` and is reinstalled only when ``requirements.lock`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".lock-sha256"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code:
        sys.exit(code)


def ensure_env() -> None:
    """Create .venv and install the locked dependencies plus the package (editable)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before anything is installed
        sys.exit("batch-provisioner needs Python 3.11 or newer")
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    py = BIN / "python"
    _run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "-r", LOCK)
    _run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "-e", ".")
    STAMP.write_text(want)


def main(argv: list[str]) -> None:
    task = argv[0] if argv else "test"
    rest = argv[1:]
    ensure_env()
    if task == "demo":
        _run(BIN / "batch-provisioner", "apply", "input_templates/advertiser_groups.xlsx",
             "--sandbox", *rest)
    elif task == "test":
        _run(BIN / "ruff", "check", "batch_provisioner", "tests", ".ci")
        _run(BIN / "mypy")
        if (ROOT.parent / "shared/reference/fivetran-openapi.json").is_file():
            # the committed spec subset and seed copy must match their source
            _run(BIN / "python", "tests/data/fivetran/cut_openapi.py", "--check")
        # Both cores (pytest-xdist): the suite is mostly CLI subprocesses and sandbox waits, so it
        # takes half the time. A file's tests stay on one worker, so a module fixture (the
        # hostile corpus, a shared sandbox) runs once. ``-n 0`` in the arguments runs it serially.
        _run(BIN / "python", "-m", "pytest", "-n", "auto", "--dist", "loadfile", *rest)
    elif task == "package":  # see .ci/package_check.py; ``--keep`` keeps its temp folder
        _run(sys.executable, ROOT / ".ci" / "package_check.py", *rest)
    elif task == "setup":
        pass
    else:
        sys.exit(f"unknown task {task!r}: use demo, test, package or setup")


if __name__ == "__main__":
    main(sys.argv[1:])
