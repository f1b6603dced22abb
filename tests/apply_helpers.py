"""Shared helpers for the apply tests: generated sheets and a one-call job runner."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

from batch_provisioner.run.apply import ApplyOptions, RunResult, run_apply
from batch_provisioner.run.runner import RunControl
from batch_provisioner.settings import ApiCredentials, ClientSettings, RetryPolicy, Timeouts
from batch_provisioner.sheet.load import Prepared, prepare
from batch_provisioner.sheet.secrets import SecretContext

TOKEN = "tt-token-0123456789-do-not-leak"
ENV = {"TT_TOKEN": TOKEN}
GROUPS = ("decent_dropsy", "happy_harbor", "quiet_quasar")
TOKENS_DIR = "tokens"  # next to the sheet: where distinct_secrets puts each row's token file
HEADER = ["group_id", "schema", "sync_mode", "accounts", "access_token", "redirect_uri",
          "sync_frequency", "client_ref"]


def write_sheet(path: Path, n: int, *, connect_card_every: int = 0, prefix: str = "tt",
                groups: tuple[str, ...] = GROUPS, distinct_secrets: bool = False) -> Path:
    """``n`` valid rows spread over ``groups``; every k-th row a connect-card row.

    With ``distinct_secrets`` every row has its own token, as in an agency's sheet: a
    ``file:tokens/<prefix>_<i>.txt`` reference to a file written next to the sheet, holding a
    random 40-hex-digit token (a TikTok token's shape: no two share a beginning, so the
    redactor compiles them); ``row_tokens`` reads them back. Otherwise every row shares
    ``env:TT_TOKEN``."""
    folder = path.parent / TOKENS_DIR
    if distinct_secrets:
        folder.mkdir(exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(n):
            card = connect_card_every and i % connect_card_every == 0
            token = "env:TT_TOKEN"
            if distinct_secrets and not card:
                name = f"{prefix}_{i:05d}.txt"
                (folder / name).write_text(secrets.token_hex(20) + "\n", encoding="utf-8")
                token = f"file:{TOKENS_DIR}/{name}"
            writer.writerow([
                groups[i % len(groups)], f"{prefix}_{i:05d}",
                "SpecificAccounts" if i % 2 else "AllAccounts",
                f"70123456789012{i:05d}" if i % 2 else "",
                "" if card else token,
                "https://agency.example/done" if card else "",
                "1440", f"CLIENT-{i}",
            ])
    return path


def row_tokens(sheet: Path, prefix: str = "tt") -> list[str]:
    """The tokens ``write_sheet(sheet, ..., prefix=prefix, distinct_secrets=True)`` wrote."""
    return [p.read_text(encoding="utf-8").strip()
            for p in sorted((sheet.parent / TOKENS_DIR).glob(f"{prefix}_*.txt"))]


def write_dict_rows(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    """A CSV of ``rows`` (dicts) over ``columns``; AllAccounts, daily, the test token."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({"sync_mode": "AllAccounts", "sync_frequency": "1440",
                             "access_token": "env:TT_TOKEN", **row})
    return path


def load(path: Path, env: dict[str, str] | None = None) -> Prepared:
    return prepare(path, secrets=SecretContext(env=env or ENV, base_dir=path.parent))


def settings(concurrency: int | None = 8, *, read_timeout: float = 5.0, max_attempts: int = 5,
             max_wait: float = 3600.0) -> ClientSettings:
    return ClientSettings(
        concurrency=concurrency,
        timeouts=Timeouts(connect=5.0, read=read_timeout),
        retry=RetryPolicy(max_attempts=max_attempts, backoff_base=0.05, backoff_max=0.5,
                          max_wait=max_wait),
    )


def run_job(prepared: Prepared, url: str, run_dir: Path, *, client: ClientSettings | None = None,
            adopt: bool = True, transport: httpx.AsyncBaseTransport | None = None,
            control: RunControl | None = None, **options: Any) -> RunResult:
    opts = ApplyOptions(run_id=run_dir.name, run_dir=run_dir, client=client or settings(),
                        adopt_sandbox_limits=adopt, input_paths=(prepared.table.path,),
                        **options)
    call = functools.partial(run_apply, prepared, opts, ApiCredentials("sandbox", "sandbox", url),
                             SecretContext(env=ENV, base_dir=prepared.table.path.parent),
                             transport=transport, control=control)
    return anyio.run(call)


def creations(ledger: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(c["group_id"], c["schema"]): c["creations"] for c in ledger["creates"]}


def resends_without_lookup(ledger: dict[str, Any]) -> list[tuple[str, str]]:
    """Keys whose create was sent again after an answer that may have been applied (no answer,
    a 5xx, a dropped or reset connection) without a lookup of that key in between."""
    doubtful: set[tuple[str, str]] = set()
    found: list[tuple[str, str]] = []
    for entry in sorted(ledger["requests"], key=lambda e: e["seq"]):
        if not entry.get("schema") or not entry.get("group_id"):
            continue
        key = (entry["group_id"], entry["schema"])
        if entry["method"] == "GET":
            doubtful.discard(key)
        elif entry["method"] == "POST":
            if key in doubtful:
                found.append(key)
            status = entry["status"]
            if status is None or status >= 500 or entry.get("fault") in (
                    "reset", "drop_after_commit"):
                doubtful.add(key)
    return found


def cli(*args: str | Path, stdin: int | None = subprocess.DEVNULL,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                          capture_output=True, text=True, timeout=120, stdin=stdin,
                          env={**os.environ, **ENV, **(env_extra or {})},
                          cwd=Path(__file__).resolve().parents[1])
    assert "Traceback" not in done.stderr, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    return done


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
