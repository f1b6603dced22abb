"""The in-flight level from the command line: adaptive by default, capped, or pinned."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import cli, write_sheet


def summary(reports: Path, run_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((reports / run_id / "summary.json").read_text())
    return data


def test_by_default_the_level_adapts_up_to_64_and_the_summary_shows_it_over_time(
        tmp_path: Path, box: SandboxHandle) -> None:
    done = cli("apply", write_sheet(tmp_path / "in.csv", 30), "--sandbox-url", box.url,
               "--reports-dir", tmp_path / "r", "--run-id", "a1")
    assert done.returncode == 0, done.stderr
    level = summary(tmp_path / "r", "a1")["in_flight"]
    assert isinstance(level, dict)
    assert (level["mode"], level["max"]) == ("adaptive", 64)
    assert level["history"] and all(1 <= p["limit"] <= 64 for p in level["history"])
    ledger = box.ledger()
    assert max(r["in_flight"] for r in ledger["requests"]) <= 64


def test_max_concurrency_caps_the_level_and_a_resume_repeats_it(
        tmp_path: Path, box: SandboxHandle) -> None:
    done = cli("apply", write_sheet(tmp_path / "in.csv", 40), "--sandbox-url", box.url,
               "--reports-dir", tmp_path / "r", "--run-id", "m1", "--max-concurrency", "3",
               "--limit", "20")
    assert done.returncode == 4, done.stderr  # the canary: the rest wait for the resume
    level = summary(tmp_path / "r", "m1")["in_flight"]
    assert isinstance(level, dict)
    assert (level["mode"], level["max"]) == ("adaptive", 3) and level["peak_in_flight"] <= 3
    assert max(r["in_flight"] for r in box.ledger()["requests"]) <= 3
    [resume] = [line.removeprefix("next: ").split("   #")[0]
                for line in done.stdout.splitlines() if line.startswith("next: ")]
    words = shlex.split(resume)
    assert words[words.index("--max-concurrency") + 1] == "3"


def test_concurrency_pins_the_level(tmp_path: Path, box: SandboxHandle) -> None:
    done = cli("apply", write_sheet(tmp_path / "in.csv", 12), "--sandbox-url", box.url,
               "--reports-dir", tmp_path / "r", "--run-id", "p1", "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    level = summary(tmp_path / "r", "p1")["in_flight"]
    assert isinstance(level, dict)
    assert (level["mode"], level["max"]) == ("pinned", 2)
    assert {p["limit"] for p in level["history"]} == {2}


def test_a_max_concurrency_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    for value in ("0", "257", "many"):
        done = cli("apply", write_sheet(tmp_path / "in.csv", 1), "--sandbox",
                   "--reports-dir", tmp_path / "r", "--max-concurrency", value)
        assert done.returncode == 2, (value, done.stderr)
        assert "--max-concurrency" in done.stderr
