"""The round trip, as a property: for generated sets of existing connections (every field the
seed payload has, custom reports included), ``export`` then ``plan`` against the same sandbox
is exit 0 with every row ``exists``; ``export --to-group`` then ``apply`` creates exactly one
connect-card connection per exported one in the new group."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_input import seed_payload
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st

import batch_provisioner as bp
from batch_provisioner.errors import ExitCode
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from batch_provisioner.sheet.columns import BY_NAME, MINUTES_PER_YEAR, SYNC_FREQUENCIES, catalogue

OLD = ("old_a", "old_b")
NEW = "new_home"
BACK = "https://agency.example/back"
_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
_ID = st.from_regex(r"[a-z][a-z0-9_-]{2,15}", fullmatch=True)


def _choices(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(BY_NAME[name].choices)


@st.composite
def _report(draw: st.DrawFn, table_name: str) -> dict[str, Any]:
    cat = catalogue()
    report: dict[str, Any] = {
        "report_type": draw(st.sampled_from(sorted(cat.report_types))),
        "metrics": draw(st.lists(st.sampled_from(sorted(cat.metrics)), min_size=1, max_size=3,
                                 unique=True)),
        "table_name": table_name}
    if draw(st.booleans()):
        report["dimensions"] = draw(st.lists(st.sampled_from(sorted(cat.dimensions)),
                                             max_size=3, unique=True))
    if draw(st.booleans()):
        report["aggregate"] = draw(st.sampled_from(sorted(cat.aggregates)))
    return report


#: Every top-level field of the seed payload but the key (``group_id``, ``service``, ``config``):
#: each generated connection has any subset of them.
OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "trust_certificates": st.booleans(), "trust_fingerprints": st.booleans(),
    "run_setup_tests": st.booleans(), "paused": st.booleans(),
    "pause_after_trial": st.booleans(), "sync_frequency": st.sampled_from(SYNC_FREQUENCIES),
    "data_delay_sensitivity": _choices("data_delay_sensitivity"),
    "data_delay_threshold": st.integers(0, MINUTES_PER_YEAR),
    "daily_sync_time": st.integers(0, 23).map(lambda h: f"{h:02d}:00"),
    "schedule_type": _choices("schedule_type"),
    "connect_card_config": st.fixed_dictionaries(
        {"redirect_uri": st.just(BACK)}, optional={"hide_setup_guide": st.booleans()}),
    "proxy_agent_id": _ID, "private_link_id": _ID, "hybrid_deployment_agent_id": _ID,
    "networking_method": _choices("networking_method"),
    "auth": st.sampled_from([{"access_token": "tt-generated-token-0123"},
                             {"client_access": {"client_id": "cid-0123",
                                                "client_secret": "cs-0123"}}]),
}
#: The ``config`` fields generated (``accounts`` with SpecificAccounts, ``custom_reports``).
CONFIG_FIELDS = {"schema", "sync_mode", "accounts", "timeframe_months",
                 "attribution_window_size", "custom_reports"}


def test_the_strategy_covers_every_field_of_the_seed() -> None:
    seed = seed_payload()
    assert set(OPTIONAL) | {"group_id", "service", "config"} == set(seed)
    assert set(seed["config"]) == CONFIG_FIELDS


@st.composite
def _connection(draw: st.DrawFn, group_id: str, schema: str) -> dict[str, Any]:
    """A create body with any subset of the seed's fields, each with a value Fivetran takes."""
    body: dict[str, Any] = {"group_id": group_id, "service": "tiktok_ads"}
    for key, strategy in OPTIONAL.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    method = body.get("networking_method")
    if method == "ProxyAgent":
        body.setdefault("proxy_agent_id", draw(_ID))
    if method == "PrivateLink":
        body.setdefault("private_link_id", draw(_ID))
    config: dict[str, Any] = {"schema": schema,
                              "sync_mode": draw(_choices("sync_mode"))}
    if config["sync_mode"] == "SpecificAccounts":
        config["accounts"] = draw(st.lists(st.from_regex(r"70[0-9]{17}", fullmatch=True),
                                           min_size=1, max_size=3, unique=True))
    for key in ("timeframe_months", "attribution_window_size"):
        if draw(st.booleans()):
            config[key] = draw(_choices(key))
    tables = draw(st.lists(_NAME, max_size=3, unique=True))
    if tables:
        config["custom_reports"] = [draw(_report(name)) for name in tables]
    body["config"] = config
    return body


@st.composite
def _existing(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1 to 6 connections over the old groups, their schemas unique across both."""
    schemas = draw(st.lists(_NAME, min_size=1, max_size=6, unique=True))
    return [draw(_connection(draw(st.sampled_from(OLD)), schema)) for schema in schemas]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    groups = {**{g: g.replace("_", " ").title() for g in OLD}, NEW: "New Home"}
    with run_in_thread(profile="unlimited", create_limit=0, groups=groups) as handle:
        yield handle


def _make(box: SandboxHandle, bodies: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        for body in bodies:
            answer = client.post("/v1/connections", json=body)
            assert answer.status_code == 201, answer.text


def _load(result: bp.ExportResult, sheet: str = "connections",
          reports: str = "custom_reports") -> bp.Prepared:
    return bp.load(result.paths[sheet], custom_reports=result.paths.get(reports))


@settings(max_examples=8, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: an example is ~0.5 s
          suppress_health_check=[HealthCheck.too_slow])
@given(existing=_existing(), suffix=st.sampled_from([".xlsx", ".csv"]))
def test_export_plans_as_every_row_exists_and_a_move_creates_one_each(
        sandbox: SandboxHandle, existing: list[dict[str, Any]], suffix: str) -> None:
    sandbox.reset()
    _make(sandbox, existing)
    url = sandbox.url
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        adopted = bp.export(groups=OLD, out=folder / f"adopt{suffix}", sandbox_url=url)
        assert adopted.exit_code == ExitCode.OK and adopted.not_exported.is_empty()
        assert len(adopted.connections) == len(existing)
        planned = bp.plan(_load(adopted), sandbox_url=url, reports_dir=folder / "r")
        note(str(planned.frame.select("schema", "action", "detail").to_dicts()))
        assert planned.exit_code == ExitCode.OK
        assert planned.counts == {"exists": len(existing)}

        moved = bp.export(groups=OLD, to_group=NEW, redirect_uri=BACK,
                          out=folder / f"move{suffix}", sandbox_url=url)
        applied = bp.apply(_load(moved), sandbox_url=url, reports_dir=folder / "r")
        assert applied.exit_code == ExitCode.OK
        assert applied.counts["created"] == len(existing)
        creates = [c for c in sandbox.ledger()["creates"] if c["group_id"] == NEW]
        assert sorted((c["schema"], c["creations"]) for c in creates) == sorted(
            (body["config"]["schema"], 1) for body in existing)
        with httpx.Client(base_url=url, auth=sandbox.auth, trust_env=False) as client:
            made = client.get(f"/v1/groups/{NEW}/connections").json()["data"]["items"]
        assert all(c["status"]["setup_state"] == "incomplete" for c in made)  # cards wait
        assert all(c["connect_card_config"]["redirect_uri"] == BACK for c in made)
        by_schema = {body["config"]["schema"]: body for body in existing}
        for item in made:  # the reports follow, an empty list being no value (a blank cell)
            reports = by_schema[item["schema"]]["config"].get("custom_reports")
            assert item["config"].get("custom_reports") == _set_keys(reports)


def _set_keys(reports: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return None if reports is None else [{k: v for k, v in r.items() if v != []}
                                         for r in reports]
