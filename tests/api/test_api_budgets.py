"""BudgetGate: rolling windows, in-flight cap, global pause, learning, pacing and stats.

Every test runs on a fake clock: ``sleep`` advances it at once, so nothing waits for real.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
import structlog
from hypothesis import given, settings, strategies as st

from batch_provisioner.api.budgets import BudgetGate, Slot
from batch_provisioner.errors import RunStopped
from batch_provisioner.settings import Budget
from tests.api.fakes import FakeClock


def make_gate(
    budgets: list[Budget], *, concurrency: int = 8, max_wait: float = 3600.0
) -> tuple[BudgetGate, FakeClock]:
    clock = FakeClock()
    gate = BudgetGate(budgets, concurrency, clock=clock, sleep=clock.sleep, max_wait=max_wait)
    return gate, clock


async def run_one(gate: BudgetGate, kind: str = "call", latency: float = 0.0) -> Slot:
    async with gate.slot(kind) as slot:
        if latency:
            await gate.sleep(latency)
    return slot


def max_in_any_window(slots: list[Slot], window: float) -> int:
    """Most events whose arrival at the server could fall inside one rolling window.

    The server counts each event when it arrives: no earlier than its send, and no later than
    its stamp (``send + arrival_margin``, once the gate has seen an answer) or, for an event
    counted until it completed, its completion. The busiest window ending at ``t`` can hold
    every event sent by ``t`` whose latest arrival is after ``t - window`` (written as
    ``latest + window > t``, the gate's own expression, so float rounding agrees).
    """
    worst = 0
    for end in (s.sent_at for s in slots):
        worst = max(
            worst,
            sum(
                1
                for s in slots
                if s.sent_at <= end and (latest := _latest_arrival(s)) is not None
                and latest + window > end
            ),
        )
    return worst


def _latest_arrival(slot: Slot) -> float | None:
    return slot.stamp if slot.stamp is not None else slot.completed_at


# -- rolling windows --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    call_limit=st.integers(1, 6),
    create_limit=st.integers(1, 4),
    window=st.sampled_from([1.0, 10.0, 60.0]),
    concurrency=st.integers(1, 5),
    jobs=st.lists(
        st.tuples(st.sampled_from(["call", "create"]), st.floats(0.0, 3.0)),
        min_size=1,
        max_size=30,
    ),
)
def test_no_window_ever_holds_more_than_the_limit(
    call_limit: int,
    create_limit: int,
    window: float,
    concurrency: int,
    jobs: list[tuple[str, float]],
) -> None:
    budgets = [
        Budget("calls", call_limit, window, "all"),
        Budget("creates", create_limit, window / 2, "create"),
    ]
    gate, _ = make_gate(budgets, concurrency=concurrency)
    slots: list[Slot] = []

    async def worker(kind: str, latency: float) -> None:
        slots.append(await run_one(gate, kind, latency))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for kind, latency in jobs:
                tg.start_soon(worker, kind, latency)

    anyio.run(main)
    assert len(slots) == len(jobs)
    assert max_in_any_window(slots, window) <= call_limit
    assert max_in_any_window([s for s in slots if s.kind == "create"], window / 2) <= create_limit


@pytest.mark.anyio
async def test_a_slot_frees_at_completion_plus_window_with_one_exact_sleep() -> None:
    gate, clock = make_gate([Budget("calls", 1, 10.0)])
    first = await run_one(gate, latency=0.25)
    second = await run_one(gate)
    assert (first.sent_at, first.completed_at) == (0.0, 0.25)
    assert second.sent_at == 10.25  # not 10.0: counted from completion
    assert clock.sleeps == [0.25, 10.0]  # the latency, then one exact wait


@pytest.mark.anyio
async def test_a_full_window_of_in_flight_requests_waits_for_a_completion() -> None:
    gate, clock = make_gate([Budget("calls", 1, 10.0)])
    sent: list[Slot] = []

    async def slow() -> None:
        sent.append(await run_one(gate, latency=5.0))

    async def fast() -> None:
        sent.append(await run_one(gate))

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(fast)
    slow_slot, fast_slot = sorted(sent, key=lambda s: s.sent_at)
    assert slow_slot.completed_at == 5.0
    assert fast_slot.sent_at == pytest.approx(15.0)
    assert clock.sleeps == [5.0, pytest.approx(10.0)]  # no polling while the first was in flight


@pytest.mark.anyio
async def test_waiters_go_in_arrival_order_without_stampeding() -> None:
    gate, clock = make_gate([Budget("calls", 1, 10.0)])
    order: list[tuple[int, float]] = []

    async def worker(index: int) -> None:
        slot = await run_one(gate)
        order.append((index, slot.sent_at))

    async with anyio.create_task_group() as tg:
        for index in range(6):
            tg.start_soon(worker, index)
            await anyio.lowlevel.checkpoint()
    assert [i for i, _ in order] == list(range(6))
    assert [t for _, t in order] == pytest.approx([0, 10, 20, 30, 40, 50])
    assert len(clock.sleeps) == 5  # one wake-up per released place, not one per waiter
    assert gate.stats.budget_waits == 5


@pytest.mark.anyio
async def test_not_sent_gives_the_reservation_back() -> None:
    gate, clock = make_gate([Budget("calls", 1, 10.0)])
    async with gate.slot("call") as slot:
        slot.not_sent()
    again = await run_one(gate)
    assert again.sent_at == 0.0 and clock.sleeps == []
    assert gate.stats.calls_sent == 1


@pytest.mark.anyio
async def test_a_create_counts_against_all_and_create_but_a_call_only_against_all() -> None:
    gate, _ = make_gate([Budget("calls", 100, 60.0), Budget("creates", 1, 60.0, "create")])
    await run_one(gate, "create")
    call = await run_one(gate, "call")
    create = await run_one(gate, "create")
    assert call.sent_at == 0.0
    assert create.sent_at == pytest.approx(60.0)


# -- in-flight cap ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_in_flight_cap_is_never_exceeded() -> None:
    gate, _ = make_gate([], concurrency=3)
    in_flight = 0
    peak = 0

    async def worker() -> None:
        nonlocal in_flight, peak
        async with gate.slot("call"):
            in_flight += 1
            peak = max(peak, in_flight, gate.in_flight)
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            in_flight -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)
    assert peak == 3
    assert gate.stats.calls_sent == 20


# -- pause ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_pause_holds_every_worker_until_it_ends_and_only_extends() -> None:
    gate, _ = make_gate([])
    with structlog.testing.capture_logs() as logs:
        gate.pause(30.0, "Max 20000 api calls allowed in one-hour rolling time period")
        gate.pause(10.0, "shorter: ignored")
        gate.pause(45.0, "longer: extends")
    sent: list[float] = []

    async def worker() -> None:
        sent.append((await run_one(gate)).sent_at)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
    assert len(sent) == 5 and min(sent) >= 45.0
    assert gate.stats.throttles == 3 and gate.stats.pauses == 2
    assert gate.stats.seconds_paused == pytest.approx(45.0)
    assert [e["event"] for e in logs] == ["budget.counting_cautious", "budget.paused",
                                          "budget.paused"]
    assert logs[2]["seconds"] == 45.0 and logs[2]["reason"] == "longer: extends"


@pytest.mark.anyio
async def test_retry_after_beyond_max_wait_stops_sending_instead_of_hanging() -> None:
    gate, clock = make_gate([], max_wait=600.0)
    told: list[tuple[str, str]] = []
    gate.on_close = lambda reason, message: told.append((reason, message))
    with pytest.raises(RunStopped, match=r"wait 3600s .*longer than --max-wait 600s") as caught:
        gate.pause(3600.0, "hour-long lockout")
    assert caught.value.reason == "max_wait"
    with pytest.raises(RunStopped, match="--max-wait"):
        await run_one(gate)  # refused at once, nothing sent
    clock.now = 3600.0
    with pytest.raises(RunStopped):  # the run stays stopped: a resume carries on
        await run_one(gate)
    assert gate.stats.calls_sent == 0 and clock.sleeps == []
    assert [reason for reason, _ in told] == ["max_wait"]


# -- learning and pacing ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_learn_tightens_a_budget_but_never_loosens_it() -> None:
    gate, _ = make_gate([Budget("calls", 100, 60.0)])
    await run_one(gate)
    await run_one(gate)
    with structlog.testing.capture_logs() as logs:
        assert gate.learn("all", 2, 60.0) is not None
        assert gate.learn("all", 50, 60.0) is None
    assert gate.budgets == [Budget("calls", 2, 60.0, "all")]
    assert logs == [
        {
            "event": "budget.learned",
            "log_level": "info",
            "name": "calls",
            "limit": 2,
            "window": 60.0,
        }
    ]
    assert (await run_one(gate)).sent_at == pytest.approx(60.0)


@pytest.mark.anyio
async def test_a_learned_budget_counts_what_was_already_sent() -> None:
    gate, _ = make_gate([Budget("calls", 1000, 3600.0)])
    for _ in range(3):
        await run_one(gate, "create", latency=1.0)  # completions at 1, 2, 3
    gate.learn("create", 3, 60.0)
    assert any(b.applies_to == "create" and b.limit == 3 for b in gate.budgets)
    call = await run_one(gate, "call")
    create = await run_one(gate, "create")
    assert call.sent_at == 3.0  # calls are not held back by the create budget
    assert create.sent_at == pytest.approx(61.0)  # the first create leaves its window


@pytest.mark.anyio
async def test_server_remaining_below_our_belief_slows_us_before_a_429() -> None:
    gate, _ = make_gate([Budget("calls", 100, 3600.0)])
    for _ in range(10):
        await run_one(gate)
    gate.observe_headers(100, 5)  # others used 85 of this account's hour
    sent = [(await run_one(gate)).sent_at for _ in range(6)]
    assert sent[:5] == [0.0] * 5
    assert sent[5] == pytest.approx(3600.0)


@pytest.mark.anyio
async def test_server_remaining_that_matches_our_count_changes_nothing() -> None:
    gate, clock = make_gate([Budget("calls", 100, 3600.0)])
    for _ in range(10):
        await run_one(gate)
    gate.observe_headers(100, 90)
    for _ in range(90):
        await run_one(gate)
    assert clock.sleeps == []


def test_a_smaller_x_rate_limit_becomes_the_hourly_budget() -> None:
    gate, _ = make_gate([Budget("calls_per_hour", 20_000, 3600.0)])
    gate.observe_headers(500, None)
    assert gate.budgets == [Budget("calls_per_hour", 500, 3600.0, "all")]
    bare, _ = make_gate([])
    bare.observe_headers(500, 499)
    assert [(b.applies_to, b.limit, b.window_seconds) for b in bare.budgets] == [
        ("all", 500, 3600.0)
    ]


# -- ideal time, validation -------------------------------------------------------------------


def test_ideal_seconds_is_set_by_the_tightest_budget() -> None:
    gate, _ = make_gate(
        [
            Budget("calls", 20_000, 3600.0, "all"),
            Budget("creates", 20, 60.0, "create"),
            Budget("setup", 250, 60.0, "setup_test"),
        ]
    )
    # 500 creates at 20 a minute: 25 batches, the last one may start after 24 windows.
    assert gate.ideal_seconds(1000, 500, 0) == pytest.approx(1440.0)
    assert gate.ideal_seconds(40_000, 10, 10) == pytest.approx(3600.0)  # two hourly batches
    assert gate.ideal_seconds(20, 20, 0) == 0.0  # one burst fits every window
    assert gate.ideal_seconds(0, 0, 0) == 0.0
    assert make_gate([])[0].ideal_seconds(1000, 1000, 1000) == 0.0


@pytest.mark.anyio
async def test_unknown_kinds_and_empty_budgets_are_refused() -> None:
    gate, _ = make_gate([])
    with pytest.raises(ValueError, match="unknown request kind"):
        await run_one(gate, "delete_everything")
    with pytest.raises(ValueError, match="limit >= 1"):
        make_gate([Budget("zero", 0, 60.0)])
    with pytest.raises(ValueError, match="concurrency"):
        BudgetGate([], 0, max_wait=1.0)
