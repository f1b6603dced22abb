"""The hostile-input corpus (tests/data/hostile/): every case through ``python -m
batch_provisioner`` as a user runs it, plus one named regression test per bug it found.

The corpus cases run as subprocesses, several at a time, once per session (a module fixture);
each case is then its own test. A case marked ``apply`` also runs ``apply --sandbox-url``
against a fresh sandbox and reads the sandbox's ledger: an input error sends nothing at all,
and invalid rows are never sent while the valid ones are.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from types import ModuleType
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from helpers_input import BASE_ROW, context, prepare_rows, problems, run_cli, write_csv, write_xlsx

from batch_provisioner import cli
from batch_provisioner.errors import InputError
from batch_provisioner.sandbox import run_in_thread
from batch_provisioner.sheet.defaults import load_defaults
from batch_provisioner.sheet.load import prepare
from batch_provisioner.sheet.read import read_table

CORPUS = Path(__file__).parent / "data" / "hostile"
CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text("utf-8"))["case"]
#: Cases marked ``heavy`` (million-row files; the row cap is also tested with a small cap in
#: tests/test_resource_hardening.py) run only with BATCH_PROVISIONER_HEAVY_CORPUS=1, so the
#: suite stays under 10 minutes.
RUN_CASES = [case for case in CASES
             if not case.get("heavy") or os.environ.get("BATCH_PROVISIONER_HEAVY_CORPUS")]
WORKERS = 4


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _load_builder()


def _id(case: dict[str, Any]) -> str:
    return str(case.get("id", case["file"]))


@dataclass
class Ran:
    folder: Path
    result: CompletedProcess[str]
    applied: CompletedProcess[str] | None = None
    ledger: dict[str, Any] | None = None

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def _run_case(case: dict[str, Any], root: Path) -> Ran:
    folder = root / _id(case).replace("/", "_")
    folder.mkdir()
    if case.get("generated"):
        BUILDER.generate(case["file"], folder)
    else:
        shutil.copy(CORPUS / case["file"], folder / case["file"])
    for extra in case.get("extra", []):
        shutil.copy(CORPUS / extra, folder / extra)
    command = case.get("command", "validate")
    tail = ["--reports-dir", "reports", "--run-id", "case"] if command == "validate" else []
    ran = Ran(folder, run_cli([command, case["file"], *case.get("args", []), *tail], folder))
    if case.get("apply"):
        with run_in_thread(profile="fast") as sandbox:
            ran.applied = run_cli(["apply", case["file"], *case.get("args", []),
                                   "--sandbox-url", sandbox.url, "--reports-dir", "applied",
                                   "--run-id", "case", "--log-format", "json"], folder)
            ran.ledger = sandbox.ledger()
    return ran


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every corpus case, run in parallel subprocesses (each one's start-up is ~1 s)."""
    root = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {_id(case): pool.submit(_run_case, case, root) for case in RUN_CASES}
        return {name: future.result() for name, future in futures.items()}


def _validation_errors(folder: Path) -> set[str]:
    with (folder / "reports" / "case" / "validation.csv").open(encoding="utf-8") as handle:
        return {f"{p['row']}:{p['column']}" for p in csv.DictReader(handle)
                if p["severity"] == "error"}


@pytest.mark.parametrize("case", RUN_CASES, ids=_id)
def test_hostile_case(case: dict[str, Any], corpus_runs: dict[str, Ran]) -> None:
    ran = corpus_runs[_id(case)]
    output = ran.output
    assert "Traceback" not in output, output
    assert ran.result.returncode == case["exit"], output
    assert case.get("message", "") in output, output
    for fragment in case.get("output", []):
        assert fragment in output, (fragment, output)
    for fragment in case.get("absent", []):
        assert fragment not in output, (fragment, output)
    if case["exit"] == 2:
        [line] = ran.result.stderr.strip().splitlines()
        assert line.startswith(f"error: {case.get('names', case['file'])}"), line
        assert not (ran.folder / "reports").exists()
    elif case["exit"] == 1 and case.get("command", "validate") == "validate":
        assert f"Problems in {case['file']}" in ran.result.stdout, output
    if "problems" in case:
        assert _validation_errors(ran.folder) == set(case["problems"])
    if "written" in case:
        written = (ran.folder / "reports" / "case" / "validation.csv").read_text("utf-8")
        assert all(fragment in written for fragment in case["written"]), written
    if case.get("apply"):
        _check_apply(case, ran)


def _check_apply(case: dict[str, Any], ran: Ran) -> None:
    assert ran.applied is not None and ran.ledger is not None
    output = ran.applied.stdout + ran.applied.stderr
    assert "Traceback" not in output, output
    assert ran.applied.returncode == case["exit"], output
    requests = ran.ledger["requests"]
    if case["exit"] == 2:
        assert ran.ledger["counts"]["requests"] == 0, requests
        assert case.get("names", case["file"]) in ran.applied.stderr
        return
    created = {f"{c['group_id']}/{c['schema']}" for c in ran.ledger["creates"]}
    assert created == set(case["sent"]), output
    posts = [r for r in requests if r["method"] == "POST"]
    assert len(posts) == len(case["sent"])
    groups = {key.split("/")[0] for key in case["sent"]}
    assert all(any(f"/groups/{g}/" in r["path"] for g in groups)
               for r in requests if r["method"] == "GET"), requests
    if not case["sent"]:
        assert ran.ledger["counts"]["requests"] == 0, requests
    if "results" in case:
        results = (ran.folder / "applied" / "case" / "results.csv").read_text("utf-8")
        assert all(fragment in results for fragment in case["results"]), results


def test_the_corpus_has_at_least_30_cases_each_with_a_note() -> None:
    assert len(CASES) >= 30
    assert len({_id(case) for case in CASES}) == len(CASES)
    for case in CASES:
        assert case["attacks"].strip() and case["exit"] in (0, 1, 2)


def test_every_committed_file_is_a_case_and_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    built = {path.name: path for path in BUILDER.build_all(tmp_path)}
    stored = {p.name for p in CORPUS.iterdir()} - {"make_corpus.py", "cases.toml", "NOTES.md"}
    assert stored == set(built)
    for name, path in built.items():
        assert path.read_bytes() == (CORPUS / name).read_bytes(), (
            f"{name} differs from what make_corpus.py builds: run the script")
    used = {case["file"] for case in CASES} | {e for case in CASES for e in case.get("extra", [])}
    generated = {case["file"] for case in CASES if case.get("generated")}
    assert used - generated == set(built)
    assert generated == set(BUILDER.GENERATED)
    assert all((CORPUS / name).stat().st_size < 64_000 for name in stored)


# --- regressions: one test per bug the corpus found ---------------------------------------

def _input_error(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        prepare(path, secrets=context(path.parent))
    return caught.value.message


def test_regression_lone_cr_line_endings_are_rows(tmp_path: Path) -> None:
    sheet = tmp_path / "mac.csv"
    sheet.write_bytes(b"group_id,schema,access_token\rg1,s_one,env:TIKTOK_TEST_TOKEN\r"
                      b"g1,Bad,env:TIKTOK_TEST_TOKEN\r\ng1,s_three,env:TIKTOK_TEST_TOKEN\n")
    prepared = prepare(sheet, secrets=context(tmp_path))
    assert prepared.rows == [2, 3, 4]
    assert [p["row"] for p in problems(prepared)] == [3]


def test_regression_truncated_utf16_is_an_input_error_not_a_crash(tmp_path: Path) -> None:
    sheet = tmp_path / "cut.csv"
    sheet.write_bytes(b"\xff\xfeg\x00r\x00o")
    assert "is not valid UTF-16" in _input_error(sheet)


def test_regression_nul_bytes_are_an_input_error(tmp_path: Path) -> None:
    sheet = tmp_path / "nul.csv"
    sheet.write_bytes(b"group_id,schema,access_token\ng1,s\x001,env:X\n")
    assert "holds NUL bytes (first at line 2)" in _input_error(sheet)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_regression_exact_duplicate_headers_are_refused(tmp_path: Path, suffix: str) -> None:
    rows = [["group_id", "schema", "schema", "access_token"], ["g1", "s_one", "s_two", "env:X"]]
    sheet = tmp_path / f"dup{suffix}"
    if suffix == ".csv":
        sheet.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding="utf-8")
    else:
        write_xlsx(sheet, {"connections": rows})
    message = _input_error(sheet)
    assert "row 1, column 'schema': columns B 'schema' and C 'schema' both mean" in message


def test_regression_ragged_row_error_names_the_row_and_empty_extras_are_dropped(
        tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,schema,group_id\n1,s_one,g\n2,s_two,g,extra\n", encoding="utf-8")
    assert "row 3 has 4 cells but the header has 3" in _input_error(ragged)
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("group_id,schema,access_token\ng,s_one,env:TIKTOK_TEST_TOKEN,,\n",
                        encoding="utf-8")
    assert prepare(trailing, secrets=context(tmp_path)).rows == [2]


def test_regression_unclosed_quote_names_the_row(tmp_path: Path) -> None:
    sheet = tmp_path / "quote.csv"
    sheet.write_text('group_id,schema\ng,s_one\ng,"s_two\ng,s_three\n', encoding="utf-8")
    assert "row 3 cannot be read" in _input_error(sheet)


@pytest.mark.parametrize(("name", "text"), [
    ("eu.csv", "group_id;schema;access_token\ng1;s_one;env:TIKTOK_TEST_TOKEN\n"),
    ("tabs.tsv", "group_id\tschema\taccess_token\ng1\ts_one\tenv:TIKTOK_TEST_TOKEN\n"),
])
def test_regression_semicolon_and_tab_separated_files_are_read(tmp_path: Path, name: str,
                                                               text: str) -> None:
    sheet = tmp_path / name
    sheet.write_text(text, encoding="utf-8")
    [request] = prepare(sheet, secrets=context(tmp_path)).requests
    assert (request.group_id, request.schema) == ("g1", "s_one")


def test_regression_leading_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    sheet = tmp_path / "blank_top.csv"
    sheet.write_text("\n\ngroup_id,schema,access_token\ng,Bad,env:TIKTOK_TEST_TOKEN\n",
                     encoding="utf-8")
    prepared = prepare(sheet, secrets=context(tmp_path))
    assert prepared.table.header_row == 3
    assert [p["row"] for p in problems(prepared)] == [4]


def test_regression_hidden_first_sheet_is_not_read_silently(tmp_path: Path) -> None:
    book = tmp_path / "hidden.xlsx"
    workbook = xlsxwriter.Workbook(str(book))
    for name, schema in (("old", "s_hidden"), ("new", "s_visible")):
        sheet = workbook.add_worksheet(name)
        for col, value in enumerate(["group_id", "schema", "access_token"]):
            sheet.write_string(0, col, value)
        for col, value in enumerate(["g1", schema, "env:TIKTOK_TEST_TOKEN"]):
            sheet.write_string(1, col, value)
    workbook.worksheets()[0].hide()
    workbook.worksheets()[1].activate()
    workbook.close()
    assert read_table(book).sheet == "new"
    assert read_table(book, sheet="old").frame.get_column("schema").to_list() == ["s_hidden"]


def test_regression_a_workbook_with_only_custom_reports_says_so(tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "reports_only.xlsx", {"custom_reports": [["schema"], ["s"]]})
    assert "has no visible sheet to read besides custom_reports" in _input_error(book)


def test_regression_xlsx_row_numbers_count_from_the_top_of_the_sheet(tmp_path: Path) -> None:
    book = tmp_path / "offset.xlsx"
    workbook = xlsxwriter.Workbook(str(book))
    sheet = workbook.add_worksheet()
    for row, values in ((3, ["group_id", "schema", "access_token", "sync_mode", "accounts"]),
                        (4, ["g1", "Bad", "env:TIKTOK_TEST_TOKEN", "AllAccounts"]),
                        (5, ["g1", "s_num", "env:TIKTOK_TEST_TOKEN", "SpecificAccounts"])):
        for col, value in enumerate(values):
            sheet.write_string(row, 2 + col, value)
    sheet.write_number(5, 6, 7012345678901234567)  # column G: the accounts column
    workbook.close()
    prepared = prepare(book, secrets=context(tmp_path))
    assert prepared.table.header_row == 4
    assert {(p["row"], p["column"]) for p in problems(prepared)} == {
        (5, "schema"), (6, "accounts")}


def test_regression_excel_error_cells_are_not_read_as_blank(tmp_path: Path) -> None:
    book = tmp_path / "errors.xlsx"
    workbook = xlsxwriter.Workbook(str(book))
    sheet = workbook.add_worksheet()
    for col, value in enumerate(["group_id", "schema", "access_token", "sync_frequency"]):
        sheet.write_string(0, col, value)
    for col, value in enumerate(["g1", "s_one", "env:TIKTOK_TEST_TOKEN"]):
        sheet.write_string(1, col, value)
    sheet.write_formula(1, 3, "=1/0", None, "#DIV/0!")
    workbook.close()
    prepared = prepare(book, secrets=context(tmp_path))
    [problem] = problems(prepared)
    assert (problem["row"], problem["column"], problem["value"]) == (2, "sync_frequency",
                                                                      "#DIV/0!")
    assert prepared.requests == []


def test_regression_parquet_binary_struct_and_nested_columns_are_read(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pl.DataFrame({"group_id": ["g1"], "schema": ["s1"], "access_token": ["env:TIKTOK_TEST_TOKEN"],
                  "blob": [b"\xff\x00"], "text": [b"plain"], "meta": [{"a": 1}],
                  "grid": [[[1], [2, 3]]]}).write_parquet(path)
    frame = prepare(path, secrets=context(tmp_path)).table.frame
    assert frame.select("blob", "text", "meta", "grid").row(0) == (
        "0xff00", "plain", '{"a": 1}', "[[1], [2, 3]]")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_regression_100k_columns_is_refused_not_ground_through(tmp_path: Path,
                                                               suffix: str) -> None:
    path = tmp_path / f"wide{suffix}"
    if suffix == ".csv":
        BUILDER.generate("columns_100k.csv", tmp_path).rename(path)
    else:
        pl.DataFrame({f"c{i}": ["x"] for i in range(16_385)}).write_parquet(path)
    assert "columns; a sheet has at most 16384" in _input_error(path)


def test_regression_10mb_cell_is_too_long_and_shown_clipped(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "schema": "a" * 10_000_000},
                                       {**BASE_ROW, "schema": "s_ok", "notes": "b" * 10_000_000}])
    [problem] = problems(prepared)
    assert problem["message"] == "is 10000000 characters long"
    assert len(problem["value"]) == 1000 and problem["value"].endswith("…")
    assert [r.schema for r in prepared.requests] == ["s_ok"]


def test_regression_huge_bad_list_cell_message_is_clipped(tmp_path: Path) -> None:
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "sync_mode": "SpecificAccounts",
                                        "accounts": "x;" * 200_000}])
    assert all(len(p["message"]) <= 1000 for p in problems(prepared))


@pytest.mark.parametrize("value", ["..", ".", "a/b", "g 1", "🦄"])
def test_regression_group_id_that_is_not_an_id_is_invalid(tmp_path: Path, value: str) -> None:
    prepared = prepare_rows(tmp_path, [{**BASE_ROW, "group_id": value}])
    assert [(p["column"], p["message"]) for p in problems(prepared)] == [
        ("group_id", "is not a Fivetran group id")]


def test_regression_rich_markup_and_escapes_in_cells_are_printed_inert(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the escaped value
    sheet = write_csv(tmp_path / "[bold]x.csv", [
        {**BASE_ROW, "schema": "[/x]"}, {**BASE_ROW, "schema": "\x1b[2Jevil\u202e"}])
    with pytest.raises(SystemExit) as caught:
        cli.main(["validate", str(sheet), "--reports-dir", str(tmp_path / "r")])
    output = capsys.readouterr().out
    assert caught.value.code == 1
    assert "[/x]" in output and "[bold]x.csv" in output
    assert "\\x1b[2J" in output and "\\u202e" in output
    assert "\x1b" not in output and "\u202e" not in output


def test_regression_main_registers_the_sandbox_group_once() -> None:
    for _ in range(3):
        with pytest.raises(SystemExit):
            cli.main(["--version"])
    assert [g.name for g in cli.app.registered_groups].count("sandbox") == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_regression_nan_or_inf_limits_in_defaults_are_refused(tmp_path: Path,
                                                              value: str) -> None:
    defaults = tmp_path / "defaults.toml"
    defaults.write_text(f"[limits]\nconcurrency = {value}\n", encoding="utf-8")
    with pytest.raises(InputError, match="concurrency must be a whole number from 1 to 256"):
        load_defaults(defaults)


@pytest.mark.parametrize("reference", ["file:tok\x00en.txt", "file:" + "x" * 5000])
def test_regression_unusable_file_secret_path_is_a_row_error(tmp_path: Path,
                                                             reference: str) -> None:
    parquet = tmp_path / "sheet.parquet"
    pl.DataFrame({"group_id": ["g1"], "schema": ["s1"],
                  "access_token": [reference]}).write_parquet(parquet)
    [problem] = problems(prepare(parquet, secrets=context(tmp_path)))
    assert (problem["column"], problem["severity"]) == ("access_token", "error")
    assert "is not a usable path" in problem["message"]
