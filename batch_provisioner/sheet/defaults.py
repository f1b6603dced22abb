"""``defaults.toml``: job-wide values for any column, plus ``[limits]`` for the budgets.

A non-blank cell always wins over a default. Values are turned into the same text a cell would
hold, so defaults go through exactly the same validation as cells.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from batch_provisioner.errors import InputError
from batch_provisioner.settings import Limits, limit_problem
from batch_provisioner.sheet.columns import COLUMNS, KNOWN_COLUMNS
from batch_provisioner.sheet.guardrails import resembles
from batch_provisioner.sheet.read import normalise_header


@dataclass(frozen=True)
class Defaults:
    values: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    path: Path | None = None


def load_defaults(path: Path | None) -> Defaults:
    if path is None:
        return Defaults()
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError("defaults file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"defaults file cannot be read ({exc})", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"is not valid TOML ({exc})", path=str(path)) from None
    limits_raw = raw.pop("limits", {})
    if not isinstance(limits_raw, dict):
        raise InputError("[limits] must be a table", path=str(path), column="limits")
    values: dict[str, str] = {}
    for key, value in raw.items():
        name = normalise_header(key)
        if name not in KNOWN_COLUMNS:
            like = resembles(name, [c.name for c in COLUMNS])
            hint = (f"did you mean {' or '.join(repr(n) for n in like)}?" if like
                    else "defaults take column names such as sync_mode")
            raise InputError(f"unknown setting {key!r}; {hint}", path=str(path), column=key)
        values[name] = _as_text(value, path, key)
    limits: dict[str, float] = {}
    for key, value in limits_raw.items():
        if key not in Limits.keys():  # noqa: SIM118 - a classmethod, not a dict
            known = ", ".join(sorted(Limits.keys()))
            raise InputError(f"unknown [limits] key {key!r} (known: {known})",
                             path=str(path), column=key)
        problem = limit_problem(key, value)  # the apply flags' own checks; TOML has nan, inf
        if problem is not None:
            raise InputError(f"[limits] {key} {problem}", path=str(path), column=key)
        limits[key] = value
    return Defaults(values=values, limits=Limits.from_numbers(limits), path=path)


def _as_text(value: object, path: Path, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value).strip()
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    raise InputError("must be text, a number, a boolean or a list", path=str(path), column=key)


def _applies(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Where a default for ``name`` means something.

    A default ``daily_sync_time`` fills only the daily (``sync_frequency`` 1440) rows, and a
    default ``hide_setup_guide`` only the connect-card rows (those with a ``redirect_uri``):
    elsewhere they would turn a good row into an error or a setting that is never sent.
    """
    if name == "daily_sync_time":
        if "sync_frequency" not in frame.columns:
            return pl.lit(False)
        return pl.col("sync_frequency").str.contains(r"^0*1440(?:\.0+)?$").fill_null(False)
    if name == "hide_setup_guide":
        if "redirect_uri" not in frame.columns:
            return pl.lit(False)
        return pl.col("redirect_uri").is_not_null()
    return pl.lit(True)


def apply_defaults(frame: pl.DataFrame, defaults: Defaults) -> pl.DataFrame:
    """Fill blank cells (and absent columns) from the defaults; cells always win."""
    exprs = []
    later: dict[str, str] = {}
    for name, value in defaults.values.items():
        if name in ("daily_sync_time", "hide_setup_guide"):
            later[name] = value
        elif name in frame.columns:
            exprs.append(pl.col(name).fill_null(pl.lit(value)))
        else:
            exprs.append(pl.lit(value, dtype=pl.String).alias(name))
    frame = frame.with_columns(exprs) if exprs else frame
    conditional = []
    for name, value in later.items():
        fill = pl.when(_applies(frame, name)).then(pl.lit(value, dtype=pl.String))
        if name in frame.columns:
            conditional.append(pl.col(name).fill_null(fill).alias(name))
        else:
            conditional.append(fill.otherwise(None).alias(name))
    return frame.with_columns(conditional) if conditional else frame
