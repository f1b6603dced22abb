"""The input columns: their kinds, canonical values and where each lands in the payload.

The order of ``COLUMNS`` is the key order of the seed payload, so ``payload.expand`` follows it.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources


class Kind(enum.Enum):
    TEXT = "text"
    BOOL = "bool"
    INT = "int"
    ENUM = "enum"
    HOUR = "hour"
    LIST = "list"
    SECRET = "secret"  # noqa: S105 - the kind's name, not a value
    URL = "url"
    SCHEMA = "schema"


@dataclass(frozen=True)
class Column:
    """One input column. ``path`` is its place in the payload; ``()`` for job-only columns."""

    name: str
    kind: Kind
    path: tuple[str, ...]
    note: str
    choices: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    #: The largest value of an ``INT`` column (Fivetran's fields are int32: ``INT32_MAX``).
    maximum: int | None = None

    @property
    def largest(self) -> int:
        """The most an ``INT`` column takes: its ``maximum``, else what int32 holds."""
        return INT32_MAX if self.maximum is None else self.maximum

    def canonical_map(self) -> dict[str, str]:
        """Lower-cased spellings (and aliases) → Fivetran's canonical spelling."""
        mapping = {choice.lower(): choice for choice in self.choices}
        mapping.update({alias.lower(): value for alias, value in self.aliases.items()})
        return mapping


SYNC_FREQUENCIES = (1, 5, 15, 30, 60, 120, 180, 360, 480, 720, 1440)
INT32_MAX = 2**31 - 1  # the OpenAPI spec's ``format: int32``: the most any integer field takes
MINUTES_PER_YEAR = 365 * 24 * 60
BOOL_TRUE = ("true", "yes", "1")
BOOL_FALSE = ("false", "no", "0")

COLUMNS: tuple[Column, ...] = (
    Column("group_id", Kind.TEXT, ("group_id",),
           "Fivetran destination group id (or fill group_name instead)."),
    Column("group_name", Kind.TEXT, (),
           "Destination group name, resolved to its id through GET /v1/groups."),
    Column("trust_certificates", Kind.BOOL, ("trust_certificates",),
           "Trust certificates during setup tests: true/false."),
    Column("trust_fingerprints", Kind.BOOL, ("trust_fingerprints",),
           "Trust SSH fingerprints during setup tests: true/false."),
    Column("run_setup_tests", Kind.BOOL, ("run_setup_tests",),
           "Run setup tests after creating (forced to false for connect-card rows)."),
    Column("paused", Kind.BOOL, ("paused",), "Create the connection paused: true/false."),
    Column("pause_after_trial", Kind.BOOL, ("pause_after_trial",),
           "Pause the connection when the free trial ends: true/false."),
    Column("sync_frequency", Kind.INT, ("sync_frequency",),
           "Minutes between syncs: 1, 5, 15, 30, 60, 120, 180, 360, 480, 720 or 1440.",
           choices=tuple(str(v) for v in SYNC_FREQUENCIES)),
    Column("data_delay_sensitivity", Kind.ENUM, ("data_delay_sensitivity",),
           "Data delay notification level: LOW, NORMAL, HIGH, CUSTOM or SYNC_FREQUENCY.",
           choices=("LOW", "NORMAL", "HIGH", "CUSTOM", "SYNC_FREQUENCY")),
    Column("data_delay_threshold", Kind.INT, ("data_delay_threshold",),
           "Delay threshold in minutes (whole number >= 0), used only with CUSTOM.",
           maximum=MINUTES_PER_YEAR),
    Column("daily_sync_time", Kind.HOUR, ("daily_sync_time",),
           "Whole hour 00:00-23:00 for the daily sync; only with sync_frequency 1440."),
    Column("schedule_type", Kind.ENUM, ("schedule_type",), "Sync schedule: auto or manual.",
           choices=("auto", "manual")),
    Column("redirect_uri", Kind.URL, ("connect_card_config", "redirect_uri"),
           "Absolute https URL the connect card returns to (needed when no auth is given)."),
    Column("hide_setup_guide", Kind.BOOL, ("connect_card_config", "hide_setup_guide"),
           "Hide Fivetran's setup guide in the connect card: true/false."),
    Column("proxy_agent_id", Kind.TEXT, ("proxy_agent_id",),
           "Proxy agent id (required with networking_method ProxyAgent)."),
    Column("private_link_id", Kind.TEXT, ("private_link_id",),
           "Private link id (required with networking_method PrivateLink)."),
    Column("networking_method", Kind.ENUM, ("networking_method",),
           "Directly, SshTunnel, ProxyAgent or PrivateLink.",
           choices=("Directly", "SshTunnel", "ProxyAgent", "PrivateLink")),
    Column("hybrid_deployment_agent_id", Kind.TEXT, ("hybrid_deployment_agent_id",),
           "Hybrid deployment agent id, if the connection runs on one."),
    Column("destination_schema_names", Kind.ENUM, ("destination_schema_names",),
           "Naming of destination objects: FIVETRAN_NAMING or SOURCE_NAMING.",
           choices=("FIVETRAN_NAMING", "SOURCE_NAMING")),
    Column("external_secrets_manager_id", Kind.TEXT, ("external_secrets_manager_id",),
           "External secrets manager id, if credentials live there."),
    Column("sync_mode", Kind.ENUM, ("config", "sync_mode"),
           "AllAccounts, or SpecificAccounts with the accounts column filled.",
           choices=("AllAccounts", "SpecificAccounts")),
    Column("timeframe_months", Kind.ENUM, ("config", "timeframe_months"),
           "Initial sync history, fixed at creation: THREE, SIX, TWELVE, TWENTY_FOUR, ALL_TIME "
           "(or 3, 6, 12, 24, all).",
           choices=("THREE", "SIX", "TWELVE", "TWENTY_FOUR", "ALL_TIME"),
           aliases={"3": "THREE", "6": "SIX", "12": "TWELVE", "24": "TWENTY_FOUR",
                    "all": "ALL_TIME", "all_time": "ALL_TIME"}),
    Column("accounts", Kind.LIST, ("config", "accounts"),
           "TikTok advertiser ids (digits, format the column as Text), separated by , ; | "
           "or new lines. Only with SpecificAccounts."),
    Column("attribution_window_size", Kind.ENUM, ("config", "attribution_window_size"),
           "Attribution window: ONE, SEVEN, FOURTEEN or TWENTY_EIGHT (or 1, 7, 14, 28).",
           choices=("ONE", "SEVEN", "FOURTEEN", "TWENTY_EIGHT"),
           aliases={"1": "ONE", "7": "SEVEN", "14": "FOURTEEN", "28": "TWENTY_EIGHT"}),
    Column("schema", Kind.SCHEMA, ("config", "schema"),
           "Destination schema: lowercase letters, digits, underscores; unique per group; "
           "fixed at creation."),
    Column("access_token", Kind.SECRET, ("auth", "access_token"),
           "TikTok long-lived access token as env:NAME or file:PATH (never the value itself)."),
    Column("client_secret", Kind.SECRET, ("auth", "client_access", "client_secret"),
           "TikTok app client secret as env:NAME or file:PATH (needs client_id)."),
    Column("client_id", Kind.SECRET, ("auth", "client_access", "client_id"),
           "TikTok app client id as env:NAME or file:PATH (needs client_secret)."),
)

BY_NAME: dict[str, Column] = {column.name: column for column in COLUMNS}
KNOWN_COLUMNS: frozenset[str] = frozenset(BY_NAME)
SECRET_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind is Kind.SECRET)

# Columns that failed_rows.csv adds and the reader ignores when the file is fed back.
IGNORED_COLUMNS: frozenset[str] = frozenset({"error", "source_row"})

# The columns the job's own outputs put next to the user's carry-through columns. The output
# modules take their names from here, and a user column named like one of them is refused up
# front (``RESERVED_COLUMNS``, see ``sheet/guardrails.py``): the output would hold two columns
# of one name (apply crashed on it after the creates), or one would silently overwrite the other.
#: results.csv / results.parquet, after the key and carry-through columns.
RESULT_COLUMNS: tuple[str, ...] = (
    "action", "status", "connection_id", "setup_state", "connect_card_uri", "http_status",
    "error_code", "error_message", "attempts", "reconciled", "started_at", "finished_at")
#: Joined in while the results and plan frames are built (never in a file).
WORK_COLUMNS: tuple[str, ...] = ("out_group_id", "resolved_group_id")
#: plan.csv, after the key and carry-through columns.
PLAN_COLUMNS: tuple[str, ...] = ("action", "connection_id", "changes", "detail")
#: status.csv, connect_cards.csv and rollback/results.csv start with these, then the carry
#: columns, then their own.
RUN_ROW_COLUMNS: tuple[str, ...] = ("row", "group_id", "schema", "connection_id")
STATUS_COLUMNS: tuple[str, ...] = ("setup_state", "setup_tests", "error")
CONNECT_CARD_COLUMNS: tuple[str, ...] = ("uri", "expires_at")
ROLLBACK_COLUMNS: tuple[str, ...] = ("status", "http_status", "error_code", "error_message",
                                     "finished_at")
#: What ``status`` adds to results.parquet when it refreshes the run's report.
REFRESHED_COLUMNS: tuple[str, ...] = ("setup_tests",)
RESERVED_COLUMNS: frozenset[str] = frozenset(
    {*RESULT_COLUMNS, *WORK_COLUMNS, *PLAN_COLUMNS, *RUN_ROW_COLUMNS, *STATUS_COLUMNS,
     *CONNECT_CARD_COLUMNS, *ROLLBACK_COLUMNS, *REFRESHED_COLUMNS, *IGNORED_COLUMNS}
) - KNOWN_COLUMNS
#: The columns ``export`` writes beside the known ones. Outputs use these names too, yet any
#: sheet may have them (an exported sheet reads back as it was written): they are never carried
#: through, so no output holds them twice. ``connection_id`` pins the row to that connection
#: (``plan`` checks that its group and schema still hold it, and never creates a pinned row);
#: ``setup_state`` says whether it was authorised when exported (read, never sent).
EXPORT_COLUMNS: tuple[str, ...] = ("connection_id", "setup_state")
PIN_COLUMN = "connection_id"
#: The output names a header may not take (the export columns may).
REFUSED_HEADERS: frozenset[str] = RESERVED_COLUMNS - frozenset(EXPORT_COLUMNS)

REPORT_COLUMNS: tuple[Column, ...] = (
    Column("schema", Kind.SCHEMA, (), "The connection (schema) this report belongs to."),
    Column("group_id", Kind.TEXT, (),
           "Only when one schema name is used in several groups: which group."),
    Column("table_name", Kind.SCHEMA, ("table_name",),
           "Destination table: lowercase letters, digits, underscores; unique per connection."),
    Column("report_type", Kind.TEXT, ("report_type",),
           "Report type, e.g. auction_basic_campaign_report."),
    Column("metrics", Kind.LIST, ("metrics",), "Metrics, separated by , ; | or new lines."),
    Column("dimensions", Kind.LIST, ("dimensions",),
           "Dimensions, separated by , ; | or new lines."),
    Column("aggregate", Kind.TEXT, ("aggregate",), "Time aggregation: daily, none or lifetime."),
)
REPORT_KEYS: tuple[str, ...] = ("report_type", "metrics", "table_name", "dimensions", "aggregate")


@dataclass(frozen=True)
class Catalogue:
    """Known custom-report values (package data file ``data/catalogue.toml``)."""

    report_types: frozenset[str]
    aggregates: frozenset[str]
    metrics: frozenset[str]
    dimensions: frozenset[str]


@cache
def catalogue() -> Catalogue:
    text = resources.files("batch_provisioner").joinpath("data/catalogue.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    return Catalogue(
        report_types=frozenset(raw["report_types"]),
        aggregates=frozenset(raw["aggregates"]),
        metrics=frozenset(raw["metrics"]),
        dimensions=frozenset(raw["dimensions"]),
    )
