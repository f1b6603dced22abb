"""A connection as Fivetran answers it → its row: the inverse of ``expand``, and what a row
cannot hold listed (``sheet/export.py``)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_input import key_paths, seed_payload

from batch_provisioner.report.export_files import connection_columns
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.sheet.columns import REPORT_COLUMNS
from batch_provisioner.sheet.export import exported_row
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.secrets import SecretContext

#: The seed's create payload with a concrete value in every field.
FULL: dict[str, Any] = {
    "group_id": "decent_dropsy", "service": "tiktok_ads", "trust_certificates": True,
    "trust_fingerprints": True, "run_setup_tests": True, "paused": True,
    "pause_after_trial": True, "sync_frequency": 1440, "data_delay_sensitivity": "CUSTOM",
    "data_delay_threshold": 90, "daily_sync_time": "06:00", "schedule_type": "manual",
    "connect_card_config": {"redirect_uri": "https://agency.example/back",
                            "hide_setup_guide": True},
    "proxy_agent_id": "proxy_1", "private_link_id": "link_1", "networking_method": "ProxyAgent",
    "hybrid_deployment_agent_id": "agent_1",
    "config": {
        "sync_mode": "SpecificAccounts", "timeframe_months": "TWENTY_FOUR",
        "accounts": ["7012345678901234567", "7012345678901234568"],
        "attribution_window_size": "FOURTEEN",
        "custom_reports": [
            {"report_type": "auction_basic_campaign_report", "metrics": ["spend", "clicks"],
             "table_name": "campaign_daily", "dimensions": ["campaign_id", "stat_time_day"],
             "aggregate": "daily"},
            {"report_type": "auction_audience_advertiser_report", "metrics": ["impressions"],
             "table_name": "audience", "dimensions": ["country_code"], "aggregate": "lifetime"},
        ],
        "schema": "tiktok_full",
    },
    "auth": {"access_token": "tt-never-exported-0123456789",
             "client_access": {"client_secret": "cs-never-0123", "client_id": "ci-never-0123"}},
}
#: Create-time switches (actions, not state): no answer holds them, no row needs them.
CREATE_TIME = ("trust_certificates", "trust_fingerprints", "run_setup_tests", "auth")


def _answer(box: SandboxHandle, body: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        made = client.post("/v1/connections", json=body)
        assert made.status_code == 201, made.text
        got: dict[str, Any] = client.get(f"/v1/connections/{made.json()['data']['id']}"
                                         ).json()["data"]
        return got


def _write(path: Path, names: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_back(tmp_path: Path, answer: dict[str, Any]) -> dict[str, Any]:
    """The payload the exported row expands to, as plan/apply read it."""
    row = exported_row(answer)
    sheet = _write(tmp_path / "row.csv", connection_columns(), [row.cells])
    reports = _write(tmp_path / "reports.csv", [c.name for c in REPORT_COLUMNS],
                     list(row.reports))
    prepared = prepare(sheet, custom_reports=reports,
                       secrets=SecretContext(base_dir=tmp_path))
    assert not prepared.invalid, prepared.problems
    (request,) = prepared.requests
    assert request.connection_id == answer["id"]
    return request.payload


def test_the_fixture_sets_every_field_of_the_seed() -> None:
    assert set(key_paths(FULL)) == set(key_paths(seed_payload()))


def test_every_field_the_seed_has_reads_back_as_it_was_sent(tmp_path: Path,
                                                            box: SandboxHandle) -> None:
    answer = _answer(box, FULL)
    payload = _read_back(tmp_path, answer)
    sent = {k: v for k, v in FULL.items() if k not in CREATE_TIME}
    assert {k: v for k, v in payload.items() if k not in CREATE_TIME} == sent
    assert payload["run_setup_tests"] is False  # no auth: nothing to test, as for a card
    assert "auth" not in payload  # the API never returns secrets: the cells stay blank


def test_fivetrans_defaults_are_exported_as_the_values_they_are(tmp_path: Path,
                                                                box: SandboxHandle) -> None:
    body = {"group_id": "happy_harbor", "service": "tiktok_ads", "run_setup_tests": False,
            "config": {"schema": "tiktok_bare", "sync_mode": "AllAccounts"}}
    answer = _answer(box, body)
    row = exported_row(answer)
    assert row.cells["sync_frequency"] == "360" and row.cells["timeframe_months"] == "THREE"
    assert "daily_sync_time" not in row.cells  # 00:00 means nothing with 6-hourly syncs
    assert row.dropped == ()
    assert row.cells["setup_state"] == "incomplete"


def _answer_of(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": "calm_reef", "group_id": "g1", "service": "tiktok_ads",
                              "schema": "tiktok_a", "status": {"setup_state": "connected"},
                              "sync_frequency": 1440,
                              "config": {"schema": "tiktok_a", "sync_mode": "AllAccounts"}}
    for key, value in changes.items():
        if key.startswith("config_"):
            answer["config"][key.removeprefix("config_")] = value
        else:
            answer[key] = value
    return answer


@pytest.mark.parametrize(("changes", "field", "reason"), [
    ({"destination_configuration": {"virtual_warehouse": "wh"}}, "destination_configuration",
     "the sheet has no column for it"),
    ({"config_new_setting": "on"}, "config.new_setting", "the sheet has no column for it"),
    ({"networking_method": "Tunnel2"}, "networking_method", "not one of Directly"),
    ({"sync_frequency": 10}, "sync_frequency", "not one of 1, 5, 15"),
    ({"config_accounts": ["7012345678901234567"]}, "config.accounts",
     "only used with sync_mode SpecificAccounts"),
    ({"connect_card_config": {"redirect_uri": "http://plain.example"}},
     "connect_card_config.redirect_uri", "not an absolute https URL"),
    ({"paused": "yes"}, "paused", "not a boolean"),
])
def test_a_value_no_column_can_hold_is_listed_and_left_blank(
        changes: dict[str, Any], field: str, reason: str) -> None:
    row = exported_row(_answer_of(**changes))
    assert [(d.field, d.reason[:len(reason)]) for d in row.dropped] == [(field, reason)]
    assert row.cells["schema"] == "tiktok_a" and row.cells["connection_id"] == "calm_reef"


def test_reports_are_all_written_or_none_when_one_cannot_be_a_row() -> None:
    good = copy.deepcopy(FULL["config"]["custom_reports"][0])
    odd = {**good, "table_name": "odd", "filters": ["x"]}
    row = exported_row(_answer_of(config_custom_reports=[good, odd]))
    assert row.reports == ()  # a sheet with only some would replace the others on --update
    assert [d.field for d in row.dropped] == ["config.custom_reports[1]",
                                             "config.custom_reports"]
    assert "filters" in row.dropped[0].reason
    whole = exported_row(_answer_of(config_custom_reports=[good]))
    assert whole.reports == ({"schema": "tiktok_a", "group_id": "g1",
                              "report_type": "auction_basic_campaign_report",
                              "metrics": "spend,clicks", "table_name": "campaign_daily",
                              "dimensions": "campaign_id,stat_time_day",
                              "aggregate": "daily"},)


def test_masked_values_and_status_facts_are_not_cells_nor_losses() -> None:
    row = exported_row(_answer_of(config_api_token="******", connected_by="someone",
                                  succeeded_at="2026-01-01T00:00:00Z",
                                  setup_tests=[{"title": "t", "status": "PASSED"}]))
    assert row.dropped == ()
    assert "******" not in row.cells.values()
    assert set(row.cells) == {"group_id", "schema", "sync_frequency", "sync_mode",
                              "setup_state", "connection_id"}
