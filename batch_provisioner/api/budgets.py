"""Rolling-window budgets, the in-flight cap and the global 429 pause, shared by every worker.

One :class:`BudgetGate` guards every request of a run::

    async with gate.slot("create") as slot:
        response = await http.post(...)

``slot`` waits for (1) any global pause to end, (2) room in every rolling-window budget that
applies to the kind of request and (3) a place under the in-flight cap, then reserves one event
in each applicable budget.

When is an event counted? A rate limiter counts a request when it arrives, before the work
(Fivetran answers a create only after its setup tests, seconds later; a 429 comes at once). The
request arrives one network delay after it was written to the network, plus any wait in the
server's queue: no more than the quickest answer seen (the least latency of any request so far)
plus a slack of ``ARRIVAL_SLACK`` of the shortest budget window (3 s of a minute; the cost: at
most that share of the budget). That sum is ``arrival_margin``. Once an answer has been seen, an
event is stamped at ``written + arrival_margin`` the moment the client's transport has written
it in full (``Slot.written``; until then it counts as in flight: a request may wait for a
connection or for the client's own loop), and at its completion instead if it completes sooner:
the window can be spent again one window after the server counted the
request, not one window after its (slow) answer, so the budget is reached at any latency.
Before the first answer, and for the rest of the run after any 429 (the server counted
differently than we think, or other tools spend the budget), the gate falls back to the safe
rule: an in-flight event counts as inside every window, and is stamped with its *completion*
time when it ends, which can never overrun the server's window whenever the server counts.

The in-flight cap follows what the budgets need (:mod:`batch_provisioner.api.concurrency`),
or is pinned (``adaptive=False``).

Waiting is exact, not polled: the head waiter of each request kind sleeps until the moment the
oldest counted event leaves the window (or, when only in-flight events fill it, until one of them
completes). Waiters of one kind queue FIFO behind a lock, so nobody stampedes.

Every wait is bounded. A wait that would end past ``deadline`` (the run's ``--deadline``) or last
longer than ``max_wait`` is not waited: the gate raises :class:`RunStopped` at once, and
``close()`` (the first Ctrl-C, a fatal error) wakes every waiter, so nothing queued behind a
budget is sent after it. In-flight requests are never cut short here.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import structlog

from batch_provisioner.api.concurrency import InFlightLimit
from batch_provisioner.api.window import first_in_window, nth_leaving
from batch_provisioner.errors import RunStopped
from batch_provisioner.settings import Budget

__all__ = ["KIND_APPLIES_TO", "BudgetGate", "GateStats", "Hold", "Slot", "budget_bound"]

#: Which budgets (by ``Budget.applies_to``) one request of each kind counts against.
KIND_APPLIES_TO: dict[str, tuple[str, ...]] = {
    "call": ("all",),
    "create": ("all", "create"),
    "setup_test_create": ("all", "create", "setup_test"),
    "setup_test_update": ("all", "setup_test"),
}

#: A request kind's budgets, in a person's words (wait messages).
_BUDGET_WORDS = {"call": "the API call budget", "create": "the create budget",
                 "setup_test_create": "the create and setup-test budgets",
                 "setup_test_update": "the setup-test budget"}

#: How late after its send, beyond the quickest answer seen, a request may still arrive at the
#: server's rate limiter (its queue), as a share of the shortest budget window.
ARRIVAL_SLACK = 0.05
#: ``X-Rate-Limit`` / ``X-Rate-Limit-Remaining`` describe the hourly all-calls budget.
HEADER_WINDOW_SECONDS = 3600.0
_HISTORY_FLOOR_SECONDS = 3600.0

_log = structlog.get_logger(__name__)


@dataclass
class GateStats:
    """Counters a run reports in its summary."""

    calls_sent: int = 0
    throttles: int = 0
    pauses: int = 0
    seconds_paused: float = 0.0
    budget_waits: int = 0


@dataclass(frozen=True)
class Hold:
    """What holds requests back right now: a budget (by name) or the API's 429 pause."""

    #: The budget's name (``calls_per_hour``...), or None for the API's 429 pause.
    budget: str | None
    #: Seconds until a request may go; None: until a request in flight completes.
    seconds: float | None

    def describe(self) -> str:
        """``waiting for calls_per_hour budget, 12 s`` (the progress display's words)."""
        what = f"{self.budget} budget" if self.budget else "the API's 429 pause"
        if self.seconds is None:
            return f"waiting for {what} (a request in flight to finish)"
        return f"waiting for {what}, {math.ceil(self.seconds):.0f} s"


@dataclass
class Slot:
    """One reserved request. ``sent_at``/``completed_at`` are readings of the gate's clock."""

    kind: str
    sent_at: float
    completed_at: float | None = None
    sent: bool = True
    #: Where the event was counted at send (``send + arrival_margin``); None: counted in flight
    #: until it completes, then at its completion.
    stamp: float | None = None
    #: The server showed strain on this request (a 5xx, or no answer): the client says so.
    strain: bool = False
    _gate: BudgetGate | None = field(default=None, repr=False)

    def written(self) -> None:
        """The request has been written to the network in full (the client's transport says
        so): from now on it counts from here plus the arrival margin, not until it completes."""
        if self.sent and self.stamp is None and self._gate is not None:
            self._gate._written(self)

    def not_sent(self) -> None:
        """Give the reservation back: the request never left (e.g. a connect error)."""
        if self.sent and self._gate is not None:
            self.sent = False
            self._gate._release(self, completed=False)


class BudgetGate:
    """Rolling-window budgets + in-flight cap + global pause, shared by all workers."""

    def __init__(
        self,
        budgets: Sequence[Budget],
        concurrency: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        max_wait: float,
        adaptive: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        for budget in budgets:
            _check_budget(budget)
        self._budgets: list[Budget] = list(budgets)
        self._clock = clock
        self._sleep = sleep
        self.max_wait = max_wait
        #: The in-flight cap: adaptive up to ``concurrency``, or pinned at it.
        self.level = (InFlightLimit(concurrency) if adaptive else
                      InFlightLimit(concurrency, initial=concurrency, minimum=concurrency))
        self.adaptive = adaptive
        self._limiter = anyio.CapacityLimiter(self.level.limit)
        self._kind_locks = {kind: anyio.Lock() for kind in KIND_APPLIES_TO}
        # Event stamps (sorted), requests in flight, and those of them not stamped yet (counted
        # until they complete), per ``applies_to``.
        self._done: dict[str, list[float]] = {"all": [], "create": [], "setup_test": []}
        self._in_flight: dict[str, int] = dict.fromkeys(self._done, 0)
        self._unstamped: dict[str, int] = dict.fromkeys(self._done, 0)
        self._active: dict[str, int] = dict.fromkeys(KIND_APPLIES_TO, 0)  # waiting or in flight
        self._least_latency = math.inf
        self._cautious = False  # a 429 was seen: completion stamps for the rest of the run
        self._reading_sent = -math.inf  # send time of the request behind the phantom reading
        self._pause_until = float("-inf")
        self._phantom = 0  # calls the server counted that we did not (X-Rate-Limit-Remaining)
        self._phantom_at = float("-inf")
        self._opened = clock()
        self._changed: anyio.Event | None = None
        #: The run's deadline on this gate's clock: no wait may end past it.
        self.deadline: float | None = None
        self._closed: RunStopped | None = None
        self._waiting: set[anyio.CancelScope] = set()  # every wait in progress, for close()
        #: Told ``(reason, message)`` when the gate closes (the run's ``RunControl.halt``).
        self.on_close: Callable[[str, str], None] | None = None
        self.stats = GateStats()

    # -- public -----------------------------------------------------------------------------

    @property
    def budgets(self) -> list[Budget]:
        """The budgets in force now (configured ones, tightened or extended by ``learn``)."""
        return list(self._budgets)

    @property
    def arrival_margin(self) -> float | None:
        """How long after its send a request may arrive at the server: the least latency seen
        plus the slack (see the module docstring). None until the first answer, and after a
        429: requests count until they complete then."""
        if self._cautious or math.isinf(self._least_latency):
            return None
        shortest = min((b.window_seconds for b in self._budgets), default=0.0)
        return self._least_latency + ARRIVAL_SLACK * shortest

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return self._in_flight["all"]

    def now(self) -> float:
        """The gate's clock (monotonic seconds, or the injected fake)."""
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the gate's (possibly fake) clock; used for retry backoff too.

        Raises :class:`RunStopped` instead when the gate is closed (also while sleeping), or
        when the sleep would end past the deadline or last longer than ``max_wait``.
        """
        self._check_wait(seconds, self._clock(), "a retry backoff", halt=False)
        await self._wait(seconds)
        self._check_open()

    @property
    def closed(self) -> RunStopped | None:
        """Why the gate sends nothing more (None while it is open)."""
        return self._closed

    def close(self, reason: str, message: str) -> RunStopped:
        """Send nothing more: every waiter (budget, pause, backoff, a place in flight) raises
        :class:`RunStopped` at once; in-flight requests finish. Idempotent: returns the stop
        in force (the first one)."""
        if self._closed is not None:
            return self._closed
        self._closed = RunStopped(f"not sent: {message}", reason=reason)
        for scope in list(self._waiting):
            scope.cancel()
        self._notify()
        if self.on_close is not None:
            self.on_close(reason, message)
        return self._closed

    @asynccontextmanager
    async def slot(self, kind: str) -> AsyncIterator[Slot]:
        """Wait for pause, budgets and in-flight cap, then hold one reservation for ``kind``."""
        if kind not in KIND_APPLIES_TO:
            raise ValueError(
                f"unknown request kind {kind!r}; expected one of {list(KIND_APPLIES_TO)}"
            )
        self._active[kind] += 1
        try:
            async with self._kind_locks[kind]:
                await self._admit(kind)
                slot = self._reserve(kind)
            try:
                yield slot
            finally:
                if slot.sent:
                    slot.sent = False
                    self._release(slot, completed=True)
                self._limiter.release()
        finally:
            self._active[kind] -= 1

    def pause(self, seconds: float, reason: str) -> None:
        """Pause every worker for ``seconds`` from now (extends, never shortens, a pause).

        A pause longer than ``max_wait`` is not waited: the gate closes (nothing more is
        sent) and :class:`RunStopped` is raised. A pause that would end past the deadline is
        refused the same way by the waiters it holds back.
        """
        self.stats.throttles += 1
        now = self._clock()
        if not self._cautious:  # the server counted more than we did: stamp at completion
            self._cautious = True
            _log.info("budget.counting_cautious",
                      note="after a 429, a request counts until it completes")
        if seconds > self.max_wait:
            _log.warning(
                "budget.pause_refused", seconds=seconds, max_wait=self.max_wait, reason=reason
            )
            raise self.close("max_wait", f"the API asked to wait {seconds:g}s (Retry-After), "
                                         f"longer than --max-wait {self.max_wait:g}s")
        until = now + max(0.0, seconds)
        if until <= self._pause_until:
            return
        self.stats.pauses += 1
        self.stats.seconds_paused += until - max(now, self._pause_until)
        self._pause_until = until
        _log.warning("budget.paused", seconds=round(seconds, 3), reason=reason)

    def learn(self, applies_to: str, limit: int, window_seconds: float) -> Budget | None:
        """Install or tighten a budget; returns the new budget, or None if nothing changed.

        A budget with the same ``applies_to`` and window is tightened (never loosened); any
        other is added. Events already sent count against it straight away.
        """
        budget = Budget(
            _learned_name(applies_to, window_seconds), limit, window_seconds, applies_to
        )
        _check_budget(budget)
        for index, current in enumerate(self._budgets):
            if current.applies_to == applies_to and current.window_seconds == window_seconds:
                if current.limit <= limit:
                    return None
                budget = Budget(current.name, limit, window_seconds, applies_to)
                self._budgets[index] = budget
                break
        else:
            self._budgets.append(budget)
        _log.info("budget.learned", name=budget.name, limit=limit, window=window_seconds)
        self._notify()
        return budget

    def observe_headers(self, limit: int | None, remaining: int | None,
                        sent_at: float | None = None) -> None:
        """Pace from ``X-Rate-Limit`` (hourly limit) and ``X-Rate-Limit-Remaining``.

        A smaller server limit becomes our hourly all-calls budget. When the server says fewer
        calls remain than our own count implies (other clients share the account), the gap is
        counted as extra events in that budget until the window has passed, so we slow down
        before a 429 rather than after. ``sent_at``: when the answered request left; an answer
        that arrives after a newer request's (out of order) may tighten, never relax, the gap.
        """
        if limit is not None and limit >= 1:
            self.learn("all", limit, HEADER_WINDOW_SECONDS)
        if remaining is None:
            return
        budget = self._header_budget()
        if budget is None:
            return
        now = self._clock()
        believed = budget.limit - self._count(budget, now, include_phantom=False)
        phantom = max(0, believed - max(0, remaining))
        stale = sent_at is not None and sent_at < self._reading_sent
        if stale and phantom <= self._phantom:
            return  # an older reading: it cannot relax what a newer one said
        if sent_at is not None:
            self._reading_sent = max(self._reading_sent, sent_at)
        if phantom != self._phantom:
            relaxed = phantom < self._phantom
            self._phantom = phantom
            if relaxed:
                self._notify()
        self._phantom_at = now

    def ideal_seconds(self, n_calls: int, n_creates: int = 0, n_setup_tests: int = 0) -> float:
        """The ideal wall time set by the tightest budget.

        In a rolling window of ``window`` seconds, ``limit`` events may go at once, so N events
        need ``(ceil(N / limit) - 1) * window`` seconds at the very least: the moment the last
        batch may start. (The steady-state ``N / limit * window`` overstates it by one window.)
        ``n_calls`` is every request (creates included), ``n_creates`` the creates and
        ``n_setup_tests`` the creates/updates that run setup tests. 0 when no budget applies.
        """
        events = {"all": n_calls, "create": n_creates, "setup_test": n_setup_tests}
        return max((budget_bound(events.get(b.applies_to, 0), b) for b in self._budgets),
                   default=0.0)

    def holding(self) -> Hold | None:
        """What the waiting request kind released soonest waits for, and for how long; None
        when no request waits for a budget or a pause (one may still wait for a place in
        flight). Read-only, and as costly as one admission check per kind: for a progress
        display's refresh, never on a request's path."""
        now = self._clock()
        holds = [hold for kind, lock in self._kind_locks.items()  # its head waiter holds it
                 if lock.locked() and (hold := self._hold(kind, now)) is not None]
        return min(holds, key=_hold_order, default=None)

    def _hold(self, kind: str, now: float) -> Hold | None:
        """The longest of the waits that keep ``kind`` back (None: none does)."""
        longest: Hold | None = None
        if now < self._pause_until:
            longest = Hold(None, self._pause_until - now)
        for budget in self._budgets:
            if budget.applies_to not in KIND_APPLIES_TO[kind]:
                continue
            delay = self._budget_delay(budget, now)
            if delay != 0.0 and (longest is None or _hold_order(longest) < (
                    math.inf if delay is None else delay)):
                longest = Hold(budget.name, delay)
        return longest

    # -- admission --------------------------------------------------------------------------

    async def _admit(self, kind: str) -> None:
        """Return holding a limiter token, with no pause and room in every budget."""
        while True:
            await self._wait_until_open(kind)
            self._adjust(self._clock())
            try:
                self._limiter.acquire_nowait()
            except anyio.WouldBlock:
                await self._acquire_place()
            try:
                self._check_open()
                self._check_wait(0.0, self._clock(), "a place in flight")
            except RunStopped:
                self._limiter.release()
                raise
            if self._delay(kind, self._clock()) == 0.0:
                return
            self._limiter.release()

    async def _acquire_place(self) -> None:
        """A place under the in-flight cap; bounded by the deadline, woken by ``close``."""
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await self._limiter.acquire()
                return
            finally:
                self._waiting.discard(scope)
        self._check_open()  # cancelled: only close() cancels these scopes
        raise RuntimeError("a wait for a place in flight was cancelled")  # pragma: no cover

    async def _wait_until_open(self, kind: str) -> None:
        counted = False
        while True:
            self._check_open()
            now = self._clock()
            delay = self._delay(kind, now)
            if delay == 0.0:
                self._check_wait(0.0, now, "a request")
                return
            paused = now < self._pause_until
            if not counted and not paused:  # held back by a budget, not a pause
                counted = True
                self.stats.budget_waits += 1
            what = "the API's 429 pause" if paused else _BUDGET_WORDS[kind]
            # None: only in-flight events fill a window; wait for one (until the deadline)
            self._check_wait(delay or 0.0, now, what)
            await self._wait(delay, until_changed=delay is None)

    # -- bounded waits ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    def _check_wait(self, seconds: float, now: float, what: str, *, halt: bool = True) -> None:
        """Refuse a wait that would end past the deadline or last longer than ``max_wait``.

        ``halt``: close the gate too (a budget or pause holds every later request back as
        well); a retry backoff concerns one row only.
        """
        if self.deadline is not None and now + seconds > self.deadline:
            reason = "deadline"
            message = ("the run's deadline has passed" if seconds <= 0 else
                       f"waiting {seconds:.0f}s for {what} would pass the run's deadline")
        elif seconds > self.max_wait:
            reason = "max_wait"
            message = (f"waiting {seconds:.0f}s for {what} would exceed --max-wait "
                       f"{self.max_wait:g}s")
        else:
            return
        _log.warning("budget.wait_refused", reason=reason, seconds=round(seconds, 3), what=what)
        if halt:
            raise self.close(reason, message)
        raise RunStopped(f"not sent: {message}", reason=reason, wait=seconds)

    async def _wait(self, seconds: float | None, *, until_changed: bool = False) -> None:
        """Sleep ``seconds`` on the gate's clock (None: until the gate changes); ``close``
        and, with ``until_changed``, any change of the gate end the wait early. With a
        deadline, a wait for a change ends at the deadline."""
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                if until_changed:
                    changed = self._changed_event()
                    if self.deadline is None:
                        await changed.wait()
                    else:
                        async with anyio.create_task_group() as tg:
                            async def cancel_when_changed() -> None:
                                await changed.wait()
                                tg.cancel_scope.cancel()

                            tg.start_soon(cancel_when_changed)
                            await self._sleep(max(0.0, self.deadline - self._clock()))
                            tg.cancel_scope.cancel()
                elif seconds is not None and seconds > 0:
                    await self._sleep(seconds)
            finally:
                self._waiting.discard(scope)

    def _delay(self, kind: str, now: float) -> float | None:
        """0 when a request of ``kind`` may go now, seconds to wait, or None (wait for a change)."""
        wait = max(0.0, self._pause_until - now)
        applies = KIND_APPLIES_TO[kind]
        for budget in self._budgets:
            if budget.applies_to not in applies:
                continue
            budget_wait = self._budget_delay(budget, now)
            if budget_wait is None:
                return None
            wait = max(wait, budget_wait)
        return wait

    def _budget_delay(self, budget: Budget, now: float) -> float | None:
        stamps = self._window(budget, now)
        phantom = self._phantom_count(budget, now)
        in_window = len(stamps) + phantom + self._unstamped[budget.applies_to]
        need = in_window - budget.limit + 1  # events that must leave before one more fits
        if need <= 0:
            return 0.0
        leave = nth_leaving(stamps, phantom, self._phantom_at, need)
        if leave is None:
            return None  # only in-flight events would free room: wait for one to complete
        return max(0.0, leave + budget.window_seconds - now)

    def _reserve(self, kind: str) -> Slot:
        now = self._clock()
        for applies_to in KIND_APPLIES_TO[kind]:
            self._in_flight[applies_to] += 1
            self._unstamped[applies_to] += 1  # until it is written (or completes)
        self.stats.calls_sent += 1
        return Slot(kind=kind, sent_at=now, _gate=self)

    def _written(self, slot: Slot) -> None:
        """Stamp a request written to the network at ``now + arrival_margin`` (when a margin
        is known): it cannot arrive later than that."""
        margin = self.arrival_margin
        if margin is None:
            return
        slot.stamp = self._clock() + margin
        for applies_to in KIND_APPLIES_TO[slot.kind]:
            self._unstamped[applies_to] -= 1
            _insert(self._done[applies_to], slot.stamp)
        self._notify()

    def _release(self, slot: Slot, *, completed: bool) -> None:
        now = self._clock()
        for applies_to in KIND_APPLIES_TO[slot.kind]:
            self._in_flight[applies_to] -= 1
            stamps = self._done[applies_to]
            if slot.stamp is None:
                self._unstamped[applies_to] -= 1
                if completed:
                    _insert(stamps, now)
            elif not completed:  # it never left: the server did not count it
                _remove(stamps, slot.stamp)
            elif now < slot.stamp:  # answered sooner than the margin: it arrived by now
                _remove(stamps, slot.stamp)
                _insert(stamps, now)
            if completed:
                self._prune(applies_to, now)
        latency = now - slot.sent_at
        if completed:
            slot.completed_at = now
            if slot.stamp is not None:
                slot.stamp = min(slot.stamp, now)
            if not slot.strain:
                self._least_latency = min(self._least_latency, latency)
        else:
            self.stats.calls_sent -= 1
        if completed or slot.strain:
            self.level.answered(slot.kind, latency, now, strain=slot.strain)
        self._adjust(now)
        self._notify()

    # -- the in-flight level ----------------------------------------------------------------

    def _adjust(self, now: float) -> None:
        """Set the in-flight cap from the level: the kinds being sent (waiting or in flight),
        their budget rates, and what their budgets would let go at once."""
        active = [kind for kind, n in self._active.items() if n > 0]
        rates = {kind: self._rate(kind) for kind in active}
        room = max((self._room(kind, now) for kind in active), default=0)
        limit = self.level.update(now - self._opened, self.in_flight, rates, room)
        if limit != self._limiter.total_tokens:
            self._limiter.total_tokens = limit

    def _rate(self, kind: str) -> float:
        """Requests of ``kind`` per second the tightest budget allows (inf: none applies)."""
        applies = KIND_APPLIES_TO[kind]
        return min((b.limit / b.window_seconds for b in self._budgets
                    if b.applies_to in applies), default=math.inf)

    def _room(self, kind: str, now: float) -> int:
        """Requests of ``kind`` the budgets would let go at once now (large: no budget)."""
        applies = KIND_APPLIES_TO[kind]
        return max(0, min((b.limit - self._count(b, now) for b in self._budgets
                           if b.applies_to in applies), default=self.level.maximum))

    # -- windows ----------------------------------------------------------------------------

    def _window(self, budget: Budget, now: float) -> list[float]:
        stamps = self._done[budget.applies_to]
        return stamps[first_in_window(stamps, budget.window_seconds, now) :]

    def _count(self, budget: Budget, now: float, *, include_phantom: bool = True) -> int:
        stamps = self._done[budget.applies_to]
        start = first_in_window(stamps, budget.window_seconds, now)
        phantom = self._phantom_count(budget, now) if include_phantom else 0
        return len(stamps) - start + self._unstamped[budget.applies_to] + phantom

    def _prune(self, applies_to: str, now: float) -> None:
        horizon = max(
            [_HISTORY_FLOOR_SECONDS]
            + [b.window_seconds for b in self._budgets if b.applies_to == applies_to]
        )
        stamps = self._done[applies_to]
        cut = bisect.bisect_right(stamps, now - horizon)
        if cut > 1024 or (cut and cut * 2 > len(stamps)):
            del stamps[:cut]

    def _header_budget(self) -> Budget | None:
        return min((b for b in self._budgets if _is_header_budget(b)), key=_limit, default=None)

    def _phantom_count(self, budget: Budget, now: float) -> int:
        if self._phantom <= 0 or not _is_header_budget(budget):
            return 0
        return self._phantom if now < self._phantom_at + budget.window_seconds else 0

    # -- wake-ups ---------------------------------------------------------------------------

    def _changed_event(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def budget_bound(events: int, budget: Budget) -> float:
    """The least time ``events`` events of ``budget`` need: ``(ceil(N / limit) - 1) * window``
    (0 for no events: a window's worth may go at once)."""
    if events <= 0:
        return 0.0
    return (math.ceil(events / budget.limit) - 1) * budget.window_seconds


def _hold_order(hold: Hold) -> float:
    """A hold's length (one until a completion counts as the longest)."""
    return math.inf if hold.seconds is None else hold.seconds


def _insert(stamps: list[float], stamp: float) -> None:
    """Keep ``stamps`` sorted (appending in the usual case)."""
    if not stamps or stamps[-1] <= stamp:
        stamps.append(stamp)
    else:
        bisect.insort(stamps, stamp)


def _remove(stamps: list[float], stamp: float) -> None:
    index = bisect.bisect_left(stamps, stamp)
    if index < len(stamps) and stamps[index] == stamp:
        del stamps[index]


def _is_header_budget(budget: Budget) -> bool:
    return budget.applies_to == "all" and budget.window_seconds == HEADER_WINDOW_SECONDS


def _limit(budget: Budget) -> int:
    return budget.limit


def _learned_name(applies_to: str, window_seconds: float) -> str:
    return f"learned_{applies_to}_per_{window_seconds:g}s"


def _check_budget(budget: Budget) -> None:
    if budget.limit < 1 or budget.window_seconds <= 0:
        raise ValueError(f"budget {budget.name!r} needs limit >= 1 and window > 0")
    if budget.applies_to not in ("all", "create", "setup_test"):
        raise ValueError(f"budget {budget.name!r} applies to unknown {budget.applies_to!r}")
