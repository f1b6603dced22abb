"""Blocking calls off the event loop, in a worker thread, the calls of one pass of the loop
together (one thread hop for all of them).

A hop to a worker thread costs more CPU than reading a small file, and many at once cost
far more (64 rows hopping together contend for the GIL: about 0.7 ms of CPU per row against
0.09 ms for the read itself). Rows tend to ask together: a journal commit acknowledges a
batch of them in one pass of the loop, and they all go on to read their secrets. The first
caller of a pass leads: it lets the others of that pass join, then runs every call of the
round, one after another, in one worker thread; each caller gets its own result or its own
exception. A round, once begun, is shielded: a cancelled leader still finishes the others'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Round(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    results: list[R | Exception] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)


class ThreadRounds(Generic[T, R]):
    """``await rounds(item)`` is ``fn(item)`` run in a worker thread, batched per loop pass."""

    def __init__(self, fn: Callable[[T], R]) -> None:
        self._fn = fn
        self._open: _Round[T, R] | None = None  # the round callers of this pass join

    async def __call__(self, item: T) -> R:
        current = self._open
        leader = current is None
        if current is None:
            current = self._open = _Round()
        index = len(current.items)
        current.items.append(item)
        if leader:
            await self._lead(current)
        else:
            await current.done.wait()
        result = current.results[index]
        if isinstance(result, Exception):
            raise result
        return result

    async def _lead(self, current: _Round[T, R]) -> None:
        try:
            with anyio.CancelScope(shield=True):  # the round holds other callers' items
                await anyio.lowlevel.checkpoint()  # the callers of this pass join in
                self._open = None
                current.results = await anyio.to_thread.run_sync(self._run, current.items)
        finally:
            if self._open is current:
                self._open = None
            if len(current.results) < len(current.items):  # interrupted: nobody is answered
                current.results = [RuntimeError("interrupted")] * len(current.items)
            current.done.set()

    def _run(self, items: list[T]) -> list[R | Exception]:
        results: list[R | Exception] = []
        for item in items:
            try:
                results.append(self._fn(item))
            except Exception as exc:  # each caller gets its own exception
                results.append(exc)
        return results
