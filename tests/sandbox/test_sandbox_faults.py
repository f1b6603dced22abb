"""Fault injection: the spec, seeded determinism, scripts, and each fault over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from batch_provisioner.sandbox.faults import (
    FaultInjector,
    FaultSpec,
    ScriptedFault,
    parse_fault_spec,
)

from .helpers import create, make_payload

# --- the spec -------------------------------------------------------------------------------


def test_spec_parses_probabilities_latency_and_slow_ms() -> None:
    spec = parse_fault_spec("503=0.1, reset=0.05,latency_ms=5..20,429=0.2,slow_ms=4000")

    assert spec.probabilities == (("429", 0.2), ("503", 0.1), ("reset", 0.05))
    assert spec.latency_ms == (5.0, 20.0)
    assert spec.slow_ms == 4000
    assert parse_fault_spec(spec.describe()) == spec
    assert parse_fault_spec("") == FaultSpec()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("teapot=0.1", "unknown fault 'teapot'"),
        ("503=1.5", "within [0, 1]"),
        ("503=0.7,500=0.4", "more than 1"),
        ("503", "not NAME=VALUE"),
        ("503=often", "not a number"),
        ("latency_ms=20..5", "reversed"),
        ("slow_ms=-1", "must not be negative"),
    ],
)
def test_spec_errors_are_explained(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_fault_spec(text)


# --- the injector ---------------------------------------------------------------------------


def _draws(injector: FaultInjector, requests: list[tuple[str, str]]) -> list[str | None]:
    return [
        injector.choose(method, "/p", "/p", identity, {}, is_create=True).fault
        for method, identity in requests
    ]


def test_same_seed_gives_the_same_faults_and_another_seed_others() -> None:
    spec = parse_fault_spec("500=0.2,503=0.2,reset=0.1,slow=0.1")
    requests = [("POST", f"g/s{n % 7}") for n in range(60)]

    first = _draws(FaultInjector(spec, 7), requests)
    again = _draws(FaultInjector(spec, 7), requests)
    other = _draws(FaultInjector(spec, 8), requests)

    assert first == again
    assert first != other
    assert {"500", "503", "reset", "slow", None} <= set(first)


def test_fault_of_a_request_does_not_depend_on_interleaving() -> None:
    spec = parse_fault_spec("503=0.5")
    a = [("POST", "g/a")] * 5
    b = [("POST", "g/b")] * 5

    separate = _draws(FaultInjector(spec, 1), a + b)
    interleaved = _draws(
        FaultInjector(spec, 1), [r for pair in zip(b, a, strict=True) for r in pair]
    )

    assert separate[:5] == interleaved[1::2]  # identity a's 1st..5th requests
    assert separate[5:] == interleaved[0::2]  # identity b's


def test_probabilities_are_honoured_over_many_draws() -> None:
    injector = FaultInjector(parse_fault_spec("503=0.3,500=0.1"), 5)

    draws = _draws(injector, [("GET", f"/v1/connections/c{n}") for n in range(4000)])

    assert 0.27 < draws.count("503") / 4000 < 0.33
    assert 0.08 < draws.count("500") / 4000 < 0.12


def test_drop_after_commit_only_applies_to_creates_and_latency_is_drawn() -> None:
    injector = FaultInjector(parse_fault_spec("drop_after_commit=1,latency_ms=10..30"), 0)

    on_create = injector.choose(
        "POST", "/v1/connections", "/v1/connections", "g/s", {}, is_create=True
    )
    on_get = injector.choose("GET", "/v1/groups", "/v1/groups", "/v1/groups", {}, is_create=False)

    assert on_create.fault == "drop_after_commit" and on_get.fault is None
    assert 0.010 <= on_create.latency_s <= 0.030 and 0.010 <= on_get.latency_s <= 0.030


def test_scripted_faults_match_in_order_and_are_consumed() -> None:
    injector = FaultInjector(FaultSpec(), 0)
    injector.add_script(
        [
            ScriptedFault("503", "POST", "/v1/connections", {"schema": "b"}, times=2),
            ScriptedFault("reset", None, "/v1/connections/{id}"),
        ]
    )

    def pick(method: str, path: str, template: str, schema: str | None) -> str | None:
        facts = {"schema": schema}
        return injector.choose(method, path, template, path, facts, is_create=False).fault

    create_path = "/v1/connections"
    assert pick("POST", create_path, create_path, "a") is None
    assert pick("POST", create_path, create_path, "b") == "503"
    assert pick("GET", "/v1/connections/x", "/v1/connections/{id}", None) == "reset"
    assert pick("GET", "/v1/connections/x", "/v1/connections/{id}", None) is None
    assert pick("POST", create_path, create_path, "b") == "503"
    assert pick("POST", create_path, create_path, "b") is None
    assert injector.describe()["script"] == []


@pytest.mark.parametrize(
    "entry",
    [
        {"fault": "nope"},
        {"fault": "503", "times": 0},
        {"fault": "503", "match": {"schema": 1}},
        "503",
    ],
)
def test_bad_script_entries_are_refused(entry: Any) -> None:
    with pytest.raises(ValueError, match="script"):
        ScriptedFault.from_json(entry)


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[SandboxHandle]:
    """Overrides conftest's: no create budget and short slow answers (conftest's ``sandbox``
    and ``client`` fixtures reset it and talk to it)."""
    with run_in_thread(create_limit=0, slow_ms=1500) as handle:
        yield handle


def _exists(client: httpx.Client, schema: str) -> bool:
    items = client.get("/v1/connections", params={"group_id": "decent_dropsy", "schema": schema})
    return len(items.json()["data"]["items"]) == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("429", 429, "TooManyRequests"),
        ("429_date", 429, "TooManyRequests"),
        ("500", 500, "InternalServerError"),
        ("502", 502, "BadGateway"),
        ("503", 503, "ServiceUnavailable"),
    ],
)
def test_answering_faults_apply_nothing(
    sandbox: SandboxHandle, client: httpx.Client, fault: str, status: int, code: str
) -> None:
    sandbox.script([{"method": "POST", "path": "/v1/connections", "fault": fault}])

    answer = create(client, "victim")

    assert answer.status_code == status
    assert answer.json()["code"] == code and "data" not in answer.json()
    assert not _exists(client, "victim")
    assert sandbox.ledger()["requests"][0]["fault"] == fault
    if fault == "429":
        assert answer.headers["Retry-After"] == "1"
    if fault == "429_date":
        ahead = parsedate_to_datetime(answer.headers["Retry-After"]) - datetime.now(UTC)
        assert 0 < ahead.total_seconds() <= 5


def test_reset_is_a_transport_error_and_applies_nothing(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    sandbox.script([{"method": "POST", "path": "/v1/connections", "fault": "reset"}])

    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        create(client, "victim")

    assert not _exists(client, "victim")
    request = sandbox.ledger()["requests"][0]
    assert (request["fault"], request["status"]) == ("reset", None)


def test_drop_after_commit_is_a_transport_error_but_creates(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    sandbox.script(
        [{"path": "/v1/connections", "fault": "drop_after_commit", "match": {"schema": "victim"}}]
    )

    assert create(client, "bystander").status_code == 201
    with pytest.raises(httpx.TransportError):
        create(client, "victim")

    assert _exists(client, "victim")
    ledger = sandbox.ledger()
    assert ledger["counts"]["creations"] == 2
    assert {
        "group_id": "decent_dropsy",
        "schema": "victim",
        "attempts": 1,
        "creations": 1,
    } in ledger["creates"]
    assert [r["status"] for r in ledger["requests"][:2]] == [201, None]


def test_slow_answer_outlasts_a_short_read_timeout_but_applies(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    sandbox.script([{"method": "POST", "path": "/v1/connections", "fault": "slow"}])

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/connections", json=make_payload("victim"), timeout=httpx.Timeout(10, read=0.3)
        )

    assert _exists(client, "victim")
    assert sandbox.ledger()["requests"][0]["fault"] == "slow"


def test_slow_answer_arrives_for_a_patient_client(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    sandbox.set_faults("slow_ms=200")
    sandbox.script([{"method": "GET", "path": "/v1/groups", "fault": "slow"}])

    answer = client.get("/v1/groups")

    assert answer.status_code == 200
    assert sandbox.ledger()["requests"][0]["status"] == 200


def test_script_times_clear_and_runtime_spec_swap(
    sandbox: SandboxHandle, client: httpx.Client
) -> None:
    sandbox.script([{"method": "GET", "path": "/v1/groups", "fault": "503", "times": 2}])
    assert [client.get("/v1/groups").status_code for _ in range(3)] == [503, 503, 200]

    sandbox.script([{"fault": "500", "times": 5}])
    sandbox.script([], clear=True)
    assert client.get("/v1/groups").status_code == 200

    sandbox.set_faults("503=1", seed=3)
    assert client.get("/v1/groups").status_code == 503
    assert client.get("/sandbox/health").status_code == 200  # /sandbox is never faulted
    sandbox.set_faults("")
    assert client.get("/v1/groups").status_code == 200


def _fault_sequence(seed: int, schemas: list[str], concurrent: bool) -> dict[str, list[str | None]]:
    with (
        run_in_thread(create_limit=0, faults="500=0.25,503=0.25", seed=seed) as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        if concurrent:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda s: create(client, s), schemas))
        else:
            for schema in schemas:
                create(client, schema)
        per_schema: dict[str, list[str | None]] = {}
        for request in sandbox.ledger()["requests"]:
            per_schema.setdefault(request["schema"], []).append(request["fault"])
        return per_schema


def test_two_sandboxes_with_the_same_seed_give_the_same_faults() -> None:
    schemas = [f"s{n % 12}" for n in range(48)]  # each schema asked 4 times

    sequential = _fault_sequence(21, schemas, concurrent=False)
    concurrent = _fault_sequence(21, list(reversed(schemas)), concurrent=True)
    other_seed = _fault_sequence(22, schemas, concurrent=False)

    assert sequential == concurrent
    assert sequential != other_seed
    assert {f for faults in sequential.values() for f in faults} == {"500", "503", None}


def test_latency_makes_concurrent_requests_overlap_in_the_ledger() -> None:
    with (
        run_in_thread(faults="latency_ms=300..300") as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get("/v1/groups").status_code, range(4)))
        ledger = sandbox.ledger()

    assert statuses == [200] * 4
    assert ledger["max_in_flight"] >= 2
    assert ledger["max_in_flight"] == max(r["in_flight"] for r in ledger["requests"])


def test_stopping_the_sandbox_releases_a_held_slow_answer() -> None:
    with ThreadPoolExecutor(1) as pool:
        with run_in_thread(slow_ms=60_000) as sandbox:
            sandbox.script([{"path": "/v1/groups", "fault": "slow"}])

            def call() -> int:
                with httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as c:
                    return c.get("/v1/groups", timeout=120).status_code

            pending = pool.submit(call)
            while not sandbox.ledger()["requests"]:
                time.sleep(0.01)
        status = pending.result()

    assert status == 200
