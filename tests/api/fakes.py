"""Test doubles shared by the API tests."""

from __future__ import annotations

import anyio.lowlevel


class FakeClock:
    """A monotonic clock that jumps forward whenever someone sleeps on it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()
