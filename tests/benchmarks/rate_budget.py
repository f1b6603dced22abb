"""Benchmark: how close apply runs to the ideal set by Fivetran's budgets, against naive clients.

    .venv/bin/python tests/benchmarks/rate_budget.py [--rows 600]
    .venv/bin/python tests/benchmarks/rate_budget.py --only e,h   # a quick look, no JSON

All figures come from one run, against a sandbox in a separate process (profile ``fast``:
Fivetran's counts over 60x shorter windows, so 20 creates or 250 setup tests per second).
Every sheet gives each row its own token (a ``file:`` secret), as agencies' sheets do. ``apply``
runs with default flags (the in-flight level adapts, up to 64) unless a case says otherwise.

The ideal of a case is the budget bound plus one request's latency::

    ideal = max over budgets b of (ceil(N_b / limit_b) - 1) * window_b  +  latency

where ``N_b`` is the events that budget counts (calls, creates, setup tests): ``limit`` events
may go at once, so the last batch may start after ``(ceil(N / limit) - 1)`` windows, and it ends
one latency later. ``latency`` is the mean latency the sandbox adds (the middle of its
``create_latency_ms`` range; 0 without one).

(a) ``apply`` on N rows with no faults: wall time over the ideal, 429s as a share of all calls.
(b) the same rows, with faults, pushed by a Terraform-like client (10 in flight, retries only
    on 429 honouring Retry-After in seconds, 3 tries, no lookup) beside ``apply``: wall time,
    rows lost (not known to exist afterwards) and duplicated (created twice).
(c) a sequential client with a 1 s sleep per row, like Fivetran's example scripts, on a
    subset: the ratio of its wall time to ours on the same rows.
(d) latency bound: no budgets, 100 ms server latency, ``--concurrency 32``: rows per second
    against the target 0.9 x concurrency / latency.
(e) slow creates: 600 rows with ``run_setup_tests: true`` (250 setup tests per fast minute
    bind), ``--create-limit 0``, 150..350 ms per create (``create_latency_ms``; 9 to 21 s at
    Fivetran's time scale; listings answer at once): wall / ideal (target <= 1.15; 10.0 at the
    old fixed 8 in flight).
(f) a latency sweep, 20 ms to 500 ms per create, the rows of (e): wall / ideal of ours and of
    the Terraform-like client (10 in flight), one run per point.
(g) planning cost, 2,000 rows in 2,000 groups (``planning_cost.py``): list calls ours against
    the per-group way, target ceil(connections / 1000) + 2.
(h) client CPU per request at 8, 64 and 128 in flight (``--concurrency N``), latency 250 ms,
    no budgets: the marginal process CPU (every thread) between two sizes of one sheet, so
    start-up, planning and reports do not count; journal and reservation fsyncs do (target
    <= 1 ms at 64).

Writes ``reports/benchmarks/rate_budget.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
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

from batch_provisioner.api.budgets import BudgetGate  # noqa: E402
from batch_provisioner.models import Status  # noqa: E402
from batch_provisioner.sandbox import run_in_process  # noqa: E402
from batch_provisioner.sandbox.faults import parse_fault_spec  # noqa: E402
from batch_provisioner.settings import Budget  # noqa: E402
from batch_provisioner.sheet.expand import resolved  # noqa: E402
from batch_provisioner.sheet.load import Prepared  # noqa: E402
from batch_provisioner.sheet.secrets import SecretContext  # noqa: E402
from tests.apply_helpers import ENV, creations, load, run_job, settings, write_sheet  # noqa: E402

FAULTS = "429=0.05,503=0.05,reset=0.03,drop_after_commit=0.05,slow=0.02"
OUT = ROOT / "reports" / "benchmarks" / "rate_budget.json"
SWEEP_MS = (20, 50, 100, 200, 350, 500)
CPU_LEVELS = (8, 64, 128)


def with_setup_tests(path: Path) -> Path:
    """The sheet with ``run_setup_tests: true`` on every row."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[*rows[0], "run_setup_tests"],
                                      *([*row, "true"] for row in rows[1:])])
    return path


def sheet(tmp: Path, name: str, n: int, *, setup_tests: bool = False, **kw: Any) -> Prepared:
    """``n`` rows, each with its own token file (as an agency's sheet has)."""
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    path = write_sheet(folder / "rows.csv", n, distinct_secrets=True, **kw)
    return load(with_setup_tests(path) if setup_tests else path)


def mean_latency(faults: str) -> float:
    """The middle of a fault spec's latency range (``create_latency_ms`` first, else
    ``latency_ms``), in seconds (0: none)."""
    spec = parse_fault_spec(faults)
    span = spec.create_latency_ms or spec.latency_ms
    return 0.0 if span is None else (span[0] + span[1]) / 2000


def ours(prepared: Prepared, tmp: Path, name: str, concurrency: int | None = None,
         read_timeout: float = 1.0, **sandbox: Any) -> dict[str, Any]:
    latency = mean_latency(str(sandbox.get("faults", "")))
    with run_in_process(profile=sandbox.pop("profile", "fast"), **sandbox) as box:
        started = time.monotonic()
        result = run_job(prepared, box.url, tmp / name,
                         client=settings(concurrency, read_timeout=read_timeout,
                                         max_attempts=8))
        wall = time.monotonic() - started
        ledger = box.ledger()
        limits = box.limits()
    figures = summarise(prepared, wall, ledger, limits, latency=latency,
                        known={o.row for o in result.outcomes
                               if o.status in (Status.CREATED, Status.EXISTS)})
    level = result.summary["in_flight"]
    figures["in_flight"] = {k: level[k] for k in ("mode", "max", "peak_limit",
                                                   "peak_in_flight", "strain_cuts")}
    return figures


def bound(prepared: Prepared, ledger: dict[str, Any], limits: dict[str, Any]) -> float | None:
    """The budget bound of what the run sent, as the gate reckons it (None: no budget)."""
    budgets = [Budget(b["name"], b["limit"], b["window_seconds"], b["applies_to"])
               for b in limits["budgets"]]
    if not budgets:
        return None
    setup = sum(1 for r in prepared.requests if r.payload.get("run_setup_tests") is True
                and "auth" in r.payload)
    return BudgetGate(budgets, 1, max_wait=0).ideal_seconds(
        ledger["counts"]["requests"], n_creates=len(prepared.requests), n_setup_tests=setup)


def summarise(prepared: Prepared, wall: float, ledger: dict[str, Any], limits: dict[str, Any],
              known: set[int], latency: float = 0.0) -> dict[str, Any]:
    made = creations(ledger)
    floor = bound(prepared, ledger, limits)
    ideal = None if floor is None else round(floor + latency, 3)
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


def naive(prepared: Prepared, tmp: Path, faults: str, **sandbox: Any) -> dict[str, Any]:
    box_args = {"profile": "fast", "seed": 7, "slow_ms": 1500, **sandbox}
    with run_in_process(faults=faults, **box_args) as box:
        started = time.monotonic()
        known = anyio.run(terraform_like, prepared, box.url)
        wall = time.monotonic() - started
        return summarise(prepared, wall, box.ledger(), box.limits(), known,
                         latency=mean_latency(faults))


def slow_creates(tmp: Path) -> dict[str, Any]:
    """(e): 600 rows with setup tests, no create budget, 150..350 ms a call, default flags."""
    rows = sheet(tmp, "e", 600, setup_tests=True)
    return ours(rows, tmp, "e", profile="fast", create_limit=0, read_timeout=30.0,
                faults="create_latency_ms=150..350")


def latency_sweep(tmp: Path) -> list[dict[str, Any]]:
    """(f): the rows of (e) at fixed latencies, ours (default flags) and Terraform-like."""
    rows = sheet(tmp, "f", 600, setup_tests=True)
    points = []
    for ms in SWEEP_MS:
        faults = f"create_latency_ms={ms}..{ms}"
        mine = ours(rows, tmp, f"f{ms}", profile="fast", create_limit=0, read_timeout=30.0,
                    faults=faults)
        theirs = naive(rows, tmp, faults, create_limit=0)
        points.append({"latency_ms": ms, "ideal_seconds": mine["ideal_seconds"],
                       "ours_wall_seconds": mine["wall_seconds"],
                       "ours_wall_over_ideal": mine["wall_over_ideal"],
                       "ours_share_429": mine["share_429"],
                       "ours_peak_in_flight": mine["max_in_flight"],
                       "terraform_like_wall_seconds": theirs["wall_seconds"],
                       "terraform_like_wall_over_ideal": theirs["wall_over_ideal"],
                       "terraform_like_share_429": theirs["share_429"],
                       "terraform_like_lost": theirs["lost"]})
    return points


def planning(tmp: Path) -> dict[str, Any]:
    """(g), from planning_cost.py."""
    from tests.benchmarks import planning_cost

    tmp.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = planning_cost.figures(tmp)
    return result


def client_cpu(tmp: Path) -> list[dict[str, Any]]:
    """(h): marginal process CPU per request at each pinned in-flight level."""
    out = []
    for level in CPU_LEVELS:
        small, large = max(100, 5 * level), 3 * max(100, 5 * level)
        cpu: dict[int, float] = {}
        seen = 0
        for n in (small, large):
            rows = sheet(tmp, f"h{level}_{n}", n)
            with run_in_process(profile="unlimited", faults="latency_ms=250..250") as box:
                before = time.process_time()
                run_job(rows, box.url, tmp / f"h{level}_{n}",
                        client=settings(level, read_timeout=30.0, max_attempts=8))
                cpu[n] = time.process_time() - before
                seen = max(seen, box.ledger()["max_in_flight"])
        per_request = (cpu[large] - cpu[small]) / (large - small) * 1000
        out.append({"in_flight": level, "rows": [small, large],
                    "cpu_seconds": [round(cpu[small], 3), round(cpu[large], 3)],
                    "cpu_ms_per_request": round(per_request, 3), "max_in_flight_seen": seen})
    return out


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
        rows = sheet(tmp, "rows", args.rows, connect_card_every=10)
        subset = sheet(tmp, "subset", args.sequential_rows, prefix="seq")
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
        figures["e_slow_creates"] = slow_creates(tmp)
        figures["f_latency_sweep"] = latency_sweep(tmp)
        figures["g_planning_cost"] = planning(tmp / "g")
        figures["h_client_cpu"] = client_cpu(tmp)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print_table(figures)
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


def quick(n: int, cases: set[str]) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows = sheet(tmp, "rows", n, connect_card_every=10)
        if "a" in cases:
            print("a", ours(rows, tmp, "a"))
        if "d" in cases:
            print("d", ours(rows, tmp, "d", concurrency=32, profile="unlimited",
                            faults="latency_ms=100..100"))
        if "e" in cases:
            print("e", slow_creates(tmp))
        if "f" in cases:
            for point in latency_sweep(tmp):
                print("f", point)
        if "g" in cases:
            print("g", planning(tmp / "g"))
        if "h" in cases:
            for point in client_cpu(tmp):
                print("h", point)


def print_table(figures: dict[str, Any]) -> None:
    print(f"{'case':34} {'rows':>5} {'wall s':>8} {'ideal s':>8} {'w/ideal':>8} "
          f"{'429 %':>6} {'lost':>5} {'dup':>4} {'rows/s':>7}")
    for key, value in figures.items():
        if not isinstance(value, dict) or "wall_seconds" not in value:
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
    print("(f) latency sweep: ms, ideal s, ours wall/ideal, Terraform-like wall/ideal "
          "(its 429 share, lost)")
    for p in figures["f_latency_sweep"]:
        print(f"    {p['latency_ms']:>4} {p['ideal_seconds']:>7} {p['ours_wall_over_ideal']:>8} "
              f"{p['terraform_like_wall_over_ideal']:>8} ({100 * p['terraform_like_share_429']:.1f}"
              f"% 429, {p['terraform_like_lost']} lost)")
    g = figures["g_planning_cost"]
    print(f"(g) planning cost: {g}")
    for h in figures["h_client_cpu"]:
        print(f"(h) {h['in_flight']:>4} in flight: {h['cpu_ms_per_request']} ms CPU/request "
              f"(saw {h['max_in_flight_seen']} in flight)")


if __name__ == "__main__":
    main()
