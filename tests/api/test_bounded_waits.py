"""Every wait of the budget gate ends on time: at the deadline, at ``--max-wait``, at Ctrl-C.

Fake clock throughout (``sleep`` jumps it forward), so a test that would wait an hour for real
shows it as an hour of fake time in ``clock.sleeps``.
"""

from __future__ import annotations

import anyio
import pytest

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.errors import RunStopped
from batch_provisioner.run.control import RunControl
from batch_provisioner.settings import Budget
from tests.api.fakes import FakeClock


def make_gate(budgets: list[Budget], *, max_wait: float = 3600.0,
              deadline: float | None = None, concurrency: int = 8) -> tuple[BudgetGate, FakeClock]:
    clock = FakeClock()
    gate = BudgetGate(budgets, concurrency, clock=clock, sleep=clock.sleep, max_wait=max_wait)
    gate.deadline = deadline
    return gate, clock


async def send(gate: BudgetGate, kind: str = "call", sent: list[float] | None = None) -> None:
    async with gate.slot(kind) as slot:
        if sent is not None:
            sent.append(slot.sent_at)


@pytest.mark.anyio
async def test_a_budget_wait_that_would_pass_the_deadline_stops_at_once() -> None:
    gate, clock = make_gate([Budget("creates", 2, 60.0, "create")], deadline=10.0)
    sent: list[float] = []
    await send(gate, "create", sent)
    await send(gate, "create", sent)
    with pytest.raises(RunStopped, match="would pass the run's deadline") as caught:
        await send(gate, "create", sent)  # the next place is at t=60, past the deadline
    assert caught.value.reason == "deadline"
    assert clock.sleeps == [] and clock.now == 0.0  # not waited at all
    assert gate.closed is not None
    with pytest.raises(RunStopped):  # plain calls are not sent either: the run is stopping
        await send(gate, "call", sent)
    assert len(sent) == 2


@pytest.mark.anyio
async def test_a_budget_wait_longer_than_max_wait_stops_instead_of_waiting() -> None:
    gate, clock = make_gate([Budget("creates", 1, 60.0, "create")], max_wait=20.0)
    await send(gate, "create")
    with pytest.raises(RunStopped, match="would exceed --max-wait 20s") as caught:
        await send(gate, "create")
    assert caught.value.reason == "max_wait" and clock.sleeps == []


@pytest.mark.anyio
async def test_a_budget_wait_within_deadline_and_max_wait_is_waited() -> None:
    gate, _ = make_gate([Budget("creates", 1, 60.0, "create")], max_wait=120.0,
                        deadline=100.0)
    sent: list[float] = []
    await send(gate, "create", sent)
    await send(gate, "create", sent)
    assert sent == [0.0, 60.0] and gate.closed is None


@pytest.mark.anyio
async def test_remaining_calls_near_zero_stop_a_paced_run_at_the_deadline_not_an_hour_later(
) -> None:
    """Other tools spent the hourly budget: X-Rate-Limit-Remaining 1 of 20,000."""
    gate, clock = make_gate([Budget("calls", 20_000, 3600.0, "all")], deadline=10.0)
    await send(gate)
    gate.observe_headers(20_000, 0)
    with pytest.raises(RunStopped) as caught:
        await send(gate)
    assert caught.value.reason == "deadline" and clock.sleeps == []


@pytest.mark.anyio
async def test_a_backoff_past_the_deadline_is_not_slept_and_stops_only_that_row() -> None:
    gate, clock = make_gate([], deadline=10.0)
    await gate.sleep(4.0)
    with pytest.raises(RunStopped) as caught:
        await gate.sleep(30.0)
    assert caught.value.reason == "deadline" and clock.sleeps == [4.0]
    assert gate.closed is None  # other rows go on until the deadline itself


@pytest.mark.anyio
async def test_past_the_deadline_no_request_is_sent_even_with_room_in_every_budget() -> None:
    gate, clock = make_gate([], deadline=10.0)
    await send(gate)
    clock.now = 10.5
    with pytest.raises(RunStopped, match="deadline has passed"):
        await send(gate)
    assert gate.stats.calls_sent == 1


@pytest.mark.anyio
async def test_close_wakes_requests_queued_behind_a_budget_and_sends_none_of_them() -> None:
    """The first Ctrl-C: creates waiting for the create budget are never sent."""
    clock = FakeClock()
    woken = anyio.Event()

    async def slow_sleep(seconds: float) -> None:  # a real wait, so close() must cut it
        clock.sleeps.append(seconds)
        woken.set()
        await anyio.sleep(3600)

    gate = BudgetGate([Budget("creates", 2, 60.0, "create")], 8, clock=clock, sleep=slow_sleep,
                      max_wait=3600.0)
    control = RunControl()
    control.on_stop(gate.close)
    sent: list[float] = []
    stopped: list[str] = []

    async def create() -> None:
        try:
            await send(gate, "create", sent)
        except RunStopped as exc:
            stopped.append(exc.reason)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(create)
            await woken.wait()  # the third create sleeps for the window
            control.interrupted = True  # what the CLI's first Ctrl-C does
    assert len(sent) == 2
    assert stopped == ["interrupted"] * 8


@pytest.mark.anyio
async def test_close_wakes_a_request_waiting_for_a_place_in_flight() -> None:
    gate, _ = make_gate([], concurrency=1)
    release = anyio.Event()
    results: list[str] = []

    async def holder() -> None:
        async with gate.slot("call"):
            await release.wait()

    async def waiter() -> None:
        try:
            await send(gate)
            results.append("sent")
        except RunStopped as exc:
            results.append(exc.reason)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            gate.close("interrupted", "the run was interrupted")
            await anyio.wait_all_tasks_blocked()
            release.set()  # the in-flight request finishes normally
    assert results == ["interrupted"]
    assert gate.stats.calls_sent == 1


@pytest.mark.anyio
async def test_a_wait_refused_by_the_gate_halts_the_run_control() -> None:
    gate, _ = make_gate([Budget("creates", 1, 60.0, "create")], deadline=5.0)
    control = RunControl()
    control.on_stop(gate.close)
    gate.on_close = control.halt
    await send(gate, "create")
    with pytest.raises(RunStopped):
        await send(gate, "create")
    assert control.stop_reason() == "deadline"
    assert "would pass the run's deadline" in (control.stop_message() or "")
