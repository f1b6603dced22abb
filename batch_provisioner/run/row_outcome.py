"""The runner's records of one row: its attempts, its lookups, and the outcome they make.

Pure functions and small records, so that the runner itself reads as the flow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

from batch_provisioner.api.retry import resumable
from batch_provisioner.errors import AmbiguousApiError, ApiError, RetriableApiError
from batch_provisioner.models import Action, Outcome, Status
from batch_provisioner.run.journal import now_iso

JSON = dict[str, Any]


class Lookup(enum.Enum):
    FOUND = "found"
    ABSENT = "absent"
    FAILED = "lookup_failed"


@dataclass(frozen=True)
class Reconciliation:
    """What a lookup by (group_id, schema) said about a create that may have been applied."""

    result: Lookup
    connection: JSON | None = None
    error: ApiError | None = None


@dataclass
class CreateRow:
    """One create across its attempts."""

    maybe_sent: bool  # an earlier attempt (or a crashed run) may have been applied
    #: When the first attempt that may have landed was sent; None once a lookup showed the
    #: key absent (nothing of ours landed) or before any such attempt.
    since: str | None = None
    last_send: str | None = None  # when the latest create of this row was sent
    not_ours: frozenset[str] = frozenset()  # connection ids other runs claimed
    attempt: int = 0
    tried: int = 0  # attempts that got an answer or an error (not those the run stopped)
    last: ApiError | None = None
    sent_error: ApiError | None = None  # the last create that may have been applied


def in_doubt(outcome: Outcome, row: CreateRow) -> Outcome:
    """A failed create whose earlier attempt may still have landed stays in doubt."""
    if row.since is None:
        return outcome
    return replace(outcome, in_doubt=True, sent_at=row.since, retriable=True)


def lookup_failed(create: ApiError, lookup: ApiError) -> ApiError:
    """The create's error, saying that the lookup after it failed too: it may have landed."""
    return AmbiguousApiError(
        f"{create.message}; the lookup after it failed ({lookup.message}): the create may "
        "have landed, and a resume looks it up before resending",
        http_status=create.http_status, code=create.code or "Ambiguous",
        method=create.method, path=create.path)


def patch_body(changes: dict[str, tuple[Any, Any]]) -> JSON:
    """The PATCH body that sets every changed dotted path to its new value."""
    fields: JSON = {}
    for path, (_old, new) in changes.items():
        target = fields
        parts = path.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = new
    return fields


def new_outcome(action: Action, status: Status, connection_id: str | None = None,
             **fields: Any) -> Outcome:
    request = action.request
    return Outcome(row=request.row, status=status, action=action.kind,
                   group_id=request.group_id, schema=request.schema,
                   connection_id=connection_id or action.connection_id, finished_at=now_iso(),
                   **fields)


def failed(action: Action, exc: ApiError, attempts: int, started: str) -> Outcome:
    """A failed row; whether a resume may retry it is decided here, from the error's type."""
    code = error_code_of(exc)
    return new_outcome(action, Status.FAILED, http_status=exc.http_status, error_code=code,
                    error_message=exc.message, attempts=attempts, started_at=started,
                    retriable=resumable(exc))


def error_code_of(exc: ApiError) -> str:
    """The API's own code (``NotFound_Group``), else one named after what happened
    (``Ambiguous``, ``TooManyRequests``, the HTTP status as ``BadRequest`` or ``Forbidden``),
    never a Python class name: the code is in results.csv and report.html."""
    if exc.code:
        return exc.code
    if isinstance(exc, AmbiguousApiError):
        return "Ambiguous"
    if isinstance(exc, RetriableApiError):
        return "TooManyRequests" if exc.http_status == 429 else "Retriable"
    try:
        phrase = HTTPStatus(exc.http_status or 0).phrase
    except ValueError:
        return "NoAnswer" if exc.http_status is None else f"Http{exc.http_status}"
    return "".join(word.capitalize() for word in phrase.replace("-", " ").split())


def from_connection(action: Action, data: JSON, status: Status, attempts: int, started: str,
                     *, reconciled: bool = False) -> Outcome:
    state = data.get("status") if isinstance(data.get("status"), dict) else {}
    card = data.get("connect_card") if isinstance(data.get("connect_card"), dict) else {}
    created = data.get("created_at")
    return new_outcome(action, status, connection_id=str(data.get("id") or "") or None,
                    setup_state=(state or {}).get("setup_state"),
                    connect_card_uri=(card or {}).get("uri"), attempts=attempts,
                    reconciled=reconciled, started_at=started, http_status=None,
                    created_at=str(created) if created else None)
