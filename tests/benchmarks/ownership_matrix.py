"""The ownership matrix: concurrent runs, a foreign client and faults on one sandbox.

    .venv/bin/python tests/benchmarks/ownership_matrix.py [--runs 50] [--seed 2026]
    .venv/bin/python tests/benchmarks/fault_matrix.py --concurrent [--runs 50]   (the same)

Each scenario (tests/ownership_scenario.py) runs 2-3 ``apply`` processes with overlapping
sheets of 20-40 rows against one sandbox process and one reports dir, while a foreign client
creates some of the same keys; a random fault mix hits every request; about 40 % of the
scenarios SIGKILL one run at a random moment and resume it after the others. Then each run's
journal claims are checked against the markers every connection carries, and one run is
rolled back. Prints a table and writes ``reports/benchmarks/ownership_matrix.json``
(``scenarios`` and ``totals``); exits 1 when any must-be-zero figure is not.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.ownership_scenario import (  # noqa: E402
    MUST_BE_ZERO,
    ScenarioFigures,
    random_faults,
    run_scenario,
    tally,
)

OUT = ROOT / "reports" / "benchmarks" / "ownership_matrix.json"
COLUMNS = ("claimed_twice", "foreign_claimed", "misattributed", "rollback_over_deletes")


def run_matrix(scenarios: int, seed: int) -> dict[str, Any]:
    master = random.Random(seed)
    results: list[ScenarioFigures] = []
    with tempfile.TemporaryDirectory() as name:
        for index in range(scenarios):
            rng = random.Random(master.randrange(1 << 30))
            fig = run_scenario(rng.randrange(1 << 30), Path(name), runs=rng.choice((2, 3)),
                               rows=rng.randint(20, 40), kill=rng.random() < 0.4,
                               foreign=rng.randint(0, 8), faults=random_faults(rng))
            results.append(fig)
            print(_row(index, fig), flush=True)
    sums = tally(results)
    totals: dict[str, Any] = {
        "scenarios": scenarios,
        "rows": sum(f.rows * f.runs for f in results),
        "killed_and_resumed": sum(1 for f in results if f.killed_after_starts),
        "with_foreign_client": sum(1 for f in results if f.foreign),
        **{name: sums[name] for name in (
            "faults_injected", "reconciliations", "claims", *COLUMNS, "claimed_missing",
            "lost", "deferred", "duplicated", "unclaimed_own", "unjournaled_created",
            "results_claims_false",
            "rollback_deleted", "rollback_left_own", "foreign_landed", "foreign_taken")},
        "scenarios_violating": sum(1 for f in results if f.violations()),
        "scenarios_with_harness_problems": sum(1 for f in results if f.problems),
        "median_scenario_seconds": sorted(f.total_seconds for f in results)[scenarios // 2],
    }
    return {"seed": seed, "scenarios": [f.as_dict() for f in results], "totals": totals}


HEADER = (f"{'#':>3} {'runs':>4} {'rows':>4} {'kill':>4} {'frgn':>4} {'faults':>6} "
          f"{'recon':>5} {'claim':>5} {'twice':>5} {'f.clm':>5} {'misat':>5} {'rb.ov':>5} "
          f"{'miss':>4} {'lost':>4} {'defer':>5} {'dup':>3} {'wall s':>6}")


def _row(index: int, f: ScenarioFigures) -> str:
    kill = "yes" if f.killed_after_starts else ("miss" if f.kill else "")
    return (f"{index:>3} {f.runs:>4} {f.rows:>4} {kill:>4} {f.foreign:>4} "
            f"{f.faults_injected:>6} {f.reconciliations:>5} {f.claims:>5} {f.claimed_twice:>5} "
            f"{f.foreign_claimed:>5} {f.misattributed:>5} {f.rollback_over_deletes:>5} "
            f"{f.claimed_missing:>4} {f.lost:>4} {f.deferred:>5} {f.duplicated:>3} "
            f"{f.total_seconds:>6}" + (f"  HARNESS: {'; '.join(f.problems)}" if f.problems
                                       else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="scenarios to run")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(HEADER)
    matrix = run_matrix(args.runs, args.seed)
    t = matrix["totals"]
    t["seconds"] = round(time.monotonic() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(matrix, indent=2) + "\n")
    print(f"\n{t['scenarios']} scenarios, {t['rows']} rows, {t['killed_and_resumed']} killed "
          f"and resumed, {t['with_foreign_client']} with a foreign client, "
          f"{t['faults_injected']} faults injected, {t['reconciliations']} reconciliations, "
          f"{t['claims']} claims: claimed twice {t['claimed_twice']}, foreign claimed "
          f"{t['foreign_claimed']}, misattributed {t['misattributed']}, claimed missing "
          f"{t['claimed_missing']}, rollback over-deletes {t['rollback_over_deletes']}, lost "
          f"{t['lost']} (deferred {t['deferred']}), duplicated {t['duplicated']}; report only: "
          f"unclaimed own {t['unclaimed_own']}, unjournaled created "
          f"{t['unjournaled_created']}, false in results.csv {t['results_claims_false']}, "
          f"rollback left own {t['rollback_left_own']}; "
          f"{t['scenarios_violating']} scenarios violating, "
          f"{t['scenarios_with_harness_problems']} with harness problems; median "
          f"{t['median_scenario_seconds']} s a scenario, {t['seconds']} s")
    print(f"written to {OUT.relative_to(ROOT)}")
    if any(t[name] for name in MUST_BE_ZERO) or t["scenarios_with_harness_problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
