"""Planning lists what exists the cheaper way: the whole account for many groups, per group
for one or two, and falls back to per group when the account listing fails or runs long.

What a user notices: how many list calls a plan costs (the sandbox's ledger), and that the
plan itself does not change: missing groups are still row problems, existing connections
are still ``exists`` or drift, a failing group listing is still that group's retriable problem.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from batch_provisioner.api.client import FivetranClient, Page
from batch_provisioner.errors import (
    ApiError,
    FatalApiError,
    NotFoundApiError,
    RetriableApiError,
)
from batch_provisioner.models import ActionKind, ConnectionRequest, Status
from batch_provisioner.run.plan import DriftCheck, ListingStrategy, Plan, make_plan
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from tests.apply_helpers import load, run_job, settings, write_sheet

JSON = dict[str, Any]
LIST_PATH_ENDS = ("/connections", "/groups")


def _groups(n: int) -> tuple[str, ...]:
    return tuple(f"grp_{i:04d}" for i in range(n))


def _list_calls(box: SandboxHandle, since: int) -> list[str]:
    return [r["path"] for r in box.ledger(since)["requests"]
            if r["method"] == "GET" and r["path"].endswith(LIST_PATH_ENDS)]


def _plan(url: str, requests: list[ConnectionRequest], **kw: Any) -> tuple[Plan, list[JSON]]:
    async def go() -> Plan:
        from batch_provisioner.settings import ApiCredentials
        async with FivetranClient(ApiCredentials("sandbox", "sandbox", url), settings()) as c:
            return await make_plan(c, requests, drift=DriftCheck.LISTING, **kw)

    with structlog.testing.capture_logs() as logs:
        plan = anyio.run(go)
    return plan, [e for e in logs if e["event"] == "plan.listing"]


def test_many_groups_plan_from_the_account_listing_in_a_few_calls(tmp_path: Path) -> None:
    groups = _groups(40)
    sheet = load(write_sheet(tmp_path / "in.csv", 40, groups=groups))
    with run_in_thread(profile="unlimited", groups={g: g for g in groups}) as box:
        first = run_job(sheet, box.url, tmp_path / "run1")
        assert {o.status for o in first.outcomes} == {Status.CREATED}
        since = len(box.ledger()["requests"])
        with structlog.testing.capture_logs() as logs:
            second = run_job(sheet, box.url, tmp_path / "run2")
        calls = _list_calls(box, since)
    assert [o.status for o in second.outcomes] == [Status.EXISTS] * 40
    assert [o.connection_id for o in second.outcomes] == [o.connection_id for o in first.outcomes]
    assert calls == ["/v1/groups", "/v1/connections"]  # not 40 group listings
    assert len(calls) <= math.ceil(40 / 1000) + 2
    [event] = [e for e in logs if e["event"] == "plan.listing"]
    assert event["strategy"] == "account" and event["groups"] == 40 and event["calls"] == 2
    assert second.plan is not None and second.plan.list_calls == 2


def test_one_group_is_listed_on_its_own(tmp_path: Path) -> None:
    sheet = load(write_sheet(tmp_path / "in.csv", 5, groups=("decent_dropsy",)))
    with run_in_thread(profile="unlimited") as box:
        plan, [event] = _plan(box.url, sheet.requests)
        calls = _list_calls(box, 0)
    assert calls == ["/v1/groups/decent_dropsy/connections"]
    assert event["strategy"] == "per_group" and event["calls"] == 1
    assert plan.listing is ListingStrategy.PER_GROUP and plan.list_calls == 1
    assert plan.count(ActionKind.CREATE) == 5


def test_a_missing_group_is_still_a_row_problem_with_the_account_listing(
        tmp_path: Path) -> None:
    groups = (*_groups(5), "no_such_group")
    sheet = load(write_sheet(tmp_path / "in.csv", 12, groups=groups))
    with run_in_thread(profile="unlimited", groups={g: g for g in groups[:-1]}) as box:
        plan, [event] = _plan(box.url, sheet.requests)
        calls = _list_calls(box, 0)
        result = run_job(sheet, box.url, tmp_path / "run")
    assert event["strategy"] == "account" and event["listed_alone"] == 1
    # the group the groups listing does not show is listed on its own: its 404 says so
    assert calls == ["/v1/groups", "/v1/connections", "/v1/groups/no_such_group/connections"]
    missing = {r.row for r in sheet.requests if r.group_id == "no_such_group"}
    assert set(plan.group_problems) == missing
    for problem in plan.group_problems.values():
        assert problem.message == "group 'no_such_group' does not exist"
        assert problem.code == "NotFound_Group" and problem.http_status == 404
        assert not problem.retriable
    by_status = {(o.group_id == "no_such_group", o.status) for o in result.outcomes}
    assert by_status == {(False, Status.CREATED), (True, Status.FAILED)}
    assert {o.error_code for o in result.outcomes if o.status is Status.FAILED} == {
        "NotFound_Group"}


def test_group_names_are_resolved_and_checked_with_one_groups_listing(tmp_path: Path) -> None:
    groups = _groups(4)
    sheet_path = write_sheet(tmp_path / "in.csv", 8, groups=groups)
    text = sheet_path.read_text().replace("group_id,", "group_name,", 1)
    (tmp_path / "names.csv").write_text(text)
    named = load(tmp_path / "names.csv")
    with run_in_thread(profile="unlimited",
                       groups={f"id_{g}": g for g in groups}) as box:
        plan, [event] = _plan(box.url, named.requests)
        calls = _list_calls(box, 0)
    assert calls == ["/v1/groups", "/v1/connections"]  # the groups listed once, not twice
    assert event["strategy"] == "account" and plan.list_calls == 2
    assert {a.request.group_id for a in plan.actions} == {f"id_{g}" for g in groups}
    assert plan.count(ActionKind.CREATE) == 8


def test_existing_connections_are_exists_or_drift_from_the_account_listing(
        tmp_path: Path) -> None:
    groups = _groups(6)
    sheet = load(write_sheet(tmp_path / "in.csv", 12, groups=groups))
    with run_in_thread(profile="unlimited", groups={g: g for g in groups}) as box:
        run_job(sheet, box.url, tmp_path / "run1")
        changed = tmp_path / "changed.csv"
        lines = (tmp_path / "in.csv").read_text().splitlines()
        # the first data row asks for a 6-hourly sync now: drift, seen in the listing
        lines[1] = lines[1].replace(",1440,", ",360,")
        changed.write_text("\n".join(lines) + "\n")
        plan, [event] = _plan(box.url, load(changed).requests)
        second = run_job(load(changed), box.url, tmp_path / "run2")
    assert event["strategy"] == "account"
    kinds = [a.kind for a in plan.actions]
    assert kinds == [ActionKind.DRIFT] + [ActionKind.EXISTS] * 11
    assert "sync_frequency" in plan.actions[0].detail
    assert len(plan.existing) == 12
    assert [o.status for o in second.outcomes] == [Status.EXISTS] * 12
    assert second.outcomes[0].error_code == "Drift"


def test_an_account_listing_answering_500_falls_back_to_per_group(tmp_path: Path) -> None:
    groups = _groups(4)
    sheet = load(write_sheet(tmp_path / "in.csv", 8, groups=groups))
    with run_in_thread(profile="unlimited", groups={g: g for g in groups}) as box:
        # rows 2 and 3 exist already
        run_job(sheet, box.url, tmp_path / "run1", rows=frozenset({2, 3}), rows_text="2-3")
        since = len(box.ledger()["requests"])
        box.script([{"fault": "500", "method": "GET", "path": "/v1/connections", "times": 50}])
        plan, [event] = _plan(box.url, sheet.requests)
        calls = _list_calls(box, since)
    assert event["strategy"] == "per_group" and event["log_level"] == "warning"
    assert "the account listing failed" in event["reason"] and "500" in event["reason"]
    assert calls[0] == "/v1/groups" and set(calls[1:-4]) == {"/v1/connections"}
    assert sorted(calls[-4:]) == [f"/v1/groups/{g}/connections" for g in groups]
    assert plan.list_calls == 2 + 4  # the failed listing counts once, its retries do not
    assert [a.kind for a in plan.actions] == [ActionKind.EXISTS] * 2 + [ActionKind.CREATE] * 6


# -- an in-process fake: account listings that fail or run long ----------------------------

def _requests(groups: tuple[str, ...]) -> list[ConnectionRequest]:
    return [ConnectionRequest(row=i + 2, group_id=g, group_name=None, schema=f"s_{g}",
                              payload={"service": "tiktok_ads", "group_id": g,
                                       "config": {"schema": f"s_{g}"}})
            for i, g in enumerate(groups)]


class FakeApi:
    """The listings planning uses, in memory, with page size ``page`` and a call log."""

    def __init__(self, groups: tuple[str, ...], connections: list[JSON], *, page: int = 1000,
                 account_error: Callable[[], ApiError] | None = None,
                 failing_group: str | None = None) -> None:
        self.groups = [{"id": g, "name": g} for g in groups]
        self.connections = connections
        self.page = page
        self.account_error = account_error
        self.failing_group = failing_group
        self.connections_of: list[JSON] | None = None  # what group listings see, if not that
        self.calls: list[str] = []

    async def _pages(self, path: str, items: list[JSON]) -> AsyncGenerator[Page, None]:
        for start in range(0, max(1, len(items)), self.page):
            self.calls.append(path)
            await anyio.lowlevel.checkpoint()
            if path == "/v1/connections" and self.account_error is not None:
                raise self.account_error()
            yield Page(items[start:start + self.page], last=start + self.page >= len(items))

    def group_pages(self) -> AsyncGenerator[Page, None]:
        return self._pages("/v1/groups", self.groups)

    def account_connection_pages(self) -> AsyncGenerator[Page, None]:
        return self._pages("/v1/connections", self.connections)

    async def _group(self, group_id: str) -> AsyncGenerator[Page, None]:
        path = f"/v1/groups/{group_id}/connections"
        if group_id == self.failing_group:
            self.calls.append(path)
            raise RetriableApiError(f"GET {path}: HTTP 503", http_status=503)
        every = self.connections if self.connections_of is None else self.connections_of
        if group_id not in {c["group_id"] for c in every} | {g["id"] for g in self.groups}:
            self.calls.append(path)
            raise NotFoundApiError(f"GET {path}: HTTP 404", http_status=404,
                                   code="NotFound_Group")
        async for page in self._pages(path, [c for c in every if c["group_id"] == group_id]):
            yield page

    def group_connection_pages(self, group_id: str) -> AsyncGenerator[Page, None]:
        return self._group(group_id)

    async def get_connection(self, connection_id: str) -> JSON:
        raise AssertionError("not read in these tests")


def _existing(groups: tuple[str, ...]) -> list[JSON]:
    return [{"id": f"c_{g}", "group_id": g, "service": "tiktok_ads", "schema": f"s_{g}"}
            for g in groups]


def _fake_plan(api: FakeApi, requests: list[ConnectionRequest],
               **kw: Any) -> tuple[Plan, list[JSON]]:
    with structlog.testing.capture_logs() as logs:
        plan = anyio.run(lambda: make_plan(api, requests, drift=DriftCheck.LISTING, **kw))
    return plan, [e for e in logs if e["event"] == "plan.listing"]


@pytest.mark.parametrize("error", [
    lambda: FatalApiError("GET /v1/connections: HTTP 403", http_status=403),
    lambda: RetriableApiError("GET /v1/connections: HTTP 500", http_status=500),
], ids=["403", "500"])
def test_an_account_listing_that_fails_falls_back_to_per_group(
        error: Callable[[], ApiError]) -> None:
    groups = _groups(5)
    api = FakeApi((*groups, "other"), _existing(groups[:2]), account_error=error)
    plan, [event] = _fake_plan(api, _requests((*groups, "gone")))
    assert event["strategy"] == "per_group" and event["log_level"] == "warning"
    assert "the account listing" in event["reason"] and event["account_calls"] == 2
    assert api.calls[:2] == ["/v1/groups", "/v1/connections"]
    assert len(api.calls) == 2 + 6 and plan.list_calls == 8
    assert [a.kind for a in plan.actions] == [ActionKind.EXISTS] * 2 + [ActionKind.CREATE] * 3
    [problem] = plan.group_problems.values()
    assert problem.message == "group 'gone' does not exist" and problem.http_status == 404


def test_a_group_the_groups_listing_misses_is_still_listed_right() -> None:
    groups = _groups(5)
    api = FakeApi(groups, _existing(groups))
    api.groups = api.groups[:3]  # e.g. created a moment ago; the listing lags
    api.connections = _existing(groups[:3])
    api.connections_of = _existing(groups)
    plan, [event] = _fake_plan(api, _requests(groups))
    assert event["strategy"] == "account" and event["listed_alone"] == 2
    assert api.calls == ["/v1/groups", "/v1/connections",
                         "/v1/groups/grp_0003/connections", "/v1/groups/grp_0004/connections"]
    assert plan.list_calls == 4 and not plan.group_problems
    assert plan.count(ActionKind.EXISTS) == 5


def test_a_fatal_answer_other_than_403_still_stops_the_plan() -> None:
    api = FakeApi(_groups(5), [], account_error=lambda: FatalApiError(
        "GET /v1/connections: HTTP 401", http_status=401))
    with pytest.raises(FatalApiError, match="401"):
        _fake_plan(api, _requests(_groups(5)))


def test_an_account_listing_longer_than_the_per_group_cost_is_given_up() -> None:
    groups = _groups(4)
    # 40 connections elsewhere at 5 a page: 8 pages, more than the 4 calls per group costs
    others = [{"id": f"x{i}", "group_id": "big", "schema": f"x{i}"} for i in range(40)]
    api = FakeApi((*groups, "big"), others + _existing(groups[:1]), page=5)
    plan, [event] = _fake_plan(api, _requests(groups))
    assert event["strategy"] == "per_group" and event["account_calls"] == 4
    assert api.calls[:4] == ["/v1/groups"] + ["/v1/connections"] * 3  # stopped at the budget
    assert plan.list_calls == 4 + 4  # never more than twice the per-group cost here
    assert [a.kind for a in plan.actions] == [ActionKind.EXISTS] + [ActionKind.CREATE] * 3


def test_an_account_listing_over_several_pages_keys_by_group_and_schema() -> None:
    groups = _groups(30)
    others = [{"id": f"x{i}", "group_id": "not_in_sheet", "schema": f"s_{groups[0]}"}
              for i in range(12)]
    api = FakeApi((*groups, "not_in_sheet"), others + _existing(groups[::2]), page=10)
    plan, [event] = _fake_plan(api, _requests(groups))
    group_pages, pages = math.ceil(31 / 10), math.ceil((12 + 15) / 10)
    assert event["strategy"] == "account" and plan.list_calls == group_pages + pages == 7
    assert api.calls == ["/v1/groups"] * group_pages + ["/v1/connections"] * pages
    exists = {a.request.group_id for a in plan.actions if a.kind is ActionKind.EXISTS}
    assert exists == set(groups[::2])  # a schema of another group is not this group's
    assert {k: v["id"] for k, v in plan.existing.items()} == {
        (g, f"s_{g}"): f"c_{g}" for g in groups[::2]}


def test_one_group_listing_failing_stays_that_groups_retriable_problem() -> None:
    groups = _groups(2)
    api = FakeApi(groups, [], failing_group=groups[1])
    plan, [event] = _fake_plan(api, _requests(groups))
    assert event["strategy"] == "per_group"
    [(row, problem)] = plan.group_problems.items()
    assert row == 3 and problem.retriable and "listing group 'grp_0001' failed" in problem.message
    assert [a.kind for a in plan.actions] == [ActionKind.CREATE]


def test_the_per_group_way_can_be_forced_for_comparison() -> None:
    groups = _groups(6)
    api = FakeApi(groups, _existing(groups))
    plan, [event] = _fake_plan(api, _requests(groups), listing=ListingStrategy.PER_GROUP)
    assert event["strategy"] == "per_group" and plan.list_calls == 6
    assert api.calls == sorted(f"/v1/groups/{g}/connections" for g in groups)
    assert plan.count(ActionKind.EXISTS) == 6
