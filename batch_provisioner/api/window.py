"""Rolling-window arithmetic over sorted completion stamps; pure helpers of budgets.py."""

from __future__ import annotations

import bisect

__all__ = ["first_in_window", "nth_leaving"]


def first_in_window(stamps: list[float], window: float, now: float) -> int:
    """Index of the first stamp still inside the window: ``stamp + window > now``.

    The same expression decides the wait (``stamp + window - now``), so float rounding can never
    make the count and the wait disagree.
    """
    return bisect.bisect_right(stamps, now, key=lambda stamp: stamp + window)


def nth_leaving(stamps: list[float], phantom: int, phantom_at: float, need: int) -> float | None:
    """The stamp of the ``need``-th event to leave: completed ``stamps`` plus ``phantom`` events
    stamped at ``phantom_at``. None when completed events are too few (in-flight ones must end).
    """
    if need > len(stamps) + phantom:
        return None
    before = bisect.bisect_right(stamps, phantom_at)
    if need <= before:
        return stamps[need - 1]
    if need <= before + phantom:
        return phantom_at
    return stamps[need - phantom - 1]
