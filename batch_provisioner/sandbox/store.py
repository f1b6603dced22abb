"""Groups and connections, indexed for lookups and cursor pagination, optionally in SQLite.

Everything is served from memory. With a state file, every change is also written
through to SQLite (stdlib ``sqlite3``) and the file is read back at start, so the
sandbox survives its own restart. Cursors are opaque strings carrying the position
(creation sequence) after which the next page starts; items come in creation order.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from bisect import bisect_right, insort
from collections.abc import Iterable
from pathlib import Path

from batch_provisioner.sandbox.model import Connection, Group, utc_timestamp

_CURSOR_PREFIX = "after:"


class BadCursor(ValueError):
    """A cursor this sandbox did not issue."""


def encode_cursor(position: int) -> str:
    """An opaque cursor for "items after ``position``"."""
    raw = f"{_CURSOR_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The position in a cursor made by :func:`encode_cursor`; BadCursor otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    if not raw.startswith(_CURSOR_PREFIX) or not raw[len(_CURSOR_PREFIX) :].isdigit():
        raise BadCursor(cursor)
    return int(raw[len(_CURSOR_PREFIX) :])


class _SqliteState:
    """Write-through persistence of groups and connections."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS groups "
            "(id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL, ord INTEGER)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS connections "
            "(id TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL)"
        )

    def load_groups(self) -> list[Group]:
        rows = self._db.execute("SELECT id, name, created_at FROM groups ORDER BY ord").fetchall()
        return [Group(*row) for row in rows]

    def load_connections(self) -> list[Connection]:
        rows = self._db.execute("SELECT data FROM connections ORDER BY seq").fetchall()
        return [Connection.from_record(json.loads(row[0])) for row in rows]

    def save_group(self, group: Group, ordinal: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO groups (id, name, created_at, ord) VALUES (?, ?, ?, ?)",
            (group.id, group.name, group.created_at, ordinal),
        )

    def save_connection(self, connection: Connection) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO connections (id, seq, data) VALUES (?, ?, ?)",
            (connection.id, connection.seq, json.dumps(connection.to_record())),
        )

    def delete_connection(self, connection_id: str) -> None:
        self._db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))

    def clear_connections(self) -> None:
        self._db.execute("DELETE FROM connections")

    def close(self) -> None:
        self._db.close()


class Store:
    """Groups and connections with the indexes the endpoints need."""

    def __init__(self, groups: dict[str, str], state_path: Path | None = None) -> None:
        self._state = _SqliteState(state_path) if state_path is not None else None
        self.groups: dict[str, Group] = {}
        self._by_id: dict[str, Connection] = {}
        self._by_seq: dict[int, Connection] = {}
        self._order: list[int] = []
        self._group_order: dict[str, list[int]] = {}
        self._schemas: dict[str, dict[str, str]] = {}
        self._last_seq = 0
        stored = self._state.load_groups() if self._state else []
        for group in stored:
            self._add_group(group, persist=False)
        created_at = utc_timestamp()
        for group_id, name in groups.items():
            if group_id not in self.groups:
                self._add_group(Group(group_id, name, created_at), persist=True)
        for connection in self._state.load_connections() if self._state else []:
            self._index(connection)

    def _add_group(self, group: Group, *, persist: bool) -> None:
        self.groups[group.id] = group
        self._group_order.setdefault(group.id, [])
        self._schemas.setdefault(group.id, {})
        if persist and self._state:
            self._state.save_group(group, len(self.groups))

    def _index(self, connection: Connection) -> None:
        self._by_id[connection.id] = connection
        self._by_seq[connection.seq] = connection
        insort(self._order, connection.seq)
        insort(self._group_order.setdefault(connection.group_id, []), connection.seq)
        self._schemas.setdefault(connection.group_id, {})[connection.schema] = connection.id
        self._last_seq = max(self._last_seq, connection.seq)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def next_seq(self) -> int:
        """The creation sequence number for the next connection."""
        self._last_seq += 1
        return self._last_seq

    def get(self, connection_id: str) -> Connection | None:
        """The connection with this id, if any."""
        return self._by_id.get(connection_id)

    def find(self, group_id: str, schema: str) -> Connection | None:
        """The connection with this schema in this group, if any."""
        connection_id = self._schemas.get(group_id, {}).get(schema)
        return self._by_id.get(connection_id) if connection_id else None

    def add(self, connection: Connection) -> None:
        """Store a new connection."""
        self._index(connection)
        if self._state:
            self._state.save_connection(connection)

    def save(self, connection: Connection) -> None:
        """Persist a changed connection."""
        connection.touch()
        if self._state:
            self._state.save_connection(connection)

    def delete(self, connection_id: str) -> Connection | None:
        """Remove a connection; returns it, or None when unknown."""
        connection = self._by_id.pop(connection_id, None)
        if connection is None:
            return None
        del self._by_seq[connection.seq]
        for order in (self._order, self._group_order[connection.group_id]):
            index = bisect_right(order, connection.seq) - 1
            del order[index]
        del self._schemas[connection.group_id][connection.schema]
        if self._state:
            self._state.delete_connection(connection_id)
        return connection

    def clear(self) -> None:
        """Remove every connection (groups stay)."""
        self._by_id.clear()
        self._by_seq.clear()
        self._order.clear()
        for order in self._group_order.values():
            order.clear()
        for schemas in self._schemas.values():
            schemas.clear()
        self._last_seq = 0
        if self._state:
            self._state.clear_connections()

    def page_connections(
        self, group_id: str | None, schema: str | None, after: int, limit: int
    ) -> tuple[list[Connection], int | None]:
        """One page of connections after position ``after``; returns (items, next_position)."""
        if schema is not None:
            groups: Iterable[str] = [group_id] if group_id is not None else list(self._schemas)
            found = [self.find(g, schema) for g in groups]
            order = sorted(c.seq for c in found if c is not None)
        else:
            order = self._order if group_id is None else self._group_order.get(group_id, [])
        start = bisect_right(order, after)
        seqs = order[start : start + limit]
        has_more = start + limit < len(order)
        return [self._by_seq[s] for s in seqs], (seqs[-1] if has_more and seqs else None)

    def page_groups(self, after: int, limit: int) -> tuple[list[Group], int | None]:
        """One page of groups after position ``after`` (1-based insertion order)."""
        groups = list(self.groups.values())
        page = groups[after : after + limit]
        has_more = after + limit < len(groups)
        return page, (after + limit if has_more else None)

    def close(self) -> None:
        """Close the state file, if any."""
        if self._state:
            self._state.close()
            self._state = None
