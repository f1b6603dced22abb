#!/usr/bin/env python3
"""``python3 .ci/dev.py package``: build the wheel, install it in a fresh venv, use it there.

Steps, each printed as it runs (the first failure stops with its exit code):

1. ``pip wheel --no-deps`` of a clean copy of the project (build isolation: setuptools comes
   from the package index), then check that the wheel holds every module and the package
   data (``py.typed``, ``data/*.toml``, ``report/templates/*``).
2. A new venv in a temporary folder; ``pip install --require-hashes -r requirements.lock``,
   then the wheel with ``--no-deps``.
3. With that folder as the working directory, ``PYTHONSAFEPATH=1`` and no ``PYTHONPATH`` (so
   the source tree cannot be imported): ``batch-provisioner --version``, ``python -m
   batch_provisioner validate`` of the shipped input templates (exit 0 expected), and the
   README's library example through ``.ci/readme_example.py`` (in a scratch folder holding a
   copy of ``input_templates/``, so that its ``reports/`` are not written into the repo).

The project is copied before building so that setuptools' ``build/`` and ``*.egg-info``
folders are never written into (or stale ones read from) the working tree.
``--keep`` leaves the temporary folder in place and prints where it is.
Only the Python standard library is used here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PACKAGE = "batch_provisioner"
# Top-level folders a wheel is never built from; __pycache__ / *.egg-info anywhere.
_NOT_COPIED = {".git", ".venv", "build", "dist", "reports", "tests", ".hypothesis",
               ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# Package data the wheel must carry: every file under these source folders, plus py.typed.
DATA_DIRS = ("data", "report/templates")
PIP_QUIET = ("--quiet", "--disable-pip-version-check")


def _run(args: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str] | None = None,
         capture: bool = False) -> str:
    print("+", " ".join(str(a) for a in args), f"   (in {cwd})", flush=True)
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, check=False, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if capture and done.stdout:
        print(done.stdout, end="", flush=True)
    if done.returncode:
        print(f"package: FAILED (exit {done.returncode}): {' '.join(str(a) for a in args)}",
              file=sys.stderr, flush=True)
        sys.exit(done.returncode)
    return done.stdout or ""


def _fail(message: str) -> None:
    print(f"package: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _copy_project(dest: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc"))}
        if Path(folder).resolve() == ROOT:
            skipped |= _NOT_COPIED & set(names)
        return skipped

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def expected_files() -> set[str]:
    """Paths (as in the wheel) of every module and data file the package must ship."""
    source = ROOT / PACKAGE
    wanted = {f"{PACKAGE}/py.typed"}
    for path in source.rglob("*.py"):
        if "__pycache__" not in path.parts:
            wanted.add(path.relative_to(ROOT).as_posix())
    for folder in DATA_DIRS:
        for path in (source / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                wanted.add(path.relative_to(ROOT).as_posix())
    return wanted


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(expected_files() - names)
    if missing:
        _fail(f"{wheel.name} lacks {len(missing)} file(s) of the package: {', '.join(missing)}"
              " (see [tool.setuptools.package-data] / packages.find in pyproject.toml)")
    data = sorted(n for n in names if n.startswith(PACKAGE + "/") and not n.endswith(".py"))
    print(f"package: {wheel.name}: {len(names)} entries; package data: {', '.join(data)}",
          flush=True)


def clean_env(venv_bin: Path) -> dict[str, str]:
    """The environment of the installed-package checks: nothing points at the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}}
    env["PYTHONSAFEPATH"] = "1"  # no script folder / cwd at the front of sys.path
    env["PYTHONNOUSERSITE"] = "1"
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    return env


def check(tmp: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    fresh = tmp / "venv"
    print(f"package: fresh venv {fresh} ({sys.executable})", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(fresh)
    bindir = fresh / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"

    src = _copy_project(tmp / "src")
    wheels = tmp / "wheels"
    _run([python, "-m", "pip", "wheel", *PIP_QUIET, "--no-deps", "-w", wheels, "."], cwd=src)
    built = sorted(wheels.glob("batch_provisioner-*.whl"))
    if len(built) != 1:
        _fail(f"expected one batch_provisioner wheel in {wheels}, found {built}")
    wheel = built[0]
    check_wheel(wheel)

    _run([python, "-m", "pip", "install", *PIP_QUIET, "--require-hashes", "-r", LOCK],
         cwd=tmp)
    _run([python, "-m", "pip", "install", *PIP_QUIET, "--no-deps", wheel], cwd=tmp)

    env = clean_env(bindir)
    where = _run([python, "-c", "import batch_provisioner; print(batch_provisioner.__file__)"],
                 cwd=tmp, env=env, capture=True).strip()
    if Path(where).resolve().is_relative_to(ROOT):
        _fail(f"the fresh venv imports batch_provisioner from the source tree: {where}")
    shown = _run([bindir / "batch-provisioner", "--version"], cwd=tmp, env=env, capture=True)
    if version not in shown:
        _fail(f"--version printed {shown.strip()!r}, expected version {version}")
    templates = ROOT / "input_templates"
    _run([python, "-m", PACKAGE, "validate", templates / "advertiser_groups.xlsx",
          "--defaults", templates / "defaults.toml", "--reports-dir", tmp / "reports"],
         cwd=tmp, env=env)
    # The example uses checkout-relative paths (input_templates/, reports/): give it a
    # scratch folder holding a copy of the templates, so that it writes nothing into the repo.
    example = tmp / "example"
    shutil.copytree(templates, example / "input_templates")
    _run([python, "-P", ROOT / ".ci" / "readme_example.py"], cwd=example, env=env)
    print(f"package: OK: {wheel.name} installs and runs from a fresh venv", flush=True)


def main(argv: list[str]) -> None:
    keep = "--keep" in argv
    unknown = [a for a in argv if a != "--keep"]
    if unknown:
        sys.exit(f"package: unknown argument(s) {unknown}; only --keep is accepted")
    tmp = Path(tempfile.mkdtemp(prefix="batch-provisioner-package-"))
    try:
        check(tmp)
    finally:
        if keep:
            print(f"package: kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
