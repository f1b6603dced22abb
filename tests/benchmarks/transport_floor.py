"""Benchmark: the client CPU that httpx itself costs per request, before any of our work.

    .venv/bin/python tests/benchmarks/transport_floor.py [--requests 3000] [--latency-ms 50]

Issue 14's target (h) asks for at most 1 ms of client CPU per request at 64 in flight.
``rate_budget.py`` (h) measures the whole job. This benchmark measures the floor under it:
httpx alone, on this machine.

The server is a minimal HTTP/1.1 responder on loopback, in a child process, so its CPU is not
counted. It reads each request, waits ``--latency-ms`` and answers a fixed 201 with a small
JSON body, keeping the connection alive. It costs far less than the sandbox.

Two clients send the same create-sized POST:

- ``transport``: ``httpx.AsyncHTTPTransport.handle_async_request`` in pools of 8 connections,
  as ``api/client.py`` sends (no client layer);
- ``client``: one ``httpx.AsyncClient`` with a pool as big as the level.

Both run with ``api/wire.skip_failing_sniffio_import()`` applied, as the job does: without it
httpcore retries a failing ``import sniffio`` on every lock it sets up (about 8 per request),
a cost the job does not pay. Under cProfile that was 40 % of the profiled time; unprofiled, the
difference is within this machine's run-to-run noise.

Each client runs at 8, 64 and 128 requests in flight. CPU is ``time.process_time()`` of this
process over the timed requests, after one warm-up round that opens the connections. It
excludes start-up and connection set-up.

Prints a table and writes ``reports/benchmarks/transport_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from batch_provisioner.api.wire import skip_failing_sniffio_import  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "transport_floor.json"
LEVELS = (8, 64, 128)
POOL = 8  # connections per transport, as api/client.py's POOL_CONNECTIONS
BODY = b'{"code":"Success","data":{"id":"jovial_willow","service":"tiktok_ads"}}'
PAYLOAD = json.dumps({
    "service": "tiktok_ads", "group_id": "decent_dropsy", "run_setup_tests": True,
    "config": {"schema": "tiktok_acme_retail", "sync_mode": "AllAccounts"},
    "auth": {"access_token": "t" * 40}}).encode()


async def _serve(latency: float) -> None:
    """Serve on a free loopback port; its number goes to stdout once it accepts."""
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(latency)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


async def _measure(url: str, mode: str, level: int, n: int) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if mode == "client":
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=level,
                                                       max_keepalive_connections=level))

        async def one() -> None:
            answer = await client.post(url, content=PAYLOAD, headers=headers)
            answer.json()
        closers = [client.aclose]
    else:
        pools = [httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=POOL,
                                                              max_keepalive_connections=POOL))
                 for _ in range(max(1, level // POOL))]
        sent = 0

        async def one() -> None:
            nonlocal sent
            sent += 1
            request = httpx.Request("POST", url, content=PAYLOAD, headers=headers)
            answer = await pools[sent % len(pools)].handle_async_request(request)
            await answer.aread()
            await answer.aclose()
            json.loads(answer.content)
        closers = [pool.aclose for pool in pools]
    places = asyncio.Semaphore(level)

    async def guarded() -> None:
        async with places:
            await one()

    await asyncio.gather(*(guarded() for _ in range(level)))  # warm-up: opens the connections
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(guarded() for _ in range(n)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    for close in closers:
        await close()
    return {"mode": mode, "in_flight": level, "requests": n,
            "cpu_ms_per_request": round(cpu / n * 1000, 3),
            "requests_per_second": round(n / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.latency_ms / 1000))
        return
    skip_failing_sniffio_import()
    server = subprocess.Popen([sys.executable, __file__, "--serve",
                               "--latency-ms", str(args.latency_ms)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())  # '' (ValueError) if the child died first
        url = f"http://127.0.0.1:{port}/v1/connections"
        cases = [asyncio.run(_measure(url, mode, level, args.requests))
                 for mode in ("transport", "client") for level in LEVELS]
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"httpx {httpx.__version__}, {args.requests} requests per case, "
          f"{args.latency_ms:g} ms server latency, loopback")
    print(f"{'client':10} {'in flight':>9} {'CPU ms/request':>15} {'requests/s':>11}")
    for case in cases:
        print(f"{case['mode']:10} {case['in_flight']:>9} {case['cpu_ms_per_request']:>15.3f} "
              f"{case['requests_per_second']:>11.1f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"httpx": httpx.__version__, "latency_ms": args.latency_ms,
                               "target_ms_at_64": 1.0, "cases": cases}, indent=2) + "\n",
                   encoding="utf-8")
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
