"""Validation: every problem of every row at once, as a frame, by row and column.

Each rule is a vectorised polars expression over the whole sheet. ``canonicalise`` turns
booleans, enums, numbers and lists into the spelling Fivetran expects; a cell that cannot be
turned is a problem. An ``error`` keeps its row from being sent; a ``warning`` does not.

This module checks the connections sheet; ``validate_reports`` checks the custom reports and
``rules`` holds what both share. ``validate_reports`` and the shared names are importable
from here too.
"""

from __future__ import annotations

import difflib

import polars as pl

from batch_provisioner.sheet.columns import (
    BOOL_FALSE,
    BOOL_TRUE,
    BY_NAME,
    COLUMNS,
    EXPORT_COLUMNS,
    INT32_MAX,
    MINUTES_PER_YEAR,
    PIN_COLUMN,
    SECRET_COLUMNS,
    SYNC_FREQUENCIES,
    Kind,
)
from batch_provisioner.sheet.read import ROW, Table
from batch_provisioner.sheet.rules import (
    ERROR,
    GROUP_KEY,
    PROBLEM_SCHEMA,
    SCHEMA_RE,
    WARNING,
    Rule,
    collect,
    split_list,
)
from batch_provisioner.sheet.secrets import SecretContext, register_sheet_secrets
from batch_provisioner.sheet.validate_reports import did_you_mean, validate_reports

__all__ = ["BY_NAME", "ERROR", "GROUP_KEY", "PROBLEM_SCHEMA", "WARNING", "canonicalise",
           "did_you_mean", "split_list", "validate_connections", "validate_reports"]

_EXACT_DIGITS = 15
# Digits are ASCII [0-9] everywhere: polars' (and Python's) ``\d`` also matches full-width
# and Arabic-Indic digits, which pass here and are then refused by the API (400).
_HOUR_RE = r"^(?:1899-12-3[01][ T])?([0-9]{1,2}):00(?::00)?$"
GROUP_ID_RE = r"^[A-Za-z0-9_\-]+$"  # Fivetran's ids; never "." or ".." (a URL path segment)
MAX_TEXT = 2048  # longest text cell a known column takes (a URL's usual limit)
#: An id a spreadsheet turned into a number (``7.01234567890123E+18``): its digits are gone.
_AS_NUMBER = r"^[0-9]+(?:[.,][0-9]+)?[eE][+]?[0-9]+$"
STORED_AS_NUMBER = "is stored as a number, so Excel has already changed the id"
AS_TEXT_HINT = "format the accounts column as Text and type the ids again"
_SHOWN_ROWS = 5  # the other rows a duplicate names
NOT_A_CHOICE = "is not a valid value"


def _bool_map() -> dict[str, str]:
    return {**dict.fromkeys(BOOL_TRUE, "true"), **dict.fromkeys(BOOL_FALSE, "false")}


def canonicalise(frame: pl.DataFrame) -> pl.DataFrame:
    """Add every known column (null when absent) and turn values into canonical spelling.

    Cells that cannot be turned become null here; the rules compare with the raw frame to
    report them.
    """
    missing = [name for name in (*(c.name for c in COLUMNS), *EXPORT_COLUMNS)
               if name not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name) for name in missing)
    exprs: list[pl.Expr] = []
    for column in COLUMNS:
        col = pl.col(column.name)
        if column.kind is Kind.BOOL:
            exprs.append(col.str.to_lowercase().replace_strict(_bool_map(), default=None))
        elif column.kind is Kind.ENUM:
            exprs.append(col.str.to_lowercase().replace_strict(column.canonical_map(),
                                                              default=None))
        elif column.kind is Kind.INT:
            exprs.append(col.str.extract(r"^([0-9]+)(?:\.0+)?$", 1).str.strip_chars_start("0")
                         .replace("", "0").alias(column.name))
        elif column.kind is Kind.HOUR:
            # An Excel time cell (formatted hh:mm) reads as "1899-12-31 14:00:00".
            hour = col.str.extract(_HOUR_RE, 1).cast(pl.Int64, strict=False)
            exprs.append(pl.when(hour <= 23).then(pl.format("{}:00", hour.cast(pl.String)
                                                             .str.zfill(2)))
                         .otherwise(None).alias(column.name))
        elif column.kind is Kind.LIST:
            exprs.append(split_list(column.name))
    return frame.with_columns(exprs).with_columns(
        pl.coalesce("group_id", pl.format("name:{}", pl.col("group_name"))).alias(GROUP_KEY)
    )


def _invalid_value_rules(raw: pl.DataFrame) -> list[Rule]:
    rules: list[Rule] = []
    for column in COLUMNS:
        if column.kind not in (Kind.BOOL, Kind.ENUM, Kind.INT, Kind.HOUR):
            continue
        bad = pl.col(f"raw_{column.name}").is_not_null() & pl.col(column.name).is_null()
        if column.kind is Kind.BOOL:
            message, hint = "is not a boolean", "use true/false, yes/no or 1/0"
        elif column.kind is Kind.ENUM:
            aliases = f" (or {', '.join(column.aliases)})" if column.aliases else ""
            message = NOT_A_CHOICE
            hint = f"use one of {', '.join(column.choices)}{aliases}"
        elif column.kind is Kind.HOUR:
            message, hint = "is not a whole hour", "use a whole hour from 00:00 to 23:00"
        else:
            message = "is not a whole number"
            hint = "use a whole number such as 0 or 1440 (digits 0-9)"
        rules.append(Rule(column.name, bad, message, hint))
    return rules


_WHY_LARGEST = {MINUTES_PER_YEAR: " (a year, in minutes)",
                INT32_MAX: " (what Fivetran's 32-bit integer fields hold)"}


def _larger_than(name: str, largest: int) -> pl.Expr:
    """The canonical whole number (digits, no leading zeros) in ``name`` is above ``largest``;
    compared as text, so 23 nines (beyond any integer type) are caught too."""
    text, limit = pl.col(name), str(largest)
    length = text.str.len_chars()
    return (length > len(limit)) | ((length == len(limit)) & (text > limit))


def _other_rows(group: list[str]) -> pl.Expr:
    """``also row 4`` / ``also rows 4, 7``: the other rows of a row's group, for a message."""
    others = (pl.col(ROW).implode().over(group)
              .list.set_difference(pl.concat_list(pl.col(ROW))).list.sort())
    count = others.list.len()
    shown = others.list.head(_SHOWN_ROWS).cast(pl.List(pl.String)).list.join(", ")
    more = pl.when(count > _SHOWN_ROWS).then(
        pl.format(" and {} more", count - _SHOWN_ROWS)).otherwise(pl.lit(""))
    return pl.format("also {} {}{}", pl.when(count == 1).then(pl.lit("row"))
                     .otherwise(pl.lit("rows")), shown, more)


def _row_rules() -> list[Rule]:
    c = pl.col
    specific = c("sync_mode") == "SpecificAccounts"
    n_accounts = c("accounts").list.len().fill_null(0)
    has_token = c("access_token").is_not_null()
    has_id, has_secret = c("client_id").is_not_null(), c("client_secret").is_not_null()
    no_auth = ~has_token & ~has_id & ~has_secret
    pinned = c(PIN_COLUMN).is_not_null()
    freq_ok = c("sync_frequency").is_in([str(v) for v in SYNC_FREQUENCIES])
    accounts_joined = c("accounts").list.join(", ")
    bad_accounts = c("accounts").list.eval(pl.element().filter(
        ~pl.element().str.contains(r"^[0-9]+$") & ~pl.element().str.contains(_AS_NUMBER)
    )).list.join(", ")
    as_numbers = c("accounts").list.eval(
        pl.element().filter(pl.element().str.contains(_AS_NUMBER))).list.join(", ")
    return [
        Rule("sync_frequency", c("sync_frequency").is_not_null() & ~freq_ok,
             "is not an allowed sync frequency",
             f"use one of {', '.join(str(v) for v in SYNC_FREQUENCIES)} (minutes)"),
        Rule("daily_sync_time",
             c("daily_sync_time").is_not_null() & (c("sync_frequency") != "1440").fill_null(True),
             "is only allowed with sync_frequency 1440",
             "set sync_frequency to 1440 or clear daily_sync_time"),
        Rule("data_delay_threshold",
             (c("data_delay_threshold").is_not_null() & (c("data_delay_threshold") != "0")
              & (c("data_delay_sensitivity") != "CUSTOM").fill_null(True)),
             "is ignored unless data_delay_sensitivity is CUSTOM",
             "set data_delay_sensitivity to CUSTOM, or the threshold to 0", WARNING),
        Rule("proxy_agent_id",
             (c("networking_method") == "ProxyAgent") & c("proxy_agent_id").is_null(),
             "is required with networking_method ProxyAgent", "fill proxy_agent_id"),
        Rule("private_link_id",
             (c("networking_method") == "PrivateLink") & c("private_link_id").is_null(),
             "is required with networking_method PrivateLink", "fill private_link_id"),
        Rule("accounts", specific & (n_accounts == 0),
             "is required with sync_mode SpecificAccounts",
             "list the TikTok advertiser ids, or use sync_mode AllAccounts"),
        Rule("accounts", (c("sync_mode") != "SpecificAccounts").fill_null(True) & (n_accounts > 0),
             "is only allowed with sync_mode SpecificAccounts",
             "set sync_mode to SpecificAccounts, or clear accounts", value=accounts_joined),
        Rule("accounts", as_numbers.fill_null("") != "",
             pl.format(f"{STORED_AS_NUMBER}: {{}}", as_numbers),
             f"{AS_TEXT_HINT} (a spreadsheet that opens a CSV turns long ids into numbers "
             "such as 7.01234567890123E+18: import the column as Text)", value=accounts_joined),
        Rule("accounts", bad_accounts.fill_null("") != "",
             pl.format("has ids that are not all digits: {}", bad_accounts),
             "TikTok advertiser ids are the digits 0-9 only (not full-width or other scripts' "
             "digits)", value=accounts_joined),
        Rule("accounts", (n_accounts > c("accounts").list.unique().list.len().fill_null(0)),
             "lists the same id more than once", "remove the duplicate ids", WARNING,
             value=accounts_joined),
        Rule("schema", c("schema").is_null(), "is required",
             "fill a destination schema name, e.g. tiktok_acme"),
        Rule("schema", c("schema").is_not_null() & ~c("schema").str.contains(SCHEMA_RE),
             "is not a valid schema name",
             "use lowercase letters, digits and underscores, starting with a letter or _"),
        Rule("schema",
             c("schema").is_not_null() & (pl.len().over([GROUP_KEY, "schema"]) > 1)
             & c(GROUP_KEY).is_not_null(),
             pl.format("is used by {} rows in the same group ({})",
                       pl.len().over([GROUP_KEY, "schema"]), _other_rows([GROUP_KEY, "schema"])),
             "a schema name is unique within a group: rename or remove the duplicates"),
        Rule("group_id", c("group_id").is_null() & c("group_name").is_null(),
             "is required (or fill group_name)", "fill the Fivetran group id"),
        Rule("group_id", c("group_id").is_not_null() & ~c("group_id").str.contains(GROUP_ID_RE),
             "is not a Fivetran group id",
             "group ids are letters, digits, _ and - (e.g. decent_dropsy); "
             "put a group's name in group_name"),
        *(Rule(column.name, c(column.name).str.len_chars() > MAX_TEXT,
               pl.format("is {} characters long", c(column.name).str.len_chars()),
               f"use at most {MAX_TEXT} characters")
          for column in COLUMNS if column.kind in (Kind.TEXT, Kind.URL, Kind.SCHEMA)),
        *(Rule(column.name, _larger_than(column.name, column.largest),
               f"is more than {column.largest}, the largest {column.name} allowed",
               f"use a whole number from 0 to {column.largest}"
               + _WHY_LARGEST.get(column.largest, ""))
          for column in COLUMNS if column.kind is Kind.INT and not column.choices),
        Rule("client_secret", has_id & ~has_secret, "is blank, but it is required with client_id",
             "fill both client_id and client_secret, or neither"),
        Rule("client_id", has_secret & ~has_id, "is blank, but it is required with client_secret",
             "fill both client_id and client_secret, or neither"),
        Rule("redirect_uri", no_auth & c("redirect_uri").is_null() & ~pinned,
             "is required for a connect-card row (a row with no access_token or client keys)",
             "fill redirect_uri, or give access_token / client_id + client_secret"),
        Rule(PIN_COLUMN, pinned & ~c(PIN_COLUMN).str.contains(GROUP_ID_RE),
             "is not a Fivetran connection id",
             "connection ids are letters, digits, _ and - (as export writes them); clear it "
             "to create a new connection"),
        Rule("redirect_uri",
             c("redirect_uri").is_not_null()
             & ~c("redirect_uri").str.contains(r"^https://[A-Za-z0-9.\-]+(:[0-9]+)?(/\S*)?$"),
             "is not an absolute https URL", "use a full URL such as https://agency.example/done"),
        Rule("hide_setup_guide",
             c("hide_setup_guide").is_not_null() & c("redirect_uri").is_null(),
             "is only sent with redirect_uri (a connect card); it is ignored here",
             "fill redirect_uri, or clear hide_setup_guide", WARNING),
        Rule("run_setup_tests", no_auth & (c("run_setup_tests") == "true"),
             "is sent as false for a connect-card row: the client has not authorised yet",
             "leave run_setup_tests blank for connect-card rows", WARNING),
    ]


_REFERENCE_HINT = ("use env:NAME for an environment variable or file:PATH for a file (a path "
                   "relative to the sheet's folder)")
#: The hint of a ``file:`` reference in a sheet read from a URL, which has no folder.
_NO_FOLDER_HINT = "give --secrets-dir DIR (file: paths are read inside it), or use env:NAME"


def _secret_rules(frame: pl.DataFrame, ctx: SecretContext) -> list[Rule]:
    """A reference that does not resolve is an error, a literal value a warning. Every value
    that resolves is registered with the redactor in the same look (``register_sheet_secrets``),
    so that no output of any command can echo a secret of the sheet."""
    rules: list[Rule] = []
    for name in SECRET_COLUMNS:
        found = register_sheet_secrets(frame.get_column(name).drop_nulls().unique().to_list(),
                                       ctx)
        if found.problems:
            rules.append(Rule(name, pl.col(name).is_in(list(found.problems)),
                              pl.col(name).replace_strict(found.problems, default=""),
                              _NO_FOLDER_HINT if ctx.files_refused else _REFERENCE_HINT))
        if found.literals:
            rules.append(Rule(name, pl.col(name).is_in(found.literals),
                              "holds a literal secret value in the sheet",
                              "use env:NAME or file:PATH so the secret stays out of the file",
                              WARNING))
    return rules


def _raw_cell_rules(table: Table) -> list[tuple[int, str, str, str, str]]:
    """(row, column, value, message, hint) of the XLSX cells whose text cannot be trusted."""
    out = []
    for row, raw in table.numeric_cells.get("accounts", []):
        try:
            number = float(raw)
        except ValueError:
            continue
        digits = len(str(int(number))) if number.is_integer() else 99
        if "e" in raw.lower() or digits > _EXACT_DIGITS or not number.is_integer():
            out.append((row, "accounts", raw, STORED_AS_NUMBER, AS_TEXT_HINT))
    for column, cells in table.error_cells.items():
        if column in BY_NAME:
            out.extend((row, column, raw, f"shows the Excel error {raw}",
                        "fix the formula, or type the value") for row, raw in cells)
    return out


def _enum_suggestions(problems: pl.DataFrame) -> pl.DataFrame:
    """``did you mean AllAccounts?`` in the hint of an enum value a typo away from a choice
    (``AllAcounts``), compared without case, as the values are read."""
    hints: dict[tuple[str, str], str] = {}
    bad = problems.filter(pl.col("message") == NOT_A_CHOICE).select("column", "value")
    for column, value in bad.unique().iter_rows():
        spec = BY_NAME.get(column)
        if spec is None or spec.kind is not Kind.ENUM or not value:
            continue
        spellings = spec.canonical_map()
        match = difflib.get_close_matches(value.lower(), list(spellings), n=1, cutoff=0.75)
        if match:
            hints[(column, value)] = f"did you mean {spellings[match[0]]}? ("
    if not hints:
        return problems
    suggested = pl.DataFrame([(c, v, h) for (c, v), h in hints.items()],
                             schema={"column": pl.String, "value": pl.String,
                                     "suggestion": pl.String}, orient="row")
    return (problems.join(suggested, on=["column", "value"], how="left", maintain_order="left",
                          nulls_equal=False)
            .with_columns(pl.when(pl.col("suggestion").is_not_null() & (
                pl.col("message") == NOT_A_CHOICE))
                .then(pl.col("suggestion") + pl.col("hint") + pl.lit(")"))
                .otherwise(pl.col("hint")).alias("hint"))
            .drop("suggestion"))


_RAW_NAMES = frozenset(f"raw_{c.name}" for c in COLUMNS if c.kind is not Kind.SECRET)


def validate_connections(table: Table, ctx: SecretContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(canonical frame, problems) for the connections sheet."""
    raw = table.frame.select(
        [pl.col(ROW)] + [pl.col(c).alias(f"raw_{c}") for c in table.columns
                         if f"raw_{c}" in _RAW_NAMES])
    frame = canonicalise(table.frame)
    joined = frame.join(raw, on=ROW, how="left")
    for name in _RAW_NAMES:
        if name not in joined.columns:
            joined = joined.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    rules = _invalid_value_rules(joined) + _row_rules() + _secret_rules(frame, ctx)
    problems = _enum_suggestions(collect(joined, rules, table.label))
    untrusted = _raw_cell_rules(table)
    if untrusted:
        problems = pl.concat([problems, pl.DataFrame(
            [(table.label, row, column, raw_value, ERROR, message, hint)
             for row, column, raw_value, message, hint in untrusted],
            schema=PROBLEM_SCHEMA, orient="row")])
    return frame, problems
