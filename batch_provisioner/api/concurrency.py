"""How many requests may be in flight: what the binding budget needs, cut when the server strains.

The run has no concurrency knob to turn. :class:`InFlightLimit` sets the budget gate's cap on
requests in flight (``CapacityLimiter.total_tokens``) from what it observes:

* **need** (Little's law): to go at the rate of the budget that binds a kind of request, that
  kind needs ``rate × latency`` requests in flight, where ``rate`` is the tightest budget's
  ``limit / window`` and ``latency`` the kind's observed time from send to answer (a moving
  average, so it is re-estimated as latency changes). The limit is ``HEADROOM`` times the
  largest need among the kinds being sent, and at least every request the budgets would let
  go *now* (a fresh window may be spent at once). A kind no budget applies to needs the
  maximum. So the budgets, not the limit, hold requests back, at any latency.
* **strain** (AIMD, as in TCP and Netflix's concurrency-limits): a 5xx answer, a request that
  got no answer, or a kind's recent latency rising past ``GRADIENT_TOLERANCE`` times its
  long-run average (the server queueing our own requests, as Netflix's gradient limiter reads
  it) cuts a ceiling to ``CUT`` times the limit, at most once per observed latency; every good
  answer raises it by ``1 / ceiling`` (one more request per round trip). A 429 is not strain:
  the budgets handle it. Latency is compared with its own past, not with its minimum: setup
  tests vary several-fold by nature (3 to 15 s), and that is no sign of strain.

``limit = clamp(min(ceiling, need), minimum, maximum)``; ``maximum`` is ``--max-concurrency``.
``--concurrency N`` pins the cap instead (no ``InFlightLimit``). ``history`` keeps the level
over time for the run's summary and progress line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["InFlightLimit", "LevelPoint"]

HEADROOM = 1.5
CUT = 0.7
GRADIENT_TOLERANCE = 1.5
_SHORT_ALPHA = 0.2  # the recent latency (about the last 5 answers)
_LONG_ALPHA = 0.01  # its long-run average (about the last 100; the plain mean before that)
_GRADIENT_SAMPLES = 20  # answers of a kind before its latency trend counts
_HISTORY_STEP_SECONDS = 0.5  # at most one history point per step (plus every change)
_HISTORY_MAX = 2_000


@dataclass(frozen=True)
class LevelPoint:
    """The limit and the requests in flight at ``t`` (seconds since the gate opened)."""

    t: float
    limit: int
    in_flight: int

    def as_dict(self) -> dict[str, float | int]:
        return {"t": round(self.t, 3), "limit": self.limit, "in_flight": self.in_flight}


@dataclass
class _Latency:
    short: float
    long: float
    samples: int = 1


class InFlightLimit:
    """The adaptive in-flight limit (see the module docstring). Pure: no clock, no I/O."""

    def __init__(self, maximum: int, *, initial: int = 8, minimum: int = 1) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.maximum = maximum
        self.minimum = minimum
        self.limit = max(minimum, min(initial, maximum))
        self.ceiling = float(maximum)
        self.cuts = 0
        self.peak = self.limit
        self.history: list[LevelPoint] = []
        self._latency: dict[str, _Latency] = {}
        self._cut_at = -math.inf

    # -- observations -----------------------------------------------------------------------

    def answered(self, kind: str, latency: float, now: float, *, strain: bool = False) -> None:
        """One request of ``kind`` ended after ``latency`` seconds; ``strain``: a 5xx or no
        answer. A good answer feeds the latency averages and raises the ceiling."""
        if strain:
            self._cut(now)
            return
        seen = self._latency.get(kind)
        if seen is None:
            seen = self._latency[kind] = _Latency(latency, latency)
        else:
            seen.samples += 1
            seen.short += max(_SHORT_ALPHA, 1 / seen.samples) * (latency - seen.short)
            seen.long += max(_LONG_ALPHA, 1 / seen.samples) * (latency - seen.long)
        if seen.samples >= _GRADIENT_SAMPLES and seen.short > GRADIENT_TOLERANCE * seen.long:
            self._cut(now)  # latency rising with load: the server queues our requests
            return
        self.ceiling = min(float(self.maximum), self.ceiling + 1.0 / max(1.0, self.ceiling))

    def latency(self, kind: str) -> float | None:
        """The recent latency of ``kind`` (None before its first answer)."""
        seen = self._latency.get(kind)
        return seen.short if seen is not None else None

    def _cut(self, now: float) -> None:
        typical = max((s.short for s in self._latency.values()), default=0.0)
        if now - self._cut_at < max(typical, 0.05):
            return  # one cut per round trip: a burst of failures is one signal
        self._cut_at = now
        self.cuts += 1
        self.ceiling = max(float(self.minimum), min(self.ceiling, self.limit * CUT))

    # -- the level --------------------------------------------------------------------------

    def need(self, rates: Mapping[str, float]) -> float:
        """``HEADROOM`` × the most requests in flight any kind being sent needs: its budget
        rate (requests per second; ``inf`` when no budget applies) × its latency."""
        need = 0.0
        for kind, rate in rates.items():
            if math.isinf(rate):
                return math.inf
            latency = self.latency(kind)
            if latency is not None:
                need = max(need, rate * latency)
        return HEADROOM * need

    def update(self, now: float, in_flight: int, rates: Mapping[str, float],
               room: int = 0) -> int:
        """The limit now: ``rates`` of the kinds being sent, ``room`` the requests the budgets
        would let go at once (they may all be in flight)."""
        need = max(self.need(rates), float(in_flight + room))
        wanted = min(self.ceiling, need, float(self.maximum))
        limit = max(self.minimum, min(self.maximum, math.ceil(wanted)))
        self.limit = limit
        self.peak = max(self.peak, limit)
        self.sample(now, in_flight)
        return limit

    def sample(self, now: float, in_flight: int) -> None:
        """Note the level in ``history``: at most one point per half second, with the most
        requests in flight and the highest limit of that half second (so a short burst still
        shows, and a point never shows more in flight than the limit they were let in under;
        a cut shows from the next half second)."""
        last = self.history[-1] if self.history else None
        if last is not None and now - last.t < _HISTORY_STEP_SECONDS:
            if in_flight > last.in_flight or self.limit > last.limit:
                self.history[-1] = LevelPoint(last.t, max(self.limit, last.limit),
                                              max(in_flight, last.in_flight))
            return
        self._record(LevelPoint(now, self.limit, in_flight))

    def _record(self, point: LevelPoint) -> None:
        self.history.append(point)
        if len(self.history) > _HISTORY_MAX:  # keep the shape of a long run: every other one
            self.history[:] = self.history[::2]
