"""Connections a sandbox starts with, as if made earlier by hand: read from a file, then stored.

A seed file is JSON or CSV (``read_seed_file``):

* **JSON**: a list of connection objects, or an object holding one under ``connections`` or
  ``items`` (a listing's ``data``, e.g. saved from ``GET /v1/connections``). Each object is a
  create body (``group_id``; ``service``, default ``tiktok_ads``; ``config`` with ``schema``;
  the settings) plus, optionally, ``id``, ``setup_state`` (or ``status.setup_state``),
  ``created_at`` and ``connected_by``. The other fields of an answer (``schema``,
  ``status``, ``setup_tests``, ``service_version`` ...) are skipped, so a saved answer seeds
  as it is.
* **CSV**: one connection a row, in the sheet's own column names: ``group_id``, ``schema``,
  the settings (``sync_frequency``, ``paused``, ...), the ``config`` fields (``sync_mode``,
  ``accounts``, ``timeframe_months``, ``attribution_window_size``), ``redirect_uri`` and
  ``hide_setup_guide``, ``connection_id`` (or ``id``), ``setup_state`` and ``created_at``;
  ``custom_reports`` as a JSON list. Booleans are true/false (yes/no, 1/0), lists are split on
  ``,`` ``;`` ``|`` or new lines, and other columns are skipped: an exported sheet's CSV seeds
  as it was exported (its custom reports file aside).

Every seed is checked as a create body is (``validate_create``) and stored the way a create
stores it (``make_connection``), so GET and the listings show it exactly as a created one:
defaults filled, secrets masked. ``setup_state`` is ``connected`` unless the seed says
otherwise (a connection made by hand was authorised then); a connected one has passed setup
tests. Seeding is idempotent: a seed whose ``id`` the sandbox holds already (a state file
seeded before) is skipped. A seed whose group the sandbox lacks, or whose schema another
connection of its group has, is refused (``ValueError``, naming the seed).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batch_provisioner.sandbox.handlers import make_connection
from batch_provisioner.sandbox.state import SandboxState
from batch_provisioner.sandbox.validation import (
    TIKTOK_ADS,
    TIKTOK_CONFIG_FIELDS,
    TOP_LEVEL_FIELDS,
    InvalidInput,
    validate_create,
)

SETUP_STATES = ("connected", "incomplete", "broken")
#: A seed's own fields (not part of a create body).
RECORD_FIELDS = ("id", "setup_state", "created_at", "connected_by")
#: Answer fields a saved GET answer has that a create body has not.
_ANSWER_ONLY = frozenset({"schema", "status", "setup_tests", "service_version", "succeeded_at",
                          "failed_at", "source_sync_details", "connect_card"})
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_INTEGERS = frozenset({"sync_frequency", "data_delay_threshold"})
_BOOLEAN_FIELDS = frozenset({"trust_certificates", "trust_fingerprints", "run_setup_tests",
                             "paused", "pause_after_trial", "hide_setup_guide"})
_CARD_FIELDS = ("redirect_uri", "hide_setup_guide")
_MAX_BYTES = 64 * 1024 * 1024


def read_seed_file(path: Path) -> tuple[dict[str, Any], ...]:
    """The seeds of a JSON or CSV file (by its suffix); ``ValueError`` naming what is wrong."""
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"{path}: larger than {_MAX_BYTES // 2**20} MB")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    seeds = _from_csv(text) if path.suffix.lower() == ".csv" else _from_json(text, path)
    return tuple(seeds)


def _from_json(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(data, Mapping):
        data = data.get("connections", data.get("items"))
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise ValueError(f"{path}: expected a list of connection objects (or an object "
                         "with 'connections' or 'items' holding one)")
    return [dict(item) for item in data]


def _from_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    seeds: list[dict[str, Any]] = []
    for number, row in enumerate(reader, start=2):
        cells = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            seeds.append(_csv_seed(cells))
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from None
    return seeds


def _csv_seed(cells: Mapping[str, str]) -> dict[str, Any]:
    """One CSV row as a seed object (see the module docstring)."""
    seed: dict[str, Any] = {"config": {}}
    for name, text in cells.items():
        if not text:
            continue
        if name in ("id", "connection_id"):
            seed["id"] = text
        elif name in RECORD_FIELDS or name in ("group_id", "service"):
            seed[name] = text
        elif name in _CARD_FIELDS:
            seed.setdefault("connect_card_config", {})[name] = _typed(name, text)
        elif name in TIKTOK_CONFIG_FIELDS:
            seed["config"][name] = _typed(name, text)
        elif name in TOP_LEVEL_FIELDS and name not in ("config", "auth", "connect_card_config"):
            seed[name] = _typed(name, text)
    return seed


def _typed(name: str, text: str) -> Any:
    if name == "accounts":
        return [part.strip() for part in re.split(r"[,;|\r\n]+", text) if part.strip()]
    if name == "custom_reports":
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("custom_reports is not a JSON list") from None
    if name in _INTEGERS:
        if not text.isdigit():
            raise ValueError(f"{name} {text!r} is not a whole number")
        return int(text)
    if name in _BOOLEAN_FIELDS:
        if text.lower() not in _BOOLEANS:
            raise ValueError(f"{name} {text!r} is not true or false")
        return _BOOLEANS[text.lower()]
    return text


def seed_connections(state: SandboxState, seeds: Sequence[Mapping[str, Any]]) -> int:
    """Store each seed as a connection (see the module docstring); how many were new."""
    added = 0
    for number, seed in enumerate(seeds, start=1):
        try:
            added += _seed_one(state, seed)
        except (InvalidInput, ValueError) as exc:
            raise ValueError(f"seed connection {number}: {exc}") from None
    return added


def _seed_one(state: SandboxState, seed: Mapping[str, Any]) -> int:
    store = state.store
    connection_id = seed.get("id")
    if connection_id is not None and (not isinstance(connection_id, str) or not connection_id):
        raise ValueError(f"'id' {connection_id!r} is not a connection id")
    if connection_id in store:
        return 0
    body = {k: v for k, v in seed.items() if k not in RECORD_FIELDS and k not in _ANSWER_ONLY
            and k not in ("id", "connected_by")}
    body.setdefault("service", TIKTOK_ADS)
    body = validate_create(body)
    group_id, schema = body["group_id"], body["config"]["schema"]
    if group_id not in store.groups:
        raise ValueError(f"its group {group_id!r} is not one of the sandbox's groups")
    if store.find(group_id, schema) is not None:
        raise ValueError(f"schema {schema!r} in group {group_id!r} is another connection's")
    status = seed.get("status")
    setup_state = seed.get("setup_state") or (
        status.get("setup_state") if isinstance(status, Mapping) else None) or "connected"
    if setup_state not in SETUP_STATES:
        raise ValueError(f"setup_state {setup_state!r} is not one of {', '.join(SETUP_STATES)}")
    created_at = seed.get("created_at")
    connected_by = seed.get("connected_by")
    store.add(make_connection(
        state, body, connection_id=connection_id, setup_state=setup_state,
        created_at=str(created_at) if created_at else None,
        connected_by=str(connected_by) if connected_by else None))
    return 1
