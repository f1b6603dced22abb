"""Issue 13, secrets: env values cleaned like file values; the redactor knows the forms an API
echoes a secret in; the journal is scrubbed without damaging what it reads back; the sandbox
keeps no secret value; every secret of a sheet is known from load time; secret files capped."""

from __future__ import annotations

import json
import os
import sqlite3
import tracemalloc
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

import batch_provisioner as bp
from batch_provisioner.errors import ExitCode
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.run.journal import Journal, load
from batch_provisioner.safety import MASK, REDACTOR, Redactor, echo_forms
from batch_provisioner.sandbox import run_in_thread
from batch_provisioner.sandbox.model import Connection
from batch_provisioner.sheet.secrets import (
    MAX_SECRET_FILE_BYTES,
    SecretContext,
    check_ref,
    parse_ref,
    resolve,
    secret_text,
)
from tests.apply_helpers import ENV, TOKEN, cli, csv_rows

GROUP = "decent_dropsy"


def _unique(label: str) -> str:
    """A token no earlier test of this process has registered with the redactor."""
    return f"{label}-{uuid.uuid4().hex}"


# --- 1. env values stripped like file values; every echo form scrubbed ---------------------------

def test_regression_an_env_secret_ending_in_a_newline_is_sent_stripped_like_a_file_secret(
        tmp_path: Path) -> None:
    value = _unique("nl-token")
    (tmp_path / "tok.txt").write_text(f"  {value}\n", encoding="utf-8")
    ctx = SecretContext(env={"TOK": f"{value}\n", "BLANK": " \n"}, base_dir=tmp_path)
    assert resolve(parse_ref("env:TOK"), ctx) == value
    assert resolve(parse_ref("file:tok.txt"), ctx) == value
    assert secret_text(f"\t{value}\r\n") == value  # the one function both use
    assert check_ref(parse_ref("env:BLANK"), ctx) == (
        "environment variable BLANK is not set (or empty)")


@pytest.mark.parametrize("value", ["tok\nen-2f7a9c", 'quote"and\\slash-8e1b', "ŧøķėñ-é中-4c0d",
                                   "trailing-newline-6a3e\n"])
def test_regression_the_redactor_masks_a_secret_quoted_back_json_escaped(value: str) -> None:
    redactor = Redactor()
    redactor.add(value)
    escaped, unicode_escaped = json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]
    for echoed in (value, escaped, unicode_escaped, value.strip(),
                   json.dumps(value.strip())[1:-1]):
        message = f"Field 'auth.access_token' has invalid value '{echoed}' (HTTP 400)"
        assert redactor.scrub(message) == (
            f"Field 'auth.access_token' has invalid value '{MASK}' (HTTP 400)"), echoed
    # the body of a 400 that quotes the request: JSON inside the message
    body = json.dumps({"message": json.dumps({"auth": {"access_token": value}})})
    assert value.strip() not in redactor.scrub(body) and escaped not in redactor.scrub(body)


def test_regression_a_secret_adds_at_most_a_handful_of_forms_and_a_plain_one_adds_one() -> None:
    assert echo_forms("plain-token-0123456789") == {"plain-token-0123456789"}
    assert len(echo_forms('all "of\\ it ŧ\n')) <= 6
    redactor = Redactor()
    redactor.add_all(["abc", "abc\n"])  # too short once stripped: only the 4-character form
    assert redactor.scrub("abc and abc\n and abc\\n") == f"abc and {MASK} and {MASK}"


# --- 1. the journal: scrubbed as serialised; keys, ids and paths round-trip ----------------------

def test_regression_journal_records_are_scrubbed_and_keys_and_ids_round_trip(
        tmp_path: Path) -> None:
    token = _unique("journal-token") + "\n"
    escaped = json.dumps(token)[1:-1]
    outcome = Outcome(row=2, status=Status.FAILED, action=ActionKind.CREATE,
                      group_id="sandbox_team", schema="tt_sandbox", connection_id=None,
                      http_status=400, error_code="InvalidInput",
                      error_message=f'Field \'auth\' has invalid value \'{{"access_token": '
                                    f'"{escaped}"}}\'')
    with REDACTOR.scoped():
        REDACTOR.add(token)
        REDACTOR.add("sandbox")  # the embedded sandbox's default API key and secret
        journal = Journal(tmp_path)
        journal.header("run-1", tmp_path / "sandbox_in.csv", "f" * 64, "apply")
        anyio.run(journal.aoutcome, outcome)
        journal.close()
    text = (tmp_path / "journal.jsonl").read_text("utf-8")
    assert token.strip() not in text and escaped not in text
    assert MASK in text
    state = load(tmp_path)
    assert state.header is not None and state.header["input"] == str(tmp_path / "sandbox_in.csv")
    assert ("sandbox_team", "tt_sandbox") in state.outcomes  # the key is intact
    assert state.outcomes[("sandbox_team", "tt_sandbox")].group_id == "sandbox_team"


# --- 2. the sandbox keeps no secret value --------------------------------------------------------

def _state_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.parent.glob(state.name + "*"))


def test_regression_the_sandbox_state_file_never_holds_a_secret_and_answers_stay_masked(
        tmp_path: Path) -> None:
    token, secret = _unique("sandbox-token"), _unique("client-secret")
    state = tmp_path / "state.sqlite"
    with run_in_thread(state_path=state) as box, httpx.Client(
            base_url=box.url, auth=box.auth, trust_env=False) as http:
        made = http.post("/v1/connections", json={
            "group_id": GROUP, "service": "tiktok_ads",
            "config": {"schema": "tt_auth", "sync_mode": "AllAccounts"},
            "auth": {"access_token": token,
                     "client_access": {"client_id": secret, "client_secret": secret}}})
        assert made.status_code == 201, made.text
        card = http.post("/v1/connections", json={
            "group_id": GROUP, "service": "tiktok_ads", "run_setup_tests": False,
            "config": {"schema": "tt_card", "sync_mode": "AllAccounts"}})
        assert card.status_code == 201, card.text
        ids = made.json()["data"]["id"], card.json()["data"]["id"]
        assert token not in made.text and secret not in made.text
    stored = _state_bytes(state)
    assert token.encode() not in stored and secret.encode() not in stored
    with sqlite3.connect(state) as db:
        records = [json.loads(row[0]) for row in db.execute("SELECT data FROM connections")]
    assert {json.dumps(r["auth"]) for r in records} == {
        json.dumps({"access_token": MASK,
                    "client_access": {"client_id": MASK, "client_secret": MASK}}), "{}"}
    # restarted from the file: what was given still decides the setup tests; answers masked
    with run_in_thread(state_path=state) as box, httpx.Client(
            base_url=box.url, auth=box.auth, trust_env=False) as http:
        got = http.get(f"/v1/connections/{ids[0]}").json()["data"]
        assert "auth" not in got and got["status"]["setup_state"] == "connected"
        tested = http.patch(f"/v1/connections/{ids[0]}", json={"run_setup_tests": True})
        assert tested.json()["data"]["status"]["setup_state"] == "connected"
        still = http.patch(f"/v1/connections/{ids[1]}", json={"run_setup_tests": True})
        assert still.json()["data"]["status"]["setup_state"] == "incomplete"
    assert token.encode() not in _state_bytes(state)


def test_regression_a_saved_connection_keeps_an_empty_credential_empty() -> None:
    connection = Connection(id="c", seq=1, group_id=GROUP, service="tiktok_ads", schema="s",
                            created_at="t", connected_by="x", settings={},
                            config={"schema": "s", "secret": "cfg-secret-1234"},
                            auth={"access_token": ""})
    record = connection.to_record()
    assert record["auth"] == {"access_token": ""} and record["config"]["secret"] == MASK


# --- 3. every secret of the sheet is known from load time ----------------------------------------

def test_regression_a_token_pasted_in_a_carry_column_is_masked_in_a_rerun_and_in_the_plan(
        tmp_path: Path) -> None:
    literal = _unique("literal-token")
    sheet = tmp_path / "in.csv"
    sheet.write_text(
        "group_id,schema,sync_mode,access_token,notes\n"
        f"{GROUP},tt_env,AllAccounts,env:TT_TOKEN,pasted {TOKEN} here\n"
        f"{GROUP},tt_lit,AllAccounts,{literal},see {literal}\n", encoding="utf-8")
    reports = tmp_path / "reports"
    outputs = []
    for run_id in ("first", "rerun"):
        done = cli("apply", sheet, "--sandbox", "--reports-dir", reports, "--run-id", run_id)
        outputs.append(done.stdout + done.stderr)
    assert {r["status"] for r in csv_rows(reports / "rerun" / "results.csv")} == {"exists"}
    planned = cli("plan", sheet, "--sandbox", "--reports-dir", reports, "--run-id", "plan")
    validated = cli("validate", sheet, "--reports-dir", reports, "--run-id", "check")
    rendered = cli("render", sheet)
    outputs += [p.stdout + p.stderr for p in (planned, validated, rendered)]
    notes = [r["notes"] for r in csv_rows(reports / "rerun" / "results.csv")]
    assert notes == [f"pasted {MASK} here", f"see {MASK}"]
    assert [r.get("notes") for r in csv_rows(reports / "plan" / "plan.csv")] == notes
    for path in reports.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and literal.encode() not in data, path
    for text in outputs:
        assert TOKEN not in text and literal not in text


def test_loading_a_sheet_registers_its_secrets_and_keeps_them_nowhere(tmp_path: Path) -> None:
    env_value, file_value = _unique("load-env"), _unique("load-file")
    (tmp_path / "tok.txt").write_text(file_value + "\n", encoding="utf-8")
    sheet = tmp_path / "in.csv"
    sheet.write_text("group_id,schema,sync_mode,access_token\n"
                     f"{GROUP},tt_a,AllAccounts,env:LOAD_TOKEN\n"
                     f"{GROUP},tt_b,AllAccounts,file:tok.txt\n"
                     f"{GROUP},tt_c,AllAccounts,env:UNSET_TOKEN\n", encoding="utf-8")
    from batch_provisioner.sheet.load import prepare

    prepared = prepare(sheet, secrets=SecretContext(env={"LOAD_TOKEN": env_value},
                                                    base_dir=tmp_path))
    assert env_value in REDACTOR and file_value in REDACTOR
    assert env_value not in repr(prepared.requests) and file_value not in repr(prepared.requests)
    assert prepared.invalid.keys() == {4}  # the unset one is a validation problem, no more


# --- 4. a secret file has a size cap -------------------------------------------------------------

def _big_sheet(tmp_path: Path) -> Path:
    with (tmp_path / "big.txt").open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)  # sparse: 40 MB on paper, nothing on disk
    (tmp_path / "ok.txt").write_text(_unique("small-token") + "\n", encoding="utf-8")
    sheet = tmp_path / "in.csv"
    sheet.write_text("group_id,schema,sync_mode,access_token\n"
                     f"{GROUP},tt_big,AllAccounts,file:big.txt\n"
                     f"{GROUP},tt_ok,AllAccounts,file:ok.txt\n", encoding="utf-8")
    return sheet


def test_regression_an_oversized_secret_file_is_a_row_problem_for_validate(
        tmp_path: Path) -> None:
    sheet = _big_sheet(tmp_path)
    done = cli("validate", sheet, "--reports-dir", tmp_path / "reports", "--run-id", "v")
    assert done.returncode == ExitCode.ROWS_FAILED, done.stdout + done.stderr
    [problem] = [r for r in csv_rows(tmp_path / "reports" / "v" / "validation.csv")
                 if r["severity"] == "error"]
    assert (problem["row"], problem["column"], problem["value"]) == (
        "2", "access_token", "file:big.txt")
    assert "big.txt is too large" in problem["message"] and "64 KiB" in problem["message"]


def test_regression_an_oversized_secret_file_makes_its_row_invalid_in_apply(
        tmp_path: Path) -> None:
    sheet = _big_sheet(tmp_path)
    result = bp.apply(sheet, sandbox=True, reports_dir=tmp_path / "reports", run_id="a")
    assert {o.row: o.status for o in result.outcomes} == {2: Status.INVALID, 3: Status.CREATED}
    assert "big.txt is too large" in (result.outcomes[0].error_message or "")
    assert result.exit_code == ExitCode.ROWS_FAILED


def test_regression_a_secret_file_grown_past_the_cap_is_refused_at_send_reading_little(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "grown.txt"
    with big.open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)
    real_stat = Path.stat

    def small_when_looked_at(self: Path, **kwargs: bool) -> os.stat_result:
        found = real_stat(self, **kwargs)  # it grows between the size check and the read
        return os.stat_result((*found[:6], 10, *found[7:10])) if self == big else found

    monkeypatch.setattr(Path, "stat", small_when_looked_at)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"grown\.txt is too large \(more than that"):
            resolve(parse_ref("file:grown.txt"), SecretContext(env=ENV, base_dir=tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_SECRET_FILE_BYTES
    right = tmp_path / "cap.txt"
    right.write_bytes(b"x" * MAX_SECRET_FILE_BYTES)
    assert check_ref(parse_ref("file:cap.txt"), SecretContext(base_dir=tmp_path)) is None


def test_regression_render_masks_a_sheet_secret_pasted_into_another_payload_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = _unique("render-token")
    monkeypatch.setenv("RENDER_TOKEN", value + "\n")
    sheet = tmp_path / "in.csv"
    sheet.write_text("group_id,schema,sync_mode,access_token,external_secrets_manager_id\n"
                     f"{GROUP},tt_a,AllAccounts,env:RENDER_TOKEN,{value}\n", encoding="utf-8")
    [line] = bp.render(sheet)
    assert value not in json.dumps(line)
    assert line["payload"]["external_secrets_manager_id"] == MASK
    assert line["payload"]["auth"] == {"access_token": MASK}
