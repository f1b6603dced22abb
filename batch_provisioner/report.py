"""Writing outputs safely: formula-neutralised CSV/XLSX cells, no secret ever."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from batch_provisioner.secrets import REDACTOR

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
