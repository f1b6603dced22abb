"""Validation of the custom reports: each report belongs to one connection row.

A report names its connection by ``schema`` (plus ``group_id`` when the schema is used in
several groups). Report types, aggregates, metrics and dimensions are checked against the
catalogue: a malformed name is an error, an unknown one a warning with a did-you-mean hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import polars as pl

from batch_provisioner.sheet.columns import catalogue
from batch_provisioner.sheet.read import ROW, Table
from batch_provisioner.sheet.rules import (
    GROUP_KEY,
    SCHEMA_RE,
    WARNING,
    Rule,
    collect,
    split_list,
)


def _name_rules(column: str, known: frozenset[str], pattern: str, is_list: bool) -> list[Rule]:
    """Malformed names are errors; well-formed but unknown ones get a did-you-mean warning."""
    c = pl.col(column)
    if is_list:
        malformed = c.list.eval(pl.element().filter(~pl.element().str.contains(pattern)))
        unknown = c.list.eval(pl.element().filter(
            pl.element().str.contains(pattern) & ~pl.element().is_in(list(known))))
        return [
            Rule(column, malformed.list.len() > 0,
                 pl.format("has malformed names: {}", malformed.list.join(", ")),
                 "names are lowercase letters, digits and underscores",
                 value=c.list.join(", ")),
            Rule(column, unknown.list.len() > 0,
                 pl.format("has names not in the catalogue: {}", unknown.list.join(", ")),
                 "check the spelling; unknown names are sent as they are", WARNING,
                 value=c.list.join(", ")),
        ]
    return [
        Rule(column, c.is_not_null() & ~c.str.contains(pattern), "is malformed",
             "names are lowercase letters, digits and underscores"),
        Rule(column, c.is_not_null() & c.str.contains(pattern) & ~c.is_in(list(known)),
             "is not in the catalogue of known values", "", WARNING),
    ]


def did_you_mean(value: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else "check the spelling"


def _add_suggestions(problems: pl.DataFrame, known: dict[str, frozenset[str]]) -> pl.DataFrame:
    if problems.is_empty():
        return problems
    hints = []
    for column, value, severity, hint in problems.select(
            "column", "value", "severity", "hint").iter_rows():
        if severity == WARNING and column in known and value:
            names = [v.strip() for v in re.split(r",\s*", value)]
            unknown = [n for n in names if n not in known[column]]
            hints.append("; ".join(f"{n}: {did_you_mean(n, known[column])}" for n in unknown)
                         or hint)
        else:
            hints.append(hint)
    return problems.with_columns(pl.Series("hint", hints, dtype=pl.String))


def validate_reports(
    reports: Table, connections: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(canonical report frame with the connection row it belongs to, problems)."""
    cat = catalogue()
    frame = reports.frame
    for name in ("schema", "group_id", "table_name", "report_type", "metrics", "dimensions",
                 "aggregate"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    frame = frame.with_columns(split_list("metrics"), split_list("dimensions"),
                               pl.col("report_type").str.strip_chars(),
                               pl.col("aggregate").str.strip_chars())
    owners = connections.filter(pl.col("schema").is_not_null()).select(
        pl.col(ROW).alias("connection_row"), "schema", pl.col("group_id").alias("_owner_group"),
        pl.col(GROUP_KEY))
    counts = owners.group_by("schema").agg(pl.len().alias("_owners"))
    frame = frame.join(counts, on="schema", how="left").with_columns(
        pl.col("_owners").fill_null(0))
    by_schema = owners.filter(pl.len().over("schema") == 1).select("schema", "connection_row")
    by_group = owners.select(pl.col("schema"), pl.col("_owner_group").alias("group_id"),
                             pl.col("connection_row").alias("_group_row"))
    frame = (frame.join(by_schema, on="schema", how="left")
             .join(by_group, on=["schema", "group_id"], how="left")
             .with_columns(pl.coalesce("_group_row", "connection_row").alias("connection_row"))
             .drop("_group_row"))
    c = pl.col
    rules = [
        Rule("schema", c("schema").is_null(), "is required",
             "name the connection's schema this report belongs to"),
        Rule("schema", c("schema").is_not_null() & (c("_owners") == 0),
             "matches no connection row", "use a schema from the connections sheet"),
        Rule("group_id", (c("_owners") > 1) & c("connection_row").is_null(),
             "is required: this schema is used in several groups",
             "fill group_id to say which connection the report belongs to"),
        Rule("table_name", c("table_name").is_null(), "is required", "fill a table name"),
        Rule("table_name", c("table_name").is_not_null() & ~c("table_name").str.contains(SCHEMA_RE),
             "is not a valid table name",
             "use lowercase letters, digits and underscores, starting with a letter or _"),
        Rule("table_name", c("table_name").is_not_null() & c("connection_row").is_not_null()
             & (pl.len().over(["connection_row", "table_name"]) > 1),
             "is used twice in the same connection", "table names are unique per connection"),
        Rule("metrics", c("metrics").list.len().fill_null(0) == 0, "is required",
             "list at least one metric, e.g. spend, impressions"),
        Rule("report_type", c("report_type").is_null(), "is required",
             "e.g. auction_basic_campaign_report"),
        *_name_rules("report_type", cat.report_types, SCHEMA_RE, False),
        *_name_rules("aggregate", cat.aggregates, SCHEMA_RE, False),
        *_name_rules("metrics", cat.metrics, SCHEMA_RE, True),
        *_name_rules("dimensions", cat.dimensions, SCHEMA_RE, True),
    ]
    problems = collect(frame, rules, reports.label)
    problems = _add_suggestions(problems, {
        "report_type": cat.report_types, "aggregate": cat.aggregates,
        "metrics": cat.metrics, "dimensions": cat.dimensions})
    return frame, problems
