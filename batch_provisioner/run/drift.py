"""Drift: how an existing connection differs from what its row asks for. Pure functions.

Rules (they are the documented contract of ``plan`` and ``apply --update``):

* Only the fields the row sets are compared (its payload from ``payload.expand``, defaults
  included). A field the row leaves blank is Fivetran's to choose: never drift.
* ``auth`` is never compared: Fivetran masks secrets as ``******`` on read. Neither are the
  create-time switches ``run_setup_tests``, ``trust_certificates`` and ``trust_fingerprints``
  (actions, not state) nor ``connect_card_config`` (the connect card's settings, not the
  connection's). Any answer value that is ``******`` is skipped too.
* ``service``, ``group_id``, ``config.schema`` and ``config.timeframe_months`` are fixed at
  creation: a difference there is *immutable* (a ``conflict``, never sent).
* Values are compared canonically: integers as integers (``"1440"`` is ``1440``), booleans as
  booleans, text trimmed, ``config.accounts`` as a set (order and repeats carry no meaning for
  Fivetran), ``config.custom_reports`` as a set keyed by ``table_name`` with each report's
  ``metrics`` and ``dimensions`` as sets, comparing only the keys the row's report sets.
* ``daily_sync_time`` is compared only when the sync frequency is 1440 (daily): it means
  nothing otherwise, and Fivetran need not echo it.
* Paths are dotted (``sync_frequency``, ``config.accounts``); a change is ``(old, new)`` with
  the answer's value and the row's value as given, so the PATCH sends ``new`` as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batch_provisioner.safety import MASK

Change = tuple[Any, Any]
Changes = dict[str, Change]

NOT_COMPARED = frozenset({"auth", "run_setup_tests", "trust_certificates", "trust_fingerprints",
                          "connect_card_config"})
IMMUTABLE = frozenset({"service", "group_id", "config.schema", "config.timeframe_months"})
_INTEGERS = frozenset({"sync_frequency", "data_delay_threshold"})
_SETS = frozenset({"config.accounts"})
_REPORT_SETS = frozenset({"metrics", "dimensions"})
_MISSING = object()
_DAILY = 1440


def diff(desired: Mapping[str, Any], current: Mapping[str, Any], *,
         known_only: bool = False) -> tuple[Changes, Changes]:
    """(mutable changes, immutable changes) from the row's payload to the live connection.

    ``current`` is a ``GET /v1/connections/{id}`` answer (its ``data``). With ``known_only``
    (a listing item, which may leave fields out), a field absent from ``current`` is unknown
    rather than empty, and nothing in ``config`` is compared when the item has no ``config``.
    """
    mutable: Changes = {}
    immutable: Changes = {}
    frequency = desired.get("sync_frequency", current.get("sync_frequency"))
    for path, new in _leaves(desired):
        if path == "daily_sync_time" and _canon("sync_frequency", frequency) != _DAILY:
            continue  # only meaningful with daily syncs; Fivetran need not echo it otherwise
        old = _current_value(current, path)
        if old is _MISSING:
            if known_only:
                continue
            old = None
        if old == MASK or _same(path, old, new):
            continue
        (immutable if path in IMMUTABLE else mutable)[path] = (old, new)
    return mutable, immutable


def format_changes(changes: Mapping[str, Change]) -> str:
    """``sync_frequency: 360 -> 1440; config.accounts: ['1'] -> ['1', '2']``."""
    return "; ".join(f"{path}: {_show(old)} -> {_show(new)}"
                     for path, (old, new) in changes.items())


def _leaves(desired: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Comparable (path, value) pairs of a payload: top level and ``config``, one level deep."""
    pairs: list[tuple[str, Any]] = []
    for key, value in desired.items():
        if key in NOT_COMPARED or value is None:
            continue
        if key == "config" and isinstance(value, Mapping):
            pairs.extend((f"config.{k}", v) for k, v in value.items() if v is not None)
        else:
            pairs.append((key, value))
    return pairs


def _current_value(current: Mapping[str, Any], path: str) -> Any:
    if not path.startswith("config."):
        return current.get(path, _MISSING)
    key = path.removeprefix("config.")
    config = current.get("config")
    if isinstance(config, Mapping) and key in config:
        return config[key]
    if key == "schema" and "schema" in current:  # the answer's top-level name
        return current["schema"]
    return _MISSING


def _same(path: str, old: Any, new: Any) -> bool:
    if path == "config.custom_reports":
        return bool(_reports(old, new) == _reports(new, new))
    return bool(_canon(path, old) == _canon(path, new))


def _canon(path: str, value: Any) -> Any:
    if value is None:
        return None
    if path in _SETS or isinstance(value, list):
        items = value if isinstance(value, list) else [value]
        canon = [_scalar(v) for v in items]
        return sorted(set(canon), key=repr) if path in _SETS else canon
    if path in _INTEGERS:
        try:
            return int(str(value).strip())
        except ValueError:
            return _scalar(value)
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _reports(reports: Any, shape: Any) -> Any:
    """Reports as {table_name: {key: canonical value}}, keeping only the keys ``shape`` sets."""
    if not isinstance(reports, list):
        return reports
    wanted: dict[str, set[str]] = {}
    for report in shape if isinstance(shape, list) else []:
        if isinstance(report, Mapping):
            wanted[str(report.get("table_name"))] = {k for k, v in report.items()
                                                     if v is not None}
    out: dict[str, Any] = {}
    for report in reports:
        if not isinstance(report, Mapping):
            return reports
        name = str(report.get("table_name"))
        keys = wanted.get(name, set(report))
        out[name] = {k: (sorted({str(v) for v in report.get(k) or []}) if k in _REPORT_SETS
                         else _scalar(report.get(k))) for k in sorted(keys)}
    return out


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("table_name") or "{...}")
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)
