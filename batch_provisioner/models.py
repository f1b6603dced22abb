"""Frozen records passed between the stages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]
SERVICE = "tiktok_ads"  # the one Fivetran service this job creates


class Status(enum.StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    UPDATED = "updated"
    INVALID = "invalid"
    FAILED = "failed"
    CONFLICT = "conflict"
    NOT_ATTEMPTED = "not_attempted"
    ROLLED_BACK = "rolled_back"


class ActionKind(enum.StrEnum):
    CREATE = "create"
    EXISTS = "exists"
    DRIFT = "drift"
    UPDATE = "update"
    CONFLICT = "conflict"
    INVALID = "invalid"  # an outcome's action: the row was never sent
    ROLLBACK = "rollback"  # an outcome's action: written by rollback


@dataclass(frozen=True)
class ConnectionRequest:
    """A valid row, expanded. ``payload`` holds ``SecretRef`` objects until send time."""

    row: int
    group_id: str | None
    group_name: str | None
    schema: str
    payload: Payload = field(repr=False)
    #: The connection this row is pinned to (its ``connection_id`` cell, as ``export``
    #: writes it): planned only against that connection, never created.
    connection_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.group_id or f"name:{self.group_name}", self.schema)


@dataclass(frozen=True)
class Action:
    """What the plan decided for one request."""

    kind: ActionKind
    request: ConnectionRequest
    connection_id: str | None = None
    detail: str = ""
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The final word on one input row. Never carries a secret."""

    row: int
    status: Status
    action: ActionKind = ActionKind.CREATE
    group_id: str | None = None
    schema: str | None = None
    connection_id: str | None = None
    setup_state: str | None = None
    connect_card_uri: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    reconciled: bool = False
    retriable: bool = False  # a failure a later run may get past (decided from the error type)
    started_at: str | None = None
    finished_at: str | None = None
    #: The connection's ``created_at`` as the API reported it (what rollback checks again).
    created_at: str | None = None
    #: A create of this row may have been applied and nothing has settled it yet: a resume
    #: (or another invocation) looks the key up before anything is resent.
    in_doubt: bool = False
    #: When the attempts in doubt began (the earliest send that may have landed).
    sent_at: str | None = None

    @property
    def key(self) -> tuple[str, str] | None:
        """The connection's identity, (group_id, schema), once the group is known."""
        return (self.group_id, self.schema) if self.group_id and self.schema else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row, "status": str(self.status), "action": str(self.action),
            "group_id": self.group_id, "schema": self.schema,
            "connection_id": self.connection_id, "setup_state": self.setup_state,
            "connect_card_uri": self.connect_card_uri, "http_status": self.http_status,
            "error_code": self.error_code, "error_message": self.error_message,
            "attempts": self.attempts, "reconciled": self.reconciled,
            "retriable": self.retriable, "started_at": self.started_at,
            "finished_at": self.finished_at, "created_at": self.created_at,
            "in_doubt": self.in_doubt, "sent_at": self.sent_at,
        }


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``0 rows``, ``2,500 rows``: a count with its noun in the right number
    (``plural`` for a noun that does not simply take an ``s``: ``counted(2, "entry",
    "entries")``)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
