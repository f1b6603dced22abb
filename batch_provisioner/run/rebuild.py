"""A run's results rebuilt from its journal, when ``results.parquet`` is missing or damaged.

The journal is the source of truth: every outcome is journaled (fsynced) before it is
reported, so a report lost to a kill, a full disk or a stray edit can always be made again.
``status``, ``connect-cards`` and ``rollback`` use :func:`read_results` and, when it finds
nothing usable, :func:`rebuilt_results`; they then rewrite every result file.

The rebuilt frame has one line per key the journal knows, with that key's last outcome. When
the run's input file is still the one the journal fingerprinted, the frame is the input's
rows (every row, with the user's own columns) overlaid with those outcomes, as apply wrote it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from batch_provisioner.errors import InputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.report.results import RESULT_COLUMNS, outcome_frame, results_frame
from batch_provisioner.run.journal import JournalState, fingerprint
from batch_provisioner.sheet.read import ROW
from batch_provisioner.sheet.source import Inputs, is_fetchable, open_source

RESULTS_NAME = "results.parquet"
_NEEDED = frozenset({ROW, "group_id", "schema", "status", "connection_id"})
_log = structlog.get_logger("batch_provisioner.run.rebuild")


def read_results(run_dir: Path) -> pl.DataFrame | None:
    """``results.parquet``, or None when it is missing, unreadable or lacks its columns."""
    path = run_dir / RESULTS_NAME
    if not path.is_file():
        return None
    try:
        frame = pl.read_parquet(path)
    except BaseException as exc:  # polars' errors, or a panic on a damaged file
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
            raise
        _log.warning("results.unreadable", path=str(path), error=type(exc).__name__,
                     note="rebuilt from journal.jsonl")
        return None
    if not _NEEDED.issubset(frame.columns):
        _log.warning("results.incomplete", path=str(path), note="rebuilt from journal.jsonl")
        return None
    return frame


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """``summary.json`` as a dict, or None when it is missing or damaged."""
    try:
        data = json.loads((run_dir / "summary.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rebuilt_results(run_dir: Path, journal: JournalState) -> tuple[pl.DataFrame, list[str]]:
    """(the results frame, its carry-through columns), from the journal (and the input)."""
    from batch_provisioner.sheet.load import Prepared, prepare

    prepared: Prepared | None = None
    inputs, sheet_name = recorded_inputs(journal, "results.input_unreadable")
    if inputs is not None and _unchanged(journal, *(
            source.local if source is not None else None for source in inputs.all())):
        try:
            prepared = prepare(inputs.sheet, sheet_name=sheet_name,
                               defaults_path=inputs.defaults,
                               custom_reports=inputs.custom_reports)
        except InputError as exc:
            _log.warning("results.input_unreadable", path=inputs.sheet.name, error=exc.message)
    if prepared is not None:
        frame = results_frame(prepared, _row_outcomes(prepared.frame, prepared.invalid,
                                                      journal))
        return frame, prepared.carry_columns
    latest = {o.row: o for o in journal.latest.values()}  # a row reused later: its last key
    outcomes = [latest[row] for row in sorted(latest)]
    frame = (outcome_frame(outcomes)
             .with_columns(pl.col("out_group_id").alias("group_id"),
                           pl.lit(None, dtype=pl.String).alias("group_name"),
                           pl.Series("schema", [o.schema for o in outcomes], dtype=pl.String))
             .select(ROW, "group_id", "group_name", "schema", *RESULT_COLUMNS))
    return frame, []


def _row_outcomes(frame: pl.DataFrame, invalid: dict[int, str], journal: JournalState
                  ) -> list[Outcome]:
    """Each input row's outcome: its key's last in the journal, else invalid or not attempted."""
    outcomes = []
    for row, group_id, schema in frame.select(ROW, "group_id", "schema").iter_rows():
        last = journal.latest.get((group_id, schema)) if group_id and schema else None
        if last is not None:
            outcomes.append(replace(last, row=row))
        elif row in invalid:
            outcomes.append(Outcome(row=row, status=Status.INVALID, action=ActionKind.INVALID,
                                    error_code="InvalidRow", error_message=invalid[row]))
        else:
            outcomes.append(Outcome(row=row, status=Status.NOT_ATTEMPTED, group_id=group_id,
                                    schema=schema, action=ActionKind.CREATE,
                                    error_code="NoOutcome",
                                    error_message="the run's journal has no outcome for it"))
    return outcomes


def recorded_inputs(journal: JournalState, event: str) -> tuple[Inputs | None, str | None]:
    """(the run's input files as its journal recorded them, opened again: a URL is downloaded
    again; its sheet name). None when there are none or they cannot be read, which is logged
    as ``event``: a signed URL's query is masked in the journal, so it is not fetched again."""
    record = journal.inputs or {}
    sheet = record.get("sheet") or (journal.header or {}).get("input")
    sheet_name = record.get("sheet_name")
    if not sheet:
        return None, sheet_name
    defaults, reports = record.get("defaults"), record.get("custom_reports")
    if not all(is_fetchable(str(given)) for given in (sheet, defaults, reports) if given):
        _log.warning(event, path=sheet, error="read from a signed URL, whose token the journal "
                                              "does not keep: not fetched again")
        return None, sheet_name
    try:
        inputs = Inputs(open_source(sheet),
                        open_source(defaults, kind="defaults") if defaults else None,
                        open_source(reports) if reports else None)
    except InputError as exc:
        _log.warning(event, path=sheet, error=exc.message)
        return None, sheet_name
    return inputs, sheet_name


def _unchanged(journal: JournalState, *paths: Path | None) -> bool:
    """Whether the input files are those the journal's header fingerprinted."""
    recorded = (journal.header or {}).get("input_sha256")
    given = list(paths)
    while given and given[-1] is None:
        given.pop()
    return recorded is not None and recorded in (fingerprint(*paths), fingerprint(*given))
