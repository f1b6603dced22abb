"""Status → outcome table for one create (meltano style), over httpx.MockTransport."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Status
from tests.apply_helpers import load, run_job, settings, write_sheet

PAST_DATE = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
FOUND = {"id": "found_conn", "schema": "tt_00000", "group_id": "decent_dropsy",
         "service": "tiktok_ads", "status": {"setup_state": "connected"}}


def found_now() -> dict[str, Any]:
    """The connection our lost create made: created after the send, as the API stamps it."""
    return {**FOUND, "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def _json(status: int, code: str, message: str = "", data: Any = None,
          headers: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return httpx.Response(status, json=body, headers=headers)


def created() -> httpx.Response:
    return _json(201, "Success", "created", {"id": "new_conn", "schema": "tt_00000",
                                            "status": {"setup_state": "connected"}})


# name: (answers to successive POSTs, lookup finds it?, expected status, attempts, extra checks)
CASES: dict[str, tuple[list[Any], bool, Status, int, dict[str, Any]]] = {
    "201": ([created], False, Status.CREATED, 1, {"connection_id": "new_conn"}),
    "400": ([lambda: _json(400, "InvalidInput", "Field 'config.schema' is invalid")], False,
            Status.FAILED, 1, {"http_status": 400, "error_code": "InvalidInput"}),
    "401": ([lambda: httpx.Response(401, text="unauthorized")], False, Status.FAILED, 1,
            {"http_status": 401, "exit": ExitCode.FATAL_API}),
    "403": ([lambda: _json(403, "Forbidden", "no access")], False, Status.FAILED, 1,
            {"http_status": 403, "exit": ExitCode.FATAL_API}),
    "404": ([lambda: _json(404, "NotFound_Group", "Group not found")], False, Status.FAILED, 1,
            {"error_code": "NotFound_Group"}),
    "409": ([lambda: _json(409, "Conflict", "schema exists")], True, Status.EXISTS, 1,
            {"connection_id": "found_conn"}),
    "429 seconds": ([lambda: _json(429, "TooManyRequests", "slow down",
                                   headers={"Retry-After": "0"}), created], False,
                    Status.CREATED, 2, {}),
    "429 http date": ([lambda: _json(429, "TooManyRequests", "slow down",
                                     headers={"Retry-After": PAST_DATE}), created], False,
                      Status.CREATED, 2, {}),
    "500 applied": ([lambda: _json(500, "InternalError", "boom")], True, Status.CREATED, 1,
                    {"reconciled": True, "connection_id": "found_conn"}),
    "500 not applied": ([lambda: _json(500, "InternalError", "boom"), created], False,
                        Status.CREATED, 2, {"reconciled": False}),
    "502": ([lambda: httpx.Response(502, text="bad gateway"), created], False,
            Status.CREATED, 2, {}),
    "503 applied": ([lambda: _json(503, "Unavailable", "later")], True, Status.CREATED, 1,
                    {"reconciled": True}),
    "read timeout after send": ([httpx.ReadTimeout("timed out")], True, Status.CREATED, 1,
                                {"reconciled": True}),
    "reset after send": ([httpx.RemoteProtocolError("closed")], False, Status.FAILED, 3,
                         {"error_code": "Ambiguous"}),
    "connect error before send": ([httpx.ConnectError("refused"), created], False,
                                  Status.CREATED, 2, {"lookups": 0}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_status_to_outcome(tmp_path: Path, name: str) -> None:
    answers, found, expected, attempts, extra = CASES[name]
    posts: list[int] = []
    lookups: list[str] = []
    applied = {"done": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/v1/groups/"):
            return _json(200, "Success", data={"items": []})
        if request.method == "GET" and request.url.path == "/v1/connections":
            lookups.append(request.url.params["schema"])
            items = [found_now()] if (found and posts) else []
            return _json(200, "Success", data={"items": items})
        assert request.method == "POST"
        json.loads(request.content)
        posts.append(1)
        answer = answers[min(len(posts), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        applied["done"] = True
        return answer()

    sheet = load(write_sheet(tmp_path / "in.csv", 1))
    result = run_job(sheet, "http://api.test", tmp_path / "run", adopt=False,
                     transport=httpx.MockTransport(handler), client=settings(1, max_attempts=3))
    outcome = result.outcomes[0]
    assert outcome.status is expected, outcome
    assert outcome.attempts == attempts
    for key, value in extra.items():
        if key == "exit":
            assert result.exit_code is value
        elif key == "lookups":
            assert len(lookups) == value
        else:
            assert getattr(outcome, key) == value, key
    if expected is Status.CREATED and extra.get("reconciled"):
        assert lookups == ["tt_00000"]  # looked up before any retry


def test_retry_after_longer_than_max_wait_stops_the_run_resumably(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return _json(200, "Success", data={"items": []})
        return _json(429, "TooManyRequests", "wait an hour", headers={"Retry-After": "7200"})

    sheet = load(write_sheet(tmp_path / "in.csv", 3))
    result = run_job(sheet, "http://api.test", tmp_path / "run", adopt=False,
                     transport=httpx.MockTransport(handler),
                     client=settings(2, max_attempts=3, max_wait=60.0))
    assert {o.status for o in result.outcomes} == {Status.NOT_ATTEMPTED}
    assert all("max-wait" in (o.error_message or "") for o in result.outcomes)
    assert {o.error_code for o in result.outcomes} == {"max_wait"}
    assert result.exit_code is ExitCode.INTERRUPTED
