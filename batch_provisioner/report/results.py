"""Writing outputs safely: formula-neutralised CSV/XLSX cells, no secret ever."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batch_provisioner.models import Outcome, Status
from batch_provisioner.sheet.columns import SECRET_COLUMNS
from batch_provisioner.sheet.read import ROW
from batch_provisioner.sheet.secrets import REDACTOR

if TYPE_CHECKING:
    from batch_provisioner.sheet.load import Prepared

# A cell starting with one of these could run as a formula when a spreadsheet opens the file.
FORMULA_PREFIX = r"^[=+\-@\t\r]"


def neutralise(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix ``'`` to every text cell that a spreadsheet could read as a formula.

    The reader strips exactly this prefix again, so a neutralised file round-trips.
    """
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(FORMULA_PREFIX))
        .then(pl.lit("'") + pl.col(name)).otherwise(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items() if dtype == pl.String
    )


def scrub_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Mask any registered secret value that slipped into a text cell."""
    if not REDACTOR:
        return frame
    return frame.with_columns(
        pl.col(name).map_elements(REDACTOR.scrub, return_dtype=pl.String)
        for name, dtype in frame.schema.items() if dtype == pl.String
    )


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise(scrub_frame(frame)).write_csv(path)


RESULT_COLUMNS = ("action", "status", "connection_id", "setup_state", "connect_card_uri",
                  "http_status", "error_code", "error_message", "attempts", "reconciled",
                  "started_at", "finished_at")
_OUTCOME_SCHEMA = {
    "source_row": pl.Int64, "action": pl.String, "status": pl.String,
    "out_group_id": pl.String, "connection_id": pl.String, "setup_state": pl.String,
    "connect_card_uri": pl.String, "http_status": pl.Int64, "error_code": pl.String,
    "error_message": pl.String, "attempts": pl.Int64, "reconciled": pl.Boolean,
    "started_at": pl.String, "finished_at": pl.String,
}


def results_frame(prepared: Prepared, outcomes: Sequence[Outcome]) -> pl.DataFrame:
    """One row per input row, in input order: key columns, carry-through columns, outcome."""
    records = [{
        "source_row": o.row, "action": o.action, "status": str(o.status),
        "out_group_id": o.group_id, "connection_id": o.connection_id,
        "setup_state": o.setup_state, "connect_card_uri": o.connect_card_uri,
        "http_status": o.http_status, "error_code": o.error_code,
        "error_message": o.error_message, "attempts": o.attempts, "reconciled": o.reconciled,
        "started_at": o.started_at, "finished_at": o.finished_at,
    } for o in outcomes]
    outcome_frame = pl.DataFrame(records, schema=_OUTCOME_SCHEMA)
    carry = prepared.carry_columns
    base = prepared.frame.select(ROW, "group_id", "group_name", "schema", *carry)
    return (base.join(outcome_frame, on=ROW, how="left", maintain_order="left")
            .with_columns(pl.coalesce("out_group_id", "group_id").alias("group_id"))
            .select(ROW, "group_id", "group_name", "schema", *carry, *RESULT_COLUMNS))


def write_results(run_dir: Path, prepared: Prepared, outcomes: Sequence[Outcome],
                  summary: dict[str, Any],
                  timeline: Sequence[tuple[float, str, int]] = ()) -> dict[str, Path]:
    """results.csv/.parquet/.xlsx, failed_rows.csv, summary.json and report.html."""
    from batch_provisioner.report.html import write_html

    run_dir.mkdir(parents=True, exist_ok=True)
    frame = scrub_frame(results_frame(prepared, outcomes))
    paths = {
        "results.csv": run_dir / "results.csv",
        "results.parquet": run_dir / "results.parquet",
        "results.xlsx": run_dir / "results.xlsx",
        "failed_rows.csv": run_dir / "failed_rows.csv",
        "summary.json": run_dir / "summary.json",
        "report.html": run_dir / "report.html",
    }
    neutralise(frame).write_csv(paths["results.csv"])
    frame.write_parquet(paths["results.parquet"])
    write_xlsx(neutralise(frame), paths["results.xlsx"])
    write_failed_rows(prepared, outcomes, paths["failed_rows.csv"])
    write_html(paths["report.html"], frame, summary, timeline, prepared.carry_columns)
    paths["summary.json"].write_text(
        REDACTOR.scrub(json.dumps(summary, indent=2, default=str)) + "\n", encoding="utf-8")
    return paths


def write_xlsx(frame: pl.DataFrame, path: Path) -> None:
    """An XLSX where every cell is a text or number cell, never a formula."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False,
                                               "strings_to_numbers": False,
                                               "strings_to_urls": False})
    sheet = workbook.add_worksheet("results")
    bold = workbook.add_format({"bold": True})
    for col, name in enumerate(frame.columns):
        sheet.write_string(0, col, name, bold)
    for r, row in enumerate(frame.iter_rows(), start=1):
        for col, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(r, col, value)
            elif isinstance(value, int | float):
                sheet.write_number(r, col, value)
            else:
                sheet.write_string(r, col, str(value))
    sheet.freeze_panes(1, 0)
    workbook.close()


FAILED_STATUSES = frozenset({Status.INVALID, Status.FAILED, Status.NOT_ATTEMPTED})


def write_failed_rows(prepared: Prepared, outcomes: Sequence[Outcome], path: Path) -> int:
    """The rows to fix and feed back, in the input's own columns (+ ``error``, ``source_row``).

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
    headers = prepared.table.headers
    errors = pl.DataFrame({ROW: list(failed), "error": list(failed.values())},
                          schema={ROW: pl.Int64, "error": pl.String})
    out = (rows.join(errors, on=ROW, how="left", maintain_order="left")
           .select([pl.col(c).alias(headers.get(c, c)) for c in prepared.table.columns]
                   + [pl.col("error"), pl.col(ROW)]))
    write_csv(out, path)
    return out.height
