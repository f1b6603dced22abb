"""``rollback``: delete exactly what a run proved it created, and journal each deletion.

Each connection deleted is journaled ``rolled_back`` at once, so a rerun after a crash skips it;
a 404 means it was already gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import ApiError, FatalApiError, NotFoundApiError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.run.concurrently import for_each
from batch_provisioner.run.journal import Journal, now_iso
from batch_provisioner.run.lifecycle import RunRow, RunState


def rollback_candidates(state: RunState) -> tuple[list[RunRow], list[RunRow], list[int]]:
    """(to delete, already rolled back, creates left in flight by a stopped run)."""
    by_row = {r.row: r for r in state.rows}
    created = [by_row[row] for row, o in sorted(state.journal.outcomes.items())
               if o.status is Status.CREATED and o.connection_id]
    done = [by_row[row] for row in sorted(state.journal.rolled_back) if row in by_row]
    return created, done, sorted(state.journal.started)


async def delete_created(client: FivetranClient, rows: Sequence[RunRow], journal: Journal,
                         concurrency: int, on_outcome: Callable[[Outcome], None] = lambda _o: None
                         ) -> tuple[list[Outcome], FatalApiError | None]:
    """DELETE each connection; journal ``rolled_back`` as each lands (404: already gone)."""
    outcomes: dict[int, Outcome] = {}

    async def delete(row: RunRow) -> None:
        assert row.connection_id is not None
        base = _rollback_outcome(row, Status.ROLLED_BACK, started_at=now_iso())
        try:
            await client.delete_connection(row.connection_id)
            outcome = replace(base, finished_at=now_iso())
        except NotFoundApiError as exc:
            outcome = replace(base, http_status=exc.http_status, finished_at=now_iso(),
                              error_message="already gone (404): nothing to delete")
        except FatalApiError as exc:
            outcomes[row.row] = replace(base, status=Status.FAILED, error_code="Fatal",
                                        http_status=exc.http_status, error_message=exc.message,
                                        finished_at=now_iso())
            raise
        except ApiError as exc:
            outcome = replace(base, status=Status.FAILED, http_status=exc.http_status,
                              error_code=exc.code or type(exc).__name__,
                              error_message=exc.message, finished_at=now_iso())
        if outcome.status is Status.ROLLED_BACK:
            await journal.aoutcome(outcome)  # durable before it counts: a rerun skips it
        outcomes[row.row] = outcome
        on_outcome(outcome)

    fatal: FatalApiError | None = None
    try:
        await for_each(rows, delete, concurrency)
    except FatalApiError as exc:
        fatal = exc
    for row in rows:
        outcomes.setdefault(row.row, _rollback_outcome(
            row, Status.NOT_ATTEMPTED, error_code="fatal",
            error_message="not started: the rollback stopped on a fatal API error"))
    return [outcomes[r.row] for r in rows], fatal


def _rollback_outcome(row: RunRow, status: Status, **fields: Any) -> Outcome:
    return Outcome(row=row.row, status=status, action=ActionKind.ROLLBACK,
                   group_id=row.group_id, schema=row.schema, connection_id=row.connection_id,
                   **fields)
