"""A run's record of what it created is true: named regressions for each case of the issue.

Against the sandbox (a thread) or a strict stand-in of the API (``httpx.MockTransport``) where
a case needs an answer the sandbox cannot give on demand.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.models import Outcome, Status
from batch_provisioner.report.results import write_results
from batch_provisioner.run import lifecycle as lc
from batch_provisioner.run.journal import load
from batch_provisioner.run.lock import RunLock
from batch_provisioner.run.operations import rollback
from batch_provisioner.run.ownership import Reservations
from batch_provisioner.run.rollback import rollback_candidates
from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import load as load_sheet, run_job, settings

GROUP = "decent_dropsy"
HEADER = ["group_id", "schema", "sync_mode", "access_token", "redirect_uri", "sync_frequency"]


def sheet(path: Path, schemas: list[str], *, token: str = "env:TT_TOKEN",
          card: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for schema in schemas:
            writer.writerow([GROUP, schema, "AllAccounts", "" if card else token,
                             "https://agency.example/done" if card else "", "1440"])
    return path


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class StandIn:
    """A strict stand-in of the API: one group, scripted create answers, real state."""

    def __init__(self, creates: list[Callable[[dict[str, Any]], httpx.Response]],
                 lookups_fail: int = 0) -> None:
        self.creates = creates
        self.lookups_fail = lookups_fail
        self.connections: dict[str, dict[str, Any]] = {}
        self.posts = 0

    def store(self, body: dict[str, Any], created_at: str | None = None) -> dict[str, Any]:
        conn = {"id": f"conn_{len(self.connections) + 1}", "group_id": body["group_id"],
                "service": "tiktok_ads", "schema": body["config"]["schema"],
                "created_at": created_at or now(), "status": {"setup_state": "incomplete"},
                "config": {"schema": body["config"]["schema"]}}
        self.connections[conn["id"]] = conn
        return conn

    def applied(self, body: dict[str, Any]) -> httpx.Response:
        return envelope(201, self.store(body))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if method == "GET" and path == f"/v1/groups/{GROUP}/connections":
            return envelope(200, {"items": list(self.connections.values())})
        if method == "GET" and path == "/v1/connections":
            if self.lookups_fail > 0:
                self.lookups_fail -= 1
                return envelope(503, None, "ServiceUnavailable")
            schema = request.url.params["schema"]
            return envelope(200, {"items": [c for c in self.connections.values()
                                            if c["schema"] == schema]})
        if method == "POST" and path == "/v1/connections":
            body = json.loads(request.content)
            answer = self.creates[min(self.posts, len(self.creates) - 1)]
            self.posts += 1
            return answer(body)
        if method == "POST" and path.endswith("/connect-card"):
            return envelope(200, {"connect_card": {"uri": "https://fivetran.example/card/1"}})
        raise AssertionError(f"unexpected {method} {path}")


def envelope(status: int, data: Any, code: str = "Success") -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": code}
    if data is not None:
        body["data"] = data
    return httpx.Response(status, json=body)


def lost_then(api: StandIn, created_at: Callable[[], str],
               sync_frequency: int | None = None) -> Callable[[dict[str, Any]], httpx.Response]:
    """Another tool's create lands under the key, and our create's answer is lost."""
    def answer(body: dict[str, Any]) -> httpx.Response:
        conn = api.store(body, created_at=created_at())
        if sync_frequency is not None:
            conn["sync_frequency"] = sync_frequency
        raise httpx.ReadTimeout("lost", request=httpx.Request("POST", "http://x"))
    return answer


def not_claimed(tmp_path: Path, created_at: Callable[[], str],
                sync_frequency: int | None = None) -> Outcome:
    """The one row's outcome when another tool's create lands under its key (made at
    ``created_at``) and our create's answer is lost."""
    api = StandIn([])
    api.creates = [lost_then(api, created_at, sync_frequency)]
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a"]))
    result = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                     transport=httpx.MockTransport(api), client=settings(1, max_attempts=2))
    [outcome] = result.outcomes
    assert outcome.status is Status.EXISTS and outcome.error_code == "NotClaimed"
    return outcome


# 1 -------------------------------------------------------------------------------------------

def test_regression_a_lost_answer_never_claims_an_older_connection(tmp_path: Path) -> None:
    # another tool's connection under the key, made before this run sent anything
    older = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    outcome = not_claimed(tmp_path, lambda: older)
    assert "before this run first sent it" in (outcome.error_message or "")
    state = lc.load_run(tmp_path, "run")
    assert rollback_candidates(state)[0] == []  # rollback would never delete it


def test_regression_two_runs_of_one_reports_dir_never_send_one_key(tmp_path: Path) -> None:
    first, second = Reservations(tmp_path, "run-a"), Reservations(tmp_path, "run-b")
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-a" / "journal.jsonl").write_text(json.dumps(
        {"type": "start", "row": 2, "key": [GROUP, "tt_a"], "op": "create", "t": now()}) + "\n")
    assert first.reserve((GROUP, "tt_a")).blocked_by is None
    assert second.reserve((GROUP, "tt_a")).blocked_by == "run-a"  # in doubt for run-a
    assert second.reserve((GROUP, "tt_b")).blocked_by is None


# 2 -------------------------------------------------------------------------------------------

def test_regression_resume_matches_rows_by_key_not_row_number(box: SandboxHandle,
                                                              tmp_path: Path) -> None:
    first = run_job(load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b"])), box.url,
                    tmp_path / "R")
    ids = {o.schema: o.connection_id for o in first.outcomes}
    moved = load_sheet(sheet(tmp_path / "moved.csv", ["tt_new", "tt_a", "tt_b"]))
    again = run_job(moved, box.url, tmp_path / "R", force=True)
    by_schema = {o.schema: o for o in again.outcomes}
    assert by_schema["tt_new"].status is Status.CREATED
    assert by_schema["tt_new"].connection_id not in ids.values()
    assert {s: by_schema[s].connection_id for s in ids} == ids
    assert [o.row for o in again.outcomes] == [2, 3, 4]


# 3, 4 ----------------------------------------------------------------------------------------

def test_regression_a_lost_answer_whose_lookups_failed_is_created_on_resume(
        tmp_path: Path) -> None:
    api = StandIn([], lookups_fail=10)
    api.creates = [lost_then(api, now)]
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a"]))
    first = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                    transport=httpx.MockTransport(api), client=settings(1, max_attempts=2))
    assert first.outcomes[0].status is Status.FAILED and first.outcomes[0].in_doubt
    api.lookups_fail = 0
    resumed = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                      transport=httpx.MockTransport(api), client=settings(1))
    [outcome] = resumed.outcomes
    assert outcome.status is Status.CREATED and outcome.reconciled  # ours, not "exists"
    assert api.posts == 1  # looked up, never resent
    # 4: the outcome the resume settled is journaled: rollback sees a claim, nothing in flight
    state = lc.load_run(tmp_path, "run")
    claimed, _earlier, in_flight = rollback_candidates(state)
    assert [r.connection_id for r in claimed] == ["conn_1"] and in_flight == []


# 5 -------------------------------------------------------------------------------------------

def test_regression_a_finished_row_stays_created_when_its_secret_is_gone(
        box: SandboxHandle, tmp_path: Path) -> None:
    path = sheet(tmp_path / "in.csv", ["tt_a"])
    first = run_job(load_sheet(path), box.url, tmp_path / "run")
    no_token = {"OTHER": "x"}  # TT_TOKEN unset in this shell
    resumed = run_job(load_sheet(path, env=no_token), box.url, tmp_path / "run")
    [outcome] = resumed.outcomes
    assert outcome.status is Status.CREATED
    assert outcome.connection_id == first.outcomes[0].connection_id
    assert "now invalid" in (outcome.error_message or "")
    assert resumed.summary["counts"]["invalid"] == 0 and resumed.exit_code is ExitCode.OK


# 6 -------------------------------------------------------------------------------------------

def test_regression_a_401_row_is_retried_after_the_credentials_are_fixed(tmp_path: Path) -> None:
    api = StandIn([lambda body: envelope(401, None, "AuthFailed")])
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a"]))
    first = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                    transport=httpx.MockTransport(api))
    assert first.exit_code is ExitCode.FATAL_API
    api.creates = [api.applied]
    fixed = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                    transport=httpx.MockTransport(api))
    assert fixed.outcomes[0].status is Status.CREATED and fixed.exit_code is ExitCode.OK


# 7 -------------------------------------------------------------------------------------------

def test_regression_the_report_covers_every_invocation(box: SandboxHandle, tmp_path: Path) -> None:
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b", "tt_c"]))
    first = run_job(prepared, box.url, tmp_path / "run")
    second = run_job(prepared, box.url, tmp_path / "run")  # nothing left to do
    summary = second.summary
    assert len(summary["invocations"]) == 2
    assert summary["calls"] == first.summary["calls"] + summary["invocations"][1]["calls"]
    assert summary["calls"] > 0 and summary["started_at"] == first.summary["started_at"]
    assert summary["active_seconds"] >= first.summary["active_seconds"]
    assert summary["counts"]["created"] == 3


# 8 -------------------------------------------------------------------------------------------

def test_regression_a_reconciled_connect_card_row_gets_its_link(tmp_path: Path) -> None:
    api = StandIn([])
    api.creates = [lost_then(api, now)]
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_card"], card=True))
    result = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                     transport=httpx.MockTransport(api), client=settings(1))
    [outcome] = result.outcomes
    assert outcome.status is Status.CREATED and outcome.reconciled
    assert outcome.connect_card_uri == "https://fivetran.example/card/1"


# 9 -------------------------------------------------------------------------------------------

def test_regression_two_runs_cannot_both_take_over_a_stale_lock(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lock").write_text(json.dumps({"pid": 999_999_999, "host": "gone"}))
    barrier = threading.Barrier(8)
    won: list[RunLock] = []
    refused: list[InputError] = []

    def take() -> None:
        barrier.wait()
        try:
            won.append(RunLock(run_dir).acquire())
        except InputError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 7
    won[0].release()


# 11 ------------------------------------------------------------------------------------------

def test_regression_a_failed_lookup_keeps_the_creates_error(tmp_path: Path) -> None:
    api = StandIn([lambda body: envelope(503, None, "ServiceUnavailable")], lookups_fail=99)
    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a"]))
    result = run_job(prepared, "http://api.test", tmp_path / "run", adopt=False,
                     transport=httpx.MockTransport(api), client=settings(1, max_attempts=2))
    [outcome] = result.outcomes
    message = outcome.error_message or ""
    assert outcome.status is Status.FAILED and outcome.in_doubt
    assert message.startswith("POST /v1/connections") and "may have landed" in message
    assert set(load(tmp_path / "run").started) == {(GROUP, "tt_a")}  # still in doubt


# rollback ------------------------------------------------------------------------------------

def test_regression_rollback_deletes_only_what_still_matches_its_claim(
        box: SandboxHandle, tmp_path: Path) -> None:
    result = run_job(load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b", "tt_c"])),
                     box.url, tmp_path / "run")
    ids = {o.schema: o.connection_id for o in result.outcomes}
    httpx.delete(f"{box.url}/v1/connections/{ids['tt_b']}", auth=box.auth)  # gone since
    journal = tmp_path / "run" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    tampered = []
    for line in lines:  # the claim on tt_c says another created_at: not provably the same
        record = json.loads(line)
        if record.get("type") == "outcome" and record.get("schema") == "tt_c":
            record["created_at"] = "2001-01-01T00:00:00Z"
        tampered.append(json.dumps(record))
    journal.write_text("\n".join(tampered) + "\n")
    done = rollback("run", reports_dir=tmp_path, sandbox_url=box.url)
    by_schema = {o.schema: o for o in done.outcomes}
    assert done.deleted_now == 1 and by_schema["tt_a"].status is Status.ROLLED_BACK
    assert done.already_gone == 1 and by_schema["tt_b"].error_code == "AlreadyGone"
    assert done.not_provably_ours == 1 and "not provably ours" in (
        by_schema["tt_c"].error_message or "")
    listed = httpx.get(f"{box.url}/v1/groups/{GROUP}/connections", auth=box.auth).json()
    assert [c["id"] for c in listed["data"]["items"]] == [ids["tt_c"]]  # left, not deleted
    assert done.exit_code is ExitCode.ROWS_FAILED
    assert pl.read_csv(tmp_path / "run" / "rollback" / "results.csv").height == 3


def test_regression_report_html_shows_every_invocation(box: SandboxHandle,
                                                       tmp_path: Path) -> None:
    import batch_provisioner as bp

    prepared = load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b"]))
    target = bp.Target(bp.ApiCredentials("sandbox", "sandbox", box.url), True)
    first = bp.apply(prepared, target=target, reports_dir=tmp_path, run_id="two")
    again = bp.apply(prepared, target=target, reports_dir=tmp_path, run_id="two")
    page = (tmp_path / "two" / "report.html").read_text()
    # the resume had nothing to send: the page still shows the first invocation's calls
    assert again.summary["calls"] == first.summary["calls"] > 0
    assert len(again.summary["invocations"]) == 2
    assert "<h2>Invocations</h2>" in page and "No requests were sent" not in page
    assert f"<td>API calls</td><td><b>{first.summary['calls']}</b>" in page


def test_regression_a_lost_answer_never_claims_a_connection_with_other_settings(
        tmp_path: Path) -> None:
    outcome = not_claimed(tmp_path, now, sync_frequency=60)  # inside the window, not ours
    assert "settings differ" in (outcome.error_message or "")


def test_regression_a_lost_answer_never_claims_one_made_after_it_could_have_landed(
        tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    outcome = not_claimed(tmp_path, lambda: later)
    assert "after any create of this run could have landed" in (outcome.error_message or "")


def test_regression_a_key_another_run_has_in_doubt_is_not_sent(box: SandboxHandle,
                                                               tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "journal.jsonl").write_text(json.dumps(
        {"type": "start", "row": 2, "key": [GROUP, "tt_a"], "op": "create", "t": now()}) + "\n")
    assert Reservations(tmp_path, "other").reserve((GROUP, "tt_a")).blocked_by is None
    result = run_job(load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b"])), box.url,
                     tmp_path / "mine")
    by_schema = {o.schema: o for o in result.outcomes}
    assert by_schema["tt_a"].status is Status.CONFLICT
    assert by_schema["tt_a"].error_code == "ReservedByRun"
    assert "run other" in (by_schema["tt_a"].error_message or "")
    assert by_schema["tt_b"].status is Status.CREATED
    posted = [e for e in box.ledger()["requests"] if e["method"] == "POST"]
    assert [e["schema"] for e in posted] == ["tt_b"]  # tt_a was never sent


def test_regression_rollback_finds_every_claim_after_the_sheet_was_edited(
        box: SandboxHandle, tmp_path: Path) -> None:
    first = run_job(load_sheet(sheet(tmp_path / "in.csv", ["tt_a", "tt_b", "tt_c"])), box.url,
                    tmp_path / "Z")
    # a schema "typo" fixed and a row removed, resumed under the same run id
    edited = load_sheet(sheet(tmp_path / "edited.csv", ["tt_b2", "tt_c"]))
    resumed = run_job(edited, box.url, tmp_path / "Z", force=True)
    write_results(tmp_path / "Z", edited, resumed.outcomes, resumed.summary)  # as apply does
    claimed = {o.connection_id for o in first.outcomes} | {
        o.connection_id for o in load(tmp_path / "Z").outcomes.values()
        if o.status is Status.CREATED}
    done = rollback("Z", reports_dir=tmp_path, sandbox_url=box.url)
    assert done.deleted_now == len(claimed) == 4  # tt_a, tt_b, tt_c and tt_b2
    listed = httpx.get(f"{box.url}/v1/groups/{GROUP}/connections", auth=box.auth).json()
    assert listed["data"]["items"] == []
    lines = pl.read_csv(tmp_path / "Z" / "rollback" / "results.csv")
    assert sorted(lines.get_column("schema").to_list()) == ["tt_a", "tt_b", "tt_b2", "tt_c"]
