"""The two charts of ``report.html`` as geometry: calls against the limit, requests in flight.

The page draws them as inline SVG (``templates/timeline.svg.j2``, ``templates/in_flight.svg.j2``);
this module only computes where everything goes, so the templates hold no arithmetic.

**Calls against the limit.** A rolling-window budget allows ``limit`` calls in *any* window of
``window_seconds``, so the chart plots, for each slice of the run, the most calls the budget
counted in one window ending inside that slice; its dashed line is the budget's limit. A
window longer than the run still means something (the run used 12 of its 20), a burst that
straddles two slices is not halved, and a run that kept to the budget never crosses the line.
The budget shown is the one whose use came closest to its limit (ties: the one counting more
calls); the caption says which. Each request of the timeline carries its budget kind (as the
budget gate counted it: ``call``, ``create``, ``setup_test_create``, ``setup_test_update``);
a timeline kept before kinds were recorded is read by method instead (``create`` a ``POST``,
``setup_test`` a ``POST`` or a ``PATCH``: at most what the gate counted). A 429 is not counted
(the server admitted nothing), it is marked: a red band over its slice.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: One request of a run: (seconds since start, HTTP method, HTTP status or 0, budget kind);
#: timelines kept before the kind was recorded have the first three only.
TimelineEntry = tuple[float, str, int] | tuple[float, str, int, str]
#: The request timeline of a run, one entry per request.
Timeline = Sequence[TimelineEntry]

WIDTH, HEIGHT = 900, 220
#: The plot's margins inside the SVG: room for the legend above, tick labels and titles.
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 34, 46
_SLICES = 120
_ROOM = 1.08  # the y axis reaches a little past the limit, so its line stands clear of the top
#: The budgets (by ``applies_to``) each request kind counts against: the budget gate's own
#: table (``api.budgets.KIND_APPLIES_TO``; a test keeps the two equal).
KIND_APPLIES_TO: dict[str, tuple[str, ...]] = {
    "call": ("all",),
    "create": ("all", "create"),
    "setup_test_create": ("all", "create", "setup_test"),
    "setup_test_update": ("all", "setup_test"),
}
#: Without a recorded kind: the methods a budget may have counted.
_METHODS: dict[str, frozenset[str] | None] = {
    "all": None, "create": frozenset({"POST"}), "setup_test": frozenset({"POST", "PATCH"})}
_COUNTED_AS = {"all": "calls", "create": "creates", "setup_test": "setup tests"}

_IN_FLIGHT_CAPTIONS = {
    "adaptive": "The limit follows what the binding budget needs (its rate times the observed "
                "latency) and is cut when the server strains; the budgets, not this limit, "
                "should hold requests back.",
    "pinned": "The limit was pinned by --concurrency.",
}


@dataclass(frozen=True)
class BudgetUse:
    """A budget of the run and the most calls it counted in one of its windows."""

    name: str
    limit: int
    window: float
    applies_to: str
    peak: int
    counted: int

    @property
    def share(self) -> float:
        return self.peak / self.limit


def budget_uses(timeline: Timeline, budgets: Sequence[Any]) -> list[BudgetUse]:
    """Each well-formed budget of ``summary["budgets"]`` with its peak use over ``timeline``."""
    uses = []
    for budget in budgets:
        parsed = _budget(budget)
        if parsed is None:
            continue
        name, limit, window, applies_to = parsed
        times = counted_times(timeline, applies_to)
        peak = max((_in_window(times, t, window) for t in times), default=0)
        uses.append(BudgetUse(name, limit, window, applies_to, peak, len(times)))
    return uses


def binding_budget(uses: Sequence[BudgetUse]) -> BudgetUse | None:
    """The budget whose use came closest to its limit (ties: more calls counted; then first)."""
    counted = [u for u in uses if u.counted]
    if not counted:
        return None
    return max(counted, key=lambda u: (u.share, u.counted, -uses.index(u)))


def counted_times(timeline: Timeline, applies_to: str) -> list[float]:
    """The sorted times of the requests a budget of ``applies_to`` counts (429s are not)."""
    return sorted(entry[0] for entry in timeline
                  if entry[2] != 429 and _counts(entry, applies_to))


def _counts(entry: TimelineEntry, applies_to: str) -> bool:
    if len(entry) > 3:
        return applies_to in KIND_APPLIES_TO.get(str(entry[3]), ("all",))
    methods = _METHODS.get(applies_to, frozenset())
    return methods is None or entry[1].upper() in methods


def request_chart(timeline: Timeline, budgets: Sequence[Any]) -> dict[str, Any] | None:
    """Geometry of the calls-against-the-limit chart; None when no request was sent."""
    if not timeline:
        return None
    uses = budget_uses(timeline, budgets)
    chosen = binding_budget(uses)
    end = max(entry[0] for entry in timeline)
    x_ticks = nice_ticks(end)
    x_end = x_ticks[-1]
    window = chosen.window if chosen else _plain_window(x_end)
    applies_to = chosen.applies_to if chosen else "all"
    edges = [x_end * i / _SLICES for i in range(_SLICES + 1)]
    peaks = slice_peaks(counted_times(timeline, applies_to), window, edges)
    throttled = _per_slice([entry[0] for entry in timeline if entry[2] == 429], edges)
    y_ticks = nice_ticks(max([*peaks, chosen.limit * _ROOM if chosen else 0, 1]))
    plot = _Plot(x_end, y_ticks[-1])
    return {
        "width": WIDTH, "height": HEIGHT, **plot.frame(),
        "x_ticks": plot.x_ticks(x_ticks), "y_ticks": plot.y_ticks(y_ticks),
        "x_title": "seconds since the run started",
        "y_title": f"calls per {window_words(window)} window",
        "bars": _bars(plot, edges, peaks, throttled, window),
        "limit": None if chosen is None else {
            "y": f"{plot.y(chosen.limit):.1f}", "value": chosen.limit,
            "label": f"limit {chosen.limit:,}"},
        "legend": _legend(chosen, sum(throttled)),
        "caption": _caption(chosen, uses, window),
        "throttled": sum(throttled),
    }


def in_flight_chart(history: Sequence[Any], run_end: float = 0.0,
                    mode: Any = None) -> dict[str, Any] | None:
    """Geometry of the in-flight chart from ``summary["in_flight"]["history"]`` (points
    ``{t, limit, in_flight}``); each level holds until the next point, the last one until
    ``run_end``. ``mode`` (``adaptive`` or ``pinned``) words the caption. None without a
    well-formed point."""
    points = sorted(p for p in (_level(item) for item in history) if p is not None)
    if not points:
        return None
    end = max(run_end, points[-1][0])
    x_ticks = nice_ticks(end)
    y_ticks = nice_ticks(max(max(limit, level) for _t, limit, level in points), target=4)
    plot = _Plot(x_ticks[-1], y_ticks[-1], height=160)
    steps = [*points, (end, *points[-1][1:])]
    return {
        "width": WIDTH, "height": 160, **plot.frame(),
        "x_ticks": plot.x_ticks(x_ticks), "y_ticks": plot.y_ticks(y_ticks),
        "x_title": "seconds since this invocation started", "y_title": "requests",
        "limit_path": _step_path(plot, [(t, limit) for t, limit, _n in steps]),
        "in_flight_path": _step_path(plot, [(t, level) for t, _l, level in steps]),
        "peak_in_flight": max(level for _t, _l, level in points),
        "peak_limit": max(limit for _t, limit, _n in points),
        "caption": _IN_FLIGHT_CAPTIONS.get(str(mode), _IN_FLIGHT_CAPTIONS["adaptive"]),
    }


def nice_ticks(top: float, target: int = 6) -> list[float]:
    """Ticks from 0 in steps of 1, 2, 2.5 or 5 times a power of ten, the last at or above
    ``top`` (up to 1 for nothing)."""
    if not math.isfinite(top) or top <= 0:
        top = 1.0
    raw = top / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = max(1, math.ceil(top / step - 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick ``step`` needs, thousands grouped."""
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    return f"{value:,.{decimals}f}"


def window_words(seconds: float) -> str:
    """A window's length as a person says it: ``1 s``, ``1 min``, ``1 h``, ``90 s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def slice_peaks(times: Sequence[float], window: float, edges: Sequence[float]) -> list[int]:
    """For each slice ``[edges[i], edges[i+1])`` (the last one closed): the most of ``times``
    (sorted) in one window ``(t - window, t]`` with ``t`` in the slice. The count is highest
    at a slice's start or just after one of its calls, so only those are looked at."""
    peaks = []
    for index, (start, stop) in enumerate(itertools.pairwise(edges)):
        best = _in_window(times, start, window)
        closed = index == len(edges) - 2
        first = bisect.bisect_left(times, start)
        last = (bisect.bisect_right if closed else bisect.bisect_left)(times, stop)
        for at in times[first:last]:
            best = max(best, _in_window(times, at, window))
        peaks.append(best)
    return peaks


class _Plot:
    """Data coordinates to SVG coordinates for a plot ``x_end`` wide and ``y_end`` high."""

    def __init__(self, x_end: float, y_end: float, height: int = HEIGHT) -> None:
        self.x_end, self.y_end, self.height = x_end or 1.0, y_end or 1.0, height
        self.inner_w = WIDTH - _LEFT - _RIGHT
        self.inner_h = height - _TOP - _BOTTOM

    def x(self, value: float) -> float:
        return _LEFT + value / self.x_end * self.inner_w

    def y(self, value: float) -> float:
        return _TOP + self.inner_h - value / self.y_end * self.inner_h

    def frame(self) -> dict[str, Any]:
        bottom = _TOP + self.inner_h
        return {"left": _LEFT, "right": _LEFT + self.inner_w, "top": _TOP, "bottom": bottom,
                "x_title_x": _LEFT + self.inner_w / 2, "x_title_y": bottom + 38,
                "y_title_x": 16, "y_title_y": _TOP + self.inner_h / 2,
                "tick_label_y": bottom + 18, "legend_y": 16}

    def x_ticks(self, ticks: Sequence[float]) -> list[dict[str, str]]:
        step = ticks[1] - ticks[0]
        return [{"x": f"{self.x(t):.1f}", "label": f"{tick_label(t, step)} s"} for t in ticks]

    def y_ticks(self, ticks: Sequence[float]) -> list[dict[str, str]]:
        step = ticks[1] - ticks[0]
        return [{"y": f"{self.y(t):.1f}", "label": tick_label(t, step)} for t in ticks]


def _bars(plot: _Plot, edges: Sequence[float], peaks: Sequence[int],
          throttled: Sequence[int], window: float) -> list[dict[str, Any]]:
    width = plot.inner_w / max(len(peaks), 1)
    bars = []
    for index, (peak, bad) in enumerate(zip(peaks, throttled, strict=True)):
        left = plot.x(edges[index])
        note = (f"{edges[index]:.2f}–{edges[index + 1]:.2f} s: up to {peak} calls in "
                f"{window_words(window)}" + (f"; {bad} × 429" if bad else ""))
        bars.append({"x": f"{left:.1f}", "width": f"{max(width - 0.6, 0.4):.1f}",
                     "y": f"{plot.y(peak):.1f}", "height": f"{plot.y(0) - plot.y(peak):.1f}",
                     "n": peak, "bad": bad, "note": note})
    return bars


def _legend(chosen: BudgetUse | None, throttled: int) -> list[dict[str, str]]:
    counted = (f"most calls {chosen.name} counted in one window" if chosen
               else "most calls in one window")
    items = [{"kind": "bars", "label": counted}]
    if chosen:
        items.append({"kind": "limit", "label": f"its limit: {chosen.limit:,} per "
                                                f"{window_words(chosen.window)}"})
    items.append({"kind": "throttled", "label": f"429 answers ({throttled})"})
    x = _LEFT
    for item in items:
        item["x"], item["text_x"] = str(x), str(x + 22)
        x += 30 + 7 * len(item["label"])
    return items


def _caption(chosen: BudgetUse | None, uses: Sequence[BudgetUse], window: float) -> str:
    if chosen is None:
        return (f"No budget counted these calls: the bars show the most calls in any "
                f"{window_words(window)}, every call counted.")
    others = "; ".join(f"{u.name} {u.peak:,} of {u.limit:,} per {window_words(u.window)}"
                       for u in uses if u is not chosen)
    return (f"Budget shown: {chosen.name}, the one that came closest to its limit "
            f"({chosen.peak:,} of {chosen.limit:,} {_COUNTED_AS.get(chosen.applies_to, 'calls')}"
            f" in one {window_words(chosen.window)} window, {chosen.share:.0%}). "
            f"Each bar is the most calls it counted in one window ending in that slice of "
            f"the run; red marks 429 answers." + (f" Other budgets: {others}." if others else ""))


def _budget(value: Any) -> tuple[str, int, float, str] | None:
    """``(name, limit, window, applies_to)`` of one ``summary["budgets"]`` entry, if sound."""
    if not isinstance(value, Mapping):
        return None
    limit, window = _number(value.get("limit")), _number(value.get("window_seconds"))
    if limit is None or window is None or limit < 1 or window <= 0:
        return None
    applies_to = str(value.get("applies_to") or "all")
    return str(value.get("name") or applies_to), int(limit), window, applies_to


def _level(value: Any) -> tuple[float, int, int] | None:
    """``(t, limit, in_flight)`` of one in-flight history point, if sound."""
    if not isinstance(value, Mapping):
        return None
    t, limit = _number(value.get("t")), _number(value.get("limit"))
    level = _number(value.get("in_flight"))
    if t is None or limit is None or level is None:
        return None
    return t, int(limit), int(level)


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (booleans too)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _plain_window(x_end: float) -> float:
    """With no budget to follow: a window a thirtieth of the chart, a round number."""
    ticks = nice_ticks(x_end / 30, target=1)
    return ticks[1] if len(ticks) > 1 else 1.0


def _in_window(times: Sequence[float], at: float, window: float) -> int:
    """How many of ``times`` (sorted) fall in ``(at - window, at]``."""
    return bisect.bisect_right(times, at) - bisect.bisect_right(times, at - window)


def _per_slice(times: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for t in times:
        index = min(max(bisect.bisect_right(edges, t) - 1, 0), len(counts) - 1)
        counts[index] += 1
    return counts


def _step_path(plot: _Plot, points: Sequence[tuple[float, float]]) -> str:
    """An SVG path through ``points`` as steps: each value holds until the next point."""
    parts = [f"M{plot.x(points[0][0]):.1f},{plot.y(points[0][1]):.1f}"]
    for (_t, value), (t_next, value_next) in itertools.pairwise(points):
        parts.append(f"H{plot.x(t_next):.1f}")
        if value_next != value:
            parts.append(f"V{plot.y(value_next):.1f}")
    return " ".join(parts)
