"""The frozen results the public API returns: what happened, the exit code, the files written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run.estimate import Estimate
from batch_provisioner.run.lifecycle import CardResult, RunRow
from batch_provisioner.run.next_actions import NextAction
from batch_provisioner.run.plan import Plan
from batch_provisioner.run.rollback import ALREADY_GONE, NOT_PROVABLY_OURS
from batch_provisioner.sheet.load import Prepared

#: ``plan``'s exit code when creates or drifts are pending (terraform plan -detailed-exitcode).
PLAN_CHANGES_PENDING = 5


@dataclass(frozen=True)
class Validation:
    """Every problem of every row (``problems``: source, row, column, value, severity, ...)."""

    sheet: Prepared
    exit_code: ExitCode
    paths: Mapping[str, Path] = field(default_factory=dict)

    @property
    def problems(self) -> pl.DataFrame:
        return self.sheet.problems

    @property
    def errors(self) -> int:
        return self.sheet.error_count

    @property
    def warnings(self) -> int:
        return self.problems.height - self.errors

    @property
    def invalid_rows(self) -> list[int]:
        return sorted(self.sheet.invalid)

    @property
    def ready(self) -> int:
        """Rows that would be sent."""
        return len(self.sheet.requests)

    @property
    def ok(self) -> bool:
        return self.exit_code is ExitCode.OK


@dataclass(frozen=True)
class PlanResult:
    """One line per input row in ``frame`` (plan.csv): create, exists, drift, conflict, invalid."""

    sheet: Prepared
    frame: pl.DataFrame
    counts: Mapping[str, int]
    exit_code: int
    plan: Plan
    paths: Mapping[str, Path] = field(default_factory=dict)
    #: What applying it would send, and the least time the budgets allow (plan's preview).
    estimate: Estimate | None = None


@dataclass(frozen=True)
class ApplyResult:
    """One outcome per input row, in input order; ``summary`` is summary.json."""

    run_id: str
    run_dir: Path
    outcomes: tuple[Outcome, ...]
    exit_code: ExitCode
    summary: Mapping[str, Any]
    paths: Mapping[str, Path]
    lock_taken_over_from: Mapping[str, Any] | None = None
    fatal_message: str | None = None  # why the run stopped with exit 3 (names the API URL)
    estimate: Estimate | None = None  # what this invocation set out to send (its preview)
    stop_message: str | None = None  # why the run stopped early, in words (exit 3, 4)
    #: What a person must do next, most urgent first (summary.json's ``next_actions``).
    next_actions: tuple[NextAction, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        counts = {str(s): 0 for s in Status}
        for outcome in self.outcomes:
            counts[str(outcome.status)] += 1
        return counts

    def results(self) -> pl.DataFrame:
        """results.parquet: the per-row report, with the carry-through columns."""
        return pl.read_parquet(self.paths["results.parquet"])


def _needs_action(setup_state: str | None, error: str | None) -> bool:
    """A connection someone must still act on: not ``connected`` yet (its client has not
    authorised, or it broke), or it could not be read."""
    return bool(error) or setup_state != "connected"


@dataclass(frozen=True)
class StatusResult:
    run_id: str
    #: One per connection (status.csv's lines): row, keys, carry-through columns,
    #: setup_state, setup_tests, error.
    lines: tuple[Mapping[str, Any], ...]
    setup_states: Mapping[str, int]
    exit_code: ExitCode
    paths: Mapping[str, Path]
    report_refreshed: bool
    carry_columns: tuple[str, ...] = ()  # the user's own columns in ``lines``, in order

    @staticmethod
    def needs_action(line: Mapping[str, Any]) -> bool:
        return _needs_action(line.get("setup_state"), line.get("error"))

    @property
    def waiting(self) -> list[Mapping[str, Any]]:
        """The lines someone must still act on (not connected, or unread)."""
        return [line for line in self.lines if self.needs_action(line)]


@dataclass(frozen=True)
class ConnectCardsResult:
    run_id: str
    results: tuple[CardResult, ...]
    exit_code: ExitCode
    paths: Mapping[str, Path]
    carry_columns: tuple[str, ...] = ()  # the user's own columns (each ``row.carry``), in order

    @staticmethod
    def needs_action(card: CardResult) -> bool:
        return bool(card.uri) or _needs_action(card.setup_state, card.error)

    @property
    def waiting(self) -> list[CardResult]:
        """The connections whose clients must still act (a fresh card), or that failed."""
        return [card for card in self.results if self.needs_action(card)]

    @property
    def cards(self) -> list[CardResult]:
        return [r for r in self.results if r.uri]

    @property
    def failed(self) -> list[CardResult]:
        return [r for r in self.results if r.error]

    @property
    def connected(self) -> int:
        return sum(1 for r in self.results if r.setup_state and r.setup_state != "incomplete")


@dataclass(frozen=True)
class AccountGroup:
    """One group of the account (``GET /v1/groups``)."""

    id: str
    name: str


@dataclass(frozen=True)
class GroupsResult:
    """The account's groups in the API's order; with ``out``, ``paths["groups.csv"]``."""

    groups: tuple[AccountGroup, ...]
    exit_code: ExitCode
    paths: Mapping[str, Path] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        """Group id -> name: what ``sandbox_groups=`` takes."""
        return {g.id: g.name for g in self.groups}


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would do, shown to ``confirm`` before anything is deleted."""

    run_id: str
    to_delete: tuple[RunRow, ...]
    rolled_back_earlier: tuple[RunRow, ...]
    in_flight: tuple[int, ...]  # rows whose create was in flight when the run stopped


@dataclass(frozen=True)
class RollbackResult:
    plan: RollbackPlan
    outcomes: tuple[Outcome, ...]
    exit_code: ExitCode
    confirmed: bool
    fatal_message: str | None = None
    paths: Mapping[str, Path] = field(default_factory=dict)

    @property
    def deleted_now(self) -> int:
        return sum(1 for o in self.outcomes if o.status is Status.ROLLED_BACK
                   and o.error_message != ROLLED_BACK_EARLIER and o.error_code != ALREADY_GONE)

    @property
    def already_gone(self) -> int:
        return sum(1 for o in self.outcomes if o.error_code == ALREADY_GONE)

    @property
    def not_provably_ours(self) -> int:
        return sum(1 for o in self.outcomes if o.error_code == NOT_PROVABLY_OURS)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status is Status.FAILED)

    @property
    def not_attempted(self) -> int:
        return (len(self.plan.to_delete) - self.deleted_now - self.already_gone - self.failed
                - self.not_provably_ours)


ROLLED_BACK_EARLIER = "rolled back by an earlier rollback"
