"""Validation of create and update bodies, answering like Fivetran's ``InvalidInput``.

``tiktok_ads`` bodies are checked field by field (known keys, types, enums, patterns and
cross-field rules); other services get the common top-level checks only. The first
problem found is reported, with a message that names the field, e.g.
``Field 'config.sync_mode' has invalid value 'X'; expected one of AllAccounts, SpecificAccounts``.
A JSON ``null`` on an optional field counts as "not given".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

TIKTOK_ADS = "tiktok_ads"

SYNC_FREQUENCIES = (1, 5, 15, 30, 60, 120, 180, 360, 480, 720, 1440)
SYNC_MODES = ("AllAccounts", "SpecificAccounts")
TIMEFRAMES = ("THREE", "SIX", "TWELVE", "TWENTY_FOUR", "ALL_TIME")
ATTRIBUTION_WINDOWS = ("ONE", "SEVEN", "FOURTEEN", "TWENTY_EIGHT")
SCHEDULE_TYPES = ("auto", "manual")
NETWORKING_METHODS = ("Directly", "SshTunnel", "ProxyAgent", "PrivateLink")
DELAY_SENSITIVITIES = ("LOW", "NORMAL", "HIGH", "CUSTOM", "SYNC_FREQUENCY")
SCHEMA_NAMINGS = ("FIVETRAN_NAMING", "SOURCE_NAMING")

SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
_HOUR = re.compile(r"^([01][0-9]|2[0-3]):00$")
_DIGITS = re.compile(r"^[0-9]+$")
_REPORT_TYPE = re.compile(r"^[a-z0-9_]+$")

#: Fields fixed at creation; a PATCH may repeat them but not change them.
IMMUTABLE_FIELDS = ("service", "group_id", "config.schema", "config.timeframe_months")

Check = Callable[[str, Any], None]


class InvalidInput(ValueError):
    """A request body that Fivetran would refuse with 400 ``InvalidInput``."""


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _type_error(name: str, value: Any, expected: str) -> InvalidInput:
    return InvalidInput(f"Field '{name}' has invalid value {_show(value)}; expected {expected}")


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _type_error(name, value, "a string")


def _non_empty_string(name: str, value: Any) -> None:
    _string(name, value)
    if not value.strip():
        raise InvalidInput(f"Field '{name}' must not be empty")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _type_error(name, value, "a boolean")


def _non_negative_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _type_error(name, value, "a non-negative integer")


def _one_of(*allowed: Any) -> Check:
    listing = ", ".join(str(a) for a in allowed)

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or value not in allowed or type(value) is not type(allowed[0]):
            raise InvalidInput(
                f"Field '{name}' has invalid value {_show(value)}; expected one of {listing}"
            )

    return check


def _pattern(regex: re.Pattern[str], expected: str) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or not regex.match(value):
            raise _type_error(name, value, expected)

    return check


def _string_list(item_check: Check) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, list):
            raise _type_error(name, value, "a list of strings")
        for index, item in enumerate(value):
            item_check(f"{name}[{index}]", item)

    return check


def _object(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise _type_error(name, value, "an object")
        _check_fields(value, fields, prefix=f"{name}.", required=required)

    return check


def _check_fields(
    body: Mapping[str, Any], fields: Mapping[str, Check], *, prefix: str, required: tuple[str, ...]
) -> None:
    for key in required:
        if body.get(key) is None:
            raise InvalidInput(f"Field '{prefix}{key}' is required")
    for key, value in body.items():
        check = fields.get(key)
        if check is None:
            raise InvalidInput(f"Field '{prefix}{key}' is not supported")
        if value is not None:
            check(f"{prefix}{key}", value)


_AUTH = _object(
    {
        "access_token": _non_empty_string,
        "client_access": _object(
            {"client_id": _non_empty_string, "client_secret": _non_empty_string}
        ),
    }
)

_CUSTOM_REPORT = _object(
    {
        "table_name": _pattern(SCHEMA_PATTERN, f"a name matching {SCHEMA_PATTERN.pattern}"),
        "report_type": _pattern(
            _REPORT_TYPE, "a report type such as auction_basic_campaign_report"
        ),
        "metrics": _string_list(_non_empty_string),
        "dimensions": _string_list(_non_empty_string),
        "aggregate": _non_empty_string,
    },
    required=("table_name", "report_type", "metrics"),
)

TOP_LEVEL_FIELDS: dict[str, Check] = {
    "group_id": _non_empty_string,
    "service": _non_empty_string,
    "trust_certificates": _boolean,
    "trust_fingerprints": _boolean,
    "run_setup_tests": _boolean,
    "paused": _boolean,
    "pause_after_trial": _boolean,
    "sync_frequency": _one_of(*SYNC_FREQUENCIES),
    "data_delay_sensitivity": _one_of(*DELAY_SENSITIVITIES),
    "data_delay_threshold": _non_negative_int,
    "daily_sync_time": _pattern(_HOUR, "a whole hour from 00:00 to 23:00"),
    "schedule_type": _one_of(*SCHEDULE_TYPES),
    "connect_card_config": _object(
        {"redirect_uri": _non_empty_string, "hide_setup_guide": _boolean, "all_fields": _boolean},
        required=("redirect_uri",),
    ),
    "proxy_agent_id": _string,
    "private_link_id": _string,
    "networking_method": _one_of(*NETWORKING_METHODS),
    "hybrid_deployment_agent_id": _string,
    "destination_schema_names": _one_of(*SCHEMA_NAMINGS),
    "destination_configuration": _object({"virtual_warehouse": _string}),
    "external_secrets_manager_id": _string,
    "config": lambda name, value: None,  # checked separately, per service
    "auth": _AUTH,
}

TIKTOK_CONFIG_FIELDS: dict[str, Check] = {
    "schema": _pattern(SCHEMA_PATTERN, f"a name matching {SCHEMA_PATTERN.pattern}"),
    "sync_mode": _one_of(*SYNC_MODES),
    "timeframe_months": _one_of(*TIMEFRAMES),
    "accounts": _string_list(_pattern(_DIGITS, "an advertiser id made of digits")),
    "attribution_window_size": _one_of(*ATTRIBUTION_WINDOWS),
    "custom_reports": lambda name, value: _check_custom_reports(name, value),
}


def _check_custom_reports(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _type_error(name, value, "a list of objects")
    seen: set[str] = set()
    for index, report in enumerate(value):
        _CUSTOM_REPORT(f"{name}[{index}]", report)
        if not report["metrics"]:
            raise InvalidInput(f"Field '{name}[{index}].metrics' must not be empty")
        table = report["table_name"]
        if table in seen:
            raise InvalidInput(f"Field '{name}[{index}].table_name' has duplicate value '{table}'")
        seen.add(table)


def check_accounts_rule(config: Mapping[str, Any]) -> None:
    """``SpecificAccounts`` needs a non-empty ``accounts`` list."""
    if config.get("sync_mode") == "SpecificAccounts" and not config.get("accounts"):
        raise InvalidInput(
            "Field 'config.accounts' must not be empty when 'config.sync_mode' is SpecificAccounts"
        )


def _check_config(service: str, config: Any, *, creating: bool) -> None:
    if not isinstance(config, dict):
        raise _type_error("config", config, "an object")
    if service == TIKTOK_ADS:
        required = ("schema",) if creating else ()
        _check_fields(config, TIKTOK_CONFIG_FIELDS, prefix="config.", required=required)
        return
    if creating and config.get("schema") is None:
        raise InvalidInput("Field 'config.schema' is required")
    if config.get("schema") is not None:
        TIKTOK_CONFIG_FIELDS["schema"]("config.schema", config["schema"])


def validate_create(body: Any) -> dict[str, Any]:
    """Check a ``POST /v1/connections`` body; returns it (a dict) or raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object")
    _check_fields(body, TOP_LEVEL_FIELDS, prefix="", required=("service", "group_id"))
    if body.get("config") is None:
        raise InvalidInput("Field 'config.schema' is required")
    _check_config(body["service"], body["config"], creating=True)
    if body["service"] == TIKTOK_ADS:
        check_accounts_rule(body["config"])
    return body


def validate_update(body: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``PATCH /v1/connections/{id}`` body against the stored connection.

    ``current`` holds ``service``, ``group_id`` and ``config``. Immutable fields may be
    repeated with their current value; any change is refused naming the field.
    """
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object")
    _check_fields(body, TOP_LEVEL_FIELDS, prefix="", required=())
    for key in ("service", "group_id"):
        if body.get(key) is not None and body[key] != current[key]:
            raise InvalidInput(
                f"Field '{key}' can not be changed after creation "
                f"(current value {_show(current[key])})"
            )
    config = body.get("config")
    if config is not None:
        _check_config(current["service"], config, creating=False)
        for key in ("schema", "timeframe_months"):
            old = current["config"].get(key)
            if config.get(key) is not None and config[key] != old:
                raise InvalidInput(
                    f"Field 'config.{key}' can not be changed after creation "
                    f"(current value {_show(old)})"
                )
        if current["service"] == TIKTOK_ADS:
            check_accounts_rule({**current["config"], **config})
    return body


def has_auth(auth: Any) -> bool:
    """Whether an ``auth`` block carries any credential."""
    if not isinstance(auth, dict):
        return False
    client = auth.get("client_access")
    client_given = isinstance(client, dict) and any(
        client.get(k) for k in ("client_id", "client_secret")
    )
    return bool(auth.get("access_token")) or client_given
