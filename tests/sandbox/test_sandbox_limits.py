"""Rolling-window budgets: the limiter on a fake clock, the app on a fake clock, and HTTP."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from batch_provisioner.sandbox import SandboxApp, SandboxConfig, run_in_thread
from batch_provisioner.sandbox.limits import (
    APPLIES_TO_ALL,
    APPLIES_TO_CREATE,
    Budget,
    RateLimiter,
    build_budgets,
    limits_document,
)

from .helpers import create, make_payload


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _budget(limit: int, window: float, applies_to: str = APPLIES_TO_ALL, name: str = "b") -> Budget:
    return Budget(name, limit, window, applies_to, f"{name} exhausted")


def test_limits_document_shape_for_the_fast_profile() -> None:
    assert limits_document("fast", build_budgets("fast", 20)) == {
        "profile": "fast",
        "window_scale": 60,
        "budgets": [
            {"name": "calls_per_hour", "limit": 20000, "window_seconds": 60.0, "applies_to": "all"},
            {
                "name": "creates_per_minute",
                "limit": 20,
                "window_seconds": 1.0,
                "applies_to": "create",
            },
            {
                "name": "setup_tests_per_minute",
                "limit": 250,
                "window_seconds": 1.0,
                "applies_to": "setup_test",
            },
            {
                "name": "setup_tests_per_hour",
                "limit": 2500,
                "window_seconds": 60.0,
                "applies_to": "setup_test",
            },
        ],
    }


def test_fivetran_profile_uses_documented_windows_and_create_limit_can_be_off() -> None:
    document = limits_document("fivetran", build_budgets("fivetran", 0))

    assert document["window_scale"] == 1
    assert [(b["name"], b["limit"], b["window_seconds"]) for b in document["budgets"]] == [
        ("calls_per_hour", 20000, 3600.0),
        ("setup_tests_per_minute", 250, 60.0),
        ("setup_tests_per_hour", 2500, 3600.0),
    ]
    assert build_budgets("unlimited", 20) == []
    assert [b.limit for b in build_budgets("fast", 7) if b.applies_to == APPLIES_TO_CREATE] == [7]


def test_refused_exactly_at_limit_plus_one_and_admitted_when_the_window_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter([_budget(3, 10.0)], clock)
    start = clock.now

    for offset in (0.0, 1.0, 2.0):
        clock.now = start + offset
        assert limiter.admit([APPLIES_TO_ALL]) is None
    clock.now = start + 3.0
    refused = limiter.admit([APPLIES_TO_ALL])
    assert refused is not None and refused.retry_after == 7  # oldest (t=0) leaves at t=10
    clock.now = start + 9.9
    refused = limiter.admit([APPLIES_TO_ALL])
    assert refused is not None and refused.retry_after == 1  # ceil(0.1), never below 1
    clock.now = start + 10.0
    assert limiter.admit([APPLIES_TO_ALL]) is None  # the t=0 event has left (now - 10, now]
    clock.now = start + 10.5
    refused = limiter.admit([APPLIES_TO_ALL])
    assert refused is not None and refused.retry_after == 1  # t=1 leaves at t=11


def test_refused_requests_consume_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter([_budget(2, 60.0)], clock)
    limiter.admit([APPLIES_TO_ALL])
    limiter.admit([APPLIES_TO_ALL])

    for _ in range(100):
        assert limiter.admit([APPLIES_TO_ALL]) is not None
    clock.now += 60.0

    assert limiter.admit([APPLIES_TO_ALL]) is None
    assert limiter.admit([APPLIES_TO_ALL]) is None


def test_budgets_are_checked_in_order_and_consumed_atomically() -> None:
    clock = FakeClock()
    calls = _budget(5, 60.0, APPLIES_TO_ALL, "calls")
    creates = _budget(1, 60.0, APPLIES_TO_CREATE, "creates")
    limiter = RateLimiter([calls, creates], clock)

    assert limiter.admit([APPLIES_TO_ALL, APPLIES_TO_CREATE]) is None
    refused = limiter.admit([APPLIES_TO_ALL, APPLIES_TO_CREATE])

    assert refused is not None and refused.budget is creates
    assert limiter.remaining(calls) == 4  # the refused create did not use a call
    for _ in range(4):
        assert limiter.admit([APPLIES_TO_ALL]) is None
    both_empty = limiter.admit([APPLIES_TO_ALL, APPLIES_TO_CREATE])
    assert both_empty is not None and both_empty.budget is calls  # calls are checked first


# --- the app, on a fake clock, through httpx's ASGI transport -----------------------------

AppTest = Callable[[httpx.AsyncClient, FakeClock, SandboxApp], Awaitable[None]]


def _run_app(test: AppTest, **config: Any) -> None:
    clock = FakeClock()
    app = SandboxApp(SandboxConfig(**config), clock=clock)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sandbox", auth=("sandbox", "sandbox")
        ) as client:
            await test(client, clock, app)

    try:
        anyio.run(main)
    finally:
        app.close()


def _post(client: httpx.AsyncClient, schema: str, **overrides: Any) -> Awaitable[httpx.Response]:
    return client.post("/v1/connections", json=make_payload(schema, **overrides))


def test_fast_profile_refuses_the_21st_create_in_one_second_and_admits_after_it() -> None:
    async def scenario(client: httpx.AsyncClient, clock: FakeClock, app: SandboxApp) -> None:
        for n in range(20):
            assert (await _post(client, f"s{n}")).status_code == 201
        clock.now += 0.5
        refused = await _post(client, "s20")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {
            "code": "TooManyRequests",
            "message": "No more than 20 connectors can be created in one-second time period",
        }
        clock.now += 0.5
        assert (await _post(client, "s20")).status_code == 201

    _run_app(scenario, profile="fast")


def test_fivetran_profile_create_budget_retry_after_counts_down_the_minute() -> None:
    async def scenario(client: httpx.AsyncClient, clock: FakeClock, app: SandboxApp) -> None:
        for n in range(20):
            assert (await _post(client, f"s{n}")).status_code == 201
        clock.now += 30
        refused = await _post(client, "late")
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "30")
        assert (await client.get("/v1/groups")).status_code == 200  # other calls still pass
        clock.now += 30
        assert (await _post(client, "late")).status_code == 201

    _run_app(scenario, profile="fivetran")


def test_setup_tests_budget_counts_creates_and_patches_with_auth_only() -> None:
    async def scenario(client: httpx.AsyncClient, clock: FakeClock, app: SandboxApp) -> None:
        ids = [(await _post(client, f"s{n}")).json()["data"]["id"] for n in range(250)]
        refused = await _post(client, "one_more")
        assert refused.status_code == 429
        assert (
            refused.json()["message"]
            == "Max 250 setup tests allowed in one-minute rolling time period"
        )
        assert (await _post(client, "no_tests", run_setup_tests=False)).status_code == 201
        assert (await _post(client, "no_auth", auth=None)).status_code == 201
        patch = await client.patch(
            f"/v1/connections/{ids[0]}", json={"run_setup_tests": True, "paused": True}
        )
        assert patch.status_code == 429
        plain_patch = await client.patch(f"/v1/connections/{ids[0]}", json={"paused": True})
        assert plain_patch.status_code == 200
        clock.now += 60
        assert (await _post(client, "one_more")).status_code == 201

    _run_app(scenario, profile="fivetran", create_limit=0)


def test_calls_budget_and_rate_limit_headers() -> None:
    async def scenario(client: httpx.AsyncClient, clock: FakeClock, app: SandboxApp) -> None:
        first = await client.get("/v1/groups")
        assert (first.headers["X-Rate-Limit"], first.headers["X-Rate-Limit-Remaining"]) == (
            "20000",
            "19999",
        )
        for _ in range(19_998):  # fill the hour's window without 20k round trips
            assert app.state.limiter.admit([APPLIES_TO_ALL]) is None
        last = await client.get("/v1/groups")
        assert (last.status_code, last.headers["X-Rate-Limit-Remaining"]) == (200, "0")
        clock.now += 10
        refused = await client.get("/v1/groups")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "50"
        assert (
            refused.json()["message"]
            == "Max 20000 api calls allowed in one-minute rolling time period"
        )
        unauthenticated = await client.get("/v1/groups", auth=("sandbox", "wrong"))
        assert unauthenticated.status_code == 401  # auth is checked before the budgets

    _run_app(scenario, profile="fast")


def test_unlimited_profile_has_no_budgets_or_rate_headers() -> None:
    async def scenario(client: httpx.AsyncClient, clock: FakeClock, app: SandboxApp) -> None:
        answers = [await _post(client, f"s{n}") for n in range(30)]
        assert {a.status_code for a in answers} == {201}
        assert "X-Rate-Limit" not in answers[0].headers
        assert (await client.get("/sandbox/limits")).json()["budgets"] == []

    _run_app(scenario, profile="unlimited")


# --- over a real socket ---------------------------------------------------------------------


def test_http_fivetran_profile_21st_create_in_the_minute_is_refused() -> None:
    with (
        run_in_thread(profile="fivetran") as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        statuses = [create(client, f"s{n}").status_code for n in range(20)]
        refused = create(client, "s20")
        ledger = sandbox.ledger()
        limits = sandbox.limits()

    assert statuses == [201] * 20
    assert refused.status_code == 429
    assert 58 <= int(refused.headers["Retry-After"]) <= 60
    assert ledger["counts"] == {"requests": 21, "429": 1, "creations": 20}
    assert limits["profile"] == "fivetran"


def test_http_fast_profile_refuses_a_burst_then_admits_after_retry_after() -> None:
    with (
        run_in_thread(profile="fast") as sandbox,
        httpx.Client(base_url=sandbox.url, auth=sandbox.auth, trust_env=False) as client,
    ):
        answers = []
        for n in range(200):
            answers.append(create(client, f"s{n}"))
            if answers[-1].status_code == 429:
                break
        refused = answers[-1]
        time.sleep(int(refused.headers["Retry-After"]))
        after_wait = create(client, "after_wait")

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert len(answers) - 1 >= 20  # at least the budget's 20 went through first
    assert {a.status_code for a in answers[:-1]} == {201}
    assert after_wait.status_code == 201


@pytest.mark.parametrize("profile", ["fast", "fivetran"])
def test_limits_endpoint_matches_the_profile(profile: str) -> None:
    with run_in_thread(profile=profile, create_limit=0) as sandbox:
        document = sandbox.limits()

    assert document == limits_document(profile, build_budgets(profile, 0))
    assert "creates_per_minute" not in [b["name"] for b in document["budgets"]]
