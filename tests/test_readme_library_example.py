"""The README's "Using it from Python" example runs exactly as written (sqlite-utils habit)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def library_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it from Python", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "README has no python block under 'Using it from Python'"
    return match.group(1)


def test_the_readme_library_example_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "input_templates", tmp_path / "input_templates")
    done = subprocess.run([sys.executable, "-c", library_example()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 rows ready, 0 errors" in done.stdout
    assert "exit code 5" in done.stdout  # the plan had creates pending
    assert "second run: 3 exist, 0 created" in done.stdout
    runs = sorted(p for p in (tmp_path / "reports").iterdir() if (p / "results.csv").is_file())
    assert len(runs) == 2  # one folder per apply, each with its report
    statuses = sorted(pl.read_csv(run / "results.csv").get_column("status").to_list()
                      for run in runs)
    assert statuses == [["created"] * 3, ["exists"] * 3]
    plans = list((tmp_path / "reports").glob("*/plan.csv"))
    assert len(plans) == 1 and pl.read_csv(plans[0]).get_column("action").to_list() == [
        "create"] * 3
