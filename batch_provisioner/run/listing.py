"""What already exists under the sheet's groups: listed per group, or for the whole account.

Two ways to learn it, both paginated at 1,000 items a page:

- **per group**: ``GET /v1/groups/{id}/connections`` for every group, a few at a time. It costs
  at least one call per group, and a missing group answers 404.
- **account**: ``GET /v1/connections`` (every connection the key can see, page after page),
  kept to the sheet's groups, plus ``GET /v1/groups`` to tell which groups exist. That groups
  listing costs nothing extra when resolving ``group_name`` already listed the groups.

The rule, with G the number of groups to look at:

- G <= 2: per group. It costs at most what the account way costs at least.
- Otherwise the account way, with a budget of G calls (what the per-group way costs at
  least), counting the groups listing (unless name resolution made it already) and every
  page of the connections listing. If the budget
  runs out before the listing ends, the account way is given up and every group is listed per
  group. So the worst case is G wasted calls on top of the per-group cost, never more than
  about twice it. The account way wins whenever the account holds fewer than about
  1,000 x (G - groups pages) connections: 2,000 groups and 1,500 connections plan in 2 + 2 = 4
  calls instead of 2,000.
- The account way also falls back to per group (logged) when either account listing fails
  with a non-fatal API error (5xx after the retries, a 4xx), or answers 403 (a key that may
  not list the whole account: the per-group listings meet the same 403, fatal as ever, if the
  key is refused everywhere), or when a listed connection does not name its group. Any other
  ``FatalApiError`` (401, a wrong base URL, a listing that never ends) or a stop propagates.

A group that the groups listing does not show (and no listed connection lives in) is listed on
its own, as the per-group way would: a typo costs one call more, its 404 is the row's problem
word for word as before, and a group the groups listing missed is still listed right.

Either way the result has the same shape: schema -> connection per group (keyed by
:func:`schema_of`), and a :class:`GroupProblem` per group that is missing ("does not exist",
``NotFound_Group``, from its 404) or whose listing failed (retriable). The ``plan.listing``
log event says which way was taken, for how many groups, at how many calls, and why.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from batch_provisioner.api.client import Page
from batch_provisioner.api.wire import schema_of
from batch_provisioner.errors import ApiError, FatalApiError, NotFoundApiError
from batch_provisioner.run.concurrently import for_each

JSON = dict[str, Any]
#: Up to this many groups, listing each group is never dearer than the account way.
PER_GROUP_UP_TO = 2
_LIST_CONCURRENCY = 4

_log = structlog.get_logger(__name__)


class ListingStrategy(enum.StrEnum):
    """How a plan learned what exists: the account's listing, or each group's."""

    ACCOUNT = "account"
    PER_GROUP = "per_group"


class ListingClient(Protocol):
    """The listings, page by page (:class:`FivetranClient` and the tests' fakes)."""

    def group_connection_pages(self, group_id: str) -> AsyncGenerator[Page, None]: ...
    def account_connection_pages(self) -> AsyncGenerator[Page, None]: ...
    def group_pages(self) -> AsyncGenerator[Page, None]: ...


@dataclass(frozen=True)
class GroupProblem:
    """Why a row's group could not be used: unknown, ambiguous name, or listing failed."""

    message: str
    code: str | None = None
    http_status: int | None = None
    retriable: bool = False  # a listing or read that failed: a resume plans the row again


@dataclass(frozen=True)
class Groups:
    """The account's groups as ``GET /v1/groups`` listed them, and the calls that cost."""

    items: list[JSON]
    calls: int

    def ids(self) -> set[str]:
        return {str(group.get("id")) for group in self.items}


@dataclass
class Existing:
    """schema -> connection per group, the groups' problems, and what the listing cost."""

    found: dict[str, dict[str, JSON]] = field(default_factory=dict)
    problems: dict[str, GroupProblem] = field(default_factory=dict)
    calls: int = 0
    strategy: ListingStrategy = ListingStrategy.PER_GROUP
    listed_alone: int = 0  # account way: groups the groups listing did not show


@dataclass
class _Tally:
    calls: int = 0


class _GiveUp(Exception):
    """The account way stops here; the reason is the message. ``failed``: an API error."""

    def __init__(self, reason: str, *, failed: bool = False) -> None:
        super().__init__(reason)
        self.failed = failed


async def list_groups_counted(client: ListingClient) -> Groups:
    """Every group of the account, every page (as ``list_groups``), with the calls counted."""
    tally = _Tally()
    items = await _collect(client.group_pages(), tally, limit=None)
    assert items is not None
    return Groups(items, tally.calls)


async def list_existing(client: ListingClient, group_ids: Sequence[str], *,
                        groups: Groups | None = None,
                        strategy: ListingStrategy | None = None) -> Existing:
    """What exists under ``group_ids``, the cheaper way (see the module's rule).

    ``groups``: the groups listing name resolution already made (reused, not listed again).
    ``strategy``: force one way (benchmarks and tests); ``None`` applies the rule.
    """
    unique = sorted(set(group_ids))
    if strategy is None and len(unique) <= PER_GROUP_UP_TO:
        result = await _per_group(client, unique)
        _logged(result, unique, f"{len(unique)} group(s): listing each costs the least")
        return result
    if strategy is ListingStrategy.PER_GROUP:
        result = await _per_group(client, unique)
        _logged(result, unique, "per-group listing asked for")
        return result
    budget = None if strategy is ListingStrategy.ACCOUNT else len(unique)
    tally = _Tally()
    try:
        result = await _account(client, unique, groups, tally, budget)
    except _GiveUp as stop:
        result = await _per_group(client, unique)
        result.calls += tally.calls
        _logged(result, unique, f"{stop}; listed per group instead", warn=stop.failed,
                account_calls=tally.calls)
        return result
    _logged(result, unique, "the account listing ended within the per-group cost"
            if budget is not None else "account listing asked for",
            listed_alone=result.listed_alone)
    return result


def _logged(result: Existing, group_ids: Sequence[str], reason: str, *, warn: bool = False,
            **extra: Any) -> None:
    """The one ``plan.listing`` event: which way, for how many groups, at what cost, why."""
    (_log.warning if warn else _log.info)(
        "plan.listing", strategy=str(result.strategy), groups=len(group_ids),
        calls=result.calls, reason=reason, **extra)


async def _collect(pages: AsyncGenerator[Page, None], tally: _Tally,
                   limit: int | None) -> list[JSON] | None:
    """Every item of a listing, counting a call a page; ``None`` once ``tally`` reaches
    ``limit`` with pages still to come (the next page is not asked for)."""
    items: list[JSON] = []
    if limit is not None and tally.calls >= limit:
        await pages.aclose()
        return None
    async with aclosing(pages) as listing:
        async for page in listing:
            tally.calls += 1
            items.extend(page.items)
            if page.last:
                return items
            if limit is not None and tally.calls >= limit:
                return None
    return items


async def _account(client: ListingClient, group_ids: Sequence[str], groups: Groups | None,
                   tally: _Tally, budget: int | None) -> Existing:
    """The account way; raises :class:`_GiveUp` past ``budget`` calls or on an API failure."""
    wanted = set(group_ids)
    shown = groups.ids() if groups is not None else None
    try:
        if shown is None:
            listed = await _collect(client.group_pages(), tally, budget)
            if listed is None:
                raise _GiveUp(f"the groups listing reached {budget} calls, the per-group cost")
            shown = Groups(listed, tally.calls).ids()
        items = await _collect(client.account_connection_pages(), tally, budget)
    except FatalApiError as exc:
        if exc.http_status != 403:
            raise
        tally.calls += 1
        raise _GiveUp(f"the account listing was refused: {exc.message}", failed=True) from None
    except ApiError as exc:
        tally.calls += 1  # the call that failed, after its retries
        raise _GiveUp(f"the account listing failed: {exc.message}", failed=True) from None
    if items is None:
        raise _GiveUp(f"the account listing was not done after {budget} calls, the per-group "
                      "cost")
    if any(not item.get("group_id") for item in items):
        raise _GiveUp("the account listing has connections that do not name their group")
    # A group exists if the groups listing shows it or a connection lives in it. One it does
    # not show is listed on its own, as the per-group way would: its 404 is the row problem,
    # word for word as before, and a group the groups listing missed is still listed right.
    known = (shown | {str(item["group_id"]) for item in items}) & wanted
    result = Existing(found={group_id: {} for group_id in known}, calls=tally.calls,
                      strategy=ListingStrategy.ACCOUNT)
    for item in items:
        group_id = str(item["group_id"])
        schema = schema_of(item)
        if group_id in known and schema:
            result.found[group_id][schema] = item
    alone = await _per_group(client, [g for g in group_ids if g not in known])
    result.found.update(alone.found)
    result.problems.update(alone.problems)
    result.calls += alone.calls
    result.listed_alone = len(group_ids) - len(known)
    return result


async def _per_group(client: ListingClient, group_ids: Sequence[str]) -> Existing:
    """Each group's own listing, a few at a time; a 404 is that group's problem."""
    result = Existing(strategy=ListingStrategy.PER_GROUP)
    tally = _Tally()

    async def list_one(group_id: str) -> None:
        try:
            items = await _collect(client.group_connection_pages(group_id), tally, limit=None)
        except FatalApiError:
            raise
        except NotFoundApiError as exc:
            tally.calls += 1
            result.problems[group_id] = GroupProblem(f"group {group_id!r} does not exist",
                                                     exc.code, exc.http_status)
            return
        except ApiError as exc:
            tally.calls += 1
            result.problems[group_id] = GroupProblem(
                f"listing group {group_id!r} failed: {exc.message}", exc.code,
                exc.http_status, retriable=True)
            return
        assert items is not None
        result.found[group_id] = {schema_of(item): item for item in items if schema_of(item)}

    await for_each(group_ids, list_one, _LIST_CONCURRENCY)
    result.calls = tally.calls
    return result
