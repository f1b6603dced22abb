"""Kill -9 while a run's reports are written; every lifecycle command must still run.

    .venv/bin/python tests/benchmarks/kill_during_reports.py [--points 24] [--naive-points 24]
        [--rows 300] [--seed 13]

One ``apply --sandbox`` run of ``--rows`` rows (the embedded sandbox's state kept under the
reports dir). Then, at each of ``--points`` seeded kill points, a child process rewrites that
run's report files in a loop (results.csv/.parquet/.xlsx, summary.json, report.html,
timeline.json, status.csv, the rollback files, as ``status`` and ``rollback`` do) and is
killed with SIGKILL after a seeded random delay; then ``status``, ``connect-cards`` and
``rollback --yes`` (``--sandbox --reports-dir``) run as real processes. A failure is any exit
code the README does not document for the command (70 above all), or a results.parquet that
still cannot be read after them. ``mid_write`` counts the kills that landed inside a write
(a temporary file left beside its target), the ones that left a 0-byte results.parquet
before every output went through one atomic writer; ``damaged_after_kill`` lists the report
files that could not be read back right after the kill, before any command ran.

``--naive-points N`` then repeats the same with the child writing every file in place, as the
writers did before (no temporary file, no rename): the kills leave damaged files, and the
commands must still run, rebuilding the reports from the journal. Prints the figures and
writes ``reports/benchmarks/kill_during_reports.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.apply_helpers import ENV, write_sheet  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "kill_during_reports.json"
RUN_ID = "killed"
#: The exit codes the README documents for each command (70 is never one of them).
DOCUMENTED = {"status": {0, 1, 2, 3}, "connect-cards": {0, 1, 2, 3}, "rollback": {0, 1, 2, 3}}


def child(reports: Path, naive: bool) -> None:
    """Rewrite the run's report files, as the lifecycle commands do, until killed."""
    import contextlib

    from batch_provisioner.report import files, results
    from batch_provisioner.report.files import refresh_results, write_text
    from batch_provisioner.report.results import write_csv
    from batch_provisioner.run import lifecycle as lc
    from batch_provisioner.run.rebuild import read_summary

    @contextlib.contextmanager
    def in_place(path: Path) -> Iterator[Path]:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield path

    if naive:  # the writers before issue 13: straight into the file itself
        files.replacing = results.replacing = in_place  # type: ignore[attr-defined]

    state = lc.load_run(reports, RUN_ID)
    assert state.results is not None
    summary = read_summary(state.run_dir) or {"run_id": RUN_ID}
    lines = state.results.select("source_row", "group_id", "schema", "connection_id")
    print("ready", flush=True)
    rewrites = 0
    while True:
        refresh_results(state.run_dir, state.results, {**summary, "rewrites": rewrites},
                        state.carry)
        write_csv(lines, state.run_dir / "status.csv")
        write_csv(lines, state.run_dir / "rollback" / "results.csv")
        write_text(state.run_dir / "rollback" / "summary.json", json.dumps(summary) + "\n")
        rewrites += 1


def cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **ENV}, stdin=subprocess.DEVNULL)


def damaged(run_dir: Path) -> list[str]:
    """The report files that cannot be read back (empty or cut short by the kill)."""
    import polars as pl

    def page(path: Path) -> None:
        if not path.read_text("utf-8").rstrip().endswith("</html>"):
            raise ValueError("cut short")

    def table(path: Path) -> None:  # polars reads a CSV cut mid-row: its last line tells
        if not path.read_bytes().endswith(b"\n"):
            raise ValueError("cut short")
        pl.read_csv(path)

    def workbook(path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                raise ValueError("a damaged member")

    readers: dict[str, Callable[[Path], object]] = {
        "results.parquet": pl.read_parquet, "results.csv": table, "results.xlsx": workbook,
        "status.csv": table, "rollback/results.csv": table,
        "summary.json": lambda path: json.loads(path.read_text("utf-8")), "report.html": page}
    found = []
    for name, read in readers.items():
        if not (run_dir / name).exists():
            continue
        try:
            read(run_dir / name)
        except Exception:  # any failure to read is what this counts
            found.append(name)
    return found


def kill_point(reports: Path, rng: random.Random, point: int,
               naive: bool = False) -> dict[str, Any]:
    run_dir = reports / RUN_ID
    process = subprocess.Popen([sys.executable, __file__, "--child", str(reports),
                                *(["--naive"] if naive else [])],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=ROOT)
    assert process.stdout is not None
    ready = process.stdout.readline().strip() == "ready"
    delay = rng.uniform(0.0, 0.6)
    time.sleep(delay)
    alive = process.poll() is None  # still writing: the kill lands in the loop
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = sorted(p.name for p in run_dir.rglob(".*.tmp"))
    figures: dict[str, Any] = {"point": point, "delay_s": round(delay, 3), "ready": ready,
                               "mid_write": bool(left), "temporary_files_left": left,
                               "damaged_after_kill": damaged(run_dir),
                               "exit_codes": {},
                               "failures": [] if ready and alive else ["the writer died "
                                                                       "before the kill"]}
    for name, extra in (("status", ()), ("connect-cards", ()), ("rollback", ("--yes",))):
        done = cli(name, RUN_ID, *extra, "--sandbox", "--reports-dir", reports)
        figures["exit_codes"][name] = done.returncode
        if done.returncode not in DOCUMENTED[name] or "internal error" in done.stderr:
            figures["failures"].append(f"{name} exit {done.returncode}: "
                                       f"{done.stderr.strip()[-300:]}")
    if damaged(run_dir):
        figures["failures"].append(f"damaged after the commands: {damaged(run_dir)}")
    return figures


def series(reports: Path, rng: random.Random, points: int, naive: bool
           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``points`` kill points; (each point's figures, the totals)."""
    started = time.monotonic()
    found = []
    for point in range(points):
        figures = kill_point(reports, rng, point, naive)
        found.append(figures)
        broken = ", ".join(figures["damaged_after_kill"])
        print(f"{'naive ' if naive else ''}point {point:2}: killed after "
              f"{figures['delay_s']:.3f} s {'mid-write' if figures['mid_write'] else ''}"
              f"{' damaged: ' + broken if broken else ''}; exit codes {figures['exit_codes']}"
              + (f"; FAILED {figures['failures']}" if figures["failures"] else ""), flush=True)
    totals = {"points": len(found), "mid_write_kills": sum(p["mid_write"] for p in found),
              "damaged_after_kill": sum(bool(p["damaged_after_kill"]) for p in found),
              "failures": sum(1 for p in found if p["failures"]),
              "exit_70": sum(1 for p in found for code in p["exit_codes"].values()
                             if code == 70),
              "commands_run": sum(len(p["exit_codes"]) for p in found),
              "wall_seconds": round(time.monotonic() - started, 1)}
    print(f"{'naive writer: ' if naive else ''}{totals['points']} kill points "
          f"({totals['mid_write_kills']} mid-write, {totals['damaged_after_kill']} left a "
          f"report file damaged), {totals['commands_run']} lifecycle commands: "
          f"{totals['failures']} failures, {totals['exit_70']} exit 70 "
          f"({totals['wall_seconds']} s)", flush=True)
    return found, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=24)
    parser.add_argument("--naive-points", type=int, default=24)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.naive)
        return
    rng = random.Random(args.seed)
    report: dict[str, Any] = {
        "benchmark": "kill_during_reports", "rows": args.rows, "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="kill_reports_") as folder:
        reports = Path(folder) / "reports"
        sheet = write_sheet(Path(folder) / "sheet.csv", args.rows, connect_card_every=5,
                            distinct_secrets=True)
        applied = cli("apply", sheet, "--sandbox", "--reports-dir", reports, "--run-id",
                      RUN_ID, "--yes", "--log-format", "json")
        if applied.returncode != 0:
            raise SystemExit(f"apply failed ({applied.returncode}): {applied.stderr[-2000:]}")
        report["points"], report["totals"] = series(reports, rng, args.points, False)
        if args.naive_points:
            report["naive_points"], report["naive_totals"] = series(
                reports, rng, args.naive_points, True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    if report["totals"]["failures"] or report.get("naive_totals", {}).get("failures"):
        sys.exit(1)


if __name__ == "__main__":
    main()
