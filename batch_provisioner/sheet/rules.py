"""The rule machinery both validations share: a ``Rule``, and problems collected as a frame.

``validate`` (the connections sheet) and ``validate_reports`` (the custom reports) build
lists of rules and turn them into rows of the problems frame (``PROBLEM_SCHEMA``) here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from batch_provisioner.safety import MASK
from batch_provisioner.sheet.columns import SECRET_COLUMNS
from batch_provisioner.sheet.read import ROW

ERROR = "error"
WARNING = "warning"
PROBLEM_SCHEMA = {
    "source": pl.String, "row": pl.Int64, "column": pl.String, "value": pl.String,
    "severity": pl.String, "message": pl.String, "hint": pl.String,
}
SCHEMA_RE = r"^[a-z_][a-z0-9_]*$"
GROUP_KEY = "_group_key"
_LIST_SEPARATORS = r"[;|\r\n]+"
MAX_SHOWN = 1000  # a problem's value and message are cut to this many characters


@dataclass(frozen=True)
class Rule:
    """A problem wherever ``mask`` is true, reported on ``column`` with ``message``."""

    column: str
    mask: pl.Expr
    message: str | pl.Expr
    hint: str = ""
    severity: str = ERROR
    value: pl.Expr | None = None


def split_list(column: str) -> pl.Expr:
    """``"a, b;c|d"`` → ``["a", "b", "c", "d"]``; blanks dropped; null stays null."""
    return (
        pl.col(column).str.replace_all(_LIST_SEPARATORS, ",").str.split(",")
        .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
        .alias(column)
    )


def _render_value(column: str, available: list[str]) -> pl.Expr:
    """The offending value as the user wrote it; secrets only as their reference (a literal
    one as the mask; a blank one stays blank, so that the mask never hides an empty cell)."""
    if column in SECRET_COLUMNS:
        cell = pl.col(column)
        return (pl.when(cell.is_null()).then(pl.lit(None, dtype=pl.String))
                .when(cell.str.contains(r"(?i)^(env|file):")).then(cell)
                .otherwise(pl.lit(MASK)))
    return pl.col(f"raw_{column}") if f"raw_{column}" in available else pl.col(column)


def collect(frame: pl.DataFrame, rules: Iterable[Rule], source: str) -> pl.DataFrame:
    """Every rule's problems in ``frame``, as rows of ``PROBLEM_SCHEMA``, rule by rule."""
    parts = []
    for rule in rules:
        value = rule.value if rule.value is not None else _render_value(rule.column,
                                                                        frame.columns)
        message = rule.message if isinstance(rule.message, pl.Expr) else pl.lit(rule.message)
        parts.append(frame.filter(rule.mask.fill_null(False)).select(
            pl.lit(source).alias("source"), pl.col(ROW).alias("row"),
            pl.lit(rule.column).alias("column"), _clip(value.cast(pl.String)).alias("value"),
            pl.lit(rule.severity).alias("severity"), _clip(message).alias("message"),
            pl.lit(rule.hint).alias("hint"),
        ))
    return pl.concat(parts) if parts else pl.DataFrame(schema=PROBLEM_SCHEMA)


def _clip(text: pl.Expr) -> pl.Expr:
    """A giant cell (10 MB of text) is shown by its first ``MAX_SHOWN`` characters."""
    return (pl.when(text.str.len_chars() > MAX_SHOWN)
            .then(text.str.slice(0, MAX_SHOWN - 1) + pl.lit("…")).otherwise(text))
