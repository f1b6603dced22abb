"""The committed input templates are exactly what the generator writes today."""

from __future__ import annotations

from pathlib import Path

import fastexcel
import pytest
from helpers_input import TEMPLATES, run_cli

from batch_provisioner.report.template_files import write_templates
from batch_provisioner.sheet.columns import COLUMNS, REPORT_COLUMNS
from batch_provisioner.sheet.templates import CARRY_COLUMNS


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
    assert connections.columns == [c.name for c in COLUMNS] + list(CARRY_COLUMNS)
    reports = reader.load_sheet("custom_reports", dtypes="string").to_polars()
    assert reports.columns == [c.name for c in REPORT_COLUMNS]


@pytest.mark.parametrize("name", ["advertiser_groups.csv", "custom_reports.csv"])
def test_csv_templates_are_plain_utf8_with_unix_newlines(name: str) -> None:
    data = (TEMPLATES / name).read_bytes()
    data.decode("utf-8")
    assert b"\r\n" not in data and not data.startswith(b"\xef\xbb\xbf")
