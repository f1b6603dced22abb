"""The inverse of ``expand``: a connection as Fivetran answers it → the row that makes it.

``exported_row`` turns one ``GET /v1/connections/{id}`` answer into the cells of a row (the
text ``canonicalise`` reads back to the same values, so ``expand`` of the row gives the
fields the answer holds), its custom report rows, and what the sheet cannot express. Pure.

What no column can hold is listed (``Dropped``), never silently lost:

* a setting the sheet has no column for (``destination_configuration``, a ``config`` key or a
  connect-card or report key it does not know);
* a value a column cannot take as it is (an enum value it does not list, a sync frequency it
  does not allow, ``accounts`` kept with ``AllAccounts``): the cell is left blank;
* custom reports of which one cannot be written as a report row: then none of that
  connection's reports is written (a sheet with only some of them would have ``apply
  --update`` replace the connection's reports with those).

Not listed, because a row could not carry them and they are not settings: the answer's status
facts (``id`` and ``setup_state`` go to their own columns, ``status``, ``created_at``,
``setup_tests``, ...), the secrets (``auth`` is never answered; a masked ``******`` value is
left blank) and ``daily_sync_time`` when the sync is not daily (Fivetran ignores it then, and
the sheet only takes it with ``sync_frequency`` 1440).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batch_provisioner.models import SERVICE
from batch_provisioner.safety import MASK
from batch_provisioner.sheet.columns import (
    COLUMNS,
    REPORT_KEYS,
    Column,
    Kind,
)
from batch_provisioner.sheet.rules import SCHEMA_RE
from batch_provisioner.sheet.validate import GROUP_ID_RE, MAX_TEXT

#: Answer fields that are facts about the connection, not settings a row makes.
STATUS_FIELDS = frozenset({
    "id", "service", "service_version", "schema", "status", "connected_by", "created_at",
    "succeeded_at", "failed_at", "setup_tests", "source_sync_details", "connect_card"})
#: Cells each row of an export gets from the answer's facts (beside the known columns).
SETUP_STATE = "setup_state"
_BY_PATH: dict[tuple[str, ...], Column] = {c.path: c for c in COLUMNS if c.path}
_HOUR = re.compile(r"^([01][0-9]|2[0-3]):00$")
_DIGITS = re.compile(r"^[0-9]+$")
_URL = re.compile(r"^https://[A-Za-z0-9.\-]+(:[0-9]+)?(/\S*)?$")
_NAME = re.compile(SCHEMA_RE)
_SHOWN = 300  # characters of a dropped value shown


@dataclass(frozen=True)
class Dropped:
    """One thing of one connection the sheet cannot express: where, what, why."""

    field: str  # a dotted path: destination_configuration, config.accounts, ...
    value: str  # as JSON, cut short; secrets stay masked
    reason: str


@dataclass(frozen=True)
class ExportedRow:
    """A connection as a row: its cells (column -> text), report rows, what was dropped."""

    cells: dict[str, str]
    reports: tuple[dict[str, str], ...]
    dropped: tuple[Dropped, ...]

    @property
    def group_id(self) -> str:
        return self.cells.get("group_id", "")

    @property
    def schema(self) -> str:
        return self.cells.get("schema", "")


def exported_row(answer: Mapping[str, Any]) -> ExportedRow:
    """The row that would make the connection ``answer`` describes (see the module)."""
    cells: dict[str, str] = {}
    dropped: list[Dropped] = []
    for key, value in answer.items():
        if key in STATUS_FIELDS or key == "auth" or value is None:
            continue
        if key in ("config", "connect_card_config") and isinstance(value, Mapping):
            for inner, item in value.items():
                if not (key == "config" and inner == "custom_reports"):
                    _put(cells, dropped, (key, inner), item)
        else:
            _put(cells, dropped, (key,), value)
    schema = str(answer.get("schema") or "")
    config = answer.get("config")
    if isinstance(config, Mapping) and config.get("schema"):
        schema = str(config["schema"])
    if "schema" not in cells and schema:
        _put(cells, dropped, ("config", "schema"), schema)
    _drop_meaningless(cells, dropped)
    reports = _reports(config.get("custom_reports") if isinstance(config, Mapping) else None,
                       cells, dropped)
    status = answer.get("status")
    if isinstance(status, Mapping) and status.get("setup_state"):
        cells[SETUP_STATE] = str(status["setup_state"])
    if answer.get("id"):
        cells["connection_id"] = str(answer["id"])
    return ExportedRow(cells, reports, tuple(dropped))


def is_exportable(answer: Mapping[str, Any]) -> bool:
    """A connection of the service this job makes (others cannot be a row)."""
    return answer.get("service") == SERVICE


def shown_value(value: Any) -> str:
    """A dropped value as text a person reads: JSON, cut at a few hundred characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _put(cells: dict[str, str], dropped: list[Dropped], path: tuple[str, ...],
         value: Any) -> None:
    """The column at ``path`` gets ``value`` as its text, or ``dropped`` says why not."""
    name = ".".join(path)
    column = _BY_PATH.get(path)
    if column is None:
        if value == MASK or value in ({}, [], ""):
            return  # a masked secret, or nothing set: nothing a row could hold is lost
        dropped.append(Dropped(name, shown_value(value), "the sheet has no column for it"))
        return
    if column.kind is Kind.SECRET or value == MASK:
        return  # the API masks secrets: the export leaves them blank (see the instructions)
    text, problem = _cell(column, value)
    if problem:
        dropped.append(Dropped(name, shown_value(value), problem))
    elif text is not None:
        cells[column.name] = text


def _cell(column: Column, value: Any) -> tuple[str | None, str | None]:
    """(the cell's text, None) for a value the column takes; (None, why) otherwise."""
    kind = column.kind
    if kind is Kind.BOOL:
        return (str(value).lower(), None) if isinstance(value, bool) else (None, "not a boolean")
    if kind is Kind.INT:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None, "not a whole number >= 0"
        if column.choices and str(value) not in column.choices:
            return None, f"not one of {', '.join(column.choices)}"
        return (str(value), None) if value <= column.largest else (
            None, f"more than {column.largest}")
    if kind is Kind.LIST:
        if not isinstance(value, list) or not all(
                isinstance(v, str) and _DIGITS.match(v) for v in value):
            return None, "not a list of advertiser ids (digits)"
        return (",".join(value) or None), None
    if not isinstance(value, str):
        return None, "not text"
    text = value.strip()
    if kind is Kind.ENUM and text not in column.choices:
        return None, f"not one of {', '.join(column.choices)}"
    checks = {Kind.HOUR: (_HOUR, "not a whole hour 00:00-23:00"),
              Kind.URL: (_URL, "not an absolute https URL"),
              Kind.SCHEMA: (_NAME, "not a schema name the sheet takes")}
    pattern, why = checks.get(kind, (None, ""))
    if pattern is not None and not pattern.match(text):
        return None, why
    if column.name == "group_id" and not re.match(GROUP_ID_RE, text):
        return None, "not a group id the sheet takes"
    if len(text) > MAX_TEXT:
        return None, f"longer than {MAX_TEXT} characters"
    return (text or None), None


def _drop_meaningless(cells: dict[str, str], dropped: list[Dropped]) -> None:
    """Values a row may not combine (validation would refuse the row): ``daily_sync_time``
    without daily syncs (Fivetran ignores it: left out, not listed), ``accounts`` without
    ``SpecificAccounts`` (listed: Fivetran keeps them, unused), ``hide_setup_guide`` without
    a ``redirect_uri`` (never sent alone)."""
    if cells.get("sync_frequency") != "1440":
        cells.pop("daily_sync_time", None)
    if "accounts" in cells and cells.get("sync_mode") != "SpecificAccounts":
        dropped.append(Dropped("config.accounts", cells.pop("accounts"),
                               "only used with sync_mode SpecificAccounts"))
    if "redirect_uri" not in cells:
        cells.pop("hide_setup_guide", None)


def _reports(reports: Any, cells: Mapping[str, str],
             dropped: list[Dropped]) -> tuple[dict[str, str], ...]:
    """The custom_reports sheet's rows of one connection: all of them, or (when one cannot
    be a row) none, with the reasons listed."""
    if reports in (None, []):
        return ()
    if not isinstance(reports, list):
        dropped.append(Dropped("config.custom_reports", shown_value(reports), "not a list"))
        return ()
    rows: list[dict[str, str]] = []
    problems: list[Dropped] = []
    for index, report in enumerate(reports):
        row, why = _report_row(report)
        if row is None:
            problems.append(Dropped(f"config.custom_reports[{index}]", shown_value(report),
                                    why))
        else:
            rows.append({"schema": cells.get("schema", ""),
                         "group_id": cells.get("group_id", ""), **row})
    if problems and rows:
        problems.append(Dropped("config.custom_reports", f"{len(rows)} more reports",
                                "not written either: apply --update would replace the "
                                "connection's reports with the rest"))
    dropped.extend(problems)
    return () if problems else tuple(rows)


def _report_row(report: Any) -> tuple[dict[str, str] | None, str]:
    """One report as a custom_reports row (its keys as text), or None and why not."""
    if not isinstance(report, Mapping):
        return None, "not an object"
    unknown = sorted(set(report) - set(REPORT_KEYS))
    if unknown:
        return None, f"the sheet has no column for {', '.join(unknown)}"
    row: dict[str, str] = {}
    for key in REPORT_KEYS:
        value = report.get(key)
        if value is None or value == []:
            continue
        values: Sequence[Any] = value if isinstance(value, list) else [value]
        if isinstance(value, list) != (key in ("metrics", "dimensions")) or not all(
                isinstance(v, str) and _NAME.match(v) for v in values):
            return None, f"{key} is not what the sheet takes (lowercase names)"
        row[key] = ",".join(values)
    if not row.get("table_name") or not row.get("report_type") or not row.get("metrics"):
        return None, "table_name, report_type and metrics are required"
    return row, ""
