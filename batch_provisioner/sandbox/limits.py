"""Rolling-window rate limits, as Fivetran documents them, with an injectable clock.

A budget is a (limit, window) pair that applies to one kind of request: every API call
(``all``), connection creates (``create``) or setup tests (``setup_test``). An event is
admitted when fewer than ``limit`` admitted events of that budget arrived in
``(now - window, now]``. Rejected events consume nothing. A request is checked against
every budget that applies to it, in order, and consumes all of them only when all admit.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from batch_provisioner.sandbox.config import PROFILES

Clock = Callable[[], float]

APPLIES_TO_ALL = "all"
APPLIES_TO_CREATE = "create"
APPLIES_TO_SETUP_TEST = "setup_test"

CALLS_PER_HOUR = 20_000
SETUP_TESTS_PER_MINUTE = 250
SETUP_TESTS_PER_HOUR = 2_500


@dataclass(frozen=True, slots=True)
class Budget:
    """One rolling-window budget."""

    name: str
    limit: int
    window_seconds: float
    applies_to: str
    message: str

    def describe(self) -> dict[str, Any]:
        """The budget as ``GET /sandbox/limits`` shows it."""
        return {
            "name": self.name,
            "limit": self.limit,
            "window_seconds": float(self.window_seconds),
            "applies_to": self.applies_to,
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was refused, and how long until it could be admitted."""

    budget: Budget
    retry_after: int


def _window_phrase(seconds: float) -> str:
    if seconds == 3600:
        return "one-hour"
    if seconds == 60:
        return "one-minute"
    if seconds == 1:
        return "one-second"
    return f"{seconds:g}-second"


def build_budgets(profile: str, create_limit: int) -> list[Budget]:
    """The budgets of a profile, in the order they are checked.

    ``fivetran`` uses Fivetran's numbers; ``fast`` keeps the counts and divides every
    window by 60; ``unlimited`` has none. ``create_limit`` 0 leaves out the create budget.
    """
    scale = PROFILES[profile]
    if scale is None:
        return []
    hour, minute = 3600.0 / scale, 60.0 / scale
    budgets = [
        Budget(
            "calls_per_hour",
            CALLS_PER_HOUR,
            hour,
            APPLIES_TO_ALL,
            f"Max {CALLS_PER_HOUR} api calls allowed in {_window_phrase(hour)} rolling time period",
        )
    ]
    if create_limit > 0:
        budgets.append(
            Budget(
                "creates_per_minute",
                create_limit,
                minute,
                APPLIES_TO_CREATE,
                f"No more than {create_limit} connectors can be created in "
                f"{_window_phrase(minute)} time period",
            )
        )
    budgets += [
        Budget(
            "setup_tests_per_minute",
            SETUP_TESTS_PER_MINUTE,
            minute,
            APPLIES_TO_SETUP_TEST,
            f"Max {SETUP_TESTS_PER_MINUTE} setup tests allowed in {_window_phrase(minute)} "
            "rolling time period",
        ),
        Budget(
            "setup_tests_per_hour",
            SETUP_TESTS_PER_HOUR,
            hour,
            APPLIES_TO_SETUP_TEST,
            f"Max {SETUP_TESTS_PER_HOUR} setup tests allowed in {_window_phrase(hour)} "
            "rolling time period",
        ),
    ]
    return budgets


def limits_document(profile: str, budgets: Sequence[Budget]) -> dict[str, Any]:
    """The ``GET /sandbox/limits`` answer (a shape the job adopts; keep it stable)."""
    return {
        "profile": profile,
        "window_scale": PROFILES[profile] or 1,
        "budgets": [budget.describe() for budget in budgets],
    }


class RateLimiter:
    """Admits or refuses events against rolling-window budgets (not thread-safe: one loop)."""

    def __init__(self, budgets: Sequence[Budget], clock: Clock = time.monotonic) -> None:
        self.budgets = tuple(budgets)
        self._clock = clock
        self._events: dict[str, deque[float]] = {b.name: deque() for b in self.budgets}
        self.calls_budget = next((b for b in self.budgets if b.applies_to == APPLIES_TO_ALL), None)

    def admit(self, kinds: Collection[str]) -> Rejection | None:
        """Consume one event in every budget that applies to ``kinds``, or refuse them all.

        Returns ``None`` when admitted, else the first refusing budget (in check order)
        with ``retry_after`` = ceil(time until its oldest event leaves the window), >= 1.
        """
        now = self._clock()
        applicable = [b for b in self.budgets if b.applies_to in kinds]
        for budget in applicable:
            events = self._events[budget.name]
            self._expire(events, now - budget.window_seconds)
            if len(events) >= budget.limit:
                wait = events[0] + budget.window_seconds - now
                return Rejection(budget, max(1, math.ceil(wait)))
        for budget in applicable:
            self._events[budget.name].append(now)
        return None

    def remaining(self, budget: Budget) -> int:
        """How many more events ``budget`` would admit right now."""
        events = self._events[budget.name]
        self._expire(events, self._clock() - budget.window_seconds)
        return max(0, budget.limit - len(events))

    def spend(self, applies_to: str, count: int) -> int:
        """Count ``count`` events now in every budget of ``applies_to``, as if other clients
        of the account had sent them (never more than a window holds); how many were added
        to the fullest budget."""
        now = self._clock()
        added = 0
        for budget in self.budgets:
            if budget.applies_to != applies_to:
                continue
            events = self._events[budget.name]
            self._expire(events, now - budget.window_seconds)
            room = max(0, min(count, budget.limit - len(events)))
            events.extend([now] * room)
            added = max(added, room)
        return added

    def reset(self) -> None:
        """Forget every admitted event."""
        for events in self._events.values():
            events.clear()

    @staticmethod
    def _expire(events: deque[float], horizon: float) -> None:
        while events and events[0] <= horizon:
            events.popleft()
