"""``summary.json``: a run is all of its invocations.

Each invocation journals its own figures at its end (an ``invocation`` record). The summary
adds them up with this invocation's: calls, 429s, retries, reconciliations, creates, the first
start, the last finish and the active time (the sum of the invocations' wall times, which is
what the budget-bound ideal is measured against), plus a short per-invocation list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run.journal import now_iso
from batch_provisioner.settings import VERSION

#: Figures an invocation journals and the summary adds up.
ADDED_UP = ("calls", "throttled_429", "retries", "reconciliations", "lookups",
            "write_attempts", "creates", "setup_tests", "active_seconds")


def invocation_figures(*, started_at: str, active_seconds: float, calls: int, throttled: int,
                       retries: int, reconciliations: int, lookups: int, write_attempts: int,
                       creates: int, setup_tests: int, exit_code: ExitCode,
                       stop_reason: str | None) -> dict[str, Any]:
    return {"started_at": started_at, "finished_at": now_iso(),
            "active_seconds": round(active_seconds, 3), "calls": calls,
            "throttled_429": throttled, "retries": retries, "reconciliations": reconciliations,
            "lookups": lookups, "write_attempts": write_attempts, "creates": creates,
            "setup_tests": setup_tests, "exit_code": int(exit_code), "stop_reason": stop_reason}


def summary(run_id: str, outcomes: Sequence[Outcome], code: ExitCode, gate: BudgetGate,
            invocations: Sequence[dict[str, Any]], concurrency: int,
            first_start: str | None = None, carry_columns: Sequence[str] = ()
            ) -> dict[str, Any]:
    """The run's summary over ``invocations`` (the earlier ones, then this one).

    ``first_start`` is when the run's journal was begun: an invocation killed before it could
    journal its figures still counts as the run's start. ``carry_columns`` are the user's own
    columns in results.parquet, by name: later commands read them back from here.
    """
    counts: dict[str, int] = {str(s): 0 for s in Status}
    for outcome in outcomes:
        counts[str(outcome.status)] += 1
    total = {name: sum(_number(i.get(name)) for i in invocations) for name in ADDED_UP}
    ideal = gate.ideal_seconds(n_calls=int(total["calls"]), n_creates=int(total["creates"]),
                               n_setup_tests=int(total["setup_tests"]))
    last = invocations[-1] if invocations else {}
    return {
        "run_id": run_id, "version": VERSION, "exit_code": int(code),
        "started_at": first_start or (invocations[0].get("started_at") if invocations
                                      else now_iso()),
        "finished_at": last.get("finished_at") or now_iso(), "rows": len(outcomes),
        "counts": counts, "wall_seconds": round(total["active_seconds"], 3),
        "active_seconds": round(total["active_seconds"], 3),
        "ideal_seconds": round(ideal, 3),
        "calls": int(total["calls"]), "throttled_429": int(total["throttled_429"]),
        "retries": int(total["retries"]), "reconciliations": int(total["reconciliations"]),
        "lookups": int(total["lookups"]), "write_attempts": int(total["write_attempts"]),
        "stop_reason": last.get("stop_reason"),
        "budgets": [{"name": b.name, "limit": b.limit, "window_seconds": b.window_seconds,
                     "applies_to": b.applies_to} for b in gate.budgets],
        "concurrency": concurrency,
        "in_flight": in_flight_summary(gate),
        "carry_columns": list(carry_columns),
        "invocations": [{k: i.get(k) for k in ("started_at", "finished_at", "active_seconds",
                                               "calls", "throttled_429", "creates",
                                               "exit_code", "stop_reason")}
                        for i in invocations],
    }


def in_flight_summary(gate: BudgetGate) -> dict[str, Any]:
    """The requests in flight over this invocation: adaptive or pinned, the cap, the highest
    level reached, the cuts the server's strain caused, and the level over time."""
    level = gate.level
    return {"mode": "adaptive" if gate.adaptive else "pinned", "max": level.maximum,
            "peak_limit": level.peak,
            "peak_in_flight": max((p.in_flight for p in level.history), default=0),
            "strain_cuts": level.cuts, "arrival_margin_seconds": (
                None if gate.arrival_margin is None else round(gate.arrival_margin, 4)),
            "history": [p.as_dict() for p in level.history]}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
