"""The adaptive in-flight limit against simulated servers, on virtual time (no real waiting).

A simulated server counts each request against its budgets when it arrives (the sandbox's
``RateLimiter``) and answers after a latency; the gate runs as in a real run (adaptive, up to
64 in flight). Minutes of traffic take milliseconds and every figure is exact.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest

from batch_provisioner.api.budgets import ARRIVAL_SLACK, BudgetGate
from batch_provisioner.api.concurrency import HEADROOM, InFlightLimit, LevelPoint
from batch_provisioner.sandbox.limits import Budget as ServerBudget, RateLimiter
from batch_provisioner.settings import Budget
from tests.api.virtual_time import now, run_virtual

SETUP_TEST_CREATE = "setup_test_create"


@dataclass
class Run:
    wall: float = 0.0
    rejected: int = 0  # requests the server refused (429)
    history: list[LevelPoint] = field(default_factory=list)
    cuts: int = 0
    limits: list[tuple[float, int]] = field(default_factory=list)  # (t, limit) at each send


def simulate(n: int, latency: Callable[[float, int], float], budgets: list[Budget], *,
             maximum: int = 64, adaptive: bool = True,
             fails: Callable[[float], bool] = lambda _t: False) -> Run:
    """``n`` creates with setup tests, by ``maximum`` workers, after one quick listing call
    (as a run plans first). ``latency(t, in_flight)``; ``fails(t)``: the answer is a 503."""
    run = Run()

    async def main() -> None:
        gate = BudgetGate(budgets, maximum, clock=now, sleep=anyio.sleep, max_wait=1e9,
                          adaptive=adaptive)
        server = RateLimiter([ServerBudget(b.name, b.limit, b.window_seconds, b.applies_to, "")
                              for b in budgets], clock=now)
        left = [n]

        async def request(kind: str, seconds: float | None = None) -> None:
            async with gate.slot(kind) as slot:
                slot.written()  # the transport wrote it at once (no connection to wait for)
                run.limits.append((now(), gate.level.limit))
                kinds = ["all"] + (["create", "setup_test"] if kind != "call" else [])
                if server.admit(kinds) is not None:
                    run.rejected += 1
                await anyio.sleep(latency(now(), gate.in_flight) if seconds is None
                                  else seconds)
                slot.strain = fails(now())

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await request(SETUP_TEST_CREATE)

        await request("call", 0.005)
        started = now()
        async with anyio.create_task_group() as tg:
            for _ in range(maximum):
                tg.start_soon(worker)
        run.wall = now() - started
        run.history, run.cuts = gate.level.history, gate.level.cuts

    run_virtual(main)
    return run


def ideal(n: int, limit: int, window: float, latency: float) -> float:
    """The budget bound plus one request's latency."""
    return (math.ceil(n / limit) - 1) * window + latency


def test_it_converges_to_the_level_the_budget_needs_and_holds_the_budget_rate() -> None:
    # 10 setup tests a second, 2 s each: the budget needs 20 in flight (Little's law)
    run = simulate(2_000, lambda _t, _n: 2.0, [Budget("setup", 10, 1.0, "setup_test")])
    assert run.rejected == 0
    assert run.wall <= ideal(2_000, 10, 1.0, 2.0) * 1.06  # the arrival slack costs <= 5 %
    early = [p for p in run.history if p.t <= 3.0]
    assert max(p.in_flight for p in early) >= 19  # there within one latency and a bit
    steady = [p for p in run.history if p.t >= 5.0]
    assert 19 <= statistics.median(p.in_flight for p in steady) <= 21
    # the limit is the need with headroom, far under the 64 allowed, and never what binds
    assert all(20 <= p.limit <= math.ceil(HEADROOM * 20) + 10 for p in steady)


def test_at_fivetran_latency_it_reaches_the_budget_where_8_in_flight_cannot() -> None:
    # Fivetran's numbers: 250 setup tests a minute, each create 10 s
    budgets = [Budget("setup", 250, 60.0, "setup_test")]
    adaptive = simulate(600, lambda _t, _n: 10.0, budgets)
    pinned = simulate(600, lambda _t, _n: 10.0, budgets, maximum=8, adaptive=False)
    best = ideal(600, 250, 60.0, 10.0)
    assert adaptive.rejected == 0 and pinned.rejected == 0
    assert adaptive.wall <= best * 1.15  # the last 100 wait for 64 places; the arrival slack
    assert pinned.wall >= best * 5  # 600 x 10 s / 8 = 750 s
    assert max(p.limit for p in adaptive.history) == 64


def test_without_a_budget_the_latency_binds_and_every_place_is_used() -> None:
    run = simulate(6_400, lambda _t, _n: 0.5, [])
    assert run.wall == pytest.approx(6_400 / 64 * 0.5, rel=0.01)
    assert all(limit == 64 for _t, limit in run.limits[1:])


def test_503s_cut_the_level_at_once_and_it_recovers_after() -> None:
    run = simulate(8_000, lambda _t, _n: 0.1, [], fails=lambda t: 2.0 <= t < 3.0)
    before = [p.limit for p in run.history if p.t < 1.5]
    during = [p.limit for p in run.history if 2.5 <= p.t < 3.0]
    after = [p.limit for p in run.history if p.t >= 11.0]
    assert min(before) == 64
    assert max(during) <= 16  # cut to a quarter or less within half a second of failures
    assert run.cuts >= 3
    assert after and min(after) == 64  # back to the cap once the server answers again


def test_latency_rising_under_load_cuts_the_level() -> None:
    # the server slows to 6x its latency from t = 5 s on (its queue fills)
    run = simulate(20_000, lambda t, _n: 0.1 if t < 5.0 else 0.6, [])
    assert run.cuts >= 1
    cut_at = min(p.t for p in run.history if p.limit < 64)
    assert 5.0 <= cut_at <= 6.5


def test_a_pinned_gate_keeps_its_level() -> None:
    run = simulate(400, lambda _t, _n: 0.1, [], maximum=12, adaptive=False,
                   fails=lambda t: t < 1.0)
    assert {p.limit for p in run.history} == {12}
    assert all(limit == 12 for _t, limit in run.limits)


def test_the_need_is_rate_times_latency_with_headroom() -> None:
    level = InFlightLimit(64)
    assert level.need({SETUP_TEST_CREATE: 4.0}) == 0.0  # no latency seen yet
    level.answered(SETUP_TEST_CREATE, 10.0, now=1.0)
    assert level.need({SETUP_TEST_CREATE: 4.0}) == pytest.approx(HEADROOM * 40.0)
    assert level.need({SETUP_TEST_CREATE: 4.0, "call": math.inf}) == math.inf
    assert level.update(2.0, in_flight=3, rates={SETUP_TEST_CREATE: 4.0}) == 60
    assert level.update(2.1, in_flight=3, rates={SETUP_TEST_CREATE: 100.0}) == 64  # capped


def test_a_burst_of_failures_is_one_cut_per_round_trip() -> None:
    level = InFlightLimit(64, initial=64)
    level.answered("call", 1.0, now=0.0)
    for i in range(50):  # 50 failures inside one second: one signal
        level.answered("call", 1.0, now=1.0 + i / 100, strain=True)
    assert level.cuts == 1 and level.ceiling == pytest.approx(64 * 0.7)


# -- when a request counts: at its arrival, once an answer has been seen ---------------------


def _sends(budget_limit: int, *, after_a_429: bool = False) -> list[float]:
    """Send times of three 5 s setup-test creates (two at once, then one) under a budget of
    ``budget_limit`` per 10 s, after a 0.01 s listing call."""
    sent: list[float] = []

    async def main() -> None:
        gate = BudgetGate([Budget("setup", budget_limit, 10.0, "setup_test")], 8, clock=now,
                          sleep=anyio.sleep, max_wait=1e9, adaptive=True)
        async with gate.slot("call") as call:
            call.written()
            await anyio.sleep(0.01)
        if after_a_429:
            gate.pause(0.0, "HTTP 429")  # the server counted what we did not expect
            assert gate.arrival_margin is None
        else:
            assert gate.arrival_margin == pytest.approx(0.01 + ARRIVAL_SLACK * 10.0)

        async def create() -> None:
            async with gate.slot(SETUP_TEST_CREATE) as slot:
                slot.written()
                sent.append(slot.sent_at)
                await anyio.sleep(5.0)

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(create)
        await create()

    run_virtual(main)
    return sent


def test_after_one_answer_a_slow_request_counts_from_its_send_not_its_answer() -> None:
    first, _, third = _sends(2)
    # counted from its answer (5 s later), the third would wait until 15 s; from its arrival
    # (no later than the 0.01 s of the quickest answer plus a slack of 5 % of the window after
    # its send), until 10.5 s
    assert third == pytest.approx(first + 10.0 + 0.01 + ARRIVAL_SLACK * 10.0)


def test_after_a_429_requests_count_until_they_complete_again() -> None:
    first, _, third = _sends(2, after_a_429=True)
    assert third == pytest.approx(first + 5.0 + 10.0)


def test_an_older_answer_arriving_late_does_not_relax_the_pacing() -> None:
    gate = BudgetGate([Budget("calls", 100, 3600.0, "all")], 8, max_wait=1e9)
    gate.observe_headers(100, 10, sent_at=2.0)  # newer: others spent 90 of the hour
    assert gate._phantom == 90
    gate.observe_headers(100, 95, sent_at=1.0)  # an older answer, arriving after it
    assert gate._phantom == 90
    gate.observe_headers(100, 60, sent_at=3.0)  # a newer one may relax it
    assert gate._phantom == 40


def test_a_budget_revealed_mid_run_paces_every_queued_request_at_once() -> None:
    # 64 workers, no known budget; at t = 2 s a 429 reveals 5 setup tests per second
    sends: list[float] = []

    async def main() -> None:
        gate = BudgetGate([], 64, clock=now, sleep=anyio.sleep, max_wait=1e9, adaptive=True)
        left = [2_000]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with gate.slot(SETUP_TEST_CREATE) as slot:
                    slot.written()
                    sends.append(now())
                    await anyio.sleep(0.5)

        async def reveal() -> None:
            await anyio.sleep(2.0)
            gate.learn("setup_test", 5, 1.0)
            gate.pause(0.0, "Max 5 setup tests allowed in one-second rolling time period")

        async with anyio.create_task_group() as tg:
            tg.start_soon(reveal)
            for _ in range(64):
                tg.start_soon(worker)

    run_virtual(main)
    after = [t for t in sends if t > 2.0]
    assert after, "the run went on under the new budget"
    # nothing queued slipped through: from the reveal on, no window of 1 s holds more than 5
    # sends (the in-flight ones still count, so the first new one waits for them)
    assert max(sum(1 for u in after if t <= u < t + 1.0) for t in after) <= 5


def test_the_history_never_shows_more_in_flight_than_the_limit_they_went_in_under() -> None:
    """Within one half-second point, 11 requests go out under a limit of 17, come back, and
    the limit falls: the point keeps the half second's highest limit beside its most in
    flight, never 11 in flight against the lower limit that came after."""
    level = InFlightLimit(64, initial=1)
    level.update(0.0, 0, {"create": 1.0}, room=17)
    level.update(0.1, 11, {"create": 1.0}, room=0)
    level.update(0.2, 0, {"create": 1.0}, room=0)
    assert level.limit < 11  # the limit fell within the same half second
    assert all(p.in_flight <= p.limit for p in level.history), level.history
    level.update(0.7, 0, {"create": 1.0}, room=0)
    assert level.history[-1].limit == level.limit  # the next half second shows the fall
