"""The commands on a finished (or stopped) run, by its id: ``status``, ``connect_cards``,
``rollback``. Each holds the run's lock while it works, so no apply runs on it meanwhile.

Like :mod:`batch_provisioner.run.commands`, nothing here prints or exits; each returns a frozen
result with the exit code the CLI uses, and has a sync twin.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import ExitCode, FatalApiError, OutputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.report.files import write_text
from batch_provisioner.report.results import write_csv
from batch_provisioner.run import lifecycle as lc
from batch_provisioner.run.journal import Journal, checked_run_id, now_iso
from batch_provisioner.run.lock import RunLock
from batch_provisioner.run.ownership import Reservations
from batch_provisioner.run.results import (
    ROLLED_BACK_EARLIER,
    ConnectCardsResult,
    RollbackPlan,
    RollbackResult,
    StatusResult,
)
from batch_provisioner.run.rollback import delete_created, rollback_candidates
from batch_provisioner.run.sync import sync
from batch_provisioner.run.target import (
    Target,
    check_target_options,
    open_client,
    select_target,
)
from batch_provisioner.settings import ClientSettings
from batch_provisioner.sheet.columns import (
    CONNECT_CARD_COLUMNS,
    ROLLBACK_COLUMNS,
    RUN_ROW_COLUMNS,
    STATUS_COLUMNS,
)

PathLike = str | os.PathLike[str]


def find_run(run_id: str, reports_dir: PathLike = "reports") -> Path:
    """The run's folder; ``InputError`` (exit 2) when there is no such run."""
    return lc.run_dir_of(Path(reports_dir), run_id)


def find_run_to_resume(run_id: str, reports_dir: PathLike = "reports") -> Path:
    """The folder of a run ``apply --resume`` may carry on; ``InputError`` (exit 2) if none.

    A folder apply made (its ``lock`` or ``run.log.jsonl`` is there) but was killed in before
    its journal began is such a run: every send is journaled before it leaves, so nothing of
    it was sent, and the resume starts it afresh.
    """
    run_dir = Path(reports_dir) / checked_run_id(run_id)
    if run_dir.is_dir() and any((run_dir / name).exists() for name in ("lock", "run.log.jsonl")):
        return run_dir
    return find_run(run_id, reports_dir)


@contextlib.contextmanager
def _session(run_id: str, reports_dir: PathLike, target: Target | None, sandbox: bool,
             sandbox_url: str | None, api_url: str | None,
             on_target: Callable[[Target], None]) -> Iterator[tuple[lc.RunState, Target]]:
    check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    state = lc.load_run(Path(reports_dir), run_id)
    with RunLock(state.run_dir), select_target(
            target=target, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
            reports_dir=Path(reports_dir)) as tgt:
        on_target(tgt)
        yield state, tgt


def _frame(lines: Sequence[dict[str, Any]], columns: Sequence[str]) -> pl.DataFrame:
    if not lines:
        return pl.DataFrame(schema={c: pl.String for c in columns})
    return pl.DataFrame(list(lines), infer_schema_length=None)


async def status_async(run_id: str, *, reports_dir: PathLike = "reports",
                       target: Target | None = None, sandbox: bool = False,
                       sandbox_url: str | None = None, api_url: str | None = None,
                       on_target: Callable[[Target], None] = lambda _t: None) -> StatusResult:
    """Re-read each connection of the run: its setup state and setup tests; write status.csv
    and refresh the run's results and report.html."""
    with _session(run_id, reports_dir, target, sandbox, sandbox_url, api_url,
                  on_target) as (state, tgt):
        rows = state.connections()
        async with open_client(tgt, ClientSettings()) as client:
            found = await lc.read_connections(client, rows)
        checked = now_iso()
        lines = [lc.status_line(row, found[row.row]) for row in rows]
        updates = {line["row"]: {"setup_state": line["setup_state"],
                                 "setup_tests": line["setup_tests"]}
                   for line in lines if not line["error"]}
        states = [str(line["setup_state"]) for line in lines if line["setup_state"]]
        tally = {s: states.count(s) for s in sorted(set(states))}
        path = state.run_dir / "status.csv"
        write_csv(_frame(lines, (*RUN_ROW_COLUMNS, *state.carry, *STATUS_COLUMNS)), path)
        refreshed = lc.refresh_report(state, updates, {"status_checked_at": checked,
                                                       "setup_states": tally})
    code = ExitCode.ROWS_FAILED if any(line["error"] for line in lines) else ExitCode.OK
    return StatusResult(run_id, tuple(lines), tally, code, {"status.csv": path},
                        bool(refreshed), tuple(state.carry))


async def connect_cards_async(run_id: str, *, reports_dir: PathLike = "reports",
                              target: Target | None = None, sandbox: bool = False,
                              sandbox_url: str | None = None, api_url: str | None = None,
                              on_target: Callable[[Target], None] = lambda _t: None
                              ) -> ConnectCardsResult:
    """Fresh connect-card URIs for the run's connections still incomplete; connect_cards.csv."""
    with _session(run_id, reports_dir, target, sandbox, sandbox_url, api_url,
                  on_target) as (state, tgt):
        rows = state.connections()
        async with open_client(tgt, ClientSettings()) as client:
            results = await lc.refresh_cards(client, rows,
                                             lambda: lc.input_card_configs(state.run_dir))
        cards = [r for r in results if r.uri]
        lines = [{"row": r.row.row, "group_id": r.row.group_id, "schema": r.row.schema,
                  "connection_id": r.row.connection_id, **r.row.carry, "uri": r.uri,
                  "expires_at": r.expires_at} for r in cards]
        path = state.run_dir / "connect_cards.csv"
        try:
            write_csv(_frame(lines, (*RUN_ROW_COLUMNS, *state.carry, *CONNECT_CARD_COLUMNS)),
                      path)
            lc.refresh_report(state, {r.row.row: {"connect_card_uri": r.uri,
                                                  "setup_state": r.setup_state} for r in cards},
                              {"connect_cards_at": now_iso()})
        except OutputError as exc:  # new links were made: exit 4; run it again for others
            raise exc.after_sending(bool(cards), f"fix the cause, then connect-cards {run_id} "
                                    "asks for fresh links again") from None
    code = ExitCode.ROWS_FAILED if any(r.error for r in results) else ExitCode.OK
    return ConnectCardsResult(run_id, tuple(results), code, {"connect_cards.csv": path},
                              tuple(state.carry))


def _always(_plan: RollbackPlan) -> bool:
    return True


async def rollback_async(run_id: str, *, confirm: Callable[[RollbackPlan], bool] = _always,
                         reports_dir: PathLike = "reports", target: Target | None = None,
                         sandbox: bool = False, sandbox_url: str | None = None,
                         api_url: str | None = None, concurrency: int = 8,
                         on_target: Callable[[Target], None] = lambda _t: None
                         ) -> RollbackResult:
    """Delete exactly the connections this run created (proven claims that still match).

    ``confirm(plan)`` is called first, always (so it can show what is left in doubt), and
    nothing is deleted unless it returns True; the default says yes, so a library call
    ``rollback(run_id)`` deletes at once (the CLI asks, or needs ``--yes``).
    """
    check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    state = lc.load_run(Path(reports_dir), run_id)
    with RunLock(state.run_dir):
        todo, earlier, in_flight = rollback_candidates(state)
        plan = RollbackPlan(run_id, tuple(todo), tuple(earlier), tuple(in_flight))
        if not confirm(plan) and todo:
            return RollbackResult(plan, (), ExitCode.ROWS_FAILED, confirmed=False)
        outcomes: list[Outcome] = []
        fatal: FatalApiError | None = None
        if todo:
            with select_target(target=target, sandbox=sandbox, sandbox_url=sandbox_url,
                               api_url=api_url, reports_dir=Path(reports_dir)) as tgt:
                on_target(tgt)
                journal = Journal(state.run_dir)
                journal.write({"type": "rollback", "run_id": run_id, "t": now_iso()})
                try:
                    async with open_client(tgt, ClientSettings(concurrency=concurrency)) as client:
                        try:
                            outcomes, fatal = await delete_created(
                                client, todo, journal, concurrency,
                                reservations=Reservations(Path(reports_dir), run_id))
                        except OutputError as exc:  # each deletion journaled is durable
                            raise exc.after_sending(_deleted(client), _AGAIN.format(run_id)
                                                    ) from None
                finally:
                    with contextlib.suppress(OutputError):
                        journal.close()
        outcomes += [Outcome(row=r.row, status=Status.ROLLED_BACK, action=ActionKind.ROLLBACK,
                             group_id=r.group_id, schema=r.schema, connection_id=r.connection_id,
                             error_message=ROLLED_BACK_EARLIER) for r in earlier]
        outcomes += [Outcome(row=row, status=Status.NOT_ATTEMPTED, action=ActionKind.ROLLBACK,
                             error_code="InFlight", error_message="its create was in flight "
                             "when the run stopped: resume the apply, then roll back")
                     for row in in_flight]
        outcomes.sort(key=lambda o: o.row)
        code = (ExitCode.FATAL_API if fatal else ExitCode.ROWS_FAILED
                if any(o.status is not Status.ROLLED_BACK for o in outcomes) else ExitCode.OK)
        try:
            paths = _write_rollback(state, outcomes, int(code))
            in_results = {r.key: r.row for r in state.rows if r.in_results and r.key}
            lc.refresh_report(state, {in_results[o.key]: {"status": str(Status.ROLLED_BACK)}
                                      for o in outcomes if o.status is Status.ROLLED_BACK
                                      and o.key in in_results},
                              {"rolled_back_at": now_iso()})
        except OutputError as exc:  # the deletions are journaled: a rerun writes the files
            raise exc.after_sending(bool(todo), _AGAIN.format(run_id)) from None
    return RollbackResult(plan, tuple(outcomes), code, confirmed=True,
                          fatal_message=fatal.message if fatal else None, paths=paths)


_AGAIN = ("every deletion is journaled: fix the cause, then rollback {0} --yes carries on "
          "and writes the reports")


def _deleted(client: FivetranClient) -> bool:
    """Whether this rollback sent a DELETE."""
    return any(method == "DELETE" for _t, method, *_ in client.stats.timeline)


def _write_rollback(state: lc.RunState, outcomes: list[Outcome], code: int) -> dict[str, Path]:
    folder = state.run_dir / "rollback"
    carry = {r.key: r.carry for r in state.rows if r.key is not None}
    lines = [{"row": o.row, "group_id": o.group_id, "schema": o.schema,
              "connection_id": o.connection_id, **(carry.get(o.key, {}) if o.key else {}),
              "status": str(o.status),
              "http_status": o.http_status, "error_code": o.error_code,
              "error_message": o.error_message, "finished_at": o.finished_at}
             for o in outcomes]
    write_csv(_frame(lines, (*RUN_ROW_COLUMNS, *state.carry, *ROLLBACK_COLUMNS)),
              folder / "results.csv")
    summary = {"run_id": state.run_id, "finished_at": now_iso(), "exit_code": code,
               "counts": {str(s): sum(1 for o in outcomes if o.status is s) for s in Status}}
    write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    return {"rollback/results.csv": folder / "results.csv",
            "rollback/summary.json": folder / "summary.json"}


status = sync(status_async)
connect_cards = sync(connect_cards_async)
rollback = sync(rollback_async)
