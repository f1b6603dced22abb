"""``rollback``: delete exactly what a run proved it created, and journal each deletion.

Each connection deleted is journaled ``rolled_back`` at once, so a rerun after a crash skips it;
a 404 means it was already gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from batch_provisioner.api.client import FivetranClient
from batch_provisioner.api.wire import schema_of
from batch_provisioner.errors import ApiError, FatalApiError, NotFoundApiError, RowApiError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.run.concurrently import for_each
from batch_provisioner.run.journal import Journal, now_iso
from batch_provisioner.run.lifecycle import RunRow, RunState
from batch_provisioner.run.ownership import Reservations
from batch_provisioner.run.row_outcome import error_code_of


def rollback_candidates(state: RunState) -> tuple[list[RunRow], list[RunRow], list[int]]:
    """(claimed by this run, already rolled back, rows whose create was left in doubt)."""
    by_key = {r.key: r for r in state.rows if r.key is not None}
    claimed = [by_key[key] for key, o in state.journal.outcomes.items()
               if o.status is Status.CREATED and o.connection_id and key in by_key]
    done = [by_key[key] for key in state.journal.rolled_back if key in by_key
            and state.journal.outcomes.get(key, None) is not None
            and state.journal.outcomes[key].status is Status.ROLLED_BACK]
    in_doubt = sorted(by_key[key].row if key in by_key else doubt.row
                      for key, doubt in state.journal.started.items()
                      if doubt.op == str(ActionKind.CREATE))
    return (sorted(claimed, key=lambda r: r.row), sorted(done, key=lambda r: r.row), in_doubt)


def why_not_ours(row: RunRow, current: dict[str, Any]) -> str | None:
    """Why the connection as it is now no longer matches the run's claim (None: it does)."""
    checks = (("id", row.connection_id, current.get("id")),
              ("group_id", row.group_id, current.get("group_id")),
              ("schema", row.schema, schema_of(current)),
              ("created_at", row.created_at, current.get("created_at")))
    for name, claimed, now in checks:
        if claimed is not None and now is not None and str(claimed) != str(now):
            return f"its {name} is {now}, the run claimed {claimed}"
        if name in ("id", "group_id") and now is None:
            return f"the API gave no {name} for it"
    return None


async def delete_created(client: FivetranClient, rows: Sequence[RunRow], journal: Journal,
                         concurrency: int, on_outcome: Callable[[Outcome], None] = lambda _o: None,
                         reservations: Reservations | None = None,
                         ) -> tuple[list[Outcome], FatalApiError | None]:
    """Re-read each claimed connection and DELETE it only if it still matches the claim.

    A 404 on the read or on the DELETE (a retried one too: an earlier try or someone else
    deleted it, this run cannot tell) is "already gone", never counted as deleted now; a
    connection whose id, group, schema or created_at no longer match is left, "not provably
    ours". Each deletion is journaled ``rolled_back`` as it lands, so a rerun skips it.
    """
    outcomes: dict[object, Outcome] = {}  # by key: rows moved since share numbers

    async def delete(row: RunRow) -> None:
        assert row.connection_id is not None
        base = _rollback_outcome(row, Status.ROLLED_BACK, started_at=now_iso())
        try:
            outcome = await _delete_one(client, row, base)
        except FatalApiError as exc:
            outcomes[_id(row)] = replace(base, status=Status.FAILED, error_code="Fatal",
                                        http_status=exc.http_status, error_message=exc.message,
                                        finished_at=now_iso())
            raise
        if outcome.status is Status.ROLLED_BACK:
            await journal.aoutcome(outcome)  # durable before it counts: a rerun skips it
            if reservations is not None and row.key is not None:
                reservations.release(row.key)
        outcomes[_id(row)] = outcome
        on_outcome(outcome)

    fatal: FatalApiError | None = None
    try:
        await for_each(rows, delete, concurrency)
    except FatalApiError as exc:
        fatal = exc
    for row in rows:
        outcomes.setdefault(_id(row), _rollback_outcome(
            row, Status.NOT_ATTEMPTED, error_code="fatal",
            error_message="not started: the rollback stopped on a fatal API error"))
    return [outcomes[_id(r)] for r in rows], fatal


def _id(row: RunRow) -> object:
    return row.key or row.row


async def _delete_one(client: FivetranClient, row: RunRow, base: Outcome) -> Outcome:
    assert row.connection_id is not None
    try:
        current = await client.get_connection(row.connection_id)
        reason = why_not_ours(row, current)
        if reason is not None:
            return replace(base, status=Status.NOT_ATTEMPTED, error_code=NOT_PROVABLY_OURS,
                           error_message=f"left, not provably ours: {reason}",
                           finished_at=now_iso())
        if not await client.delete_connection(row.connection_id):  # a retry's 404
            return replace(base, http_status=404, error_code=ALREADY_GONE,
                           error_message="already gone (404): nothing deleted now (a "
                           "retried DELETE found it gone)", finished_at=now_iso())
    except NotFoundApiError as exc:
        return replace(base, http_status=exc.http_status, error_code=ALREADY_GONE,
                       error_message="already gone (404): nothing to delete",
                       finished_at=now_iso())
    except FatalApiError:
        raise
    except ApiError as exc:
        if isinstance(exc, RowApiError) and exc.http_status == 404:  # a code not NotFound*
            return replace(base, http_status=404, error_code=ALREADY_GONE,
                           error_message=f"already gone (404): nothing to delete ({exc.message})",
                           finished_at=now_iso())
        return replace(base, status=Status.FAILED, http_status=exc.http_status,
                       error_code=error_code_of(exc), error_message=exc.message,
                       finished_at=now_iso())
    return replace(base, finished_at=now_iso())


NOT_PROVABLY_OURS = "NotProvablyOurs"
ALREADY_GONE = "AlreadyGone"


def _rollback_outcome(row: RunRow, status: Status, **fields: Any) -> Outcome:
    return Outcome(row=row.row, status=status, action=ActionKind.ROLLBACK,
                   group_id=row.group_id, schema=row.schema, connection_id=row.connection_id,
                   created_at=row.created_at, **fields)
