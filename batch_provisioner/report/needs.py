"""The top of ``report.html``, "What needs you": what a person must do next, for which rows.

Two sources, merged. ``summary["next_actions"]`` (most urgent first; each ``{kind, count,
message, command, why, rows}``, see ``run/next_actions.py``) gives the sentence, the exact
command to paste and why to run it; the results frame gives the rows themselves: failed and
invalid rows with their errors, conflicts, clients whose connection waits for its connect
card, rows not attempted. A run written before ``next_actions`` existed has none: its rows
are still listed, under a sentence made here, with no command. A ``status`` action is not
work to do now: it is shown as "later", and alone it leaves "Nothing needs you".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Only these become a clickable link (never ``javascript:`` and the like).
LINKABLE = re.compile(r"(?i)^https?://")
#: Rows listed per block; the table below the charts holds every row.
SHOWN_ROWS = 100

_Row = dict[str, Any]
_GROUPS: dict[str, Callable[[_Row], bool]] = {
    "fix": lambda r: r.get("status") in ("failed", "invalid"),
    "conflicts": lambda r: r.get("status") == "conflict",
    "cards": lambda r: (bool(r.get("connect_card_uri")) and r.get("setup_state") != "connected"
                        and r.get("status") in ("created", "exists", "updated")),
    "waiting": lambda r: r.get("status") == "not_attempted",
}
_GROUP_OF_KIND = {"fix_rows": "fix", "retry_rows": "fix", "conflicts": "conflicts",
                  "connect_cards": "cards", "resume": "waiting"}
_SAID = {
    "fix": ("{n} {rows} failed or {are} invalid: each error is below and in failed_rows.csv.",
            "fix"),
    "conflicts": ("{n} {rows} {are} in conflict with a connection that already exists: each "
                  "row's error says what was found.", "conflicts"),
    "cards": ("{n} {clients} must authorise {their} connection: send each the link below.",
              "connect_cards"),
    "waiting": ("{n} {rows} {were} not attempted: resume the run to send {them}.", "resume"),
}


def needs_you(records: Sequence[_Row], summary: Mapping[str, Any],
              carry: Sequence[str]) -> dict[str, Any]:
    """The section's content: ``blocks`` (each a sentence, maybe a command, maybe rows),
    ``later`` (the ``status`` actions) and ``nothing`` (True when no block is left)."""
    actions = next_actions(summary)
    groups = {name: [r for r in records if wanted(r)] for name, wanted in _GROUPS.items()}
    by_row = {r.get("source_row"): r for r in records}
    blocks, covered = [], set()
    for action in actions:
        if action["kind"] == "status":
            continue
        group = _GROUP_OF_KIND.get(action["kind"])
        covered.add(group)
        rows = ([by_row[n] for n in action["rows"] if n in by_row]
                or groups.get(group or "", []))
        if group == "cards":  # a client who has authorised since needs nothing more
            rows = [r for r in rows if _GROUPS["cards"](r)]
        blocks.append(_block(action, group, rows, carry))
    for group, rows in groups.items():
        if rows and group not in covered:
            blocks.append(_block(_derived_action(group, len(rows)), group, rows, carry))
    later = [a for a in actions if a["kind"] == "status"]
    return {"blocks": blocks, "later": later, "nothing": not blocks}


def next_actions(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``summary["next_actions"]``, well-formed entries only (none on older runs)."""
    found = summary.get("next_actions")
    if not isinstance(found, list):
        return []
    actions = []
    for item in found:
        if not isinstance(item, Mapping) or not item.get("message"):
            continue
        rows = item.get("rows")
        command, why = item.get("command"), item.get("why")
        actions.append({"kind": str(item.get("kind") or ""), "message": str(item["message"]),
                        "command": str(command) if command else None,
                        "why": str(why) if why and why != item["message"] else None,
                        "rows": [n for n in rows if isinstance(n, int) and not isinstance(n, bool)]
                        if isinstance(rows, list) else []})
    return actions


def _block(action: Mapping[str, Any], group: str | None, rows: Sequence[_Row],
           carry: Sequence[str]) -> dict[str, Any]:
    cards = group == "cards"
    head = ["row", "group_id", "schema", *carry,
            *(["setup_state", "connect card"] if cards else ["status", "error", "code"])]
    return {"kind": action["kind"], "message": action["message"], "command": action["command"],
            "why": action.get("why"), "cards": cards, "head": head if rows else [],
            "rows": [_line(r, carry, cards) for r in rows[:SHOWN_ROWS]],
            "more": max(len(rows) - SHOWN_ROWS, 0)}


def _line(record: _Row, carry: Sequence[str], cards: bool) -> dict[str, Any]:
    cells = [record.get("source_row"), record.get("group_id"), record.get("schema"),
             *[record.get(c) for c in carry]]
    if cards:
        uri = record.get("connect_card_uri")
        return {"cells": [*cells, record.get("setup_state")], "uri": uri,
                "linkable": bool(LINKABLE.match(str(uri)))}
    message, code = record.get("error_message"), record.get("error_code")
    return {"cells": [*cells, record.get("status")], "error": message or code,
            "code": code if message else None}


def _derived_action(group: str, count: int) -> dict[str, Any]:
    """The sentence for rows no next action speaks of (a run from before next_actions)."""
    text, kind = _SAID[group]
    one = count == 1
    words = {"n": count, "rows": "row" if one else "rows", "are": "is" if one else "are",
             "were": "was" if one else "were", "them": "it" if one else "them",
             "clients": "client" if one else "clients", "their": "its" if one else "their"}
    return {"kind": kind, "message": text.format(**words), "command": None}
