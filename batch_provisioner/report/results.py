"""Apply's results: the results frame, failed_rows.csv, and CSVs written safely.

``neutralise``, ``scrub_frame`` (``report/scrub.py``) and ``write_xlsx`` (``report/xlsx.py``) are
re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batch_provisioner.models import Outcome, Status
from batch_provisioner.report.files import replacing, write_result_files, write_timeline
from batch_provisioner.report.html import Timeline
from batch_provisioner.report.scrub import neutralise as neutralise, scrub_frame as scrub_frame
from batch_provisioner.report.xlsx import write_xlsx as write_xlsx
from batch_provisioner.sheet.columns import RESULT_COLUMNS as RESULT_COLUMNS, SECRET_COLUMNS
from batch_provisioner.sheet.read import ROW
from batch_provisioner.sheet.secrets import parse_ref

if TYPE_CHECKING:
    from batch_provisioner.sheet.load import Prepared


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    """Scrubbed, neutralised cells, written atomically (``OutputError`` naming ``path``)."""
    cells = neutralise(scrub_frame(frame))
    with replacing(path) as temporary:
        cells.write_csv(temporary)


_OUTCOME_SCHEMA = {
    "source_row": pl.Int64, "action": pl.String, "status": pl.String,
    "out_group_id": pl.String, "connection_id": pl.String, "setup_state": pl.String,
    "connect_card_uri": pl.String, "http_status": pl.Int64, "error_code": pl.String,
    "error_message": pl.String, "attempts": pl.Int64, "reconciled": pl.Boolean,
    "started_at": pl.String, "finished_at": pl.String,
}


def outcome_frame(outcomes: Sequence[Outcome]) -> pl.DataFrame:
    """The outcome columns, one line per outcome (``out_group_id``: the outcome's group)."""
    records = [{
        "source_row": o.row, "action": str(o.action), "status": str(o.status),
        "out_group_id": o.group_id, "connection_id": o.connection_id,
        "setup_state": o.setup_state, "connect_card_uri": o.connect_card_uri,
        "http_status": o.http_status, "error_code": o.error_code,
        "error_message": o.error_message, "attempts": o.attempts, "reconciled": o.reconciled,
        "started_at": o.started_at, "finished_at": o.finished_at,
    } for o in outcomes]
    return pl.DataFrame(records, schema=_OUTCOME_SCHEMA)


def results_frame(prepared: Prepared, outcomes: Sequence[Outcome]) -> pl.DataFrame:
    """One row per input row, in input order: key columns, carry-through columns, outcome."""
    carry = prepared.carry_columns
    base = prepared.frame.select(ROW, "group_id", "group_name", "schema", *carry)
    return (base.join(outcome_frame(outcomes), on=ROW, how="left", maintain_order="left")
            .with_columns(pl.coalesce("out_group_id", "group_id").alias("group_id"))
            .select(ROW, "group_id", "group_name", "schema", *carry, *RESULT_COLUMNS))


def write_results(run_dir: Path, prepared: Prepared, outcomes: Sequence[Outcome],
                  summary: dict[str, Any], timeline: Timeline = ()) -> dict[str, Path]:
    """Apply's results: timeline.json, failed_rows.csv and the files of ``write_result_files``.

    The timeline is kept first, so a later ``refresh_results`` draws the same chart.
    """
    timeline_path = write_timeline(run_dir, timeline)
    paths = write_result_files(run_dir, results_frame(prepared, outcomes), summary, timeline,
                               prepared.carry_columns)
    paths["failed_rows.csv"] = run_dir / "failed_rows.csv"
    write_failed_rows(prepared, outcomes, paths["failed_rows.csv"])
    paths["timeline.json"] = timeline_path
    return paths


#: The rows failed_rows.csv holds: those a person must act on (fix, or decide about a
#: conflict) or a later run must still send.
FAILED_STATUSES = frozenset({Status.INVALID, Status.FAILED, Status.CONFLICT,
                             Status.NOT_ATTEMPTED})


def write_failed_rows(prepared: Prepared, outcomes: Sequence[Outcome], path: Path) -> int:
    """The rows to fix and feed back, in the input's own columns (+ ``error``, ``source_row``):
    invalid, failed, conflicting (with what to do) and not attempted.

    Cells are the user's original text (not the defaults-filled values), so feeding the file
    back with the same defaults behaves as the first run did.
    """
    failed = {o.row: (o.error_message or o.error_code or str(o.status)) for o in outcomes
              if o.status in FAILED_STATUSES}
    original = prepared.table.frame
    rows = original.filter(pl.col(ROW).is_in(list(failed)))
    for name in SECRET_COLUMNS:  # a literal secret never leaves the input file
        if name in rows.columns:
            literal = ~pl.col(name).str.contains(r"(?i)^(env|file):").fill_null(True)
            dropped = rows.filter(literal).get_column(ROW).to_list()
            for row in dropped:
                failed[row] += (f" [the literal {name} was removed from this file: put it back, "
                                "or better use env:NAME or file:PATH]")
            rows = rows.with_columns(pl.when(literal).then(None).otherwise(pl.col(name))
                                     .alias(name))
    rows = _absolute_file_refs(rows, prepared.secrets.base_dir)
    headers = prepared.table.headers
    errors = pl.DataFrame({ROW: list(failed), "error": list(failed.values())},
                          schema={ROW: pl.Int64, "error": pl.String})
    out = (rows.join(errors, on=ROW, how="left", maintain_order="left")
           .select([pl.col(c).alias(headers.get(c, c)) for c in prepared.table.columns]
                   + [pl.col("error"), pl.col(ROW)]))
    write_csv(out, path)
    return out.height


def _absolute_file_refs(rows: pl.DataFrame, base_dir: Path) -> pl.DataFrame:
    """``file:`` references relative to the sheet's folder, made absolute: failed_rows.csv
    lives in the run's folder, and its rows must still find their secret files there (the
    rerun command adds ``--secrets-dir`` so the files stay inside the folder allowed)."""
    base = base_dir.resolve()

    def absolute(cell: str | None) -> str | None:
        ref = parse_ref(cell) if cell is not None else None
        if ref is None or ref.kind != "file" or Path(ref.target).expanduser().is_absolute():
            return cell
        return f"file:{base / ref.target}"

    return rows.with_columns(
        pl.col(name).map_elements(absolute, return_dtype=pl.String)
        for name in SECRET_COLUMNS if name in rows.columns)
