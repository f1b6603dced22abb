"""A small slice of the fault matrix (tests/benchmarks/fault_matrix.py) in the suite."""

from __future__ import annotations

from tests.benchmarks.fault_matrix import run_matrix


def test_a_small_fault_matrix_loses_and_duplicates_nothing() -> None:
    matrix = run_matrix(runs=3, rows=60, seed=7, kills=[False, True, True])
    totals = matrix["totals"]
    assert totals["faults_injected"] > 0 and totals["killed_and_resumed"] >= 1
    assert totals["lost"] == 0 and totals["duplicated"] == 0
    assert totals["exit_code_mismatches"] == 0
    assert all(not run["problems"] for run in matrix["runs"]), matrix["runs"]
