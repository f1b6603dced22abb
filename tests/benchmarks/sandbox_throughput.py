"""Throughput of the Fivetran sandbox on loopback (a script, not a test).

    .venv/bin/python tests/benchmarks/sandbox_throughput.py [--seconds 8] [--clients 2]
        [--concurrency 32] [--out reports/benchmarks/sandbox_throughput.json]

Starts the sandbox as a separate process (profile ``unlimited``: no budgets, no faults),
then drives it from ``--clients`` load-generator processes, each keeping ``--concurrency``
keep-alive connections busy with a mix of requests for ``--seconds``. The default load
generator (``--client raw``) is a lean asyncio HTTP/1.1 keep-alive client, so that the
figure measures the sandbox rather than the client; ``--client httpx`` uses httpx's
AsyncClient instead (heavier per request). The mix:
60 % ``GET /v1/connections/{id}``, 20 % ``GET /v1/connections?group_id=&schema=`` (the
job's lookup), 10 % ``GET /v1/groups/{id}/connections?limit=10`` and 10 % creates.
It prints requests/s and writes a JSON report, after checking the count against the
sandbox's own ledger. The target is >= 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from batch_provisioner.sandbox import run_in_process  # noqa: E402

GROUPS = ("decent_dropsy", "happy_harbor", "quiet_quasar")
TARGET_RPS = 1000.0


def _payload(schema: str, group_id: str) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "service": "tiktok_ads",
        "run_setup_tests": False,
        "paused": False,
        "sync_frequency": 1440,
        "daily_sync_time": "14:00",
        "schedule_type": "auto",
        "config": {
            "sync_mode": "SpecificAccounts",
            "accounts": ["7012345678901234567"],
            "timeframe_months": "TWELVE",
            "attribution_window_size": "SEVEN",
            "schema": schema,
        },
    }


async def _drive(url: str, worker: int, seconds: float, concurrency: int) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, auth=("sandbox", "sandbox"), limits=limits, timeout=30, trust_env=False
    ) as client:
        known: list[tuple[str, str, str]] = []  # (id, group, schema)
        for n in range(20):
            group, schema = GROUPS[n % 3], f"w{worker}_seed_{n}"
            answer = await client.post("/v1/connections", json=_payload(schema, group))
            statuses[str(answer.status_code)] += 1
            known.append((answer.json()["data"]["id"], group, schema))
        deadline = time.monotonic() + seconds
        started = time.monotonic()

        async def loop(lane: int) -> None:
            step = 0
            while time.monotonic() < deadline:
                step += 1
                method, path, body = _pick(known, worker, lane, step)
                answer = await client.request(method, path, json=body)
                statuses[str(answer.status_code)] += 1

        async with anyio.create_task_group() as group_:
            for lane in range(concurrency):
                group_.start_soon(loop, lane)
        elapsed = time.monotonic() - started
    return {"statuses": dict(statuses), "elapsed": elapsed}


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams (one request at a time)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._auth = "Basic " + base64.b64encode(b"sandbox:sandbox").decode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send one request; returns (status, body)."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self._auth}\r\n"
            f"Accept: application/json;version=2\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        writer.write(head.encode() + b"\r\n" + payload)
        response_head = await reader.readuntil(b"\r\n\r\n")
        status = int(response_head[9:12])
        length = 0
        for line in response_head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await reader.readexactly(length)

    async def close(self) -> None:
        """Close the connection."""
        if self._streams is not None:
            self._streams[1].close()
            await self._streams[1].wait_closed()


async def _drive_raw(url: str, worker: int, seconds: float, concurrency: int) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    statuses: Counter[str] = Counter()
    seeder = RawClient(host, int(port))
    known: list[tuple[str, str, str]] = []
    for n in range(20):
        group, schema = GROUPS[n % 3], f"w{worker}_seed_{n}"
        status, body = await seeder.request("POST", "/v1/connections", _payload(schema, group))
        statuses[str(status)] += 1
        known.append((json.loads(body)["data"]["id"], group, schema))
    await seeder.close()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def lane(number: int) -> None:
        client, step = RawClient(host, int(port)), 0
        while time.monotonic() < deadline:
            step += 1
            method, path, body = _pick(known, worker, number, step)
            status, _ = await client.request(method, path, body)
            statuses[str(status)] += 1
        await client.close()

    await asyncio.gather(*(lane(n) for n in range(concurrency)))
    return {"statuses": dict(statuses), "elapsed": time.monotonic() - started}


def _pick(
    known: list[tuple[str, str, str]], worker: int, lane: int, step: int
) -> tuple[str, str, dict[str, Any] | None]:
    """The request mix: 60 % get, 20 % lookup by schema, 10 % group page, 10 % create."""
    pick = (lane * 7919 + step * 104729) % 100
    connection_id, group, schema = known[(lane + step) % len(known)]
    if pick < 60:
        return "GET", f"/v1/connections/{connection_id}", None
    if pick < 80:
        return "GET", f"/v1/connections?group_id={group}&schema={schema}", None
    if pick < 90:
        return "GET", f"/v1/groups/{group}/connections?limit=10", None
    return "POST", "/v1/connections", _payload(f"w{worker}_l{lane}_s{step}", group)


def _worker(
    kind: str, url: str, worker: int, seconds: float, concurrency: int, start_at: float, out: Any
) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    drive = _drive_raw if kind == "raw" else _drive
    out.put(anyio.run(drive, url, worker, seconds, concurrency))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "reports/benchmarks/sandbox_throughput.json"
    )
    args = parser.parse_args()

    with run_in_process(profile="unlimited", create_limit=0) as sandbox:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        start_at = time.time() + 1.5  # let every client process import before the clock starts
        processes = [
            context.Process(
                target=_worker,
                args=(
                    args.client,
                    sandbox.url,
                    n,
                    args.seconds,
                    args.concurrency,
                    start_at,
                    results,
                ),
            )
            for n in range(args.clients)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=args.seconds + 120) for _ in processes]
        for process in processes:
            process.join()
        ledger = sandbox.ledger(since=10**9)

    statuses: Counter[str] = Counter()
    for outcome in outcomes:
        statuses.update(outcome["statuses"])
    total = sum(statuses.values())
    measured = sum(statuses.values()) - 20 * args.clients  # the seeding creates are not timed
    seconds = max(outcome["elapsed"] for outcome in outcomes)
    rps = measured / seconds
    report = {
        "requests": measured,
        "seconds": round(seconds, 3),
        "requests_per_second": round(rps, 1),
        "target_requests_per_second": TARGET_RPS,
        "meets_target": rps >= TARGET_RPS,
        "client": args.client,
        "clients": args.clients,
        "concurrency_per_client": args.concurrency,
        "mix": {"get": 0.6, "list_by_schema": 0.2, "list_group_page": 0.1, "create": 0.1},
        "statuses": dict(statuses),
        "ledger_requests": ledger["counts"]["requests"],
        "ledger_matches": ledger["counts"]["requests"] == total,
        "max_in_flight": ledger["max_in_flight"],
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "profile": "unlimited",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"sandbox throughput: {rps:,.0f} requests/s ({measured} requests in {seconds:.2f} s, "
        f"{args.clients} {args.client} client(s) x {args.concurrency} connections); "
        f"report: {args.out}"
    )
    if not report["ledger_matches"] or set(statuses) - {"200", "201"}:
        print(f"unexpected answers: {dict(statuses)}; ledger {ledger['counts']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
