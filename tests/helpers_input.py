"""Helpers shared by the input tests (reading, validation, payloads, the validate/render CLI)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xlsxwriter

from batch_provisioner.sheet.load import Prepared, prepare
from batch_provisioner.sheet.secrets import SecretContext

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "input_templates"
SEED_PATH = REPO / "tests/data/fivetran/tiktok_ads_api_configuration.txt"  # cut_openapi.py
MASK = "******"
TOKEN_ENV = "TIKTOK_TEST_TOKEN"
TOKEN_VALUE = "tok-3f9c2a7e51d84b0c"
ENV = {TOKEN_ENV: TOKEN_VALUE, "TIKTOK_TEST_ID": "cid-1234", "TIKTOK_TEST_SECRET": "csec-98765"}
BASE_ROW: dict[str, str] = {"group_id": "decent_dropsy", "schema": "tiktok_acme",
                            "access_token": f"env:{TOKEN_ENV}"}


def seed_payload() -> dict[str, Any]:
    """The request body shown in the seed document."""
    text = SEED_PATH.read_text("utf-8")
    start = text.index("{", text.index("POST"))
    payload, _ = json.JSONDecoder().raw_decode(text[start:])
    assert isinstance(payload, dict)
    return payload


def key_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested payload, depth first, in key order (lists as ``[]``)."""
    paths: list[tuple[str, ...]] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            paths.append((*prefix, key))
            paths.extend(key_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for item in node:
            paths.extend(p for p in key_paths(item, (*prefix, "[]")) if p not in paths)
    return paths


def assert_seed_shape(payload: Mapping[str, Any], seed: Mapping[str, Any]) -> None:
    """Every key of ``payload`` exists at the same place in ``seed``, in the seed's key order,
    with a value of the seed's JSON type."""
    _compare(payload, seed, "payload")


def _compare(node: Any, model: Any, where: str) -> None:
    if isinstance(model, Mapping):
        assert isinstance(node, Mapping), f"{where} should be an object, is {node!r}"
        order = list(model)
        extra = [k for k in node if k not in model]
        assert not extra, f"{where} has keys the seed lacks: {extra}"
        positions = [order.index(k) for k in node]
        assert positions == sorted(positions), (
            f"{where} keys {list(node)} are not in the seed's order {order}")
        for key, value in node.items():
            _compare(value, model[key], f"{where}.{key}")
    elif isinstance(model, list):
        assert isinstance(node, list), f"{where} should be a list, is {node!r}"
        for index, item in enumerate(node):
            _compare(item, model[0], f"{where}[{index}]")
    else:
        assert type(node) is type(model), (
            f"{where} is {type(node).__name__} {node!r}; the seed has {type(model).__name__}")


def write_csv(path: Path, rows: Sequence[Mapping[str, str]],
              columns: Sequence[str] | None = None) -> Path:
    names = list(columns) if columns is not None else list(
        dict.fromkeys(name for row in rows for name in row))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([row.get(name, "") for name in names])
    return path


def write_xlsx(path: Path, sheets: Mapping[str, Sequence[Sequence[Any]]]) -> Path:
    """Each sheet as a list of rows (the first is the header). ``str`` cells are written as
    text, ``int``/``float`` as numbers, ``None`` left empty."""
    workbook = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, str):
                    sheet.write_string(r, c, value)
                else:
                    sheet.write_number(r, c, value)
    workbook.close()
    return path


def rows_to_sheet(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    names = list(dict.fromkeys(name for row in rows for name in row))
    return [names, *([row.get(name) for name in names] for row in rows)]


def context(base: Path, env: Mapping[str, str] | None = None) -> SecretContext:
    return SecretContext(env=dict(ENV if env is None else env), base_dir=base)


def prepare_rows(tmp_path: Path, rows: Sequence[Mapping[str, str]], *,
                 reports: Sequence[Mapping[str, str]] | None = None,
                 defaults: str | None = None, env: Mapping[str, str] | None = None,
                 columns: Sequence[str] | None = None) -> Prepared:
    """Write ``rows`` (and ``reports``) as CSV files in ``tmp_path`` and prepare them."""
    sheet = write_csv(tmp_path / "sheet.csv", rows, columns)
    report_file = None
    if reports is not None:
        report_file = write_csv(tmp_path / "reports.csv", reports)
    defaults_file = None
    if defaults is not None:
        defaults_file = tmp_path / "defaults.toml"
        defaults_file.write_text(defaults, encoding="utf-8")
    return prepare(sheet, defaults_path=defaults_file, custom_reports=report_file,
                   secrets=context(tmp_path, env))


def problems(prepared: Prepared, *, row: int | None = None,
             source: str | None = None) -> list[dict[str, Any]]:
    frame = prepared.problems
    found: list[dict[str, Any]] = frame.to_dicts()
    return [p for p in found if (row is None or p["row"] == row)
            and (source is None or p["source"].endswith(source))]


def problem_keys(prepared: Prepared, row: int = 2) -> set[tuple[str, str]]:
    """(column, severity) of every problem of the connections-sheet row ``row``."""
    label = prepared.table.label
    return {(p["column"], p["severity"]) for p in problems(prepared, row=row)
            if p["source"] == label}


def run_cli(args: Sequence[str | os.PathLike[str]], cwd: Path,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m batch_provisioner ARGS`` in ``cwd``, as a user would run it."""
    full_env = {**os.environ, **ENV, **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    full_env.pop("BATCH_PROVISIONER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "batch_provisioner", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False,
    )
