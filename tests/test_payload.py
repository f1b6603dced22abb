"""Expansion: a valid row becomes exactly the seed's payload shape, and nothing else."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_input import (
    BASE_ROW,
    ENV,
    MASK,
    TOKEN_ENV,
    TOKEN_VALUE,
    assert_seed_shape,
    context,
    key_paths,
    prepare_rows,
    problems,
    seed_payload,
    write_csv,
)
from hypothesis import HealthCheck, given, settings, strategies as st
from openapi import errors as schema_errors, property_paths

from batch_provisioner.models import SERVICE
from batch_provisioner.safety import REDACTOR
from batch_provisioner.sheet.columns import BY_NAME, COLUMNS, SYNC_FREQUENCIES, Kind, catalogue
from batch_provisioner.sheet.expand import (
    expand,
    expand_frame,
    flatten,
    masked,
    resolved,
    secret_refs,
    with_group_id,
)
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.secrets import SecretContext, SecretRef
from batch_provisioner.sheet.validate import ERROR

SCHEMA_NAME = "tiktok_ads_NewConnectorRequestV1"
SPEC_ONLY = ("destination_schema_names", "external_secrets_manager_id")  # in the spec, not seed
LONG_ID = "7012345678901234567"


FULL_ROW: dict[str, Any] = {
    "group_id": "decent_dropsy", "trust_certificates": "true", "trust_fingerprints": "true",
    "run_setup_tests": "true", "paused": "false", "pause_after_trial": "false",
    "sync_frequency": "1440", "data_delay_sensitivity": "NORMAL", "data_delay_threshold": "0",
    "daily_sync_time": "14:00", "schedule_type": "auto",
    "redirect_uri": "https://your.site/path", "hide_setup_guide": "true",
    "proxy_agent_id": "proxy_agent_id", "private_link_id": "private_link_id",
    "networking_method": "Directly", "hybrid_deployment_agent_id": "hybrid_deployment_agent_id",
    "sync_mode": "SpecificAccounts", "timeframe_months": "THREE", "accounts": [LONG_ID],
    "attribution_window_size": "SEVEN", "schema": "schema_name",
    "access_token": "env:TIKTOK_TEST_TOKEN", "client_secret": "env:TIKTOK_TEST_SECRET",
    "client_id": "env:TIKTOK_TEST_ID",
}
FULL_REPORT = {"report_type": "auction_basic_campaign_report", "metrics": ["spend"],
               "table_name": "table_1", "dimensions": ["campaign_id"], "aggregate": "daily"}


def test_the_schema_check_catches_what_fivetran_would_refuse() -> None:
    """The normalised spec is strict where it matters (so the property below means something)."""
    good = masked(expand(FULL_ROW, [FULL_REPORT]))
    assert schema_errors(SCHEMA_NAME, good) == []
    broken = {**good, "sync_frequency": "1440", "paused": "false",
              "config": {**good["config"], "sync_mode": "specificaccounts",
                         "accounts": [7012345678901234567]},
              "connect_card_config": {"hide_setup_guide": True}}
    found = "\n".join(schema_errors(SCHEMA_NAME, broken))
    for fragment in ("sync_frequency: '1440' is not of type 'integer'", "paused:",
                     "config/sync_mode:", "config/accounts/0:",
                     "connect_card_config: 'redirect_uri' is a required property"):
        assert fragment in found
    no_schema = {**good, "config": {k: v for k, v in good["config"].items() if k != "schema"}}
    assert schema_errors(SCHEMA_NAME, no_schema) == ["config: 'schema' is a required property"]


def test_a_row_with_every_field_expands_to_exactly_the_seeds_shape() -> None:
    seed = seed_payload()
    payload = masked(expand(FULL_ROW, [FULL_REPORT]))
    assert key_paths(payload) == key_paths(seed)
    assert_seed_shape(payload, seed)
    assert payload["service"] == SERVICE == seed["service"]
    assert payload["auth"] == {"access_token": MASK,
                               "client_access": {"client_secret": MASK, "client_id": MASK}}
    assert payload["config"]["custom_reports"] == [FULL_REPORT]


def test_the_seed_values_themselves_round_trip() -> None:
    """flatten(seed) is a row; expanding that row gives back the seed (as far as it is valid)."""
    seed = seed_payload()
    row = {name: value for name, value in flatten(seed).items()}
    for name, value in list(row.items()):
        kind = BY_NAME[name].kind
        if kind is Kind.BOOL:
            row[name] = "true" if value else "false"
        elif kind is Kind.INT:
            row[name] = str(value)
    reports = seed["config"]["custom_reports"]
    assert masked(expand(row, reports)) == {
        **seed, "auth": {"access_token": MASK,
                         "client_access": {"client_secret": MASK, "client_id": MASK}}}


def test_unset_fields_are_left_out_never_sent_as_null() -> None:
    payload = expand({"group_id": "g", "schema": "s", "sync_mode": "AllAccounts",
                      "accounts": [], "paused": None, "access_token": "env:X"})
    assert masked(payload) == {"group_id": "g", "service": SERVICE,
                               "config": {"sync_mode": "AllAccounts", "schema": "s"},
                               "auth": {"access_token": MASK}}


def test_a_group_name_row_gets_its_group_id_first_once_resolved() -> None:
    payload = expand({"group_name": "Acme EU", "schema": "s", "paused": "true",
                      "access_token": "env:X"})
    assert list(payload) == ["service", "paused", "config", "auth"]
    resolved_payload = with_group_id(masked(payload), "decent_dropsy")
    assert list(resolved_payload) == ["group_id", "service", "paused", "config", "auth"]
    assert_seed_shape(resolved_payload, seed_payload())


def test_connect_card_rows_never_run_setup_tests() -> None:
    card = expand({"group_id": "g", "schema": "s", "run_setup_tests": "true",
                   "redirect_uri": "https://agency.example/ok"})
    assert card["run_setup_tests"] is False
    authed = expand({"group_id": "g", "schema": "s", "run_setup_tests": "true",
                     "access_token": "env:X"})
    assert authed["run_setup_tests"] is True


def test_hide_setup_guide_goes_out_only_with_a_redirect_uri() -> None:
    without = expand({"group_id": "g", "schema": "s", "hide_setup_guide": "true",
                      "access_token": "env:X"})
    assert "connect_card_config" not in without
    with_uri = expand({"group_id": "g", "schema": "s", "hide_setup_guide": "false",
                       "redirect_uri": "https://agency.example/ok"})
    assert with_uri["connect_card_config"] == {"redirect_uri": "https://agency.example/ok",
                                               "hide_setup_guide": False}


def test_secrets_stay_references_until_resolved(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("file-secret-abc\n", encoding="utf-8")
    payload = expand({"group_id": "g", "schema": "s", "access_token": "literal-token-xyz",
                      "client_id": f"env:{TOKEN_ENV}", "client_secret": "file:secret.txt"})
    assert {ref.describe() for ref in secret_refs(payload)} == {
        MASK, f"env:{TOKEN_ENV}", "file:secret.txt"}
    assert "literal-token-xyz" not in repr(payload)  # a payload logged by mistake leaks nothing
    assert masked(payload)["auth"] == {"access_token": MASK,
                                       "client_access": {"client_secret": MASK,
                                                         "client_id": MASK}}
    assert isinstance(payload["auth"]["access_token"], SecretRef)  # masked() copies
    ctx = SecretContext(env=ENV, base_dir=tmp_path)
    sent = resolved(payload, ctx)
    assert sent["auth"] == {"access_token": "literal-token-xyz",
                            "client_access": {"client_secret": "file-secret-abc",
                                              "client_id": TOKEN_VALUE}}
    assert REDACTOR.scrub(f"token={TOKEN_VALUE} secret=file-secret-abc") == (
        f"token={MASK} secret={MASK}")


def test_bulk_expansion_equals_row_by_row_expansion_key_order_included() -> None:
    import polars as pl

    rows = [
        {**FULL_ROW, "accounts": [LONG_ID, "7012345678901234568"]},
        {"group_name": "Acme EU", "schema": "s2", "paused": "true", "accounts": [],
         "redirect_uri": "https://agency.example/ok", "hide_setup_guide": "false"},
        {"group_id": "g3", "schema": "s3", "hide_setup_guide": "true", "client_id": "env:A",
         "client_secret": "file:b.txt", "run_setup_tests": "false", "sync_frequency": "60"},
        {"group_id": "g4", "schema": "s4", "access_token": "literal-token-value"},
    ]
    names = [c.name for c in COLUMNS]
    frame = pl.DataFrame([{n: r.get(n) for n in names} for r in rows],
                         schema={n: pl.List(pl.String) if BY_NAME[n].kind is Kind.LIST
                                 else pl.String for n in names})
    reports = [[FULL_REPORT], [], [FULL_REPORT, {**FULL_REPORT, "table_name": "t2"}], []]
    bulk = expand_frame(frame, reports)
    single = [expand({n: r.get(n) for n in names}, rs) for r, rs in zip(rows, reports,
                                                                          strict=True)]
    assert [json.dumps(masked(p)) for p in bulk] == [json.dumps(masked(p)) for p in single]
    assert [list(p) for p in bulk][1] == ["service", "run_setup_tests", "paused",
                                          "connect_card_config", "config"]


def test_rendered_template_rows_have_the_seed_shape(tmp_path: Path) -> None:
    seed = seed_payload()
    prepared = prepare_rows(tmp_path, [
        {**BASE_ROW, "sync_mode": "specificaccounts", "accounts": LONG_ID,
         "timeframe_months": "all", "attribution_window_size": "28", "sync_frequency": "1440",
         "daily_sync_time": "6:00", "networking_method": "proxyagent", "proxy_agent_id": "pa"},
    ], reports=[{"schema": "tiktok_acme", "table_name": "t1", "metrics": "spend|clicks",
                 "report_type": "auction_basic_ad_report", "aggregate": "none"}])
    assert problems(prepared) == []
    [request] = prepared.requests
    assert_seed_shape(masked(request.payload), seed)


# --- the property: any valid row expands to a payload that maps back to it ------------------

IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
PAD = st.sampled_from(["", " ", "  ", "\t"])
URL_REST = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z]{2,6}){1,2}(/[a-z0-9_-]{0,8}){0,3}",
                         fullmatch=True)
SECRET_FILES = {"secrets/token.txt": "file-token-value-1", "secrets/id.txt": "file-id-value-2",
                "secrets/secret.txt": "file-secret-value-3"}


def random_case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if up else c.lower() for c, up in zip(text, flips,
                                                                               strict=True)))


def enum_spelling(name: str) -> st.SearchStrategy[tuple[str, str]]:
    """(a spelling a person might type, its canonical value) for an enum column."""
    column = BY_NAME[name]
    pairs = list(column.canonical_map().items())
    return st.sampled_from(pairs).flatmap(
        lambda pair: random_case(pair[0]).map(lambda raw: (raw, pair[1])))


BOOL_SPELLING = st.sampled_from(["true", "false", "yes", "no", "1", "0"]).flatmap(
    lambda word: random_case(word).map(
        lambda raw: (raw, "true" if word in ("true", "yes", "1") else "false")))


@st.composite
def secret_refs_strategy(draw: st.DrawFn) -> tuple[str, str]:
    """(cell, the value it resolves to)."""
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(ENV)))
        return draw(random_case("env")) + ":" + name, ENV[name]
    path = draw(st.sampled_from(sorted(SECRET_FILES)))
    return draw(random_case("file")) + ":" + path, SECRET_FILES[path]


@st.composite
def valid_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row a person could write (``cells``), and what each cell means (``canonical``)."""
    cells: dict[str, str] = {}
    canonical: dict[str, Any] = {}
    secrets: dict[str, str] = {}

    def put(name: str, raw: str, value: Any) -> None:
        cells[name] = draw(PAD) + raw + draw(PAD)
        canonical[name] = value

    def maybe(name: str, strategy: st.SearchStrategy[tuple[str, Any]]) -> None:
        if draw(st.booleans()):
            raw, value = draw(strategy)
            put(name, raw, value)

    if draw(st.booleans()):
        put("group_id", *(lambda v: (v, v))(draw(IDENT)))
    else:
        name = draw(st.from_regex(r"[A-Za-z][A-Za-z0-9 _.]{0,14}[A-Za-z0-9]", fullmatch=True))
        put("group_name", name, name)
    for column in COLUMNS:
        if column.kind is Kind.BOOL and column.name not in ("hide_setup_guide",):
            maybe(column.name, BOOL_SPELLING)
    frequency = draw(st.none() | st.sampled_from(SYNC_FREQUENCIES))
    if frequency is not None:
        raw = draw(st.sampled_from([str(frequency), f"{frequency}.0", f"0{frequency}"]))
        put("sync_frequency", raw, frequency)
        if frequency == 1440 and draw(st.booleans()):
            hour = draw(st.integers(0, 23))
            raw = draw(st.sampled_from([f"{hour}:00", f"{hour:02d}:00", f"{hour:02d}:00:00"]))
            put("daily_sync_time", raw, f"{hour:02d}:00")
    for name in ("data_delay_sensitivity", "schedule_type", "destination_schema_names",
                 "timeframe_months", "attribution_window_size"):
        maybe(name, enum_spelling(name))
    if draw(st.booleans()):
        threshold = draw(st.integers(0, 100_000))
        put("data_delay_threshold", str(threshold), threshold)
    maybe("networking_method", enum_spelling("networking_method"))
    method = canonical.get("networking_method")
    for name, needed in (("proxy_agent_id", "ProxyAgent"), ("private_link_id", "PrivateLink"),
                         ("hybrid_deployment_agent_id", None),
                         ("external_secrets_manager_id", None)):
        if method == needed or draw(st.booleans()):
            value = draw(IDENT)
            put(name, value, value)
    mode = draw(st.sampled_from([None, "AllAccounts", "SpecificAccounts"]))
    if mode is not None:
        put("sync_mode", draw(random_case(mode)), mode)
    if mode == "SpecificAccounts":
        ids = draw(st.lists(st.from_regex(r"[1-9][0-9]{18}", fullmatch=True), min_size=1,
                            max_size=4, unique=True))
        separator = draw(st.sampled_from([",", ";", "|", "\n", ", ", " ; "]))
        put("accounts", separator.join(ids), ids)
    schema = draw(IDENT)
    put("schema", schema, schema)
    auth = draw(st.sampled_from(["token", "client", "both", "none"]))
    if auth in ("token", "both"):
        cell, value = draw(secret_refs_strategy())
        put("access_token", cell, MASK)
        secrets["access_token"] = value
    if auth in ("client", "both"):
        for name in ("client_id", "client_secret"):
            cell, value = draw(secret_refs_strategy())
            put(name, cell, MASK)
            secrets[name] = value
    if auth == "none" or draw(st.booleans()):
        uri = "https://" + draw(URL_REST)
        put("redirect_uri", uri, uri)
    maybe("hide_setup_guide", BOOL_SPELLING)
    if draw(st.booleans()):
        put("client_name", draw(st.text("abc XYZ-é", min_size=1, max_size=12)).strip() or "x",
            None)
    return {"cells": cells, "canonical": canonical, "secrets": secrets, "auth": auth}


@st.composite
def reports_for(draw: st.DrawFn, schema: str) -> list[dict[str, Any]]:
    cat = catalogue()
    tables = draw(st.lists(IDENT, max_size=2, unique=True))
    reports = []
    for table in tables:
        report: dict[str, Any] = {
            "schema": schema, "table_name": table,
            "report_type": draw(st.sampled_from(sorted(cat.report_types))),
            "metrics": draw(st.lists(st.sampled_from(sorted(cat.metrics)), min_size=1,
                                     max_size=3, unique=True)),
            "dimensions": draw(st.lists(st.sampled_from(sorted(cat.dimensions)), max_size=3,
                                        unique=True)),
            "aggregate": draw(st.none() | st.sampled_from(sorted(cat.aggregates))),
        }
        reports.append(report)
    return reports


def _typed(name: str, value: Any) -> Any:
    kind = BY_NAME[name].kind
    if kind is Kind.BOOL:
        return value == "true"
    if kind is Kind.INT:
        return int(value)
    return value


def expected_flat(row: dict[str, Any]) -> dict[str, Any]:
    canonical = row["canonical"]
    out = {name: _typed(name, value) for name, value in canonical.items()
           if name in BY_NAME and BY_NAME[name].path}
    if row["auth"] == "none":
        out["run_setup_tests"] = False
    if "redirect_uri" not in canonical:
        out.pop("hide_setup_guide", None)
    return out


def _report_cells(report: dict[str, Any]) -> dict[str, str]:
    return {k: ",".join(v) if isinstance(v, list) else (v or "") for k, v in report.items()}


def _report_payload(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("report_type", "metrics", "table_name", "dimensions", "aggregate")
    return {k: report[k] for k in keys if report.get(k)}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for relative, value in SECRET_FILES.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(value + "\n", encoding="utf-8")
        yield root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(),
       rows=st.lists(valid_rows(), min_size=1, max_size=3,
                     unique_by=lambda r: r["canonical"]["schema"]))
def test_any_valid_row_maps_back_and_matches_the_openapi_schema(
        workdir: Path, data: st.DataObject, rows: list[dict[str, Any]]) -> None:
    seed = seed_payload()
    spec_paths = property_paths(SCHEMA_NAME)
    reports = [data.draw(reports_for(r["canonical"]["schema"])) for r in rows]
    sheet = write_csv(workdir / "sheet.csv", [r["cells"] for r in rows])
    report_file = None
    if any(reports):
        report_file = write_csv(workdir / "reports.csv",
                                [_report_cells(r) for rs in reports for r in rs])
    prepared = prepare(sheet, custom_reports=report_file, secrets=context(workdir))

    assert [p for p in problems(prepared) if p["severity"] == ERROR] == []
    assert [r.row for r in prepared.requests] == list(range(2, len(rows) + 2))
    canonical_rows = prepared.frame.iter_rows(named=True)
    for row, row_reports, request, canonical in zip(rows, reports, prepared.requests,
                                                     canonical_rows, strict=True):
        payload = request.payload
        shown = masked(payload)
        assert flatten(shown) == expected_flat(row)
        assert shown["config"].get("custom_reports", []) == [
            _report_payload(r) for r in row_reports]
        # the bulk expansion prepare() uses gives what expand() gives, key order included
        one_by_one = masked(expand(canonical, [_report_payload(r) for r in row_reports]))
        assert json.dumps(shown) == json.dumps(one_by_one)
        sent = resolved(payload, context(workdir))
        assert {name: flatten(sent)[name] for name in row["secrets"]} == row["secrets"]
        assert ("auth" in payload) is (row["auth"] != "none")

        assert_seed_shape({k: v for k, v in shown.items() if k not in SPEC_ONLY}, seed)
        assert set(key_paths(shown)) <= spec_paths
        body = with_group_id(shown, "resolved_group") if "group_id" not in shown else shown
        assert schema_errors(SCHEMA_NAME, body) == []
        assert schema_errors(SCHEMA_NAME, with_group_id(sent, "g") if "group_id" not in sent
                             else sent) == []
