"""What a person must do after a run, most urgent first: the one list every output shows.

``apply_next_actions`` reads a run's outcomes and exit code and returns ``NextAction``s: rows
to fix (with the command that reruns ``failed_rows.csv``), rows a resume retries, the resume
command of a stopped run, conflicts and what to do about them, clients who must authorise with
their connect card, and, when nothing is left, the ``status`` command. ``summary.json`` keeps
them under ``next_actions``; the closing ``next:`` lines, ``report.html``, the workbook's
Summary sheet and ``--json`` are all printed from that one list, so they never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Outcome, Status, counted
from batch_provisioner.run.invocation import Invocation

_CARDS_WAIT = "connect-card rows wait for their clients"
#: The kinds, in the order they are listed.
KINDS = ("internal", "fatal", "fix_rows", "retry_rows", "resume", "conflicts",
         "connect_cards", "status")


@dataclass(frozen=True)
class NextAction:
    """One thing to do. ``message``: a sentence a person reads (None: the command says it);
    ``command``: the shell command to paste; ``why``: a short note printed after it;
    ``rows``: the source rows concerned."""

    kind: str
    count: int
    message: str | None
    command: str | None = None
    why: str | None = None
    rows: tuple[int, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "message": self.message or self.why,
                "command": self.command, "why": self.why, "rows": list(self.rows)}


@dataclass(frozen=True)
class RunEnd:
    """How the run ended: the facts the actions are read from."""

    run_id: str
    run_dir: Path
    exit_code: int
    fatal: str | None = None
    stopped: str | None = None


def apply_next_actions(outcomes: Sequence[Outcome], end: RunEnd, how: Invocation,
                       rerun: Invocation | None = None) -> list[NextAction]:
    """The run's next actions, most urgent first. ``rerun``: the invocation that feeds
    ``failed_rows.csv`` back as a new run (None: that command is not offered)."""
    code, run_id = int(end.exit_code), end.run_id
    resume = how.command("apply", "--resume", run_id)
    failed_rows = end.run_dir / "failed_rows.csv"
    to_fix = [o.row for o in outcomes if o.status is Status.INVALID
              or (o.status is Status.FAILED and not o.retriable)]
    to_retry = [o.row for o in outcomes if o.status is Status.FAILED and o.retriable]
    waiting = [o.row for o in outcomes if o.status is Status.NOT_ATTEMPTED]
    conflicts = [o.row for o in outcomes if o.status is Status.CONFLICT]
    cards = [o.row for o in outcomes if o.connect_card_uri
             and o.status in (Status.CREATED, Status.EXISTS)]
    actions: list[NextAction] = []
    if code == ExitCode.INTERNAL:
        log = end.run_dir / "run.log.jsonl"
        actions.append(NextAction(
            "internal", len(waiting), f"internal error: {end.stopped or 'see run.log.jsonl'}; "
            f"please report it, with {log}", resume,
            f"once a fixed version is installed; {counted(len(waiting), 'row was', 'rows were')}"
            " not attempted", tuple(waiting)))
    elif code == ExitCode.FATAL_API:
        actions.append(NextAction(
            "fatal", len(waiting), f"error: {end.fatal}" if end.fatal else None, resume,
            f"after fixing the cause; {counted(len(waiting), 'row was', 'rows were')} "
            "not attempted", tuple(waiting)))
    if to_fix:
        actions.append(NextAction(
            "fix_rows", len(to_fix),
            f"{counted(len(to_fix), 'row')} to fix, each with its error in {failed_rows}: fix "
            f"{_them(to_fix)} in the sheet, then apply --resume {run_id} --force (the sheet "
            "changed), or fix that file and apply it as a new run",
            rerun.command("apply") if rerun is not None else None,
            "after fixing failed_rows.csv: its rows as a new run", tuple(to_fix)))
    if to_retry:
        actions.append(NextAction(
            "retry_rows", len(to_retry),
            f"{counted(len(to_retry), 'row')} failed for a reason that may pass (the API, the "
            f"network): a resume tries {_them(to_retry)} again", rows=tuple(to_retry)))
    if code not in (ExitCode.INTERNAL, ExitCode.FATAL_API) and (waiting or to_retry):
        held = (f"{counted(len(waiting), 'row was', 'rows were')} held back (--rows / "
                "--limit, or not confirmed)" if waiting and not end.stopped else None)
        actions.append(NextAction(
            "resume", len(waiting) + len(to_retry),
            f"stopped: {end.stopped}" if end.stopped else held, resume,
            f"carries on with the {counted(len(waiting) + len(to_retry), 'row')} not done",
            tuple(sorted(waiting + to_retry))))
    if conflicts:
        actions.append(NextAction(
            "conflicts", len(conflicts),
            f"{counted(len(conflicts), 'row conflicts', 'rows conflict')} with a connection "
            "that already exists under its group and schema (each row's error says what "
            "differs): this tool never changes or deletes it. Change the row to match it, "
            "or give the row a schema name of its own; then plan again",
            how.command("plan"), "shows what the sheet would do now", tuple(conflicts)))
    if cards:
        actions.append(NextAction(
            "connect_cards", len(cards),
            _cards_message(len(cards)),
            how.command("connect-cards", run_id, inputs=False, rehearsal=False),
            "fresh links, once clients act or links expire", tuple(cards)))
    if code == ExitCode.OK and not (waiting or to_retry):
        actions.append(NextAction(
            "status", len(outcomes), None,
            how.command("status", run_id, inputs=False, rehearsal=False),
            "setup state of every connection"))
    return actions


def _them(rows: Sequence[int]) -> str:
    return "it" if len(rows) == 1 else "them"


def _cards_message(count: int) -> str:
    return (f"{counted(count, 'connect-card row waits for its client', _CARDS_WAIT)}: send "
            "each client its link (connect_card_uri in results.csv)")


def refreshed(actions: Sequence[dict[str, Any]], waiting_cards: set[int]
              ) -> list[dict[str, Any]]:
    """summary.json's ``next_actions`` after ``status``, ``connect-cards`` or ``rollback``:
    the connect-card action lists only the rows still waiting (``waiting_cards``: created or
    existing rows with a link whose setup is not connected), and goes once none are."""
    out: list[dict[str, Any]] = []
    for action in actions:
        if action.get("kind") == "connect_cards":
            rows = [r for r in action.get("rows") or () if r in waiting_cards]
            if not rows:
                continue
            action = {**action, "rows": rows, "count": len(rows),
                      "message": _cards_message(len(rows))}
        out.append(action)
    return out
