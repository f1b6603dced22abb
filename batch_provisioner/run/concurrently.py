"""Run one piece of work per item, a few at a time, and stop at the first fatal API error.

Planning (listing groups, reading connections) and the lifecycle commands (status, connect
cards, rollback) all fan out this way: once one item meets a ``FatalApiError`` (401/403, a
wrong base URL), a ``RunStopped`` (a wait past the deadline or ``--max-wait``, Ctrl-C) or an
``OutputError`` (the journal cannot be written), no further item starts, the ones in flight
finish, and that error is raised, not a group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import anyio

from batch_provisioner.errors import FatalApiError, OutputError, RunStopped

T = TypeVar("T")


async def for_each(items: Iterable[T], work: Callable[[T], Awaitable[None]],
                   concurrency: int) -> None:
    """``await work(item)`` for every item, ``concurrency`` at a time; re-raise the first fatal."""
    limiter = anyio.CapacityLimiter(max(1, concurrency))
    fatal: list[FatalApiError | RunStopped | OutputError] = []

    async def one(item: T) -> None:
        async with limiter:
            if fatal:
                return
            try:
                await work(item)
            except (FatalApiError, RunStopped, OutputError) as exc:
                fatal.append(exc)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)
    if fatal:
        raise fatal[0]
