"""``batch-provisioner validate`` and ``render`` as a person runs them (a real subprocess)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers_input import (
    BASE_ROW,
    MASK,
    TEMPLATES,
    TOKEN_VALUE,
    assert_seed_shape,
    run_cli,
    seed_payload,
    write_csv,
)

from batch_provisioner.models import SERVICE


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of the committed templates (with their demo secret files)."""
    target = tmp_path / "input_templates"
    shutil.copytree(TEMPLATES, target)
    return target


def _validation_rows(cwd: Path, run_id: str) -> list[dict[str, str]]:
    with (cwd / "reports" / run_id / "validation.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_validate_the_xlsx_template_exits_0(templates: Path) -> None:
    result = run_cli(["validate", templates / "advertiser_groups.xlsx"], cwd=templates.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 rows checked: no problems." in result.stdout


def test_validate_the_csv_template_with_its_custom_reports_exits_0(templates: Path) -> None:
    result = run_cli(["validate", "input_templates/advertiser_groups.csv",
                      "--custom-reports", "input_templates/custom_reports.csv"],
                     cwd=templates.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems" in result.stdout


def test_validate_the_templates_with_their_defaults_exits_0(templates: Path) -> None:
    result = run_cli(["validate", templates / "advertiser_groups.xlsx",
                      "--defaults", templates / "defaults.toml"], cwd=templates.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def _render(templates: Path, *args: str | Path) -> list[dict[str, Any]]:
    result = run_cli(["render", *args], cwd=templates.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_render_the_templates_gives_seed_shaped_payloads(templates: Path) -> None:
    seed = seed_payload()
    from_xlsx = _render(templates, templates / "advertiser_groups.xlsx")
    from_csv = _render(templates, templates / "advertiser_groups.csv",
                       "--custom-reports", templates / "custom_reports.csv")
    assert from_xlsx == from_csv
    assert [line["row"] for line in from_xlsx] == [2, 3, 4]
    assert [line["key"] for line in from_xlsx] == [
        {"group_id": "decent_dropsy", "schema": "tiktok_acme_retail"},
        {"group_id": "happy_harbor", "schema": "tiktok_blue_fin"},
        {"group_id": "quiet_quasar", "schema": "tiktok_crimson_coffee"},
    ]
    for line in from_xlsx:
        payload = line["payload"]
        assert isinstance(payload, dict)
        assert_seed_shape(payload, seed)
        assert payload["service"] == SERVICE
    token_row, client_row, card_row = (line["payload"] for line in from_xlsx)
    assert token_row["auth"] == {"access_token": MASK}
    assert client_row["auth"] == {
        "client_access": {"client_secret": MASK, "client_id": MASK}}
    assert "auth" not in card_row
    assert token_row["config"]["accounts"] == [
        "7012345678901234567", "7012345678901234568"]
    assert len(token_row["config"]["custom_reports"]) == 2
    assert card_row["run_setup_tests"] is False


def test_render_with_defaults_and_out_file(templates: Path, tmp_path: Path) -> None:
    """The template defaults.toml sets nothing (Fivetran's defaults are comments in it), so
    the payloads are the sheet's alone; a value uncommented there reaches every row."""
    out = tmp_path / "out" / "payloads.jsonl"
    result = run_cli(["render", templates / "advertiser_groups.xlsx", "--defaults",
                      templates / "defaults.toml", "--out", out], cwd=templates.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    payloads = [json.loads(line)["payload"] for line in out.read_text("utf-8").splitlines()]
    assert payloads == [line["payload"] for line in _render(
        templates, templates / "advertiser_groups.xlsx")]
    seed = seed_payload()
    for payload in payloads:
        assert_seed_shape(payload, seed)
        assert "paused" not in payload and "networking_method" not in payload
    token_row, client_row, card_row = payloads
    assert token_row["daily_sync_time"] == "14:00" and "daily_sync_time" not in card_row
    assert client_row["sync_frequency"] == 360 and "daily_sync_time" not in client_row
    assert card_row["connect_card_config"]["hide_setup_guide"] is True  # the row's own cell
    assert "connect_card_config" not in token_row
    assert "demo-access-token" not in out.read_text("utf-8")
    defaults = templates / "defaults.toml"
    defaults.write_text(defaults.read_text("utf-8").replace(
        '# data_delay_sensitivity = "NORMAL"', 'data_delay_sensitivity = "HIGH"'), "utf-8")
    result = run_cli(["render", templates / "advertiser_groups.xlsx", "--defaults", defaults],
                     cwd=templates.parent)
    sensitivity = [json.loads(line)["payload"]["data_delay_sensitivity"]
                   for line in result.stdout.splitlines()]
    assert sensitivity == ["HIGH", "NORMAL", "HIGH"]  # row 3 sets NORMAL itself


def test_one_broken_row_among_good_ones_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    rows = [
        {**BASE_ROW, "schema": "good_one"},
        {**BASE_ROW, "group_id": "", "schema": "Bad Schema", "sync_frequency": "45",
         "timeframe_months": "5", "paused": "maybe", "sync_mode": "SpecificAccounts",
         "redirect_uri": "http://insecure.example", "access_token": "env:MISSING_TOKEN_VAR"},
        {**BASE_ROW, "schema": "good_two"},
    ]
    sheet = write_csv(tmp_path / "clients.csv", rows)
    result = run_cli(["validate", sheet, "--run-id", "check"], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "3 rows: 1 invalid" in result.stdout
    assert "2 ready to send" in result.stdout
    problems = _validation_rows(tmp_path, "check")
    assert {p["row"] for p in problems} == {"3"}
    assert {p["column"] for p in problems} == {
        "group_id", "schema", "sync_frequency", "timeframe_months", "paused", "accounts",
        "redirect_uri", "access_token"}
    for column in ("schema", "sync_frequency", "timeframe_months", "paused", "accounts",
                   "redirect_uri", "access_token", "MISSING_TOKEN_VAR"):
        assert column in result.stdout


def test_validate_never_prints_a_secret_value(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("file-secret-value-4242", encoding="utf-8")
    rows = [
        {**BASE_ROW, "schema": "literal", "access_token": "literal-secret-value-9191"},
        {**BASE_ROW, "schema": "from_file", "access_token": "file:token.txt",
         "client_id": "literal-client-id-5151"},
        {**BASE_ROW, "schema": "from_env", "sync_frequency": "45"},
    ]
    sheet = write_csv(tmp_path / "clients.csv", rows)
    result = run_cli(["validate", sheet, "--run-id", "check"], cwd=tmp_path)
    assert result.returncode == 1
    written = (tmp_path / "reports" / "check" / "validation.csv").read_text("utf-8")
    for secret in ("literal-secret-value-9191", "file-secret-value-4242",
                   "literal-client-id-5151", TOKEN_VALUE):
        assert secret not in result.stdout + result.stderr
        assert secret not in written
    assert "literal secret" in result.stdout


def test_render_leaves_invalid_rows_out_and_exits_1(tmp_path: Path) -> None:
    rows = [{**BASE_ROW, "schema": "good_one"}, {**BASE_ROW, "schema": "Bad"},
            {**BASE_ROW, "schema": "good_two"}]
    sheet = write_csv(tmp_path / "clients.csv", rows)
    result = run_cli(["render", sheet], cwd=tmp_path)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["row"] for line in lines] == [2, 4]
    assert "Bad" in result.stderr
    assert TOKEN_VALUE not in result.stdout + result.stderr


def test_sheet_option_picks_the_named_sheet(templates: Path, tmp_path: Path) -> None:
    book = templates / "advertiser_groups.xlsx"
    result = run_cli(["validate", book, "--sheet", "connections"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    missing = run_cli(["validate", book, "--sheet", "Clients"], cwd=tmp_path)
    assert missing.returncode == 2
    assert "has no sheet 'Clients'" in missing.stderr


# --- files that cannot be used: one line naming the file, exit 2 ---------------------------

GOOD_HEADER = b"group_id,schema,access_token\n"
DOCX = "docx"  # built as a real ZIP holding a Word document
BAD_FILES: dict[str, tuple[str, bytes | None]] = {  # kind -> (suffix, content)
    "directory": (".csv", None),
    "missing": (".csv", None),
    "empty": (".csv", b""),
    "header only": (".csv", GOOD_HEADER),
    "blank lines only": (".csv", GOOD_HEADER + b"\n,,\n\n"),
    "pdf": (".pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
    "pdf named csv": (".csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
    "png named csv": (".csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    "docx": (".docx", None),
    "docx named csv": (".csv", None),
    "docx named xlsx": (".xlsx", None),
    "old xls": (".xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
    "missing column": (".csv", b"group_id,client\ng,c\n"),
    "missing group column": (".csv", b"schema\ns\n"),
    "bad utf-8": (".csv", GOOD_HEADER + b"g,caf\xe9,env:X\n"),
    "broken xlsx": (".xlsx", b"PK\x03\x04 this is not a zip"),
    "csv named xlsx": (".xlsx", GOOD_HEADER + b"g,s,env:X\n"),
    "ragged csv": (".csv", GOOD_HEADER + b"g,s,env:X,extra\n"),
    "duplicate headers": (".csv", b"group_id,Group ID,schema\ng,h,s\n"),
    "not parquet": (".parquet", GOOD_HEADER),
}


def _make_bad_file(kind: str, folder: Path) -> Path:
    suffix, content = BAD_FILES[kind]
    path = folder / f"clients {kind.replace(' ', '_')}{suffix}"
    if kind == "directory":
        path.mkdir()
    elif kind.startswith(DOCX):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("word/document.xml", "<w:document/>")
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_unusable_files_give_one_clear_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    path = _make_bad_file(kind, tmp_path)
    result = run_cli(["validate", path.name], cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("error: ")
    assert path.name in output
    assert not (tmp_path / "reports").exists()  # nothing written for an unusable file


@pytest.mark.parametrize(("text", "fragment"), [
    ("sync_frequncy = 1440\n", "unknown setting 'sync_frequncy'"),
    ("[limits]\nconcurency = 2\n", "unknown [limits] key 'concurency'"),
    ("sync_frequency = = 5\n", "is not valid TOML"),
])
def test_bad_defaults_file_exits_2_naming_it(tmp_path: Path, text: str, fragment: str) -> None:
    sheet = write_csv(tmp_path / "clients.csv", [BASE_ROW])
    defaults = tmp_path / "my defaults.toml"
    defaults.write_text(text, encoding="utf-8")
    result = run_cli(["validate", sheet, "--defaults", defaults], cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1
    assert "my defaults.toml" in output and fragment in output


def test_unreadable_custom_reports_file_exits_2_naming_it(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "clients.csv", [BASE_ROW])
    reports = tmp_path / "reports.csv"
    reports.write_text("schema,metrics\ntiktok_acme,spend\n", encoding="utf-8")
    result = run_cli(["validate", sheet, "--custom-reports", reports], cwd=tmp_path)
    assert result.returncode == 2
    assert "reports.csv" in result.stderr and "table_name" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads a chmod 000 file anyway; the directory and missing-file "
                           "cases cover an unopenable path")
def test_permission_denied_exits_2_naming_the_file(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "locked.csv", [BASE_ROW])
    sheet.chmod(0)
    result = run_cli(["validate", sheet.name], cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2
    assert "locked.csv" in output and "Traceback" not in output


def test_an_error_only_in_the_custom_reports_file_exits_1(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "clients.csv", [BASE_ROW])
    reports = write_csv(tmp_path / "reports.csv", [
        {"schema": "tiktok_nobody", "table_name": "t", "metrics": "spend",
         "report_type": "auction_basic_ad_report"}])
    result = run_cli(["validate", sheet, "--custom-reports", reports], cwd=tmp_path)
    assert "matches no connection row" in result.stdout
    assert result.returncode == 1
