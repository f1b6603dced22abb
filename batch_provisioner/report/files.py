"""The one writer of a run's result files, for apply and for the lifecycle commands.

``write_result_files`` writes results.csv, results.parquet, results.xlsx, summary.json and
report.html from an already-built results frame, scrubbing secrets and neutralising formula
cells in this one spot. The request timeline is kept in ``timeline.json`` (apply writes it) so
``refresh_results`` (after ``status``, ``connect-cards``, ``rollback``) re-renders the page
with the same timeline. Each file is written beside its target and moved into place, so a crash
mid-write never leaves half a results.parquet for the next command to read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.report.html import Timeline, render_html
from batch_provisioner.report.scrub import neutralise, scrub_frame, scrub_json
from batch_provisioner.report.xlsx import write_xlsx
from batch_provisioner.safety import REDACTOR

RESULT_FILES = ("results.csv", "results.parquet", "results.xlsx", "summary.json",
                "report.html")
TIMELINE_NAME = "timeline.json"


def write_result_files(run_dir: Path, frame: pl.DataFrame, summary: Mapping[str, Any],
                       timeline: Timeline, carry: Sequence[str]) -> dict[str, Path]:
    """Write the run's result files from ``frame`` (one row per input row); their paths.

    CSV and XLSX get the scrubbed, neutralised cells; parquet (what later commands read back)
    and the page get the scrubbed cells as they are; summary.json and the page's embedded
    summary are the same scrubbed summary. ``carry`` are the columns the page shows after
    ``schema``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = scrub_frame(frame)
    cells = neutralise(clean)
    safe_summary: dict[str, Any] = scrub_json(dict(summary))
    paths = {name: run_dir / name for name in RESULT_FILES}
    page = render_html(clean, safe_summary, timeline, carry)
    writers: dict[str, Callable[[Path], object]] = {
        "results.csv": cells.write_csv,
        "results.parquet": clean.write_parquet,
        "results.xlsx": lambda path: write_xlsx(cells, path),
        "summary.json": lambda path: path.write_text(
            json.dumps(safe_summary, indent=2) + "\n", encoding="utf-8"),
        "report.html": lambda path: path.write_text(page, encoding="utf-8"),
    }
    for name, write in writers.items():
        with _replacing(paths[name]) as temporary:
            write(temporary)
    return paths


def refresh_results(run_dir: Path, frame: pl.DataFrame, summary: Mapping[str, Any],
                    carry: Sequence[str]) -> dict[str, Path]:
    """Re-write the result files of a finished run, with the timeline apply kept.

    For ``status``, ``connect-cards`` and ``rollback``: ``frame`` is the run's results with
    their updates, ``summary`` the updated summary. The timeline comes from ``timeline.json``
    (none when the run has no such file).
    """
    return write_result_files(run_dir, frame, summary, read_timeline(run_dir), carry)


def write_timeline(run_dir: Path, timeline: Timeline) -> Path:
    """``timeline.json``: a JSON list of ``[seconds, method, status]``, one request a line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TIMELINE_NAME
    lines = [json.dumps([float(t), REDACTOR.scrub(str(method)), int(status)])
             for t, method, status in timeline]
    text = "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
    with _replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def read_timeline(run_dir: Path) -> list[tuple[float, str, int]]:
    """The timeline ``write_timeline`` kept; empty when there is none or it is unreadable.

    The timeline only draws the chart, so a damaged file costs the chart, never the report;
    entries that are not ``[seconds, method, status]`` are skipped.
    """
    try:
        data = json.loads((run_dir / TIMELINE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    timeline = []
    for entry in data:
        if (isinstance(entry, list) and len(entry) == 3
                and isinstance(entry[0], int | float) and not isinstance(entry[0], bool)
                and math.isfinite(entry[0]) and isinstance(entry[1], str)
                and isinstance(entry[2], int) and not isinstance(entry[2], bool)):
            timeline.append((float(entry[0]), entry[1], entry[2]))
    return timeline


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, moved over ``path`` once written in full."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
