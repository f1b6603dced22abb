"""Benchmark: how close apply runs to the ideal set by Fivetran's budgets, against naive clients.

    .venv/bin/python tests/benchmarks/rate_budget.py [--rows 600]

All figures come from one run, against a sandbox in a separate process (profile ``fast``:
Fivetran's counts over 60x shorter windows, so 20 creates per second):

(a) ``apply`` on N rows with no faults: wall time over the ideal of the tightest budget, and
    429s as a share of all calls.
(b) the same rows, with faults, pushed by a Terraform-like client (10 in flight, retries only
    on 429 honouring Retry-After in seconds, 3 tries, no lookup) beside ``apply``: wall time,
    rows lost (not known to exist afterwards) and duplicated (created twice).
(c) a sequential client with a 1 s sleep per row, like Fivetran's example scripts, on a
    subset: the ratio of its wall time to ours on the same rows.
(d) latency bound: no budgets, 100 ms server latency, 32 in flight: rows per second against
    the target 0.9 x concurrency / latency.

Writes ``reports/benchmarks/rate_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import structlog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from batch_provisioner.models import Status  # noqa: E402
from batch_provisioner.sandbox import run_in_process  # noqa: E402
from batch_provisioner.sheet.expand import resolved  # noqa: E402
from batch_provisioner.sheet.load import Prepared  # noqa: E402
from batch_provisioner.sheet.secrets import SecretContext  # noqa: E402
from tests.apply_helpers import ENV, creations, load, run_job, settings, write_sheet  # noqa: E402

FAULTS = "429=0.05,503=0.05,reset=0.03,drop_after_commit=0.05,slow=0.02"
OUT = ROOT / "reports" / "benchmarks" / "rate_budget.json"


def ideal_seconds(n_creates: int, limit: int, window: float) -> float:
    """Rolling window: ``limit`` may go at once, so the last batch starts after this long."""
    return (math.ceil(n_creates / limit) - 1) * window


def ours(prepared: Prepared, tmp: Path, name: str, concurrency: int = 8,
         **sandbox: Any) -> dict[str, Any]:
    with run_in_process(profile=sandbox.pop("profile", "fast"), **sandbox) as box:
        started = time.monotonic()
        result = run_job(prepared, box.url, tmp / name,
                         client=settings(concurrency, read_timeout=1.0, max_attempts=8))
        wall = time.monotonic() - started
        ledger = box.ledger()
        limits = box.limits()
    return summarise(prepared, wall, ledger, limits,
                     known={o.row for o in result.outcomes
                            if o.status in (Status.CREATED, Status.EXISTS)})


def summarise(prepared: Prepared, wall: float, ledger: dict[str, Any], limits: dict[str, Any],
              known: set[int]) -> dict[str, Any]:
    made = creations(ledger)
    create_budget = next((b for b in limits["budgets"] if b["applies_to"] == "create"), None)
    ideal = (ideal_seconds(len(prepared.requests), create_budget["limit"],
                           create_budget["window_seconds"]) if create_budget else None)
    calls = ledger["counts"]["requests"]
    posts = [r["t"] for r in ledger["requests"] if r["method"] == "POST"]
    span = (max(posts) - min(posts)) if len(posts) > 1 else 0.0
    return {
        "create_phase_seconds": round(span, 3),
        "create_phase_rows_per_second": round((len(posts) - 1) / span, 2) if span else None,
        "rows": len(prepared.requests), "wall_seconds": round(wall, 3),
        "ideal_seconds": ideal, "wall_over_ideal": round(wall / ideal, 4) if ideal else None,
        "calls": calls, "http_429": ledger["counts"]["429"],
        "share_429": round(ledger["counts"]["429"] / calls, 5) if calls else 0.0,
        "lost": len(prepared.requests) - len(known),
        "duplicated": sum(1 for n in made.values() if n > 1),
        "max_in_flight": ledger["max_in_flight"],
        "rows_per_second": round(len(prepared.requests) / wall, 2),
    }


async def terraform_like(prepared: Prepared, url: str) -> set[int]:
    """10 in flight; retry only on 429 with Retry-After in seconds; 3 tries; no lookup."""
    known: set[int] = set()
    limiter = anyio.Semaphore(10)
    ctx = SecretContext(env=ENV, base_dir=prepared.table.path.parent)
    async with httpx.AsyncClient(base_url=url, auth=("sandbox", "sandbox"),
                                 timeout=httpx.Timeout(5.0, read=1.0)) as http:

        async def push(row: int, payload: dict[str, Any]) -> None:
            async with limiter:
                for _ in range(3):
                    try:
                        answer = await http.post("/v1/connections", json=payload)
                    except httpx.HTTPError:
                        return
                    if answer.status_code == 201:
                        known.add(row)
                        return
                    if answer.status_code != 429:
                        return
                    try:
                        await anyio.sleep(float(answer.headers.get("Retry-After", "")))
                    except ValueError:
                        return  # the SDK fails on an HTTP-date Retry-After

        async with anyio.create_task_group() as tg:
            for request in prepared.requests:
                tg.start_soon(push, request.row, resolved(request.payload, ctx))
    return known


def naive(prepared: Prepared, tmp: Path, faults: str) -> dict[str, Any]:
    with run_in_process(profile="fast", faults=faults, seed=7, slow_ms=1500) as box:
        started = time.monotonic()
        known = anyio.run(terraform_like, prepared, box.url)
        wall = time.monotonic() - started
        return summarise(prepared, wall, box.ledger(), box.limits(), known)


def sequential(prepared: Prepared) -> dict[str, Any]:
    """One row at a time with a 1 s sleep after each, as Fivetran's example scripts do."""
    ctx = SecretContext(env=ENV, base_dir=prepared.table.path.parent)
    with run_in_process(profile="fast") as box:
        started = time.monotonic()
        with httpx.Client(base_url=box.url, auth=("sandbox", "sandbox")) as http:
            for request in prepared.requests:
                http.post("/v1/connections", json=resolved(request.payload, ctx))
                time.sleep(1.0)
        wall = time.monotonic() - started
        return summarise(prepared, wall, box.ledger(), box.limits(),
                         set(r.row for r in prepared.requests))


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--sequential-rows", type=int, default=60)
    parser.add_argument("--only", default="", help="quick look: a comma list of a,d (no JSON)")
    args = parser.parse_args()
    if args.only:
        quick(args.rows, set(args.only.split(",")))
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows = load(write_sheet(tmp / "rows.csv", args.rows, connect_card_every=10,
                                distinct_secrets=True))
        subset = load(write_sheet(tmp / "subset.csv", args.sequential_rows, prefix="seq",
                                  distinct_secrets=True))
        figures: dict[str, Any] = {"rows": args.rows}
        figures["a_ours_no_faults"] = ours(rows, tmp, "a")
        figures["b_ours_with_faults"] = ours(rows, tmp, "b", faults=FAULTS, seed=7, slow_ms=1500)
        figures["b_terraform_like_with_faults"] = naive(rows, tmp, FAULTS)
        figures["b_terraform_like_no_faults"] = naive(rows, tmp, "")
        seq = sequential(subset)
        ours_subset = ours(subset, tmp, "c")
        figures["c_sequential"] = seq
        figures["c_ours_same_rows"] = ours_subset
        figures["c_sequential_over_ours"] = round(seq["wall_seconds"]
                                                  / ours_subset["wall_seconds"], 2)
        latency = ours(rows, tmp, "d", concurrency=32, profile="unlimited",
                       faults="latency_ms=100..100")
        latency["target_rows_per_second"] = round(0.9 * 32 / 0.1, 1)
        latency["over_target"] = round(latency["rows_per_second"]
                                       / latency["target_rows_per_second"], 3)
        figures["d_latency_bound"] = latency
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print_table(figures)
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


def quick(n: int, cases: set[str]) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows = load(write_sheet(tmp / "rows.csv", n, connect_card_every=10, distinct_secrets=True))
        if "a" in cases:
            print("a", ours(rows, tmp, "a"))
        if "d" in cases:
            print("d", ours(rows, tmp, "d", concurrency=32, profile="unlimited",
                            faults="latency_ms=100..100"))


def print_table(figures: dict[str, Any]) -> None:
    print(f"{'case':34} {'rows':>5} {'wall s':>8} {'ideal s':>8} {'w/ideal':>8} "
          f"{'429 %':>6} {'lost':>5} {'dup':>4} {'rows/s':>7}")
    for key, value in figures.items():
        if not isinstance(value, dict):
            continue
        ratio = value.get("wall_over_ideal")
        print(f"{key:34} {value['rows']:>5} {value['wall_seconds']:>8} "
              f"{value['ideal_seconds'] if value['ideal_seconds'] is not None else '-':>8} "
              f"{ratio if ratio is not None else '-':>8} {100 * value['share_429']:>6.2f} "
              f"{value['lost']:>5} {value['duplicated']:>4} {value['rows_per_second']:>7}")
    print(f"(c) sequential / ours on the same rows: {figures['c_sequential_over_ours']}x")
    d = figures["d_latency_bound"]
    print(f"(d) latency bound: {d['rows_per_second']} rows/s vs target "
          f"{d['target_rows_per_second']} ({d['over_target']}x)")


if __name__ == "__main__":
    main()
