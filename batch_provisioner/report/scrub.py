"""The one place outputs are made safe: secrets masked, formula cells neutralised.

Every writer in ``report/`` goes through these (they use the process's one ``REDACTOR``):
``scrub_frame`` masks secrets in text cells, ``neutralise`` makes a spreadsheet read formula-like
cells as text, and ``scrub_json`` masks secrets anywhere in a JSON-like value (keys included).
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl

from batch_provisioner.safety import FORMULA_PREFIX, NEUTRALISER, REDACTOR

_FORMULA = re.compile(FORMULA_PREFIX)


def neutralise(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix ``'`` to every text cell, and every column name (the header row), that a
    spreadsheet could read as a formula.

    A carry-through column may be named ``=HYPERLINK(...)``: its header cell is as dangerous
    as a data cell. The reader strips exactly this prefix again (from cells and headers), so a
    neutralised file round-trips.
    """
    cells = frame.with_columns(
        pl.when(pl.col(name).str.contains(FORMULA_PREFIX))
        .then(pl.lit(NEUTRALISER) + pl.col(name)).otherwise(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items() if dtype == pl.String
    )
    return cells.rename({name: NEUTRALISER + name for name in cells.columns
                         if _FORMULA.match(name)})


def scrub_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Mask any registered secret value that slipped into a text cell.

    One vectorised pass (polars' ``contains_any`` over the redactor's keys, every text cell of
    a row joined) picks the rows that may hold a secret; only their cells go through
    ``REDACTOR.scrub``. A frame with no secret in it costs no Python call per cell, and the
    redactor compiles nothing for it."""
    names = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    keys = REDACTOR.keys()
    if not names or not keys:
        return frame
    rows = frame.select(pl.concat_str(names, separator="\n", ignore_nulls=True)
                        .str.contains_any(keys).fill_null(value=False)).to_series().arg_true()
    if rows.is_empty():
        return frame
    return frame.with_columns(_scrubbed(frame.get_column(name), rows) for name in names)


def _scrubbed(column: pl.Series, rows: pl.Series) -> pl.Series:
    values = [None if v is None else REDACTOR.scrub(v) for v in column.gather(rows).to_list()]
    return column.clone().scatter(rows, values)


def scrub_json(value: Any) -> Any:
    """``value`` as plain JSON types (others via ``str``), every secret masked, keys too."""
    plain = json.loads(json.dumps(value, default=str))
    return _scrub_keys(REDACTOR.scrub_value(plain))


def _scrub_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {REDACTOR.scrub(str(k)): _scrub_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_keys(v) for v in value]
    return value
