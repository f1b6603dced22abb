"""Pure expansion: one valid, canonical row (+ its custom reports) → the tiktok_ads payload.

The payload has exactly the seed's shape and key order. A field nobody set is left out, never
sent as null. Secrets stay ``SecretRef`` objects until ``resolved`` is called just before the
request is sent; ``masked`` shows them as ``******`` for ``render`` and for reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import polars as pl

from batch_provisioner.models import SERVICE, Payload
from batch_provisioner.safety import MASK
from batch_provisioner.sheet.columns import COLUMNS, REPORT_KEYS, Kind
from batch_provisioner.sheet.secrets import SecretContext, SecretRef, parse_ref, resolve


def _set(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _as_list(value: Any) -> list[str] | None:
    return [str(v) for v in value] if value else None


def _as_secret(value: Any) -> SecretRef:
    return _parse_ref_cached(str(value))


@lru_cache(maxsize=1024)
def _parse_ref_cached(text: str) -> SecretRef:
    # SecretRef is immutable, so rows that share a reference can share one object.
    return parse_ref(text)


_CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.BOOL: lambda value: value == "true", Kind.INT: int, Kind.LIST: _as_list,
    Kind.SECRET: _as_secret,
}

# (name, path, converter) of every column that lands in the payload, in the seed's key order;
# computed once because ``expand`` runs for every row of sheets with a million rows.
_PLAN: tuple[tuple[str, tuple[str, ...], Callable[[Any], Any]], ...] = tuple(
    (column.name, column.path, _CONVERTERS.get(column.kind, str))
    for column in COLUMNS if column.path)
_AUTH_COLUMNS = ("access_token", "client_id", "client_secret")


def expand(row: Mapping[str, Any], reports: Sequence[Mapping[str, Any]] = ()) -> Payload:
    """Build the create payload for one row. ``row`` holds canonical text values (or None).

    ``hide_setup_guide`` only goes out with a ``redirect_uri``: a connect-card config needs
    one (the OpenAPI spec makes it required), and without it the setting means nothing.
    """
    get = row.get
    has_auth = any(get(name) for name in _AUTH_COLUMNS)
    has_redirect = get("redirect_uri") is not None
    payload: Payload = {}
    for name, path, convert in _PLAN:
        value = get(name)
        if name == "run_setup_tests":
            if not has_auth:
                value = "false"  # a connect-card client has not authorised yet: nothing to test
        elif name == "hide_setup_guide":
            if not has_redirect:
                continue
        elif name == "schema" and reports:
            _set(payload, ("config", "custom_reports"), [report_payload(r) for r in reports])
        if value is None:
            continue
        typed = convert(value)
        if typed is None:
            continue
        if len(path) == 1:
            payload[path[0]] = typed
            if name == "group_id":
                payload["service"] = SERVICE
        else:
            _set(payload, path, typed)
    if "service" not in payload:
        payload = {"service": SERVICE, **payload}
    return payload


def expand_frame(
    frame: pl.DataFrame, reports: Sequence[Sequence[Mapping[str, Any]]] = ()
) -> list[Payload]:
    """``expand`` for every row of a canonical frame at once; ``reports[i]`` belong to row i.

    The same payloads, keys in the same order, as ``[expand(row) for row in frame]``, built
    column by column: a sheet of a million rows spends its time here, and touching only the
    cells that are set is several times faster than walking every column of every row.
    """
    names = set(frame.columns)
    auth = [pl.col(n).is_not_null() for n in _AUTH_COLUMNS if n in names]
    has_auth = pl.any_horizontal(auth) if auth else pl.lit(False)
    overrides = []
    if "run_setup_tests" in names:
        overrides.append(pl.when(has_auth).then(pl.col("run_setup_tests"))
                         .otherwise(pl.lit("false")).alias("run_setup_tests"))
    else:
        overrides.append(pl.when(has_auth).then(None).otherwise(pl.lit("false"))
                         .alias("run_setup_tests"))
    if "hide_setup_guide" in names:
        redirect = (pl.col("redirect_uri").is_not_null() if "redirect_uri" in names
                    else pl.lit(False))
        overrides.append(pl.when(redirect).then(pl.col("hide_setup_guide"))
                         .alias("hide_setup_guide"))
    frame = frame.with_columns(overrides)
    names = set(frame.columns)
    group_ids = (frame.get_column("group_id").to_list() if "group_id" in names
                 else [None] * frame.height)
    payloads: list[Payload] = [
        {"group_id": gid, "service": SERVICE} if gid is not None else {"service": SERVICE}
        for gid in group_ids
    ]
    for name, path, convert in _PLAN:
        if name == "schema" and reports:
            for payload, row_reports in zip(payloads, reports, strict=True):
                if row_reports:
                    _set(payload, ("config", "custom_reports"),
                         [report_payload(r) for r in row_reports])
        if name == "group_id" or name not in names:
            continue
        _fill(payloads, path, _typed_column(frame.get_column(name), convert))
    return payloads


def _typed_column(series: pl.Series, convert: Callable[[Any], Any]) -> list[Any]:
    if convert is _as_list:
        return [None if v is None else convert(v) for v in series.to_list()]
    # Most columns hold a few distinct values (enums, booleans, a shared token reference):
    # convert each once and let every row share the object, which saves memory and time.
    unique = series.drop_nulls().unique()
    if unique.len() * 4 > series.len():
        values = series.to_list()
        return values if convert is str else [None if v is None else convert(v) for v in values]
    shared = {text: convert(text) for text in unique.to_list()}
    return [None if v is None else shared[v] for v in series.to_list()]


def _fill(payloads: list[Payload], path: tuple[str, ...], values: list[Any]) -> None:
    if len(path) == 1:
        key = path[0]
        for payload, value in zip(payloads, values, strict=True):
            if value is not None:
                payload[key] = value
    elif len(path) == 2:
        outer, key = path
        for payload, value in zip(payloads, values, strict=True):
            if value is not None:
                node = payload.get(outer)
                if node is None:
                    node = payload[outer] = {}
                node[key] = value
    else:
        for payload, value in zip(payloads, values, strict=True):
            if value is not None:
                _set(payload, path, value)


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
