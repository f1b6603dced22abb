"""Benchmark: what planning costs when every row has its own group, ours against per group.

    .venv/bin/python tests/benchmarks/planning_cost.py [--rows 2000] [--existing 1500]

One case, against a sandbox in a separate process (profile ``unlimited``: no budgets, so the
figures are the listing's own cost): N rows in N groups (an agency giving each client its own
group), the sandbox seeded with those groups and already holding E connections made through
the API first (a fifth of them the sheet's own rows, so the plan has ``exists`` rows too; the
rest other schemas in the same groups), so the account listing takes ceil(E / 1000) pages.
Then the sheet is planned twice, as ``apply`` plans (drift from the listing):

- ours: the listing strategy the planner picks (the account listing for many groups);
- per group: the same plan with the per-group listing forced (one call per group).

Measured: list calls (from the sandbox's ledger, and as ``Plan.list_calls`` says), wall
seconds of each plan, whether both plans decided the same action for every row, and the
target ceil(E / 1000) + 2 list calls with pass/fail.

:func:`figures` is the case as a function (``rate_budget.py`` can call it); ``main`` prints a
table and writes ``reports/benchmarks/planning_cost.json``.
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

from batch_provisioner.api.client import FivetranClient  # noqa: E402
from batch_provisioner.models import ActionKind, ConnectionRequest  # noqa: E402
from batch_provisioner.run.plan import (  # noqa: E402
    DriftCheck,
    ListingStrategy,
    Plan,
    make_plan,
)
from batch_provisioner.sandbox import SandboxHandle, run_in_process  # noqa: E402
from batch_provisioner.settings import ApiCredentials  # noqa: E402
from batch_provisioner.sheet.expand import resolved  # noqa: E402
from batch_provisioner.sheet.load import Prepared  # noqa: E402
from batch_provisioner.sheet.secrets import SecretContext  # noqa: E402
from tests.apply_helpers import ENV, load, settings, write_sheet  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "planning_cost.json"
_LIST_ENDS = ("/connections", "/groups")


def seed_connections(box: SandboxHandle, prepared: Prepared, existing: int) -> int:
    """``existing`` connections made through the API: a fifth are sheet rows, the rest other
    schemas in the sheet's groups. Returns how many the sandbox holds."""
    ctx = SecretContext(env=ENV, base_dir=prepared.table.path.parent)
    requests = prepared.requests
    own = requests[: existing // 5]
    bodies = [resolved(r.payload, ctx) for r in own]
    for i in range(existing - len(own)):
        body = resolved(requests[i % len(requests)].payload, ctx)
        body["config"] = {**body["config"], "schema": f"other_{i:05d}"}
        bodies.append(body)

    async def post_all() -> None:
        limiter = anyio.CapacityLimiter(16)
        async with httpx.AsyncClient(base_url=box.url, auth=box.auth, timeout=30) as http:
            async def post(body: dict[str, Any]) -> None:
                async with limiter:
                    answer = await http.post("/v1/connections", json=body)
                    assert answer.status_code == 201, answer.text

            async with anyio.create_task_group() as tg:
                for body in bodies:
                    tg.start_soon(post, body)

    anyio.run(post_all)
    return len(bodies)


def timed_plan(box: SandboxHandle, requests: list[ConnectionRequest],
               listing: ListingStrategy | None) -> tuple[Plan, float, int]:
    """One plan as ``apply`` makes it; (plan, wall seconds, list calls in the ledger)."""
    since = int(box.ledger()["counts"]["requests"])

    async def go() -> Plan:
        credentials = ApiCredentials(box.api_key, box.api_secret, box.url)
        async with FivetranClient(credentials, settings(8)) as client:
            return await make_plan(client, requests, drift=DriftCheck.LISTING, listing=listing)

    started = time.monotonic()
    plan = anyio.run(go)
    wall = time.monotonic() - started
    calls = sum(1 for r in box.ledger(since)["requests"]
                if r["method"] == "GET" and r["path"].endswith(_LIST_ENDS))
    return plan, wall, calls


def _decided(plan: Plan) -> dict[int, str]:
    return {a.request.row: str(a.kind) for a in plan.actions} | {
        row: "invalid" for row in plan.group_problems}


def figures(tmp: Path, rows: int = 2000, existing: int = 1500) -> dict[str, Any]:
    """The case: ``rows`` rows in as many groups, ``existing`` connections already there."""
    groups = tuple(f"grp_{i:05d}" for i in range(rows))
    prepared = load(write_sheet(tmp / "planning_cost.csv", rows, groups=groups,
                                prefix="pc"))
    with run_in_process(profile="unlimited", create_limit=0,
                        groups={g: f"Client {g}" for g in groups}) as box:
        held = seed_connections(box, prepared, existing)
        ours, ours_wall, ours_calls = timed_plan(box, prepared.requests, None)
        per_group, per_group_wall, per_group_calls = timed_plan(
            box, prepared.requests, ListingStrategy.PER_GROUP)
    target = math.ceil(held / 1000) + 2
    return {
        "rows": rows, "groups": len(groups), "connections_in_account": held,
        "exists_rows": ours.count(ActionKind.EXISTS),
        "ours": {"strategy": str(ours.listing), "list_calls": ours_calls,
                 "plan_list_calls": ours.list_calls, "wall_seconds": round(ours_wall, 3)},
        "per_group": {"strategy": str(per_group.listing), "list_calls": per_group_calls,
                      "plan_list_calls": per_group.list_calls,
                      "wall_seconds": round(per_group_wall, 3)},
        "same_plan": _decided(ours) == _decided(per_group),
        "calls_ratio": round(per_group_calls / max(1, ours_calls), 1),
        "wall_ratio": round(per_group_wall / max(1e-9, ours_wall), 1),
        "target_list_calls": target,
        "target_met": ours_calls <= target,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['rows']} rows in {result['groups']} groups, "
          f"{result['connections_in_account']} connections in the account, "
          f"{result['exists_rows']} of the rows already exist")
    print(f"{'way':12} {'strategy':10} {'list calls':>10} {'Plan.list_calls':>15} {'wall s':>8}")
    for way in ("ours", "per_group"):
        v = result[way]
        print(f"{way:12} {v['strategy']:10} {v['list_calls']:>10} {v['plan_list_calls']:>15} "
              f"{v['wall_seconds']:>8}")
    verdict = "pass" if result["target_met"] else "FAIL"
    print(f"target: <= ceil({result['connections_in_account']}/1000) + 2 = "
          f"{result['target_list_calls']} list calls: {verdict}; per group / ours: "
          f"{result['calls_ratio']}x calls, {result['wall_ratio']}x wall; "
          f"same plan: {result['same_plan']}")


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--existing", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        result = figures(Path(name), args.rows, args.existing)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
