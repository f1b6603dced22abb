"""``--json``: one document on stdout per command, valid against the schema the package ships,
holding the same facts as the files the command wrote; status and connect-cards list only the
rows someone must act on, unless ``--all``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
import typer

from batch_provisioner.cli.common import JsonOpt, out, plain_out
from batch_provisioner.cli.json_out import emit, error_document, json_command
from batch_provisioner.errors import ExitCode, FatalApiError, InputError, OutputError
from batch_provisioner.safety import REDACTOR
from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import ENV, TOKEN, cli, csv_rows, write_dict_rows

COMMANDS = ("validate", "plan", "apply", "status", "connect-cards")
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
LITERAL = "tt-literal-0123456789-in-the-cell"
COLUMNS = ["group_id", "schema", "sync_mode", "sync_frequency", "access_token", "redirect_uri",
           "client_name", "notes"]
ROWS = [  # sheet rows 2..7
    {"group_id": "decent_dropsy", "schema": "tt_tok_a", "client_name": "Acme",
     "notes": f"pasted {TOKEN} here"},
    {"group_id": "happy_harbor", "schema": "tt_bad", "sync_mode": "AllAcounts",
     "client_name": "Blue"},
    {"group_id": "happy_harbor", "schema": "tt_card", "access_token": "",
     "redirect_uri": "https://agency.example/done", "client_name": "Crimson"},
    {"group_id": "no_such_group", "schema": "tt_lost", "client_name": "Delta"},
    {"group_id": "quiet_quasar", "schema": "tt_tok_b", "client_name": "Echo"},
    {"group_id": "quiet_quasar", "schema": "tt_lit", "access_token": LITERAL,
     "client_name": "Foxtrot"},
]
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}  # the tables print whole cells


@cache
def schema(command: str) -> dict[str, Any]:
    """The schema shipped as package data (where the README says it is)."""
    path = resources.files("batch_provisioner") / "data" / "schemas" / f"{command}.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def document(stdout: str, command: str) -> dict[str, Any]:
    """stdout as exactly one JSON value on one line, valid against ``command``'s schema."""
    text = stdout.strip()
    assert text, "nothing on stdout"
    value, end = json.JSONDecoder().raw_decode(text)
    assert end == len(text), f"more than one JSON value on stdout: {text[end:end + 200]!r}"
    assert stdout.count("\n") == 1, "the document is one line"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in
              jsonschema.Draft202012Validator(schema(command)).iter_errors(value)]
    assert errors == []
    assert value["schema_version"] == 1 and value["command"] == command
    assert isinstance(value, dict)
    assert LITERAL not in stdout
    return value


class Scenario:
    """One sheet planned, applied, then status and connect-cards, each with --json."""

    def __init__(self, tmp: Path, sandbox: SandboxHandle) -> None:
        self.sheet = write_dict_rows(tmp / "clients.csv", ROWS, COLUMNS)
        self.reports = tmp / "reports"
        self.run_dir = self.reports / "run"
        self.where = ("--sandbox-url", sandbox.url, "--reports-dir", self.reports)
        self.plan = cli("plan", self.sheet, *self.where, "--run-id", "plan", "--json")
        self.apply = cli("apply", self.sheet, *self.where, "--run-id", "run", "--json")
        # as apply left them: status and connect-cards update both
        self.summary = json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8"))
        self.results = csv_rows(self.run_dir / "results.csv")
        self.status = cli("status", "run", *self.where, "--json")
        self.cards = cli("connect-cards", "run", *self.where, "--json")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle) -> Scenario:
    sandbox.reset()
    return Scenario(tmp_path_factory.mktemp("json"), sandbox)


# -- the schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_each_schema_is_a_valid_draft_2020_12_schema_with_the_shared_envelope(
        command: str) -> None:
    shipped = schema(command)
    jsonschema.Draft202012Validator.check_schema(shipped)
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert shipped["required"] == ["schema_version", "command", "version", "exit_code"]
    assert shipped["additionalProperties"] is True  # new top-level keys may come
    shared = schema("validate")["$defs"]
    for name in ("error", "carry", "paths", "carry_columns"):
        assert shipped["$defs"][name] == shared[name], name


# -- the switch: one document, the person's lines on stderr -------------------------------

@json_command("status")
def _command(code: int, json_output: JsonOpt = False) -> None:
    out.print("a line for a person")
    plain_out.print("another one")
    emit(lambda: {"exit_code": code, "first": True})
    emit(lambda: {"exit_code": code, "second": True})  # one document per command, ever
    raise typer.Exit(code)


def test_under_json_stdout_holds_one_document_and_the_person_reads_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _command(1, json_output=True)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"schema_version": 1, "command": "status",
                                        "version": json.loads(captured.out)["version"],
                                        "exit_code": 1, "first": True}
    assert captured.err == "a line for a person\nanother one\n"
    assert not out.stderr and not plain_out.stderr  # switched back
    with pytest.raises(typer.Exit):
        _command(0)
    captured = capsys.readouterr()
    assert captured.out == "a line for a person\nanother one\n" and captured.err == ""


@pytest.mark.parametrize(("error", "code", "exit_code"), [
    (InputError("no such file", path="x.csv"), "input_error", 2),
    (OutputError("cannot write r/results.csv", path="r", sent=False), "output_error", 2),
    (OutputError("cannot write r/results.csv", path="r", sent=True), "output_error", 4),
    (FatalApiError("401 Unauthorized"), "fatal_api_error", 3),
    (ExceptionGroup("tasks", [ValueError("other"), InputError("inside a task group")]),
     "input_error", 2),
    (typer.BadParameter("'soon' is not a duration"), "usage_error", 2),
    (KeyboardInterrupt(), "interrupted", 4),
    (RuntimeError("a bug"), "internal_error", 70),
])
def test_an_error_document_names_the_error_and_the_exit_code_the_cli_uses(
        error: BaseException, code: str, exit_code: int) -> None:
    found = error_document(error)
    assert (found["error"]["code"], found["exit_code"]) == (code, exit_code)
    assert found["error"]["message"]


def test_an_error_document_never_holds_a_secret() -> None:
    with REDACTOR.scoped():
        REDACTOR.add("sekret-0123456789abcdef")
        found = error_document(InputError("the token sekret-0123456789abcdef is refused"))
    assert "sekret" not in json.dumps(found)


# -- validate ----------------------------------------------------------------------------

def test_validate_json_holds_every_problem_of_validation_csv(tmp_path: Path) -> None:
    sheet = write_dict_rows(tmp_path / "clients.csv", ROWS, COLUMNS)
    done = cli("validate", sheet, "--reports-dir", tmp_path / "reports", "--run-id", "v",
               "--json")
    assert done.returncode == ExitCode.ROWS_FAILED
    found = document(done.stdout, "validate")
    assert found["exit_code"] == ExitCode.ROWS_FAILED
    lines = csv_rows(tmp_path / "reports" / "v" / "validation.csv")
    assert [(str(p["row"]), p["column"], p["severity"], p["message"])
            for p in found["problems"]] == [
        (p["row"], p["column"], p["severity"], p["message"]) for p in lines]
    severities = Counter(p["severity"] for p in lines)
    assert found["counts"] == {"rows": 6, "invalid": 1, "errors": severities["error"],
                               "warnings": severities["warning"], "ready": 5}
    assert found["invalid_rows"] == [3]
    assert found["carry_columns"] == ["client_name", "notes"]
    bad = next(p for p in found["problems"] if p["severity"] == "error")
    assert (bad["column"], bad["value"]) == ("sync_mode", "AllAcounts") and bad["hint"]
    assert Path(found["paths"]["validation.csv"]).is_file()
    assert "AllAcounts" in done.stderr and "rows" in done.stderr  # the table, for a person


# -- plan, apply, status, connect-cards on one run -----------------------------------------

def test_plan_json_has_one_entry_per_plan_csv_line(run: Scenario) -> None:
    assert run.plan.returncode == ExitCode.ROWS_FAILED, run.plan.stderr
    found = document(run.plan.stdout, "plan")
    assert found["exit_code"] == ExitCode.ROWS_FAILED and found["run_id"] == "plan"
    lines = csv_rows(run.reports / "plan" / "plan.csv")
    assert [(str(r["source_row"]), r["action"]) for r in found["rows"]] == [
        (r["source_row"], r["action"]) for r in lines]
    assert found["counts"] == {"create": 4, "exists": 0, "drift": 0, "conflict": 0,
                               "invalid": 2}
    assert found["estimate"]["creates"] == 4
    lost = next(r for r in found["rows"] if r["schema"] == "tt_lost")
    assert lost["action"] == "invalid" and "no_such_group" in lost["detail"]
    assert [r["carry"]["client_name"] for r in found["rows"]] == [
        r["client_name"] for r in ROWS]
    assert "no_such_group" in run.plan.stderr  # the plan's table, for a person


def test_apply_json_is_summary_json_and_results_csv(run: Scenario) -> None:
    assert run.apply.returncode == ExitCode.ROWS_FAILED, run.apply.stderr
    found = document(run.apply.stdout, "apply")
    assert found["exit_code"] == ExitCode.ROWS_FAILED and found["run_id"] == "run"
    summary, results = run.summary, run.results
    assert found["summary"] == summary
    assert found["counts"] == {**dict.fromkeys(found["counts"], 0),
                               **Counter(r["status"] for r in results)}
    assert found["counts"] == summary["counts"]
    assert [(str(r["source_row"]), r["status"], r["connection_id"] or "")
            for r in found["rows"]] == [
        (r["source_row"], r["status"], r["connection_id"]) for r in results]
    by_schema = {r["schema"]: r for r in found["rows"]}
    lost = by_schema["tt_lost"]
    assert (lost["status"], lost["error_code"], lost["http_status"]) == (
        "failed", "NotFound_Group", 404)
    assert "no_such_group" in lost["error_message"]
    assert by_schema["tt_bad"]["status"] == "invalid"
    assert "sync_mode" in by_schema["tt_bad"]["error_message"]
    card = by_schema["tt_card"]
    assert card["connect_card_uri"].startswith("https://")
    assert card["carry"] == {"client_name": "Crimson", "notes": None}
    assert by_schema["tt_tok_a"]["carry"]["notes"] == "pasted ****** here"  # scrubbed
    assert set(found["paths"]) >= {"results.csv", "summary.json", "failed_rows.csv"}
    assert all(Path(p).is_file() for p in found["paths"].values())
    assert "failed_rows.csv" in run.apply.stderr  # the closing lines, for a person


def test_status_json_has_every_connection_of_status_csv(run: Scenario) -> None:
    assert run.status.returncode == ExitCode.OK, run.status.stderr
    found = document(run.status.stdout, "status")
    lines = csv_rows(run.run_dir / "status.csv")
    assert [(str(r["row"]), r["setup_state"]) for r in found["rows"]] == [
        (r["row"], r["setup_state"]) for r in lines]
    assert found["counts"] == {"connections": 4, "connected": 3, "not_connected": 1,
                               "unread": 0}
    assert found["setup_states"] == {"connected": 3, "incomplete": 1}
    summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert found["setup_states"] == summary["setup_states"]
    assert [r["schema"] for r in found["rows"] if r["needs_action"]] == ["tt_card"]
    assert found["carry_columns"] == ["client_name", "notes"]


def test_connect_cards_json_has_the_fresh_links_of_connect_cards_csv(run: Scenario) -> None:
    assert run.cards.returncode == ExitCode.OK, run.cards.stderr
    found = document(run.cards.stdout, "connect-cards")
    cards = csv_rows(run.run_dir / "connect_cards.csv")
    assert [(r["schema"], r["uri"]) for r in found["rows"] if r["uri"]] == [
        (c["schema"], c["uri"]) for c in cards]
    assert found["counts"] == {"connections": 4, "fresh_cards": 1, "connected": 3,
                               "failed": 0}
    assert [r["carry"]["client_name"] for r in found["rows"] if r["needs_action"]] == [
        "Crimson"]


# -- errors --------------------------------------------------------------------------------

def test_an_error_before_the_work_is_still_one_document_with_the_exit_code(
        tmp_path: Path, run: Scenario) -> None:
    missing = cli("validate", tmp_path / "nowhere.csv", "--json")
    unknown = cli("status", "no-such-run", "--reports-dir", run.reports, "--json")
    bad_flag = cli("apply", run.sheet, *run.where, "--run-id", "never", "--deadline", "soon",
                   "--json")
    for done, command, code in ((missing, "validate", "input_error"),
                                (unknown, "status", "input_error"),
                                (bad_flag, "apply", "usage_error")):
        assert done.returncode == ExitCode.INPUT_ERROR, done.stderr
        found = document(done.stdout, command)
        assert found["exit_code"] == ExitCode.INPUT_ERROR
        assert found["error"]["code"] == code
        assert found["error"]["message"] in done.stderr  # the person reads the same text
    assert "nowhere.csv" in missing.stdout and "no-such-run" in unknown.stdout
    assert not (run.reports / "never").exists()  # nothing written, nothing sent


def test_a_usage_error_typer_finds_while_parsing_is_an_error_document_too() -> None:
    done = cli("plan", "x.csv", "--json", "--no-such-flag")
    assert done.returncode == ExitCode.INPUT_ERROR
    assert "No such option" in done.stderr
    found = document(done.stdout, "plan")
    assert found["exit_code"] == ExitCode.INPUT_ERROR
    assert found["error"] == {"code": "usage_error", "message": "No such option: --no-such-flag"}


# -- every key documented ------------------------------------------------------------------

def _resolved(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in node:
        return _resolved(node["allOf"][0], root)
    if "oneOf" in node:
        return _resolved(next(b for b in node["oneOf"] if b.get("type") != "null"), root)
    return node


def _undocumented(value: Any, node: dict[str, Any], root: dict[str, Any],
                  where: str) -> list[str]:
    """Keys of ``value`` its schema does not describe (summary.json is documented with the
    reports, carry and paths hold names of their own)."""
    node = _resolved(node, root)
    if isinstance(value, list) and "items" in node:
        return [key for item in value for key in _undocumented(item, node["items"], root,
                                                               where + "[]")]
    if not isinstance(value, dict) or "properties" not in node:
        return []
    known = node["properties"]
    found = [f"{where}.{key}" for key in value if key not in known]
    for key, inner in value.items():
        if key in known and key != "summary":
            found += _undocumented(inner, known[key], root, f"{where}.{key}")
    return sorted(set(found))


def _json_section() -> str:
    start = README.index("## JSON output for scripts")
    return README[start:README.index("\n## ", start + 1)]


def test_every_key_the_documents_hold_is_in_the_schema_and_the_readme(
        run: Scenario, tmp_path: Path) -> None:
    sheet = write_dict_rows(tmp_path / "clients.csv", ROWS, COLUMNS)
    checked = cli("validate", sheet, "--reports-dir", tmp_path / "reports", "--json")
    outputs = {"validate": checked.stdout, "plan": run.plan.stdout, "apply": run.apply.stdout,
               "status": run.status.stdout, "connect-cards": run.cards.stdout}
    section = _json_section()
    for command, stdout in outputs.items():
        root = schema(command)
        assert _undocumented(json.loads(stdout), root, root, command) == []
        rows = _resolved(root["$defs"].get("row") or root["$defs"]["problem"], root)
        keys = {*root["properties"], *rows["properties"]} - {"$schema"}
        missing = sorted(k for k in keys if f"`{k}`" not in section)
        assert missing == [], f"{command}: not in the README's JSON section: {missing}"
        assert f"`{command}`" in section


@pytest.mark.skipif(shutil.which("jq") is None, reason="the README's example uses jq")
def test_the_readmes_jq_example_runs_as_written(tmp_path: Path) -> None:
    example = re.search(r"```sh\n(.*?)```", _json_section(), flags=re.DOTALL)
    assert example is not None
    pl.DataFrame({"group_id": ["decent_dropsy", "happy_harbor", "quiet_quasar"],
                  "schema": ["tt_acme", "tt_blue", "tt_crimson"],
                  "sync_mode": ["AllAccounts", "AllAcounts", "AllAccounts"],
                  "access_token": ["env:TT_TOKEN", "env:TT_TOKEN", ""],
                  "redirect_uri": ["", "", "https://agency.example/done"],
                  "client_name": ["Acme", "Blue", "Crimson"]}).write_excel(
        tmp_path / "clients.xlsx")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **ENV, "PYTHONPATH": str(root),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(["sh", "-c", example.group(1)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3\tBlue\t") and "sync_mode" in lines[0]  # the invalid row
    assert lines[-1] == "Crimson"  # the client who must still authorise
    assert TOKEN not in done.stdout + done.stderr


# -- status and connect-cards: the rows that need action, or --all -------------------------

def test_status_lists_only_connections_not_connected_unless_all(run: Scenario) -> None:
    default = cli("status", "run", *run.where, env_extra=WIDE)
    everything = cli("status", "run", *run.where, "--all", env_extra=WIDE)
    assert default.returncode == everything.returncode == ExitCode.OK, default.stderr
    table = default.stdout
    assert "client_name" in table and "Crimson" in table and "tt_card" in table
    assert not {"tt_tok_a", "tt_tok_b", "tt_lit", "Acme"} & set(table.split())
    assert "not listed: 3 connected (--all lists every row)" in table
    every = everything.stdout
    assert {"tt_card", "tt_tok_a", "tt_tok_b", "tt_lit", "Acme", "Echo"} <= set(every.split())
    assert "not listed" not in every
    assert [r["schema"] for r in csv_rows(run.run_dir / "status.csv")] == [
        "tt_tok_a", "tt_card", "tt_tok_b", "tt_lit"]  # the file keeps every connection


def test_connect_cards_lists_only_clients_who_must_act_unless_all(run: Scenario) -> None:
    default = cli("connect-cards", "run", *run.where, env_extra=WIDE)
    everything = cli("connect-cards", "run", *run.where, "--all", env_extra=WIDE)
    assert default.returncode == everything.returncode == ExitCode.OK, default.stderr
    table = default.stdout
    assert "client_name" in table and "Crimson" in table and "tt_card" in table
    assert not {"tt_tok_a", "tt_tok_b", "tt_lit", "Acme"} & set(table.split())
    assert "not listed: 3 already connected (--all lists every row)" in table
    every = everything.stdout
    assert {"tt_card", "tt_tok_a", "tt_tok_b", "tt_lit", "Acme", "Echo"} <= set(every.split())
    assert "not listed" not in every
    cards = csv_rows(run.run_dir / "connect_cards.csv")
    assert [(c["schema"], c["client_name"]) for c in cards] == [("tt_card", "Crimson")]
