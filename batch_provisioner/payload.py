"""Pure expansion: one valid, canonical row (+ its custom reports) → the tiktok_ads payload.

The payload has exactly the seed's shape and key order. A field nobody set is left out, never
sent as null. Secrets stay ``SecretRef`` objects until ``resolved`` is called just before the
request is sent; ``masked`` shows them as ``******`` for ``render`` and for reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batch_provisioner import SERVICE
from batch_provisioner.fields import COLUMNS, REPORT_KEYS, Kind
from batch_provisioner.models import Payload
from batch_provisioner.secrets import MASK, SecretContext, SecretRef, parse_ref, resolve


def _typed(kind: Kind, value: Any) -> Any:
    if kind is Kind.BOOL:
        return value == "true"
    if kind is Kind.INT:
        return int(value)
    if kind is Kind.LIST:
        return [str(v) for v in value]
    if kind is Kind.SECRET:
        return parse_ref(str(value))
    return str(value)


def _set(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def expand(row: Mapping[str, Any], reports: Sequence[Mapping[str, Any]] = ()) -> Payload:
    """Build the create payload for one row. ``row`` holds canonical text values (or None)."""
    has_auth = any(row.get(name) for name in ("access_token", "client_id", "client_secret"))
    payload: Payload = {}
    for column in COLUMNS:
        if column.name == "schema" and reports:
            _set(payload, ("config", "custom_reports"), [report_payload(r) for r in reports])
        value = row.get(column.name)
        if column.name == "run_setup_tests" and not has_auth:
            value = "false"  # a connect-card client has not authorised yet: nothing to test
        if not column.path or value is None or (column.kind is Kind.LIST and not value):
            continue
        _set(payload, column.path, _typed(column.kind, value))
        if column.name == "group_id":
            payload["service"] = SERVICE
    if "service" not in payload:
        payload = {"service": SERVICE, **payload}
    return payload


def report_payload(report: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in REPORT_KEYS:
        value = report.get(key)
        if value is None or (isinstance(value, list) and not value):
            continue
        out[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return out


def with_group_id(payload: Payload, group_id: str) -> Payload:
    """The payload with ``group_id`` set first (for rows that named their group)."""
    rest = {k: v for k, v in payload.items() if k != "group_id"}
    return {"group_id": group_id, **rest}


def _map_secrets(value: Any, fn: Any) -> Any:
    if isinstance(value, SecretRef):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _map_secrets(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_secrets(v, fn) for v in value]
    return value


def masked(payload: Payload) -> Payload:
    """The payload as ``render`` shows it: every secret value replaced by ``******``."""
    result: Payload = _map_secrets(payload, lambda _ref: MASK)
    return result


def resolved(payload: Payload, ctx: SecretContext) -> Payload:
    """The payload ready to send: secrets read now, and registered for redaction."""
    result: Payload = _map_secrets(payload, lambda ref: resolve(ref, ctx))
    return result


def secret_refs(payload: Payload) -> list[SecretRef]:
    found: list[SecretRef] = []
    _map_secrets(payload, found.append)
    return found


def flatten(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Column name → value, the inverse of ``expand`` for the fields a row can set."""
    out: dict[str, Any] = {}
    for column in COLUMNS:
        node: Any = payload
        for part in column.path or ("\0",):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            out[column.name] = node
    return out
