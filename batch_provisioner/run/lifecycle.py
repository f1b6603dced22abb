"""After apply: ``status``, ``connect-cards`` and ``rollback`` of one run, by its id.

A run is its folder ``reports/<run_id>/``: the journal (what this run created and rolled back)
and the results (every row, with carry-through columns and the ids of rows that existed). When
``results.parquet`` or ``summary.json`` is missing or damaged, they are rebuilt from the journal
(``run/rebuild.py``) and every result file is written again.

* ``status`` reads each connection (``GET``) for its ``setup_state`` and setup tests.
* ``connect-cards`` asks Fivetran for fresh connect-card URIs for connections still
  ``incomplete``, with the row's ``redirect_uri`` / ``hide_setup_guide`` (from the
  connection's own ``connect_card_config``, else from the run's input files).
* ``rollback`` deletes exactly the connections the journal says this run ``created``; each one
  deleted is journaled ``rolled_back`` at once, so a rerun after a crash skips it, and a 404
  means already gone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import ApiError, FatalApiError, InputError, NotFoundApiError
from batch_provisioner.models import Status
from batch_provisioner.report.files import refresh_results
from batch_provisioner.run.concurrently import for_each
from batch_provisioner.run.journal import (
    JOURNAL_NAME,
    JournalState,
    checked_run_id,
    load,
    recent_runs,
)
from batch_provisioner.run.next_actions import refreshed
from batch_provisioner.run.rebuild import (
    read_results,
    read_summary,
    rebuilt_results,
    recorded_inputs,
)
from batch_provisioner.run.summary import ADDED_UP
from batch_provisioner.sheet.columns import KNOWN_COLUMNS, REFRESHED_COLUMNS, RESERVED_COLUMNS
from batch_provisioner.sheet.read import ROW

JSON = dict[str, Any]
CARD_LIFETIME = timedelta(days=1)
_READ_CONCURRENCY = 8
_log = structlog.get_logger("batch_provisioner.run.lifecycle")


@dataclass(frozen=True)
class RunRow:
    """One input row of a finished (or stopped) run, as the journal and results tell it."""

    row: int
    group_id: str | None
    schema: str | None
    status: str
    connection_id: str | None
    carry: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None  # as the API reported it when the run claimed it
    #: False for a key only the journal knows (its row was edited away or moved since):
    #: rollback still sees it; the results files have no line for it.
    in_results: bool = True

    @property
    def key(self) -> tuple[str, str] | None:
        return (self.group_id, self.schema) if self.group_id and self.schema else None


@dataclass
class RunState:
    run_id: str
    run_dir: Path
    journal: JournalState
    rows: list[RunRow]
    results: pl.DataFrame | None  # results.parquet, or rebuilt from the journal
    carry: list[str]
    #: Why the result files must be written again even without updates (None: they are sound).
    rebuilt: str | None = None

    def connections(self) -> list[RunRow]:
        """Rows that point at a live connection (created, exists or updated; not rolled back)."""
        live = {str(Status.CREATED), str(Status.EXISTS), str(Status.UPDATED)}
        return [r for r in self.rows if r.connection_id and r.status in live and r.in_results]


def run_dir_of(reports_dir: Path, run_id: str) -> Path:
    """The run's folder; ``InputError`` (exit 2) when it has no journal."""
    run_dir = reports_dir / checked_run_id(run_id)
    if not (run_dir / JOURNAL_NAME).is_file():
        recent = ", ".join(recent_runs(reports_dir)) or "none"
        raise InputError(f"no run {run_id!r} in {reports_dir} (no {JOURNAL_NAME}); "
                         "give the run id that apply printed, and the same --reports-dir "
                         f"(recent runs there: {recent})")
    return run_dir


def load_run(reports_dir: Path, run_id: str) -> RunState:
    """The run's rows: results.parquet (rebuilt from the journal when it is missing or
    damaged) overlaid with the journal's final outcomes."""
    run_dir = run_dir_of(reports_dir, run_id)
    journal = load(run_dir)
    results = read_results(run_dir)
    rebuilt = None
    if results is None:
        rebuilt = "results.parquet was missing or damaged: rebuilt from journal.jsonl"
        results, carry = rebuilt_results(run_dir, journal)
    else:
        carry = carry_columns(run_dir, results)
    if rebuilt is None and read_summary(run_dir) is None:
        rebuilt = "summary.json was missing or damaged: rebuilt from journal.jsonl"
    rows: dict[int, RunRow] = {}
    if results is not None:
        for rec in results.iter_rows(named=True):
            rows[rec[ROW]] = RunRow(rec[ROW], rec["group_id"], rec["schema"], rec["status"],
                                    rec["connection_id"], {c: rec[c] for c in carry})
    row_of = {r.key: r.row for r in rows.values() if r.key is not None}
    orphans: list[RunRow] = []
    for key, outcome in journal.outcomes.items():  # keyed: a row's number may have changed
        row = row_of.get(key)
        if row is None:  # no line of the results has this key any more
            orphans.append(RunRow(outcome.row, key[0], key[1], str(outcome.status),
                                  outcome.connection_id, {}, outcome.created_at,
                                  in_results=False))
            continue
        before = rows[row]
        rows[row] = RunRow(row, before.group_id, before.schema, str(outcome.status),
                           outcome.connection_id or before.connection_id, before.carry,
                           outcome.created_at)
    listed = [rows[r] for r in sorted(rows)] + sorted(orphans, key=lambda r: r.row)
    if rebuilt is not None:
        _log.warning("results.rebuilt", run_id=run_id, reason=rebuilt)
    return RunState(run_id, run_dir, journal, listed, results, carry, rebuilt)


def carry_columns(run_dir: Path, results: pl.DataFrame) -> list[str]:
    """The user's own columns of results.parquet, by name: as summary.json records them, or
    (for runs written before it did) the results' columns the job does not know or use."""
    recorded: object = None
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no or a damaged summary
        recorded = json.loads((run_dir / "summary.json").read_text("utf-8")).get("carry_columns")
    if (isinstance(recorded, list) and all(isinstance(c, str) for c in recorded)
            and set(recorded) <= set(results.columns)):
        return list(recorded)
    ours = KNOWN_COLUMNS | RESERVED_COLUMNS | {ROW}
    return [c for c in results.columns if c not in ours]


async def read_connections(client: FivetranClient, rows: Sequence[RunRow]
                           ) -> dict[int, JSON | ApiError]:
    """``GET`` each row's connection: the answer, or the row's error (404: it is gone)."""
    found: dict[int, JSON | ApiError] = {}

    async def read(row: RunRow) -> None:
        assert row.connection_id is not None
        try:
            found[row.row] = await client.get_connection(row.connection_id)
        except FatalApiError:
            raise
        except ApiError as exc:
            found[row.row] = exc

    await for_each(rows, read, _READ_CONCURRENCY)
    return found


def setup_tests_text(connection: JSON) -> str | None:
    """``3/3 passed`` or ``FAILED: title: message; ...``; None when no tests ran."""
    tests = connection.get("setup_tests")
    if not isinstance(tests, list) or not tests:
        return None
    bad = [t for t in tests if isinstance(t, dict) and t.get("status") not in ("PASSED",
                                                                                  "SKIPPED")]
    if not bad:
        return f"{len(tests)}/{len(tests)} passed"
    return "; ".join(f"{t.get('status')}: {t.get('title')}"
                     + (f": {t['message']}" if t.get("message") else "") for t in bad)


def status_line(row: RunRow, answer: JSON | ApiError) -> dict[str, Any]:
    """One line of status.csv: the row's keys, carry-through columns, setup state and tests."""
    line = {"row": row.row, "group_id": row.group_id, "schema": row.schema,
            "connection_id": row.connection_id, **row.carry}
    if isinstance(answer, ApiError):
        return {**line, "setup_state": None, "setup_tests": None,
                "error": read_error(row, answer)}
    return {**line, "setup_state": setup_state_of(answer),
            "setup_tests": setup_tests_text(answer), "error": None}


def setup_state_of(connection: JSON) -> str | None:
    status = connection.get("status")
    return str(status.get("setup_state")) if isinstance(status, dict) else None


@dataclass(frozen=True)
class CardResult:
    row: RunRow
    setup_state: str | None = None
    uri: str | None = None
    expires_at: str | None = None
    error: str | None = None


CardConfig = tuple[str, bool | None]  # (redirect_uri, hide_setup_guide)


async def refresh_cards(client: FivetranClient, rows: Sequence[RunRow],
                        fallback: Callable[[], dict[int, CardConfig]]) -> list[CardResult]:
    """A fresh URI for each connection still ``incomplete``; the others are reported as is."""
    current = await read_connections(client, rows)
    results: dict[int, CardResult] = {}
    inputs: dict[int, CardConfig] | None = None
    wanted: list[tuple[RunRow, CardConfig]] = []
    for row in rows:
        answer = current[row.row]
        if isinstance(answer, ApiError):
            results[row.row] = CardResult(row, error=read_error(row, answer))
            continue
        state = setup_state_of(answer)
        if state != "incomplete":
            results[row.row] = CardResult(row, setup_state=state)
            continue
        config = _card_config(answer)
        if config is None:
            inputs = fallback() if inputs is None else inputs
            config = inputs.get(row.row)
        if config is None:
            results[row.row] = CardResult(row, state, error="no redirect_uri known for this row "
                                          "(not on the connection, not in the run's input)")
            continue
        wanted.append((row, config))
    configs = {row.row: config for row, config in wanted}

    async def ask(row: RunRow) -> None:
        assert row.connection_id is not None
        redirect, hide = configs[row.row]
        try:
            data = await client.connect_card(row.connection_id, redirect, bool(hide))
        except FatalApiError:
            raise
        except ApiError as exc:
            results[row.row] = CardResult(row, "incomplete", error=exc.message)
            return
        card = data.get("connect_card") if isinstance(data.get("connect_card"), dict) else {}
        expires = datetime.now(UTC) + CARD_LIFETIME
        results[row.row] = CardResult(
            row, "incomplete", uri=str((card or {}).get("uri") or "") or None,
            expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"))

    await for_each([row for row, _ in wanted], ask, _READ_CONCURRENCY)
    return [results[row.row] for row in rows if row.row in results]


def _card_config(connection: JSON) -> CardConfig | None:
    config = connection.get("connect_card_config")
    if isinstance(config, dict) and config.get("redirect_uri"):
        hide = config.get("hide_setup_guide")
        return str(config["redirect_uri"]), hide if isinstance(hide, bool) else None
    return None


def input_card_configs(run_dir: Path) -> dict[int, CardConfig]:
    """redirect_uri / hide_setup_guide per row, re-read from the run's recorded input files."""
    from batch_provisioner.sheet.load import prepare

    inputs, sheet_name = recorded_inputs(load(run_dir), "connect_cards.input_unreadable")
    if inputs is None:
        return {}
    try:
        prepared = prepare(inputs.sheet, sheet_name=sheet_name, defaults_path=inputs.defaults,
                           custom_reports=inputs.custom_reports)
    except InputError as exc:
        _log.warning("connect_cards.input_unreadable", path=inputs.sheet.name,
                     error=exc.message)
        return {}
    frame = prepared.frame
    if "redirect_uri" not in frame.columns:
        return {}
    hide = (frame.get_column("hide_setup_guide") if "hide_setup_guide" in frame.columns
            else pl.Series([None] * frame.height, dtype=pl.String))
    return {row: (uri, None if flag is None else flag == "true")
            for row, uri, flag in zip(frame.get_column(ROW).to_list(),
                                      frame.get_column("redirect_uri").to_list(),
                                      hide.to_list(), strict=True) if uri}


def read_error(row: RunRow, exc: ApiError) -> str:
    if isinstance(exc, NotFoundApiError):
        return f"connection {row.connection_id} no longer exists"
    return f"reading connection {row.connection_id} failed: {exc.message}"


def refresh_report(state: RunState, updates: dict[int, dict[str, Any]],
                   summary_note: dict[str, Any]) -> list[Path]:
    """Rewrite results.csv/.parquet/.xlsx, report.html and summary.json with ``updates``.

    ``updates`` maps a row to new cell values (new columns are added at the end). The HTML's
    request timeline is the one apply saved (timeline.json). No-op when nothing changed, unless
    the files were rebuilt from the journal (then they are all written again).
    """
    if state.results is None or (not updates and state.rebuilt is None):
        return []
    frame = state.results
    for column in sorted({c for cells in updates.values() for c in cells}):
        mapping = {row: cells[column] for row, cells in updates.items() if column in cells}
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
        dtype = frame.schema[column]
        frame = frame.with_columns(pl.col(ROW).replace_strict(
            list(mapping), list(mapping.values()), default=pl.col(column),
            return_dtype=dtype).alias(column))
    run_dir = state.run_dir
    summary: JSON = read_summary(run_dir) or _journal_summary(state)
    counts = {str(s): 0 for s in Status}
    for status in frame.get_column("status").to_list():
        counts[str(status)] = counts.get(str(status), 0) + 1
    summary.update(summary_note, counts=counts)
    if isinstance(summary.get("next_actions"), list):
        summary["next_actions"] = refreshed(summary["next_actions"], _waiting_cards(frame))
    extra = [c for c in REFRESHED_COLUMNS if c in frame.columns]
    paths = refresh_results(run_dir, frame, summary, [*state.carry, *extra])
    state.results, state.rebuilt = frame, None
    return list(paths.values())


def _waiting_cards(frame: pl.DataFrame) -> set[int]:
    """Rows whose client must still act on the connect card: a link, not yet connected."""
    state = (pl.col("setup_state") if "setup_state" in frame.columns
             else pl.lit(None, dtype=pl.String))
    waiting = frame.filter(pl.col("connect_card_uri").is_not_null()
                           & pl.col("status").is_in(["created", "exists"])
                           & (state.fill_null("") != "connected"))
    return set(waiting.get_column(ROW).to_list())


def _journal_summary(state: RunState) -> JSON:
    """A summary for a run whose summary.json is lost: what the journal says of it."""
    invocations = state.journal.invocations
    last = invocations[-1] if invocations else {}
    header = state.journal.header or {}
    totals = {name: sum(i.get(name) or 0 for i in invocations
                        if isinstance(i.get(name) or 0, int | float)) for name in ADDED_UP}
    return {"run_id": state.run_id, "version": header.get("version"),
            "started_at": header.get("t"), "finished_at": last.get("t"),
            "exit_code": last.get("exit_code"), **totals, "invocations": invocations,
            "carry_columns": state.carry, "rebuilt": state.rebuilt}
