"""``batch-provisioner template``: the input templates, generated from the column definitions
so that they never drift from the code. A test checks the committed copies against this."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import xlsxwriter

from batch_provisioner.sheet.columns import (
    BY_NAME,
    REPORT_COLUMNS,
    SYNC_FREQUENCIES,
    Column,
    Kind,
)

CARRY_COLUMNS = ("client_name", "account_manager")
#: The template's columns in the order a person fills them: the key, what to sync and the
#: auth first, then the connect card, the settings most rows touch, and the advanced ones last.
#: (``COLUMNS`` keeps the payload's order, which ``expand`` follows; a test checks that this
#: names each of them once.)
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("key", ("group_id", "group_name", "schema")),
    ("what to sync", ("sync_mode", "accounts")),
    ("auth", ("access_token", "client_id", "client_secret")),
    ("connect card", ("redirect_uri", "hide_setup_guide")),
    ("settings", ("timeframe_months", "attribution_window_size", "sync_frequency",
                  "daily_sync_time", "schedule_type", "paused", "pause_after_trial",
                  "run_setup_tests")),
    ("advanced", ("data_delay_sensitivity", "data_delay_threshold", "destination_schema_names",
                  "networking_method", "proxy_agent_id", "private_link_id",
                  "hybrid_deployment_agent_id", "external_secrets_manager_id",
                  "trust_certificates", "trust_fingerprints")),
)
TEMPLATE_COLUMNS: tuple[Column, ...] = tuple(BY_NAME[name] for _section, names in SECTIONS
                                             for name in names)
_SECTION_OF = {name: section for section, names in SECTIONS for name in names}
#: Fivetran's own defaults, where its API reference states one (``trust_*`` and
#: ``run_setup_tests`` in the create request, ``data_delay_*``, ``timeframe_months``,
#: ``attribution_window_size``); defaults.toml shows them as comments, never as values.
FIVETRAN_DEFAULTS: dict[str, str] = {
    "timeframe_months": '"THREE"', "attribution_window_size": '"SEVEN"',
    "run_setup_tests": "true", "data_delay_sensitivity": '"NORMAL"',
    "data_delay_threshold": "0", "trust_certificates": "false", "trust_fingerprints": "false",
}
EXAMPLE_ROWS: tuple[dict[str, str], ...] = (
    {  # specific accounts with a long-lived token
        "group_id": "decent_dropsy", "sync_frequency": "1440", "daily_sync_time": "14:00",
        "schedule_type": "auto", "sync_mode": "SpecificAccounts",
        "accounts": "7012345678901234567,7012345678901234568", "timeframe_months": "THREE",
        "attribution_window_size": "SEVEN", "schema": "tiktok_acme_retail",
        "access_token": "file:secrets/acme_access_token.txt", "run_setup_tests": "true",
        "client_name": "Acme Retail", "account_manager": "jo@agency.example",
    },
    {  # all accounts with app client credentials
        "group_id": "happy_harbor", "sync_frequency": "360", "sync_mode": "AllAccounts",
        "timeframe_months": "TWELVE", "attribution_window_size": "FOURTEEN",
        "data_delay_sensitivity": "NORMAL", "schema": "tiktok_blue_fin",
        "client_id": "file:secrets/bluefin_client_id.txt",
        "client_secret": "file:secrets/bluefin_client_secret.txt", "run_setup_tests": "true",
        "client_name": "Blue Fin Media", "account_manager": "sam@agency.example",
    },
    {  # connect card: the client authorises through a link, no token is shared
        "group_id": "quiet_quasar", "sync_mode": "AllAccounts", "schema": "tiktok_crimson_coffee",
        "redirect_uri": "https://agency.example/onboarding/done", "hide_setup_guide": "true",
        "client_name": "Crimson Coffee", "account_manager": "jo@agency.example",
    },
)
EXAMPLE_REPORTS: tuple[dict[str, str], ...] = (
    {"schema": "tiktok_acme_retail", "table_name": "campaign_daily",
     "report_type": "auction_basic_campaign_report", "metrics": "spend,impressions,clicks,ctr",
     "dimensions": "campaign_id,stat_time_day", "aggregate": "daily"},
    {"schema": "tiktok_acme_retail", "table_name": "audience_by_country",
     "report_type": "auction_audience_advertiser_report", "metrics": "spend,impressions",
     "dimensions": "advertiser_id,country_code", "aggregate": "lifetime"},
)
DEMO_SECRETS = {
    "acme_access_token.txt": "demo-access-token-for-the-sandbox-only",
    "bluefin_client_id.txt": "demo-client-id-for-the-sandbox-only",
    "bluefin_client_secret.txt": "demo-client-secret-for-the-sandbox-only",
}
INSTRUCTIONS = (
    "batch-provisioner input template: one row per TikTok Ads connection to create in Fivetran.",
    "",
    "1. Fill the 'connections' sheet: one row per advertiser group. Hover a header for its note.",
    "2. Required: schema, and group_id (or group_name). The columns run from what every row "
    "needs (the group, the schema, what to sync, the auth) to advanced settings on the right "
    "(grey headers). Blank cells take the value from --defaults defaults.toml, or Fivetran's "
    "default.",
    "3. Auth: access_token, or client_id + client_secret, or neither. With neither, the row is "
    "a connect-card row: fill redirect_uri and send the link from the report to the client.",
    "4. Secrets: write env:NAME (an environment variable) or file:PATH (a file next to this "
    "workbook), never the token itself.",
    "5. TikTok advertiser ids are 19 digits: keep the accounts column formatted as Text.",
    "6. Custom reports go in the 'custom_reports' sheet, keyed by schema (and group_id when "
    "one schema name is used in several groups).",
    "7. Columns the tool does not know (like client_name) are carried through to the report.",
    "",
    "Check:   batch-provisioner validate advertiser_groups.xlsx",
    "Preview: batch-provisioner plan advertiser_groups.xlsx",
    "Run:     batch-provisioner apply advertiser_groups.xlsx",
)
_FIXED_DATE = dt.datetime(2026, 1, 1)


def _choices(kind: Kind, choices: tuple[str, ...]) -> list[str] | None:
    if kind is Kind.BOOL:
        return ["true", "false"]
    if kind is Kind.ENUM:
        return list(choices)
    if kind is Kind.INT and choices:
        return [str(v) for v in SYNC_FREQUENCIES]
    return None


def write_xlsx(path: Path) -> None:
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False,
                                              "strings_to_formulas": False})
    workbook.set_properties({"title": "batch-provisioner input", "created": _FIXED_DATE})
    text = workbook.add_format({"num_format": "@"})
    header = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "num_format": "@"})
    advanced = workbook.add_format({"bold": True, "bg_color": "#EDEDED", "num_format": "@"})
    sheet = workbook.add_worksheet("connections")
    names = [c.name for c in TEMPLATE_COLUMNS] + list(CARRY_COLUMNS)
    for index, column in enumerate(TEMPLATE_COLUMNS):
        rare = _SECTION_OF[column.name] == "advanced"
        note = column.note + (" Advanced: leave blank for Fivetran's default." if rare else "")
        sheet.set_column(index, index, max(14, len(column.name) + 2), text)
        sheet.write_string(0, index, column.name, advanced if rare else header)
        sheet.write_comment(0, index, note, {"x_scale": 2, "y_scale": 1.5})
        options = _choices(column.kind, column.choices)
        if options:
            sheet.data_validation(1, index, 1000, index, {
                "validate": "list", "source": options, "ignore_blank": True,
                "error_title": column.name,
                "error_message": f"Use one of: {', '.join(options)}"})
    for offset, name in enumerate(CARRY_COLUMNS, start=len(TEMPLATE_COLUMNS)):
        sheet.set_column(offset, offset, 18, text)
        sheet.write_string(0, offset, name, header)
        sheet.write_comment(0, offset, "Your own column: carried through to the report.")
    for row, example in enumerate(EXAMPLE_ROWS, start=1):
        for col, name in enumerate(names):
            if example.get(name):
                sheet.write_string(row, col, example[name], text)
    sheet.freeze_panes(1, 0)
    reports = workbook.add_worksheet("custom_reports")
    for index, column in enumerate(REPORT_COLUMNS):
        reports.set_column(index, index, 28, text)
        reports.write_string(0, index, column.name, header)
        reports.write_comment(0, index, column.note)
    for row, example in enumerate(EXAMPLE_REPORTS, start=1):
        for col, column in enumerate(REPORT_COLUMNS):
            if example.get(column.name):
                reports.write_string(row, col, example[column.name], text)
    notes = workbook.add_worksheet("instructions")
    notes.set_column(0, 0, 120)
    for row, line in enumerate(INSTRUCTIONS):
        notes.write_string(row, 0, line)
    workbook.close()


def _csv_text(names: list[str], rows: tuple[dict[str, str], ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([row.get(name, "") for name in names])
    return buffer.getvalue()


def defaults_toml() -> str:
    """defaults.toml: every column as a comment, in the template's order, with Fivetran's own
    default (commented too) where Fivetran documents one. Nothing is set: a user uncomments
    what the whole job should share."""
    lines = [
        "# Job-wide defaults for batch-provisioner: any column of the connections sheet.",
        "# A non-blank cell always wins over the value here; a column set in neither is left",
        "# to Fivetran. Nothing below is set: each line is a comment, showing Fivetran's own",
        "# default where Fivetran documents one. Uncomment (and change) a line to set it for",
        "# every row. Use it with: batch-provisioner apply SHEET --defaults defaults.toml",
        "",
    ]
    for column in TEMPLATE_COLUMNS:
        lines.append(f"# {column.name}: {column.note}")
        if column.name in FIVETRAN_DEFAULTS:
            lines.append(f"# {column.name} = {FIVETRAN_DEFAULTS[column.name]}"
                         "   # Fivetran's default")
        lines.append("")
    lines += [
        "# Rate budgets and client settings (Fivetran's documented paid-plan numbers by default).",
        "[limits]",
        "# calls_per_hour = 20000",
        "# setup_tests_per_minute = 250",
        "# setup_tests_per_hour = 2500",
        "# creates_per_minute = 20      # historical limit; off unless set",
        "# concurrency = 16             # pins the requests in flight; unset, they adapt",
        "# max_concurrency = 64         # the most in flight when they adapt",
        "# max_attempts = 5",
        "# max_wait_seconds = 3600",
        "# connect_timeout = 10",
        "# read_timeout = 60",
        "",
    ]
    return "\n".join(lines)


def template_texts() -> dict[str, str]:
    """The text templates by their path under the output folder (the XLSX is ``write_xlsx``);
    ``report.template_files.write_templates`` writes them all."""
    names = [c.name for c in TEMPLATE_COLUMNS] + list(CARRY_COLUMNS)
    return {
        "advertiser_groups.csv": _csv_text(names, EXAMPLE_ROWS),
        "custom_reports.csv": _csv_text([c.name for c in REPORT_COLUMNS], EXAMPLE_REPORTS),
        "defaults.toml": defaults_toml(),
        **{f"secrets/{name}": value + "\n" for name, value in DEMO_SECRETS.items()},
    }


def sheet_columns() -> tuple[Column, ...]:
    """The connections sheet's known columns in the template's order (``export`` writes its
    sheets in the same order)."""
    return TEMPLATE_COLUMNS


def dropdown(column: Column) -> list[str] | None:
    """The values a column's dropdown offers in the workbook; None when it has none."""
    return _choices(column.kind, column.choices)
