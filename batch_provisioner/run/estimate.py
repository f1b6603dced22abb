"""Look before you leap: what a plan would send, and how long the budgets make it take.

The duration is the budget bound of :meth:`BudgetGate.ideal_seconds`, per budget: N events
of a budget of L per W seconds need at least ``(ceil(N / L) - 1) * W`` seconds. The budget
with the largest bound is the one that binds, and the estimate names it ("at 250 setup
tests/min"). Latency is not known before the first answer, so the figure is a floor (``≥``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batch_provisioner.api.budgets import KIND_APPLIES_TO, budget_bound
from batch_provisioner.api.retry import request_kind
from batch_provisioner.models import Action, ActionKind, counted
from batch_provisioner.run.row_outcome import patch_body
from batch_provisioner.settings import Budget

__all__ = ["Estimate", "estimate", "format_duration"]

_WHAT = {"all": "calls", "create": "creates", "setup_test": "setup tests"}
_UNITS = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "day"}


@dataclass(frozen=True)
class Estimate:
    """What applying a plan sends, and the least time the budgets in force allow for it."""

    creates: int
    updates: int
    setup_tests: int  # creates (and updates) that run setup tests
    calls: int  # requests still to send (creates, updates; lookups come only on doubt)
    seconds: float  # the budget bound; 0 when everything fits in one window
    binding: str | None  # the budget that sets ``seconds``, e.g. "250 setup tests/min"

    def describe(self) -> str:
        """``600 creates (600 run setup tests), 0 updates, 600 calls: ≥ 2 min at 250 setup
        tests/min``."""
        run = "runs" if self.setup_tests == 1 else "run"
        tests = f" ({self.setup_tests:,} {run} setup tests)" if self.setup_tests else ""
        head = (f"{counted(self.creates, 'create')}{tests}, {counted(self.updates, 'update')}, "
                f"{counted(self.calls, 'call')}")
        if not self.calls:
            return head + ": nothing to send"
        if self.binding is None:
            return head + ": no budget limits it (bound by latency only)"
        if self.seconds <= 0:
            return head + f": within one window of {self.binding} (bound by latency only)"
        return head + f": ≥ {format_duration(self.seconds, at_least=True)} at {self.binding}"

    def as_dict(self) -> dict[str, Any]:
        return {"creates": self.creates, "updates": self.updates,
                "setup_tests": self.setup_tests, "calls": self.calls,
                "seconds": round(self.seconds, 1), "binding_budget": self.binding}


def estimate(actions: Iterable[Action], budgets: Sequence[Budget]) -> Estimate:
    """The estimate for the ``actions`` that send something (creates, and updates to apply)."""
    events = {"all": 0, "create": 0, "setup_test": 0}
    creates = updates = 0
    for action in actions:
        if action.kind is ActionKind.CREATE:
            creates += 1
            kind = request_kind("POST", "/v1/connections", action.request.payload)
        elif action.kind is ActionKind.UPDATE:
            updates += 1
            kind = request_kind("PATCH", "/v1/connections/x", patch_body(action.changes))
        else:
            continue
        for applies_to in KIND_APPLIES_TO[kind]:  # the budgets the gate will count it in
            events[applies_to] += 1
    seconds, binding = 0.0, None
    for budget in budgets:
        if events.get(budget.applies_to, 0) <= 0:
            continue
        bound = budget_bound(events[budget.applies_to], budget)
        if binding is None or bound > seconds:
            seconds, binding = bound, describe_budget(budget)
    return Estimate(creates, updates, events["setup_test"], events["all"], seconds, binding)


def describe_budget(budget: Budget) -> str:
    """``2,500 setup tests/h``, ``20 creates/min``, ``20,000 calls/h``."""
    what = _WHAT.get(budget.applies_to, budget.applies_to)
    unit = _UNITS.get(float(budget.window_seconds))
    per = f"/{unit}" if unit else f" per {budget.window_seconds:g} s"
    return f"{budget.limit:,} {what}{per}"


def format_duration(seconds: float, *, at_least: bool = False) -> str:
    """``45 s``, ``12 min``, ``4 h 10 min``, ``2 days 3 h``: whole minutes rounded up (an
    ETA), or down with ``at_least`` (a bound after ``≥``: 74 s is ``≥ 1 min``, not 2)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = math.floor(seconds / 60) if at_least else math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


