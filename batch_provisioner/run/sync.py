"""Sync twins of the async commands, for callers without an event loop (scripts, notebooks)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import anyio

P = ParamSpec("P")
R = TypeVar("R")


def sync(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """``fn`` run to completion in a fresh event loop: same arguments, same result."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return anyio.run(functools.partial(fn, *args, **kwargs))

    run.__name__ = run.__qualname__ = fn.__name__.removesuffix("_async")
    run.__doc__ = (f"{inspect.cleandoc(fn.__doc__ or '')}\n\n(The sync twin of "
                   f"``{fn.__name__}``: same arguments and result, no event loop needed.)")
    return run
