"""The ledger: every ``/v1`` request the sandbox served, and creates per (group, schema).

Tests and benchmarks read their truth here (``GET /sandbox/ledger``). Recording is a
list append per request; the JSON is only built when the ledger is read.

``in_flight`` is the number of ``/v1`` requests being handled when a request arrived,
itself included. The sandbox answers most requests without ever yielding the event
loop, so it is usually 1; with ``latency_ms`` (or ``slow``) faults requests overlap and it
shows the client's real concurrency. ``status`` is null when no answer was delivered
(``reset``, ``drop_after_commit``, or a ``slow`` answer the client gave up on). A
"creation" is a create that stored a connection, whether or not its answer arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class LedgerEntry:
    """One served request (mutable until its answer is known)."""

    __slots__ = ("fault", "group_id", "in_flight", "method", "path", "schema", "seq", "status", "t")

    def __init__(self, seq: int, t: float, method: str, path: str, in_flight: int) -> None:
        self.seq = seq
        self.t = t
        self.method = method
        self.path = path
        self.in_flight = in_flight
        self.status: int | None = None
        self.fault: str | None = None
        self.group_id: str | None = None
        self.schema: str | None = None

    def describe(self) -> dict[str, Any]:
        """The entry as JSON."""
        return {
            "seq": self.seq,
            "t": round(self.t, 6),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "in_flight": self.in_flight,
            "fault": self.fault,
            "group_id": self.group_id,
            "schema": self.schema,
        }


class Ledger:
    """Request log plus per-(group_id, schema) create attempts and creations."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._entries: list[LedgerEntry] = []
        self._creates: dict[tuple[str, str], list[int]] = {}
        self.max_in_flight = 0
        self.count_429 = 0
        self.creations = 0

    def open(self, method: str, path: str, in_flight: int) -> LedgerEntry:
        """Record a request on arrival; fill in its status when answered."""
        entry = LedgerEntry(
            len(self._entries) + 1, self._clock() - self._start, method, path, in_flight
        )
        self._entries.append(entry)
        if in_flight > self.max_in_flight:
            self.max_in_flight = in_flight
        return entry

    def close(self, entry: LedgerEntry, status: int | None) -> None:
        """Record the status answered (None: the connection was closed with no answer)."""
        entry.status = status
        if status == 429:
            self.count_429 += 1

    def create_attempt(self, entry: LedgerEntry, group_id: str, schema: str) -> None:
        """Note a create request for (group_id, schema)."""
        entry.group_id, entry.schema = group_id, schema
        self._creates.setdefault((group_id, schema), [0, 0])[0] += 1

    def creation(self, group_id: str, schema: str) -> None:
        """Note that a create actually stored a connection."""
        self._creates.setdefault((group_id, schema), [0, 0])[1] += 1
        self.creations += 1

    def reset(self) -> None:
        """Forget everything and restart the clock."""
        self._start = self._clock()
        self._entries = []
        self._creates = {}
        self.max_in_flight = self.count_429 = self.creations = 0

    def describe(self, since: int = 0) -> dict[str, Any]:
        """``GET /sandbox/ledger``: requests with ``seq > since``, creates, counts."""
        return {
            "requests": [e.describe() for e in self._entries[max(0, since) :]],
            "creates": [
                {"group_id": g, "schema": s, "attempts": a, "creations": c}
                for (g, s), (a, c) in self._creates.items()
            ],
            "max_in_flight": self.max_in_flight,
            "counts": {
                "requests": len(self._entries),
                "429": self.count_429,
                "creations": self.creations,
            },
        }
