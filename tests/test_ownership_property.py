"""A run's record of what it created is true, from outside, with rivals and faults around it.

Several ``apply`` processes on overlapping sheets, one reports dir, a foreign client creating
some of the same keys, faults on every request, sometimes a SIGKILL and a resume, then a
rollback: no connection is claimed twice, none made by someone else is claimed, nothing is
lost or stored twice, and the rollback deletes only what that run made. See
tests/ownership_scenario.py for the markers that give the ground truth.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st

from tests.ownership_scenario import MUST_BE_ZERO, ScenarioFigures, run_scenario

FAULT_MIXES = (
    "503=0.08,reset=0.04,latency_ms=2..10",
    "drop_after_commit=0.12,500=0.03",
    "503=0.06,reset=0.04,drop_after_commit=0.08,latency_ms=5..20",
    "502=0.05,slow=0.04,429=0.05,drop_after_commit=0.05",
)


def _explain(fig: ScenarioFigures) -> str:
    figures = {name: getattr(fig, name) for name in MUST_BE_ZERO}
    return (f"seed={fig.seed} runs={fig.runs} rows={fig.rows} kill={fig.kill} "
            f"(landed after {fig.killed_after_starts} starts) foreign={fig.foreign} "
            f"faults={fig.faults!r} rolled back {fig.rolled_back_run}: {figures}; "
            f"problems {fig.problems}; " + "; ".join(fig.details[:12]))


@pytest.mark.slow
def test_the_harness_sees_nothing_wrong_without_faults_or_kills() -> None:
    """The control: a foreign client and overlapping runs, but every answer arrives."""
    with tempfile.TemporaryDirectory() as name:
        fig = run_scenario(11, Path(name), runs=3, rows=24, kill=False, foreign=4, faults="")
    assert not fig.problems, _explain(fig)
    assert fig.claims > 0 and fig.connections == fig.claims + fig.foreign_landed, _explain(fig)
    assert fig.rollback_deleted > 0 and fig.foreign_landed + fig.foreign_taken == 4
    assert fig.violations() == {}, _explain(fig)
    assert fig.unclaimed_own == fig.unjournaled_created == fig.results_claims_false == 0
    assert fig.rollback_left_own == 0


@pytest.mark.slow
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is ~5-10 s
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**20), runs=st.integers(2, 3), kill=st.booleans(),
       foreign=st.integers(0, 6), faults=st.sampled_from(FAULT_MIXES))
def test_each_run_claims_only_what_it_created(seed: int, runs: int, kill: bool, foreign: int,
                                              faults: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        fig = run_scenario(seed, Path(name), runs=runs, rows=24, kill=kill, foreign=foreign,
                           faults=faults)
    note(_explain(fig))
    assert not fig.problems, _explain(fig)  # a harness problem, not an ownership one
    assert fig.claimed_twice == 0, _explain(fig)
    assert fig.foreign_claimed == 0, _explain(fig)
    assert fig.misattributed == 0, _explain(fig)
    assert fig.claimed_missing == 0, _explain(fig)
    assert fig.rollback_over_deletes == 0, _explain(fig)
    assert fig.duplicated == 0, _explain(fig)
    assert fig.lost == 0, _explain(fig)
