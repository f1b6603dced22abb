"""The tiktok_ads body rules: each problem is refused with a message naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from batch_provisioner.sandbox.validation import InvalidInput, validate_create, validate_update

from .helpers import BASE_PAYLOAD

Mutation = Callable[[dict[str, Any]], None]


def _parent(body: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """The container holding the last key of a dotted path (digits index lists)."""
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node, int(last) if isinstance(node, list) else last


def _set(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        node, key = _parent(body, path)
        node[key] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        node, key = _parent(body, path)
        del node[key]

    return mutate


REFUSED: list[tuple[str, Mutation, str]] = [
    ("no_service", _drop("service"), "Field 'service' is required"),
    ("no_group", _drop("group_id"), "Field 'group_id' is required"),
    ("no_config", _drop("config"), "Field 'config.schema' is required"),
    ("no_schema", _drop("config.schema"), "Field 'config.schema' is required"),
    ("unknown_top_level", _set("colour", "red"), "Field 'colour' is not supported"),
    ("unknown_config", _set("config.colour", "red"), "Field 'config.colour' is not supported"),
    (
        "paused_string",
        _set("paused", "false"),
        "Field 'paused' has invalid value 'false'; expected a boolean",
    ),
    (
        "run_setup_tests_int",
        _set("run_setup_tests", 1),
        "Field 'run_setup_tests' has invalid value 1",
    ),
    (
        "sync_frequency",
        _set("sync_frequency", 45),
        "Field 'sync_frequency' has invalid value 45; expected one of 1, 5, 15",
    ),
    (
        "sync_frequency_text",
        _set("sync_frequency", "1440"),
        "Field 'sync_frequency' has invalid value '1440'",
    ),
    (
        "sync_frequency_bool",
        _set("sync_frequency", True),
        "Field 'sync_frequency' has invalid value true",
    ),
    (
        "daily_sync_time",
        _set("daily_sync_time", "14:30"),
        "Field 'daily_sync_time' has invalid value '14:30'",
    ),
    (
        "daily_sync_time_24",
        _set("daily_sync_time", "24:00"),
        "Field 'daily_sync_time' has invalid value '24:00'",
    ),
    (
        "schedule_type",
        _set("schedule_type", "cron"),
        "Field 'schedule_type' has invalid value 'cron'; expected one of auto, manual",
    ),
    (
        "networking",
        _set("networking_method", "Vpn"),
        "Field 'networking_method' has invalid value 'Vpn'",
    ),
    (
        "delay_sensitivity",
        _set("data_delay_sensitivity", "LOWEST"),
        "Field 'data_delay_sensitivity' has invalid value 'LOWEST'",
    ),
    (
        "delay_threshold",
        _set("data_delay_threshold", -5),
        "Field 'data_delay_threshold' has invalid value -5",
    ),
    (
        "schema_names",
        _set("destination_schema_names", "CAMEL"),
        "Field 'destination_schema_names' has invalid value 'CAMEL'",
    ),
    (
        "proxy_agent_int",
        _set("proxy_agent_id", 7),
        "Field 'proxy_agent_id' has invalid value 7; expected a string",
    ),
    (
        "sync_mode",
        _set("config.sync_mode", "X"),
        "Field 'config.sync_mode' has invalid value 'X'; "
        "expected one of AllAccounts, SpecificAccounts",
    ),
    (
        "timeframe",
        _set("config.timeframe_months", "NINE"),
        "Field 'config.timeframe_months' has invalid value 'NINE'; "
        "expected one of THREE, SIX, TWELVE, TWENTY_FOUR, ALL_TIME",
    ),
    (
        "attribution",
        _set("config.attribution_window_size", "TWO"),
        "Field 'config.attribution_window_size' has invalid value 'TWO'; "
        "expected one of ONE, SEVEN, FOURTEEN, TWENTY_EIGHT",
    ),
    (
        "accounts_not_list",
        _set("config.accounts", "123"),
        "Field 'config.accounts' has invalid value '123'; expected a list of strings",
    ),
    (
        "accounts_float",
        _set("config.accounts", [7.01e18]),
        "Field 'config.accounts[0]' has invalid value 7.01e+18",
    ),
    (
        "accounts_scientific",
        _set("config.accounts", ["7.01E+18"]),
        "Field 'config.accounts[0]' has invalid value '7.01E+18'",
    ),
    (
        "specific_without_accounts",
        _set("config.accounts", []),
        "Field 'config.accounts' must not be empty when 'config.sync_mode' is SpecificAccounts",
    ),
    (
        "specific_accounts_missing",
        _drop("config.accounts"),
        "Field 'config.accounts' must not be empty",
    ),
    (
        "schema_upper",
        _set("config.schema", "Acme"),
        "Field 'config.schema' has invalid value 'Acme'; "
        "expected a name matching ^[a-z_][a-z0-9_]*$",
    ),
    (
        "schema_digit_first",
        _set("config.schema", "1acme"),
        "Field 'config.schema' has invalid value '1acme'",
    ),
    (
        "schema_dash",
        _set("config.schema", "acme-tiktok"),
        "Field 'config.schema' has invalid value 'acme-tiktok'",
    ),
    (
        "reports_not_list",
        _set("config.custom_reports", {}),
        "Field 'config.custom_reports' has invalid value {}",
    ),
    (
        "report_no_table",
        _drop("config.custom_reports.0.table_name"),
        "Field 'config.custom_reports[0].table_name' is required",
    ),
    (
        "report_no_type",
        _drop("config.custom_reports.0.report_type"),
        "Field 'config.custom_reports[0].report_type' is required",
    ),
    (
        "report_no_metrics",
        _drop("config.custom_reports.0.metrics"),
        "Field 'config.custom_reports[0].metrics' is required",
    ),
    (
        "report_empty_metrics",
        _set("config.custom_reports.0.metrics", []),
        "Field 'config.custom_reports[0].metrics' must not be empty",
    ),
    (
        "report_metric_int",
        _set("config.custom_reports.0.metrics", [3]),
        "Field 'config.custom_reports[0].metrics[0]' has invalid value 3",
    ),
    (
        "report_unknown_key",
        _set("config.custom_reports.0.owner", "me"),
        "Field 'config.custom_reports[0].owner' is not supported",
    ),
    (
        "auth_token_int",
        _set("auth.access_token", 5),
        "Field 'auth.access_token' has invalid value 5",
    ),
    ("auth_unknown", _set("auth.password", "x"), "Field 'auth.password' is not supported"),
    (
        "card_no_redirect",
        _set("connect_card_config", {"hide_setup_guide": True}),
        "Field 'connect_card_config.redirect_uri' is required",
    ),
]


def _apply(mutation: Mutation) -> dict[str, Any]:
    body = copy.deepcopy(BASE_PAYLOAD)
    mutation(body)
    return body


@pytest.mark.parametrize(
    ("mutation", "message"), [(m, msg) for _, m, msg in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_invalid_create_body_is_refused_naming_the_field(mutation: Mutation, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_create(_apply(mutation))

    assert message in str(refused.value)


@pytest.mark.parametrize(
    "mutation",
    [
        _set("config.sync_mode", "AllAccounts"),
        _drop("config.accounts"),
        _drop("auth"),
        _set("proxy_agent_id", None),
        _set("destination_schema_names", "SOURCE_NAMING"),
        _set("destination_configuration", {"virtual_warehouse": "wh"}),
        _set("external_secrets_manager_id", "esm_1"),
        _set("sync_frequency", 1),
        _set("daily_sync_time", "00:00"),
    ],
)
def test_valid_variants_are_accepted(mutation: Mutation) -> None:
    body = _apply(mutation)
    if body["config"].get("sync_mode") == "SpecificAccounts" and "accounts" not in body["config"]:
        body["config"]["sync_mode"] = "AllAccounts"

    assert validate_create(body) is body


def test_other_services_are_accepted_generically_but_need_a_schema() -> None:
    assert validate_create(
        {"service": "google_ads", "group_id": "g", "config": {"schema": "ads", "x": 1}}
    )
    with pytest.raises(InvalidInput, match=r"Field 'config\.schema' is required"):
        validate_create({"service": "google_ads", "group_id": "g", "config": {}})


def test_update_allows_repeating_immutable_values_but_not_changing_them() -> None:
    current = {
        "service": "tiktok_ads",
        "group_id": "g",
        "config": {"schema": "s", "timeframe_months": "SIX"},
    }

    assert validate_update(
        {"service": "tiktok_ads", "group_id": "g", "config": {"schema": "s"}}, current
    )
    for body, field in [
        ({"config": {"schema": "t"}}, "config.schema"),
        ({"config": {"timeframe_months": "THREE"}}, "config.timeframe_months"),
        ({"service": "other"}, "service"),
        ({"group_id": "h"}, "group_id"),
    ]:
        with pytest.raises(InvalidInput, match=f"Field '{field}' can not be changed"):
            validate_update(body, current)
