"""BudgetGate.holding: what the requests held back wait for, read by the progress display.

The gate runs on a fake clock whose sleeps block until the test moves on (``HeldClock``), so a
request stays held back while the test reads what it waits for.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from batch_provisioner.api.budgets import BudgetGate, Hold
from batch_provisioner.errors import RunStopped
from batch_provisioner.settings import Budget


class HeldClock:
    """A clock that moves only when the test says so; a sleep waits for the gate to close."""

    def __init__(self) -> None:
        self.now = 0.0
        self.released = anyio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, _seconds: float) -> None:
        await self.released.wait()


def held_gate(budgets: list[Budget]) -> tuple[BudgetGate, HeldClock]:
    clock = HeldClock()
    return BudgetGate(budgets, 4, clock=clock, sleep=clock.sleep, max_wait=3600.0), clock


async def hold_back(gate: BudgetGate, kind: str, tg: anyio.abc.TaskGroup) -> None:
    """Start a request of ``kind`` and let it reach its wait."""
    async def send() -> None:
        with pytest.raises(RunStopped):
            async with gate.slot(kind):
                pass

    tg.start_soon(send)
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_a_spent_budget_says_which_budget_and_how_long_the_wait_is() -> None:
    gate, clock = held_gate([Budget("calls_per_hour", 100, 3600.0),
                             Budget("creates_per_minute", 1, 60.0, "create")])
    async with gate.slot("create"):
        pass  # the minute's create is spent at t=0
    assert gate.holding() is None  # nothing waits
    async with anyio.create_task_group() as tg:
        await hold_back(gate, "create", tg)
        clock.now = 48.0
        assert gate.holding() == Hold("creates_per_minute", 12.0)
        assert gate.holding().describe() == "waiting for creates_per_minute budget, 12 s"
        gate.close("test", "the test is over")
    assert gate.holding() is None  # nobody waits any more


@pytest.mark.anyio
async def test_the_tightest_budget_of_a_kind_is_the_one_it_waits_for() -> None:
    gate, clock = held_gate([Budget("calls_per_hour", 2, 3600.0),
                             Budget("creates_per_minute", 2, 60.0, "create")])
    for _ in range(2):
        async with gate.slot("create"):
            clock.now += 30.0  # each create is counted when it completes: t=30, t=60
    async with anyio.create_task_group() as tg:
        await hold_back(gate, "create", tg)
        hold = gate.holding()
        assert hold is not None and hold.budget == "calls_per_hour"  # 3,570 s beats 30 s
        assert hold.seconds == pytest.approx(3570.0)
        gate.close("test", "the test is over")


@pytest.mark.anyio
async def test_a_429_pause_is_named_and_a_request_merely_in_flight_is_not_a_wait() -> None:
    gate, clock = held_gate([Budget("calls_per_hour", 100, 3600.0)])
    async with gate.slot("call"):
        assert gate.holding() is None  # in flight, nothing held back
    gate.pause(20.0, "Retry-After")
    async with anyio.create_task_group() as tg:
        await hold_back(gate, "call", tg)
        clock.now = 5.0
        hold = gate.holding()
        assert hold == Hold(None, 15.0)
        assert hold.describe() == "waiting for the API's 429 pause, 15 s"
        gate.close("test", "the test is over")


@pytest.mark.anyio
async def test_a_window_full_of_requests_in_flight_waits_for_one_to_finish() -> None:
    gate, _ = held_gate([Budget("calls_per_hour", 1, 3600.0)])
    # the only call of the window, still unanswered
    async with anyio.create_task_group() as tg, gate.slot("call"):
        await hold_back(gate, "call", tg)
        hold = gate.holding()
        assert hold == Hold("calls_per_hour", None)
        assert hold.describe() == ("waiting for calls_per_hour budget "
                                   "(a request in flight to finish)")
        gate.close("test", "the test is over")
