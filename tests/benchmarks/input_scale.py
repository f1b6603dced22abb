"""Benchmark: read + validate + expand (``prepare``) on 100k and 1M generated rows.

Run it from the repository root::

    .venv/bin/python tests/benchmarks/input_scale.py            # 100k and 1M, CSV and Parquet
    .venv/bin/python tests/benchmarks/input_scale.py --sizes 100000 --formats csv --repeat 1
    .venv/bin/python tests/benchmarks/input_scale.py --sizes "" --formats csv  # distinct only

Each measurement runs in a fresh child process (importing this checkout's package), so the peak
RSS (the child's ``VmHWM``) belongs to that size alone. The time is the wall time of
``prepare(...)`` inside the child: imports and interpreter start-up are not counted, file
generation neither. Results are printed and written
to ``reports/benchmarks/input_scale.json``.

Targets (issue 2): 100k rows in <= 2 s and <= 500 MB on the 2-core machine; 1M rows about 10x
the 100k time (linear). ``--check`` exits 1 when a target is missed.

Distinct secrets (issue 14): an agency's sheet gives every client its own token. Beside the
shared-token sheet, the same 10,000 rows (``--distinct-rows``) are measured with one secret per
row that has a token (connect-card rows have none): ``file:`` (a file per row, written next to
the sheet: random 40-hex-digit tokens, a TikTok token's shape) and ``env:`` (a variable per
row). Each is timed for ``prepare`` and for ``validate`` (``prepare`` plus writing the
scrubbed ``validation.csv``). Target: distinct within 2x of the shared-token time
(``DISTINCT_RATIO``).

The generated sheet is a realistic mix: 500 groups, every fifth row a connect-card row, half
the rows SpecificAccounts with two 19-digit ids, enums and booleans in mixed spellings, one
carry-through column, 1 row in 100 invalid (a bad schema name), and one custom report for
every twentieth connection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS_100K = 2.0
TARGET_MB_100K = 500.0
LINEAR_RATIO = 10.0
LINEAR_TOLERANCE = 1.5  # 1M may take up to 15x the 100k time before we call it non-linear
DISTINCT_RATIO = 2.0  # a secret per row may cost at most twice the shared-token time
SECRET_MODES = ("shared", "file", "env")
ROOT = Path(__file__).resolve().parents[2]


def generate(rows: int, folder: Path, fmt: str, secrets: str = "shared"
             ) -> tuple[Path, Path, dict[str, str]]:
    """Write the connections sheet and its custom reports (and, for ``secrets="file"``, a
    token file per row); return both paths and the environment the sheet needs."""
    import polars as pl

    i = pl.col("i")
    card = (i % 5) == 4
    specific = ((i % 2) == 0) & ~card
    account = (i % 10**11).cast(pl.String).str.zfill(11)
    frame = pl.DataFrame({"i": pl.int_range(0, rows, eager=True, dtype=pl.Int64)}).select(
        pl.format("group_{}", i % 500).alias("group_id"),
        pl.when((i % 100) == 99).then(pl.format("Bad Schema {}", i))
        .otherwise(pl.format("tiktok_client_{}", i)).alias("schema"),
        pl.when(i % 3 == 0).then(pl.lit("360")).otherwise(pl.lit("1440")).alias("sync_frequency"),
        pl.when(i % 3 == 0).then(None).otherwise(pl.lit("14:00")).alias("daily_sync_time"),
        pl.lit("Auto").alias("schedule_type"),
        pl.when(i % 2 == 0).then(pl.lit("no")).otherwise(pl.lit("FALSE")).alias("paused"),
        pl.when(card).then(None).otherwise(pl.lit("yes")).alias("run_setup_tests"),
        pl.when(specific).then(pl.lit("specificaccounts")).otherwise(pl.lit("AllAccounts"))
        .alias("sync_mode"),
        pl.when(specific).then(pl.format("70123456{};70123457{}", account, account))
        .alias("accounts"),
        pl.when(i % 4 == 0).then(pl.lit("12")).otherwise(pl.lit("three")).alias("timeframe_months"),
        pl.lit("7").alias("attribution_window_size"),
        pl.when(card).then(None).otherwise(_token_ref(secrets, i)).alias("access_token"),
        pl.when(card).then(pl.lit("https://agency.example/onboarding/done")).alias("redirect_uri"),
        pl.when(card).then(pl.lit("true")).alias("hide_setup_guide"),
        pl.format("Client {}", i).alias("client_name"),
        i,
    )
    reports = frame.filter((i % 20) == 0).select(
        "schema", pl.lit("campaign_daily").alias("table_name"),
        pl.lit("auction_basic_campaign_report").alias("report_type"),
        pl.lit("spend,impressions,clicks").alias("metrics"),
        pl.lit("campaign_id,stat_time_day").alias("dimensions"),
        pl.lit("daily").alias("aggregate"))
    with_token = _with_token(rows)
    env = {"BENCH_TIKTOK_TOKEN": "bench-token-value"}
    if secrets == "file":
        (folder / "secrets").mkdir(exist_ok=True)
        for row in with_token:
            (folder / "secrets" / f"client_{row}.txt").write_text(_token(row) + "\n")
    elif secrets == "env":
        env.update((f"BENCH_TOKEN_{row}", _token(row)) for row in with_token)
    frame = frame.drop("i")
    sheet = folder / f"rows_{rows}_{secrets}.{fmt}"
    report_file = folder / f"reports_{rows}_{secrets}.csv"
    if fmt == "parquet":
        frame.write_parquet(sheet)
    else:
        frame.write_csv(sheet)
    reports.write_csv(report_file)
    return sheet, report_file, env


def _with_token(rows: int) -> list[int]:
    """The rows that bring a token: every row but the connect-card ones (``card`` above)."""
    return [i for i in range(rows) if i % 5 != 4]


def _token_ref(secrets: str, i: Any) -> Any:
    import polars as pl

    if secrets == "file":
        return pl.format("file:secrets/client_{}.txt", i)
    if secrets == "env":
        return pl.format("env:BENCH_TOKEN_{}", i)
    return pl.lit("env:BENCH_TIKTOK_TOKEN")


def _token(row: int) -> str:
    """A random-looking 40-hex-digit token, the same for a row on every run."""
    return f"{random.Random(row).getrandbits(160):040x}"


def _vm_hwm_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(sheet: Path, reports: Path, what: str = "prepare") -> None:
    """Measure one ``prepare`` (or one ``validate``, which also writes the scrubbed
    ``validation.csv``) in this (fresh) process and print the result as JSON."""
    import batch_provisioner
    from batch_provisioner.sheet.load import prepare
    from batch_provisioner.sheet.secrets import SecretContext

    validate = batch_provisioner.validate  # imported now, not timed
    baseline = _vm_hwm_mb()
    ctx = SecretContext(env=dict(os.environ), base_dir=sheet.parent)
    start = time.perf_counter()
    if what == "validate":
        out = sheet.parent / "validation_reports"
        prepared = validate(prepare(sheet, custom_reports=reports, secrets=ctx),
                            reports_dir=out, run_id="bench").sheet
    else:
        prepared = prepare(sheet, custom_reports=reports, secrets=ctx)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": round(seconds, 3), "peak_rss_mb": round(_vm_hwm_mb(), 1),
        "rss_after_imports_mb": round(baseline, 1), "rows": len(prepared.rows),
        "requests": len(prepared.requests), "invalid": len(prepared.invalid),
        "problems": prepared.problems.height, "package": batch_provisioner.__file__,
    }))


def measure(sheet: Path, reports: Path, env: dict[str, str] | None = None,
            what: str = "prepare") -> dict[str, Any]:
    """One child run. The child imports the package of this checkout (``ROOT``), not whatever
    the interpreter's site-packages point at."""
    child_env = {**os.environ, **(env or {"BENCH_TIKTOK_TOKEN": "bench-token-value"}),
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(sheet), str(reports), "--what", what],
        capture_output=True, text=True, check=False, timeout=900, env=child_env, cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"child failed for {sheet}:\n{result.stderr}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if not Path(measured.pop("package")).is_relative_to(ROOT):
        raise SystemExit(f"the child imported batch_provisioner from outside {ROOT}")
    return measured


def run(sizes: list[int], formats: list[str], repeat: int, folder: Path) -> list[dict[str, Any]]:
    results = []
    for fmt in formats:
        for size in sizes:
            sheet, reports, _ = generate(size, folder, fmt)
            runs = [measure(sheet, reports) for _ in range(repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            entry = {
                "format": fmt, "rows": size, "file_mb": round(sheet.stat().st_size / 2**20, 1),
                "seconds_min": best["seconds"],
                "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "rss_after_imports_mb": best["rss_after_imports_mb"],
                "rows_per_second": round(size / best["seconds"]),
                "requests": best["requests"], "invalid": best["invalid"],
                "problems": best["problems"], "runs": repeat,
            }
            results.append(entry)
            print(f"{fmt:8} {size:>9,} rows  {entry['seconds_min']:7.2f} s (median "
                  f"{entry['seconds_median']:.2f})  peak RSS {entry['peak_rss_mb']:7.1f} MB  "
                  f"{entry['rows_per_second']:>9,} rows/s  "
                  f"({entry['requests']:,} ready, {entry['invalid']:,} invalid)", flush=True)
            sheet.unlink()
            reports.unlink()
    return results


def run_distinct(rows: int, fmt: str, modes: list[str], repeat: int,
                 folder: Path) -> list[dict[str, Any]]:
    """``rows`` rows with one shared token, then with a token per row (each of ``modes``):
    ``prepare`` and ``validate`` times, and their ratio to the shared-token time."""
    results: list[dict[str, Any]] = []
    shared: dict[str, float] = {}
    for mode in ["shared", *[m for m in modes if m != "shared"]]:
        work = folder / f"distinct_{mode}"
        work.mkdir()
        sheet, reports, env = generate(rows, work, fmt, mode)
        entry: dict[str, Any] = {"format": fmt, "rows": rows, "secrets": mode,
                                 "distinct_secrets": 1 if mode == "shared" else len(
                                     _with_token(rows))}
        for what in ("prepare", "validate"):
            runs = [measure(sheet, reports, env, what) for _ in range(repeat)]
            best = min(r["seconds"] for r in runs)
            entry[f"{what}_seconds_min"] = best
            entry[f"{what}_seconds_median"] = round(
                statistics.median(r["seconds"] for r in runs), 3)
            entry[f"{what}_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            if mode == "shared":
                shared[what] = best
            entry[f"{what}_ratio_to_shared"] = round(best / shared[what], 2)
        entry.update(requests=runs[0]["requests"], invalid=runs[0]["invalid"],
                     problems=runs[0]["problems"], runs=repeat)
        results.append(entry)
        print(f"{fmt:8} {rows:>9,} rows  {mode:6} secrets ({entry['distinct_secrets']:,} "
              f"distinct)  prepare {entry['prepare_seconds_min']:6.3f} s "
              f"({entry['prepare_ratio_to_shared']:.2f}x)  validate "
              f"{entry['validate_seconds_min']:6.3f} s ({entry['validate_ratio_to_shared']:.2f}x)",
              flush=True)
        shutil.rmtree(work)
    return results


def check_distinct(results: list[dict[str, Any]]) -> list[str]:
    verdicts = []
    for entry in results:
        if entry["secrets"] == "shared":
            continue
        for what in ("prepare", "validate"):
            ratio = entry[f"{what}_ratio_to_shared"]
            verdicts.append(
                f"{'PASS' if ratio <= DISTINCT_RATIO else 'MISS'} {entry['format']} "
                f"{entry['rows'] // 1000}k {what}, one {entry['secrets']}: secret per row / shared "
                f"token: {ratio:.2f}x (<= {DISTINCT_RATIO:.0f}x)")
    return verdicts


def check_targets(results: list[dict[str, Any]]) -> list[str]:
    verdicts = []
    for fmt in sorted({r["format"] for r in results}):
        by_size = {r["rows"]: r for r in results if r["format"] == fmt}
        small = by_size.get(100_000)
        if small:
            ok = (small["seconds_min"] <= TARGET_SECONDS_100K
                  and small["peak_rss_mb"] <= TARGET_MB_100K)
            verdicts.append(f"{'PASS' if ok else 'MISS'} {fmt} 100k: {small['seconds_min']} s "
                            f"(<= {TARGET_SECONDS_100K}), {small['peak_rss_mb']} MB "
                            f"(<= {TARGET_MB_100K})")
        large = by_size.get(1_000_000)
        if small and large:
            ratio = large["seconds_min"] / small["seconds_min"]
            ok = ratio <= LINEAR_RATIO * LINEAR_TOLERANCE
            verdicts.append(f"{'PASS' if ok else 'MISS'} {fmt} 1M/100k time ratio {ratio:.1f} "
                            f"(linear is {LINEAR_RATIO:.0f})")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/input_scale.json"))
    parser.add_argument("--distinct-rows", type=int, default=10_000,
                        help="rows of the distinct-secrets comparison (0: skip it)")
    parser.add_argument("--distinct-secrets", default="file,env",
                        help="how each row brings its own secret: file, env")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--what", default="prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, what=args.what)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    formats = [f.strip() for f in args.formats.split(",")]
    modes = [m.strip() for m in args.distinct_secrets.split(",") if m.strip()]
    if unknown := set(modes) - set(SECRET_MODES):
        parser.error(f"--distinct-secrets: unknown {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="input_scale_") as folder:
        results = run(sizes, formats, args.repeat, Path(folder))
        distinct = (run_distinct(args.distinct_rows, formats[0], modes, args.repeat,
                                 Path(folder)) if args.distinct_rows else [])
    verdicts = check_targets(results) + check_distinct(distinct)
    for line in verdicts:
        print(line)
    import polars as pl

    report = {
        "benchmark": "input_scale", "what": "prepare(): read + validate + expand",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "polars": pl.__version__, "platform": platform.platform()},
        "targets": {"seconds_100k": TARGET_SECONDS_100K, "peak_rss_mb_100k": TARGET_MB_100K,
                    "ratio_1m_to_100k": LINEAR_RATIO, "distinct_to_shared": DISTINCT_RATIO},
        "results": results, "distinct_secrets": distinct, "verdicts": verdicts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    if args.check and any(v.startswith("MISS") for v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
