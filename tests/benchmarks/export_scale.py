"""Benchmark: ``export`` of 2,000 connections stays inside the budgets.

    .venv/bin/python tests/benchmarks/export_scale.py [--connections 2000] [--groups 20]

Three cases, each against a sandbox in a separate process on 127.0.0.1 (profile ``fast``:
Fivetran's counts over 60x shorter windows, so 20,000 calls a 60 s window), seeded with N
existing connections (every seed field, a custom report each) spread over G groups:

- ``account``: ``export --all-groups`` (G > 2 groups: the account's listing, 1,000 a page);
- ``one_group``: the N connections in one group, ``export --group`` (that group's listing);
- ``shared``: as ``account``, after other tools of the account used 17,000 of the window's
  20,000 calls (``POST /sandbox/usage``, seen in ``X-Rate-Limit-Remaining``): the export's
  calls must fit in the 3,000 left, without a 429.

Measured from the sandbox's ledger (what it really served) and the result: calls (groups
listing, connection listing pages, one GET per connection), 429s, the most calls in any 60 s
window, the wall time of the reading (``ExportResult.wall_seconds``) and of the whole call
(the XLSX of N rows included), and the bound the budgets set (``ideal_seconds``: the least
time the calls budget allows for those calls; 0 when they fit in one window, as 2,003 calls
do in 20,000, so the wall time is then the requests' own latency). ``over_bound`` is the wall
time over the bound where it is not 0. ``inside_budgets``: no 429 and no window over what the
budget (less the other tools' share) allows. ``bounds`` gives the bound the same calls meet
under Fivetran's own numbers: the paid plan's 20,000 calls an hour and a trial's 500.

Writes ``reports/benchmarks/export_scale.json``.
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

import structlog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import batch_provisioner as bp  # noqa: E402
from batch_provisioner.api.budgets import BudgetGate  # noqa: E402
from batch_provisioner.sandbox import SandboxHandle, run_in_process  # noqa: E402
from batch_provisioner.settings import Budget  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "export_scale.json"
#: Fivetran's calls budgets (reference/fivetran_api.md): the paid plan's and a trial's.
FIVETRAN_BUDGETS = {"paid_20000_per_hour": Budget("calls_per_hour", 20_000, 3600.0),
                    "trial_500_per_hour": Budget("calls_per_hour", 500, 3600.0)}
WINDOW_CALLS = 20_000  # the fast profile's calls budget: 20,000 a (scaled) hour of 60 s
WINDOW_SECONDS = 60.0
USED_BY_OTHERS = 17_000  # the ``shared`` case: calls other tools used in the window


def seeds(n: int, groups: list[str]) -> list[dict[str, Any]]:
    """N connections made by hand, every seed field set, spread over ``groups``."""
    return [{
        "id": f"conn_{i:05d}", "group_id": groups[i % len(groups)], "service": "tiktok_ads",
        "paused": i % 7 == 0, "pause_after_trial": False, "sync_frequency": 1440,
        "data_delay_sensitivity": "NORMAL", "data_delay_threshold": 0,
        "daily_sync_time": f"{i % 24:02d}:00", "schedule_type": "auto",
        "networking_method": "Directly",
        "connect_card_config": {"redirect_uri": "https://agency.example/done",
                                "hide_setup_guide": True},
        "config": {"sync_mode": "SpecificAccounts", "accounts": [f"70123456789012{i:05d}"],
                   "timeframe_months": "TWELVE", "attribution_window_size": "SEVEN",
                   "schema": f"tiktok_client_{i:05d}",
                   "custom_reports": [{"report_type": "auction_basic_campaign_report",
                                       "metrics": ["spend", "clicks"],
                                       "table_name": "campaign_daily",
                                       "dimensions": ["campaign_id", "stat_time_day"],
                                       "aggregate": "daily"}]},
        "setup_state": "connected" if i % 5 else "incomplete",
    } for i in range(n)]


def served(box: SandboxHandle, since: int) -> dict[str, Any]:
    """What the sandbox served after ``since``: calls by kind, 429s, the busiest window."""
    requests = [r for r in box.ledger(since)["requests"] if r["path"].startswith("/v1/")]
    times = sorted(float(r["t"]) for r in requests)
    busiest, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= WINDOW_SECONDS:
            start += 1
        busiest = max(busiest, end - start + 1)
    return {
        "calls": len(requests),
        "groups_listing": sum(1 for r in requests if r["path"] == "/v1/groups"),
        "listing_pages": sum(1 for r in requests if r["path"] == "/v1/connections"
                             or r["path"].endswith("/connections")),
        "gets": sum(1 for r in requests if r["path"].startswith("/v1/connections/")),
        "throttled_429": sum(1 for r in requests if r["status"] == 429),
        "busiest_window_calls": busiest,
    }


def case(name: str, n: int, groups: list[str], tmp: Path, *, shared: bool = False,
         one_group: bool = False) -> dict[str, Any]:
    """One export of ``n`` connections; its figures."""
    with run_in_process(profile="fast", groups={g: f"Client group {g}" for g in groups},
                        connections=seeds(n, groups)) as box:
        since = int(box.ledger()["counts"]["requests"])
        if shared:
            box.use_budget(USED_BY_OTHERS)
        started = time.monotonic()
        selection: dict[str, Any] = {"groups": groups} if one_group else {"all_groups": True}
        result = bp.export(**selection, out=tmp / f"{name}.xlsx", sandbox_url=box.url)
        total = time.monotonic() - started
        figures = served(box, since)
    calls, bound = result.calls, result.ideal_seconds
    return {
        "case": name, "connections": n, "groups": len(groups),
        "exported": len(result.connections), "exit_code": int(result.exit_code),
        "calls": calls, **{k: v for k, v in figures.items() if k != "calls"},
        "ledger_calls": figures["calls"],
        "budget": f"{WINDOW_CALLS:,} calls per {WINDOW_SECONDS:g} s",
        "budget_used_share": round(calls / WINDOW_CALLS, 3),
        "wall_seconds_reading": round(result.wall_seconds, 2),
        "wall_seconds_total": round(total, 2),
        "bound_seconds": round(bound, 2),
        "over_bound": round(result.wall_seconds / bound, 2) if bound > 0 else None,
        "inside_budgets": figures["throttled_429"] == 0
        and figures["busiest_window_calls"] <= WINDOW_CALLS - (USED_BY_OTHERS if shared else 0),
        "bounds": {name: round(BudgetGate([budget], 1, max_wait=3600.0).ideal_seconds(calls), 1)
                   for name, budget in FIVETRAN_BUDGETS.items()},
    }


def figures(tmp: Path, n: int, groups: int) -> dict[str, Any]:
    names = [f"grp_{i:03d}" for i in range(groups)]
    cases = [case("account", n, names, tmp), case("one_group", n, names[:1], tmp,
                                                   one_group=True),
             case("shared", n, names, tmp, shared=True)]
    expected_calls = 1 + math.ceil(n / 1000) + n
    return {"connections": n, "groups": groups, "expected_calls_account": expected_calls,
            "cases": cases,
            "all_inside_budgets": all(c["inside_budgets"] for c in cases),
            "all_exported": all(c["exported"] == n and c["exit_code"] == 0 for c in cases)}


def print_table(result: dict[str, Any]) -> None:
    print(f"export of {result['connections']:,} connections ({result['groups']} groups); "
          f"expected calls with the account listing: {result['expected_calls_account']:,}")
    head = (f"{'case':10} {'calls':>6} {'pages':>5} {'GETs':>5} {'429':>4} {'busiest':>8} "
            f"{'read s':>7} {'total s':>8} {'bound s':>8} {'over':>5} inside")
    print(head)
    for c in result["cases"]:
        over = "-" if c["over_bound"] is None else f"{c['over_bound']:.2f}"
        print(f"{c['case']:10} {c['calls']:>6} {c['listing_pages']:>5} {c['gets']:>5} "
              f"{c['throttled_429']:>4} {c['busiest_window_calls']:>8} "
              f"{c['wall_seconds_reading']:>7} {c['wall_seconds_total']:>8} "
              f"{c['bound_seconds']:>8} {over:>5} {c['inside_budgets']}")
    print(f"budget: {WINDOW_CALLS:,} calls per {WINDOW_SECONDS:g} s (fast profile); all inside "
          f"the budgets: {result['all_inside_budgets']}; all exported: {result['all_exported']}")
    bounds = result["cases"][0]["bounds"]
    print("the same calls under Fivetran's budgets: at least "
          + ", ".join(f"{s:g} s ({name})" for name, s in bounds.items()))


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        result = figures(Path(name), args.connections, args.groups)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
