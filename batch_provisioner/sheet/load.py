"""Read, apply defaults, validate and expand: from files to ``ConnectionRequest`` records."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.models import ConnectionRequest
from batch_provisioner.sheet.columns import (
    COLUMNS,
    EXPORT_COLUMNS,
    KNOWN_COLUMNS,
    PIN_COLUMN,
    REPORT_COLUMNS,
)
from batch_provisioner.sheet.defaults import Defaults, apply_defaults, load_defaults
from batch_provisioner.sheet.expand import expand_frame
from batch_provisioner.sheet.guardrails import check_headers
from batch_provisioner.sheet.read import ROW, Table, read_custom_reports, read_table
from batch_provisioner.sheet.secrets import SecretContext
from batch_provisioner.sheet.source import Inputs, Source, as_source, named
from batch_provisioner.sheet.validate import (
    ERROR,
    GROUP_KEY,
    PROBLEM_SCHEMA,
    validate_connections,
    validate_reports,
)

_REPORT_REQUIRED = ("schema", "table_name", "report_type", "metrics")
_CONNECTION_NAMES = tuple(c.name for c in COLUMNS)
_REPORT_NAMES = tuple(c.name for c in REPORT_COLUMNS)
_NO_FOLDER = "a sheet read from a URL has no folder to read file: references in"


@dataclass(frozen=True)
class Prepared:
    """Everything the later stages need, in input order."""

    table: Table
    defaults: Defaults
    frame: pl.DataFrame  # canonical values, one line per input row
    problems: pl.DataFrame
    requests: list[ConnectionRequest]
    invalid: dict[int, str] = field(default_factory=dict)  # row -> joined error text
    #: How the sheet's secret references resolve (its folder, the allowed root, the env).
    secrets: SecretContext = field(default_factory=SecretContext)
    #: The input files read (a download's private copy lives as long as they do).
    inputs: Inputs | None = None

    @property
    def carry_columns(self) -> list[str]:
        """The user's own columns that the job does not know: carried to every output.

        ``prepare`` has refused any that resemble a known column or that an output uses
        (``sheet/guardrails.py``). The columns ``export`` adds (``connection_id``,
        ``setup_state``) are the job's own, not carried."""
        return [c for c in self.table.columns
                if c not in KNOWN_COLUMNS and c not in EXPORT_COLUMNS]

    @property
    def rows(self) -> list[int]:
        return self.frame.get_column(ROW).to_list()

    @property
    def error_count(self) -> int:
        return self.problems.filter(pl.col("severity") == ERROR).height


def prepare(
    sheet: Path | Source,
    *,
    sheet_name: str | None = None,
    defaults_path: Path | Source | None = None,
    custom_reports: Path | Source | None = None,
    secrets: SecretContext | None = None,
) -> Prepared:
    """Read, fill from the defaults, validate and expand ``sheet``. A ``Source`` downloaded
    from a URL is read from its local copy, and every message names its URL."""
    inputs = Inputs(as_source(sheet), as_source(defaults_path) if defaults_path else None,
                    as_source(custom_reports) if custom_reports else None)
    with named(*inputs.all()):
        return _prepare(inputs, sheet_name, secrets or secret_context(inputs.sheet))


def secret_context(sheet: Source, secrets_dir: Path | None = None) -> SecretContext:
    """Where ``file:`` references resolve: next to a local sheet (inside ``secrets_dir`` when
    given); a sheet read from a URL has no folder, so there they need ``secrets_dir``."""
    if not sheet.remote:
        return SecretContext(base_dir=sheet.local.resolve().parent, allowed_root=secrets_dir)
    if secrets_dir is None:
        return SecretContext(files_refused=_NO_FOLDER)
    return SecretContext(base_dir=secrets_dir, allowed_root=secrets_dir)


def _prepare(inputs: Inputs, sheet_name: str | None, ctx: SecretContext) -> Prepared:
    source = inputs.sheet
    defaults = load_defaults(inputs.defaults.local if inputs.defaults else None)
    table = _named(read_table(source.local, sheet=sheet_name), source)
    if table.frame.height == 0:
        raise InputError("has no data rows (only a header, or blank)", path=table.label)
    check_headers(table.label, table.header_row, table.headers, _CONNECTION_NAMES)
    frame = apply_defaults(table.frame, defaults)
    _require_columns(table, frame)
    # validation also registers every secret the sheet refers to with the redactor: a token
    # pasted into another cell is masked in every output of every command, not only once its
    # row is sent (``register_sheet_secrets``)
    canonical, problems = validate_connections(replace(table, frame=frame), ctx)
    reports_by_row: dict[int, list[dict[str, Any]]] = defaultdict(list)
    given = inputs.custom_reports
    reports = read_custom_reports(given.local if given else None, source.local)
    if reports is not None:
        reports = _named(reports, given or source)
        check_headers(reports.label, reports.header_row, reports.headers, _REPORT_NAMES,
                      reserved=(), what="report column")
        missing = [c for c in _REPORT_REQUIRED if c not in reports.frame.columns]
        if missing:
            raise InputError(f"custom reports need the column(s) {', '.join(missing)}",
                             path=reports.label, row=reports.header_row, column=missing[0])
        report_frame, report_problems = validate_reports(reports, canonical)
        problems = pl.concat([problems, report_problems, _owner_problems(
            report_problems, report_frame, canonical, table.label)])
        for report in report_frame.filter(pl.col("connection_row").is_not_null()).iter_rows(
                named=True):
            reports_by_row[report["connection_row"]].append(report)
    problems = problems.sort(["source", "row"], maintain_order=True)
    invalid = _invalid_rows(problems, table.label)
    requests = _expand_rows(canonical.filter(~pl.col(ROW).is_in(list(invalid))), reports_by_row)
    return Prepared(table=table, defaults=defaults, frame=canonical.drop(GROUP_KEY),
                    problems=problems, requests=requests, invalid=invalid, secrets=ctx,
                    inputs=inputs)


def _named(table: Table, source: Source) -> Table:
    """``table`` named as its source is (a download by its URL)."""
    return replace(table, name=source.name) if source.remote else table


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Expansion builds a few dicts per row and keeps them all; with the collector on, its
    repeated passes over the growing heap took half the time of a 100k-row sheet.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _expand_rows(
    valid: pl.DataFrame, reports_by_row: dict[int, list[dict[str, Any]]]
) -> list[ConnectionRequest]:
    """One ``ConnectionRequest`` per valid row, in input order."""
    rows = valid.get_column(ROW).to_list()
    with _gc_paused():
        payloads = expand_frame(valid, [reports_by_row.get(row, ()) for row in rows]
                                if reports_by_row else ())
        return [
            ConnectionRequest(row=row, group_id=group_id, group_name=group_name, schema=schema,
                              payload=payload, connection_id=pin)
            for row, group_id, group_name, schema, payload, pin in zip(
                rows, valid.get_column("group_id").to_list(),
                valid.get_column("group_name").to_list(), valid.get_column("schema").to_list(),
                payloads, valid.get_column(PIN_COLUMN).to_list(), strict=True)
        ]


def _require_columns(table: Table, frame: pl.DataFrame) -> None:
    if "schema" not in frame.columns:
        raise InputError("required column 'schema' is missing (and has no default)",
                         path=table.label, row=table.header_row, column="schema")
    if "group_id" not in frame.columns and "group_name" not in frame.columns:
        raise InputError("required column 'group_id' (or 'group_name') is missing "
                         "(and has no default)", path=table.label, row=table.header_row,
                         column="group_id")


def _owner_problems(report_problems: pl.DataFrame, report_frame: pl.DataFrame,
                    connections: pl.DataFrame, label: str) -> pl.DataFrame:
    """A connection whose custom report has an error is not sent either.

    A report that matches no single connection because its schema is used in several groups
    holds back every connection with that schema: one of them would go out without it.
    """
    errors = (report_problems.filter(pl.col("severity") == ERROR).select("row", "source")
              .join(report_frame.select(pl.col(ROW).alias("row"), "connection_row", "schema"),
                    on="row"))
    matched = errors.filter(pl.col("connection_row").is_not_null()).select(
        "row", "source", "connection_row")
    ambiguous = (errors.filter(pl.col("connection_row").is_null()).drop("connection_row")
                 .join(connections.select(pl.col(ROW).alias("connection_row"), "schema"),
                       on="schema")
                 .select("row", "source", "connection_row"))
    bad = (pl.concat([matched, ambiguous])
           .group_by("connection_row", maintain_order=True)
           .agg(pl.col("row").unique().sort().cast(pl.String).str.join(", ").alias("rows"),
                pl.col("source").first()))
    return bad.select(
        pl.lit(label).alias("source"), pl.col("connection_row").alias("row"),
        pl.lit("custom_reports").alias("column"), pl.col("rows").alias("value"),
        pl.lit(ERROR).alias("severity"),
        pl.format("its custom report row(s) {} in {} have errors", "rows", "source")
        .alias("message"), pl.lit("fix the custom report rows listed").alias("hint"),
    ).cast(PROBLEM_SCHEMA)  # type: ignore[arg-type]


def _invalid_rows(problems: pl.DataFrame, label: str) -> dict[int, str]:
    """Each invalid row's errors as sentences a person reads, with what to do:
    ``sync_mode 'AllAcounts' is not a valid value — did you mean AllAccounts? (...)``; a blank
    cell is not quoted (``schema is required — fill a destination schema name``)."""
    errors = problems.filter((pl.col("severity") == ERROR) & (pl.col("source") == label))
    value = pl.col("value")
    said = (pl.when(value.is_null() | (value == ""))
            .then(pl.format("{} {}", "column", "message"))
            .otherwise(pl.format("{} '{}' {}", "column", value, "message")))
    sentence = (pl.when(pl.col("hint").fill_null("") != "")
                .then(pl.format("{} — {}", said, "hint")).otherwise(said))
    grouped = errors.group_by("row", maintain_order=True).agg(
        sentence.str.join("; ").alias("error"))
    return dict(grouped.iter_rows())
