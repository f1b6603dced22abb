"""The result files of a run: written once by apply, re-written by status/connect-cards/rollback."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import fastexcel
import polars as pl

from batch_provisioner.models import Outcome, Status
from batch_provisioner.report.files import (
    RESULT_FILES,
    read_timeline,
    refresh_results,
    write_result_files,
)
from batch_provisioner.report.results import write_results
from batch_provisioner.safety import MASK, REDACTOR
from batch_provisioner.sheet.read import ROW
from tests.apply_helpers import load, write_sheet

SECRET = "files-secret-7c1e9b3a5d-never"
ATTACKS = ['=HYPERLINK("http://evil","x")', "+1", "-1", "@SUM(A1)"]
TIMELINE = [(0.0, "GET", 200), (0.5, "POST", 429), (0.6, "POST", 429), (2.0, "POST", 201)]


def results(refs: list[str | None]) -> pl.DataFrame:
    """A results frame shaped as apply writes it, one row per ``client_ref``."""
    n = len(refs)
    return pl.DataFrame({
        "source_row": list(range(2, n + 2)), "group_id": ["decent_dropsy"] * n,
        "group_name": [None] * n, "schema": [f"tt_{i}" for i in range(n)], "client_ref": refs,
        "action": ["create"] * n, "status": ["created"] * n,
        "connection_id": [f"conn_{i}" for i in range(n)], "setup_state": ["incomplete"] * n,
        "connect_card_uri": [None] * n, "http_status": [201] * n, "error_code": [None] * n,
        "error_message": [None] * n, "attempts": [1] * n, "reconciled": [False] * n,
        "started_at": [None] * n, "finished_at": [None] * n,
    }, schema_overrides={"group_name": pl.String, "connect_card_uri": pl.String,
                         "error_code": pl.String, "error_message": pl.String,
                         "started_at": pl.String, "finished_at": pl.String})


def summary(**extra: Any) -> dict[str, Any]:
    return {"run_id": "r-1", "version": "0.1.0", "exit_code": 0, "calls": 4,
            "throttled_429": 2, "counts": {"created": 1}, **extra}


def every_file(run_dir: Path) -> dict[str, str]:
    """Each written file as the text a reader could find a secret in (xlsx: its XML)."""
    texts = {p.name: p.read_text("utf-8", errors="replace") for p in run_dir.iterdir()
             if p.suffix in (".csv", ".json", ".html")}
    with zipfile.ZipFile(run_dir / "results.xlsx") as archive:
        texts["results.xlsx"] = "".join(archive.read(n).decode("utf-8", "replace")
                                        for n in archive.namelist())
    parquet = pl.read_parquet(run_dir / "results.parquet")
    texts["results.parquet"] = json.dumps(parquet.rows(), default=str)
    return texts


def csv_column(path: Path, name: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row[name] for row in csv.DictReader(handle)]


def xlsx_frame(path: Path) -> pl.DataFrame:
    return fastexcel.read_excel(str(path)).load_sheet(0, dtypes="string").to_polars()


def test_a_registered_secret_is_masked_in_every_written_file(tmp_path: Path) -> None:
    with REDACTOR.scoped():
        REDACTOR.add(SECRET)
        frame = results([f"ref {SECRET}", "plain"]).with_columns(
            pl.Series("error_message", [None, f"401 for token {SECRET}"]),
            pl.Series("connect_card_uri", [f"https://x.example/c?auth={SECRET}", None]))
        paths = write_result_files(tmp_path, frame, summary(
            note=f"used {SECRET}", detail={SECRET: [SECRET]}), TIMELINE, ["client_ref"])
        refreshed = refresh_results(tmp_path, frame, summary(note=SECRET), ["client_ref"])
    assert set(paths) == set(RESULT_FILES) == set(refreshed)
    texts = every_file(tmp_path)
    assert set(texts) >= set(RESULT_FILES)
    assert [name for name, text in texts.items() if SECRET in text] == []
    assert [name for name in RESULT_FILES if MASK not in texts[name]] == []
    assert pl.read_parquet(tmp_path / "results.parquet")["client_ref"][0] == f"ref {MASK}"


def test_refresh_neutralises_formula_cells_and_keeps_the_columns(tmp_path: Path) -> None:
    write_result_files(tmp_path, results([*ATTACKS, "fine"]), summary(), TIMELINE,
                       ["client_ref"])
    first_csv = csv_column(tmp_path / "results.csv", "client_ref")
    first_columns = pl.read_csv(tmp_path / "results.csv", n_rows=0).columns
    for _ in range(2):  # as the lifecycle commands do: read parquet, update, refresh
        frame = pl.read_parquet(tmp_path / "results.parquet").with_columns(
            pl.lit("connected").alias("setup_state"))
        refresh_results(tmp_path, frame, summary(status_checked_at="now"), ["client_ref"])
    expected = ["'" + a for a in ATTACKS] + ["fine"]
    assert first_csv == expected
    assert csv_column(tmp_path / "results.csv", "client_ref") == expected  # not "''=..."
    assert csv_column(tmp_path / "results.csv", "setup_state") == ["connected"] * 5
    xlsx = xlsx_frame(tmp_path / "results.xlsx")
    assert xlsx["client_ref"].to_list() == expected
    with zipfile.ZipFile(tmp_path / "results.xlsx") as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml  # no formula cell at all
    assert pl.read_csv(tmp_path / "results.csv", n_rows=0).columns == first_columns
    assert xlsx.columns == first_columns
    assert pl.read_parquet(tmp_path / "results.parquet").columns == first_columns
    assert json.loads((tmp_path / "summary.json").read_text())["status_checked_at"] == "now"


def test_apply_keeps_the_timeline_and_a_refresh_draws_it_again(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3)
    run_dir = tmp_path / "reports" / "run"
    with REDACTOR.scoped():
        prepared = load(sheet)
        rows = prepared.frame.get_column(ROW).to_list()
        outcomes = [Outcome(row=r, status=Status.CREATED, action="create",
                            connection_id=f"conn_{r}", attempts=1) for r in rows[:2]]
        outcomes.append(Outcome(row=rows[2], status=Status.FAILED, action="create",
                                error_code="Boom", error_message="it broke"))
        paths = write_results(run_dir, prepared, outcomes,
                              summary(counts={"created": 2, "failed": 1}), TIMELINE)
    assert {p.name for p in run_dir.iterdir()} == {*RESULT_FILES, "failed_rows.csv",
                                                   "timeline.json"}
    assert paths["timeline.json"] == run_dir / "timeline.json"
    assert json.loads((run_dir / "timeline.json").read_text()) == [list(e) for e in TIMELINE]
    first_page = (run_dir / "report.html").read_text()
    assert first_page.count('class="throttled"') == 2  # two windows each held a 429
    first_columns = pl.read_csv(run_dir / "results.csv", n_rows=0).columns

    frame = pl.read_parquet(run_dir / "results.parquet").with_columns(
        pl.lit("rolled_back").alias("status"))
    refresh_results(run_dir, frame, summary(counts={"rolled_back": 3}),
                    prepared.carry_columns)
    page = (run_dir / "report.html").read_text()
    svg = first_page[first_page.index("<svg"):first_page.index("</svg>")]
    assert svg in page and page.count('class="throttled"') == 2  # the same chart
    assert 'id="count-rolled_back">3<' in page
    assert pl.read_csv(run_dir / "results.csv", n_rows=0).columns == first_columns
    assert read_timeline(run_dir) == TIMELINE


def test_a_run_without_a_readable_timeline_still_refreshes(tmp_path: Path) -> None:
    frame = results(["a"])
    refresh_results(tmp_path, frame, summary(), ["client_ref"])  # no timeline.json at all
    assert "No requests were sent." in (tmp_path / "report.html").read_text()
    (tmp_path / "timeline.json").write_text('[[0.1, "GET", 200], ["bad"], [1, 2, 3]')
    assert read_timeline(tmp_path) == []  # cut short: no chart, no crash
    (tmp_path / "timeline.json").write_text('[[0.1, "GET", 429], ["bad"], [1, 2, 3]]')
    assert read_timeline(tmp_path) == [(0.1, "GET", 429)]
    refresh_results(tmp_path, frame, summary(), ["client_ref"])
    assert 'class="throttled"' in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
