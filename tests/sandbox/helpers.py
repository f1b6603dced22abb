"""Shared helpers of the sandbox tests: the seed's payload and a create shortcut."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx

#: The seed's create payload for tiktok_ads, with concrete values.
BASE_PAYLOAD: dict[str, Any] = {
    "group_id": "decent_dropsy",
    "service": "tiktok_ads",
    "trust_certificates": True,
    "trust_fingerprints": True,
    "run_setup_tests": True,
    "paused": False,
    "pause_after_trial": False,
    "sync_frequency": 1440,
    "data_delay_sensitivity": "NORMAL",
    "data_delay_threshold": 0,
    "daily_sync_time": "14:00",
    "schedule_type": "auto",
    "networking_method": "Directly",
    "config": {
        "sync_mode": "SpecificAccounts",
        "timeframe_months": "TWELVE",
        "accounts": ["7012345678901234567", "7012345678901234568"],
        "attribution_window_size": "SEVEN",
        "custom_reports": [
            {
                "report_type": "auction_basic_campaign_report",
                "metrics": ["spend", "impressions"],
                "table_name": "campaign_daily",
                "dimensions": ["campaign_id", "stat_time_day"],
                "aggregate": "daily",
            }
        ],
        "schema": "acme_tiktok",
    },
    "auth": {
        "access_token": "my_access_token",
        "client_access": {"client_secret": "my_client_secret", "client_id": "my_client_id"},
    },
}

PayloadFactory = Callable[..., dict[str, Any]]


def make_payload(
    schema: str = "acme_tiktok", group_id: str = "decent_dropsy", **overrides: Any
) -> dict[str, Any]:
    """The base payload with another schema/group and top-level overrides (None removes)."""
    payload = copy.deepcopy(BASE_PAYLOAD)
    payload["group_id"] = group_id
    payload["config"]["schema"] = schema
    for key, value in overrides.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def create(
    client: httpx.Client, schema: str, group_id: str = "decent_dropsy", **overrides: Any
) -> httpx.Response:
    """POST a create for (group_id, schema)."""
    return client.post("/v1/connections", json=make_payload(schema, group_id, **overrides))
