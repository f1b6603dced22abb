"""The fault matrix: seeded runs of ``apply`` against a faulty sandbox, checked from the ledger.

    .venv/bin/python tests/benchmarks/fault_matrix.py [--runs 50] [--rows 200] [--seed 2026]
    .venv/bin/python tests/benchmarks/fault_matrix.py --concurrent [--runs 50] [--seed 2026]

``--concurrent`` runs the ownership matrix instead (tests/benchmarks/ownership_matrix.py:
2-3 runs, a foreign client and faults on one sandbox; columns claimed_twice,
foreign_claimed, misattributed, rollback_over_deletes; reports/benchmarks/ownership_matrix.json).

Each run gets a sandbox in its own process with a random mix of faults (``429``, ``429_date``,
``500``, ``502``, ``503``, ``reset``, ``drop_after_commit``, ``slow``), a random create budget
and latency, and ``apply`` runs as a real process, half the runs with default flags (the
in-flight level adapts; ``concurrency`` 0 in the table), half with ``--concurrency`` from 1 to
32; about a
third of the runs are killed with SIGKILL at a random moment and then resumed. After each run
the sandbox's ledger and the run's reports are checked: every valid row ends ``created`` or
``exists``, no (group_id, schema) is created twice, no row is missing from ``results.csv``, and
the exit code matches the statuses. Prints a table and writes
``reports/benchmarks/fault_matrix.json`` (``runs`` and ``totals``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from batch_provisioner.sandbox import run_in_process  # noqa: E402
from tests.apply_helpers import ENV, creations, resends_without_lookup, write_sheet  # noqa: E402

FAULT_NAMES = ("429", "429_date", "500", "502", "503", "reset", "drop_after_commit", "slow")
OUT = ROOT / "reports" / "benchmarks" / "fault_matrix.json"
OK = {"created", "exists"}


@dataclass
class RunFigures:
    run: int
    seed: int
    rows: int
    concurrency: int
    create_limit: int
    faults: str
    killed: bool
    exit_code: int = -1
    faults_injected: int = 0
    http_429: int = 0
    retries: int = 0
    reconciliations: int = 0
    lost: int = 0
    duplicated: int = 0
    missing_from_results: int = 0
    exit_code_matches: bool = False
    wall_seconds: float = 0.0
    ideal_seconds: float = 0.0
    wall_over_ideal: float = 0.0
    problems: list[str] = field(default_factory=list)


def _spec(rng: random.Random) -> str:
    chosen = [f"{name}={rng.uniform(0.01, 0.06):.3f}" for name in FAULT_NAMES
              if rng.random() < 0.5]
    if rng.random() < 0.5:
        low = rng.randint(0, 20)
        chosen.append(f"latency_ms={low}..{low + rng.randint(0, 30)}")
    return ",".join(chosen)


def _apply(sheet: Path, url: str, reports: Path, concurrency: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batch_provisioner", "apply", str(sheet), "--sandbox-url", url,
            "--reports-dir", str(reports), "--read-timeout", "1", "--max-attempts", "10",
            "--log-format", "json", *(("--concurrency", str(concurrency)) if concurrency else ()),
            *extra]


def one_run(index: int, seed: int, rows: int, tmp: Path, kill: bool | None = None) -> RunFigures:
    rng = random.Random(seed)
    figures = RunFigures(run=index, seed=seed, rows=rows, concurrency=rng.randint(1, 32),
                         create_limit=rng.choice([20, 40, 100]), faults=_spec(rng),
                         killed=rng.random() < 0.35)
    if random.Random(seed ^ 0xADA).random() < 0.5:  # default flags: the level adapts (0)
        figures.concurrency = 0
    if kill is not None:
        figures.killed = kill
    work = tmp / f"run{index}"
    work.mkdir()
    sheet = write_sheet(work / "in.csv", rows, connect_card_every=rng.randint(3, 12),
                        distinct_secrets=True)
    reports = work / "reports"
    env = {**os.environ, **ENV}
    started = time.monotonic()
    with run_in_process(profile="fast", faults=figures.faults, seed=seed, slow_ms=1500,
                        create_limit=figures.create_limit) as box:
        cmd = _apply(sheet, box.url, reports, figures.concurrency, "--run-id", "r")
        if figures.killed:
            victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=env, cwd=ROOT)
            time.sleep(rng.uniform(1.0, 1.0 + rows / figures.create_limit))
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
            victim.wait()
            if (reports / "r").is_dir():
                cmd = _apply(sheet, box.url, reports, figures.concurrency, "--resume", "r")
            else:  # killed before its run folder existed (a slow start): nothing was sent,
                # and `--resume r` rightly says there is no run r: start it afresh
                assert not any(r["method"] == "POST" for r in box.ledger()["requests"])
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=900)
        figures.wall_seconds = round(time.monotonic() - started, 2)
        ledger = box.ledger()
    figures.exit_code = done.returncode
    _check(figures, reports / "r", ledger, sheet, done.stderr)
    figures.ideal_seconds = float(math.ceil(rows / figures.create_limit) - 1)
    figures.wall_over_ideal = round(figures.wall_seconds / max(figures.ideal_seconds, 1.0), 2)
    return figures


def _check(figures: RunFigures, run_dir: Path, ledger: dict[str, Any], sheet: Path,
           stderr: str) -> None:
    import polars as pl

    figures.faults_injected = sum(1 for r in ledger["requests"] if r["fault"])
    figures.http_429 = ledger["counts"]["429"]
    made = creations(ledger)
    figures.duplicated = sum(1 for n in made.values() if n > 1)
    keys = set(zip(*pl.read_csv(sheet, infer_schema=False).select("group_id", "schema")
                   .to_dict(as_series=False).values(), strict=True))
    try:
        results = pl.read_csv(run_dir / "results.csv", infer_schema=False)
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        figures.problems.append(f"no reports: {exc}; stderr: {stderr[-300:]}")
        figures.lost = len(keys)
        return
    figures.retries = int(summary.get("retries", 0))
    figures.reconciliations = int(summary.get("reconciliations", 0))
    figures.missing_from_results = len(keys) - results.height
    statuses = results["status"].to_list()
    not_ok = [s for s in statuses if s not in OK]
    figures.lost = len(not_ok) + len(keys - set(made)) + max(0, figures.missing_from_results)
    expected_exit = 0 if not not_ok else 1
    figures.exit_code_matches = (figures.exit_code == expected_exit
                                 and summary.get("exit_code") == figures.exit_code)
    if not_ok:
        figures.problems.append(f"statuses {sorted(set(not_ok))}")
    if figures.duplicated:
        figures.problems.append(f"{figures.duplicated} keys created twice")
    resent = resends_without_lookup(ledger)
    if resent:  # a create that may have landed was sent again without a lookup first
        figures.problems.append(f"{len(resent)} creates resent without a lookup: {resent[:3]}")
    if not figures.exit_code_matches:
        figures.problems.append(f"exit code {figures.exit_code}, expected {expected_exit}")


def run_matrix(runs: int, rows: int, seed: int,
               kills: list[bool] | None = None) -> dict[str, Any]:
    """``kills`` forces which runs are killed and resumed (else about a third, at random)."""
    master = random.Random(seed)
    results: list[RunFigures] = []
    with tempfile.TemporaryDirectory() as name:
        for index in range(runs):
            figures = one_run(index, master.randrange(1 << 30), rows, Path(name),
                              kills[index] if kills else None)
            results.append(figures)
            print(_row(figures), flush=True)
    totals = {
        "runs": runs, "rows": runs * rows,
        "killed_and_resumed": sum(r.killed for r in results),
        "faults_injected": sum(r.faults_injected for r in results),
        "http_429": sum(r.http_429 for r in results),
        "retries": sum(r.retries for r in results),
        "reconciliations": sum(r.reconciliations for r in results),
        "lost": sum(r.lost for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "exit_code_mismatches": sum(not r.exit_code_matches for r in results),
        "median_wall_over_ideal": sorted(r.wall_over_ideal for r in results)[runs // 2],
    }
    return {"seed": seed, "runs": [asdict(r) for r in results], "totals": totals}


HEADER = (f"{'run':>3} {'conc':>4} {'cr/s':>4} {'kill':>4} {'faults':>6} {'429':>4} "
          f"{'retry':>5} {'recon':>5} {'lost':>4} {'dup':>3} {'exit':>4} {'wall s':>7} "
          f"{'w/ideal':>7}")


def _row(r: RunFigures) -> str:
    return (f"{r.run:>3} {r.concurrency:>4} {r.create_limit:>4} {'yes' if r.killed else '':>4} "
            f"{r.faults_injected:>6} {r.http_429:>4} {r.retries:>5} {r.reconciliations:>5} "
            f"{r.lost:>4} {r.duplicated:>3} {r.exit_code:>4} {r.wall_seconds:>7} "
            f"{r.wall_over_ideal:>7}" + (f"  {'; '.join(r.problems)}" if r.problems else ""))


def main() -> None:
    if "--concurrent" in sys.argv[1:]:
        from tests.benchmarks import ownership_matrix

        ownership_matrix.main([a for a in sys.argv[1:] if a != "--concurrent"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrent", action="store_true",
                        help="the ownership matrix (tests/benchmarks/ownership_matrix.py)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    started = time.monotonic()
    print(HEADER)
    matrix = run_matrix(args.runs, args.rows, args.seed)
    matrix["totals"]["seconds"] = round(time.monotonic() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(matrix, indent=2) + "\n")
    t = matrix["totals"]
    print(f"\n{t['runs']} runs, {t['rows']} rows, {t['killed_and_resumed']} killed and resumed, "
          f"{t['faults_injected']} faults injected, {t['http_429']} x 429, {t['retries']} "
          f"retries, {t['reconciliations']} reconciliations: lost {t['lost']}, duplicated "
          f"{t['duplicated']}, exit-code mismatches {t['exit_code_mismatches']}, median "
          f"wall/ideal {t['median_wall_over_ideal']}, {t['seconds']} s")
    print(f"written to {OUT.relative_to(ROOT)}")
    if t["lost"] or t["duplicated"] or t["exit_code_mismatches"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
