"""The committed input templates are exactly what the generator writes today."""

from __future__ import annotations

import tomllib
from pathlib import Path

import fastexcel
import pytest
from helpers_input import TEMPLATES, run_cli

from batch_provisioner.report.template_files import write_templates
from batch_provisioner.sheet.columns import BY_NAME, COLUMNS, REPORT_COLUMNS, Kind
from batch_provisioner.sheet.templates import CARRY_COLUMNS, TEMPLATE_COLUMNS


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_committed_templates_match_the_generator(tmp_path: Path) -> None:
    written = write_templates(tmp_path / "fresh")
    generated = _files(tmp_path / "fresh")
    committed = _files(TEMPLATES)
    assert sorted(generated) == sorted(committed)
    assert {p.relative_to(tmp_path / "fresh").as_posix() for p in written} == set(generated)
    stale = [name for name in generated if generated[name] != committed[name]]
    assert stale == [], (f"input_templates/ is stale for {stale}: "
                         "run `batch-provisioner template --out input_templates`")


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    write_templates(tmp_path / "one")
    write_templates(tmp_path / "two")
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_template_command_writes_the_same_files(tmp_path: Path) -> None:
    result = run_cli(["template", "--out", "made"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _files(tmp_path / "made") == _files(TEMPLATES)


def test_the_workbook_has_every_column_and_the_reports_sheet() -> None:
    reader = fastexcel.read_excel(str(TEMPLATES / "advertiser_groups.xlsx"))
    assert reader.sheet_names == ["connections", "custom_reports", "instructions"]
    connections = reader.load_sheet("connections", dtypes="string").to_polars()
    assert connections.columns == [c.name for c in TEMPLATE_COLUMNS] + list(CARRY_COLUMNS)
    assert sorted(c.name for c in TEMPLATE_COLUMNS) == sorted(c.name for c in COLUMNS)
    reports = reader.load_sheet("custom_reports", dtypes="string").to_polars()
    assert reports.columns == [c.name for c in REPORT_COLUMNS]


@pytest.mark.parametrize("name", ["advertiser_groups.csv", "custom_reports.csv"])
def test_csv_templates_are_plain_utf8_with_unix_newlines(name: str) -> None:
    data = (TEMPLATES / name).read_bytes()
    data.decode("utf-8")
    assert b"\r\n" not in data and not data.startswith(b"\xef\xbb\xbf")


def test_the_columns_come_in_the_order_a_person_fills_them() -> None:
    """The key, what to sync and the auth first; the advanced settings last (the payload's
    own order put schema at column 25 and the auth last)."""
    header = (TEMPLATES / "advertiser_groups.csv").read_text("utf-8").splitlines()[0]
    names = header.split(",")
    assert names[:8] == ["group_id", "group_name", "schema", "sync_mode", "accounts",
                         "access_token", "client_id", "client_secret"]
    assert names.index("redirect_uri") < names.index("sync_frequency")
    advanced = ["networking_method", "proxy_agent_id", "private_link_id",
                "hybrid_deployment_agent_id", "external_secrets_manager_id",
                "trust_certificates", "trust_fingerprints"]
    assert min(names.index(a) for a in advanced) > names.index("run_setup_tests")
    assert names[-2:] == list(CARRY_COLUMNS)


def test_the_workbook_keeps_its_dropdowns_notes_and_instructions() -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.load_workbook(TEMPLATES / "advertiser_groups.xlsx")
    sheet = book["connections"]
    headers = {cell.value: cell for cell in sheet[1]}
    lists = {sheet.cell(1, min(r.min_col for r in v.sqref.ranges)).value: v.formula1
             for v in sheet.data_validations.dataValidation}
    enums = {c.name for c in COLUMNS if c.kind in (Kind.ENUM, Kind.BOOL)} | {"sync_frequency"}
    assert set(lists) == enums
    assert "AllAccounts" in lists["sync_mode"]
    assert all(headers[c.name].comment is not None for c in COLUMNS)
    assert headers["schema"].comment.text.startswith(BY_NAME["schema"].note)
    assert "Advanced" in headers["networking_method"].comment.text
    assert book["instructions"]["A1"].value.startswith("batch-provisioner input template")


def test_the_template_defaults_set_nothing_and_show_only_fivetrans_defaults() -> None:
    """No opinionated values (a 14:00 daily sync, a hidden setup guide): every line is a
    comment, and the values shown are Fivetran's documented defaults, valid as they stand."""
    text = (TEMPLATES / "defaults.toml").read_text("utf-8")
    assert tomllib.loads(text) == {"limits": {}}
    shown = dict(line.removeprefix("# ").split("   #")[0].split(" = ", 1)
                 for line in text.split("[limits]")[0].splitlines()
                 if " = " in line and line.startswith("# "))
    assert shown == {"timeframe_months": '"THREE"', "attribution_window_size": '"SEVEN"',
                     "run_setup_tests": "true", "data_delay_sensitivity": '"NORMAL"',
                     "data_delay_threshold": "0", "trust_certificates": "false",
                     "trust_fingerprints": "false"}
    assert "daily_sync_time =" not in text and "hide_setup_guide =" not in text
    uncommented = tomllib.loads("\n".join(f"{k} = {v}" for k, v in shown.items()))
    assert set(uncommented) <= set(BY_NAME)
