"""The one writer of a run's result files, for apply and for the lifecycle commands.

``write_result_files`` writes results.csv, results.parquet, results.xlsx, summary.json and
report.html from an already-built results frame, scrubbing secrets and neutralising formula
cells in this one spot. The request timeline is kept in ``timeline.json`` (apply writes it) so
``refresh_results`` (after ``status``, ``connect-cards``, ``rollback``) re-renders the page
with the same timeline.

``replacing`` is the job's one atomic writer, for every output file of every command (result
files, plan.csv, validation.csv, status.csv, connect_cards.csv, failed_rows.csv, rollback
files, ``render --out``, templates): the file is written beside its target, fsynced, renamed
over it and its folder fsynced, so a crash (a kill -9) mid-write leaves the old file or the new
one, never half of one. A file that cannot be written (a full disk, a read-only folder, a file
where a folder belongs) is an ``OutputError`` naming the path.
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

from batch_provisioner.errors import OutputError
from batch_provisioner.report.html import Timeline, TimelineEntry, render_html
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
    ensure_dir(run_dir)
    clean = scrub_frame(frame)
    cells = neutralise(clean)
    safe_summary: dict[str, Any] = scrub_json(dict(summary))
    paths = {name: run_dir / name for name in RESULT_FILES}
    page = render_html(clean, safe_summary, timeline, carry)
    writers: dict[str, Callable[[Path], object]] = {
        "results.csv": cells.write_csv,
        "results.parquet": clean.write_parquet,
        "results.xlsx": lambda path: write_xlsx(cells, path, safe_summary),
        "summary.json": lambda path: path.write_text(
            json.dumps(safe_summary, indent=2) + "\n", encoding="utf-8"),
        "report.html": lambda path: path.write_text(page, encoding="utf-8"),
    }
    for name, write in writers.items():
        with replacing(paths[name]) as temporary:
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
    """``timeline.json``: a JSON list of ``[seconds, method, status, kind]``, one request a
    line (``kind``: the request's budget kind, absent from entries recorded without one)."""
    path = run_dir / TIMELINE_NAME
    lines = [json.dumps([float(entry[0]), REDACTOR.scrub(str(entry[1])), int(entry[2]),
                         *(REDACTOR.scrub(str(kind)) for kind in entry[3:])])
             for entry in timeline]
    text = "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
    write_text(path, text)
    return path


def read_timeline(run_dir: Path) -> list[TimelineEntry]:
    """The timeline ``write_timeline`` kept; empty when there is none or it is unreadable.

    The timeline only draws the chart, so a damaged file costs the chart, never the report;
    entries that are not ``[seconds, method, status]`` or ``[seconds, method, status, kind]``
    are skipped.
    """
    try:
        data = json.loads((run_dir / TIMELINE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    timeline: list[TimelineEntry] = []
    for entry in data:
        if (isinstance(entry, list) and len(entry) in (3, 4)
                and isinstance(entry[0], int | float) and not isinstance(entry[0], bool)
                and math.isfinite(entry[0]) and isinstance(entry[1], str)
                and isinstance(entry[2], int) and not isinstance(entry[2], bool)):
            if len(entry) == 3:
                timeline.append((float(entry[0]), entry[1], entry[2]))
            elif isinstance(entry[3], str):
                timeline.append((float(entry[0]), entry[1], entry[2], entry[3]))
    return timeline


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``replacing``)."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def ensure_dir(path: Path) -> Path:
    """``mkdir -p``; a path that cannot be a folder (a file in the way, no permission, a full
    disk) is an ``OutputError`` naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError.for_folder(path, exc) from None
    if not path.is_dir():  # exist_ok lets a symlink to a file through on some systems
        raise OutputError(f"cannot create the folder {path}: a file is in the way", path=str(path))
    return path


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; once the body has written it in full, it is fsynced,
    renamed over ``path`` and the folder fsynced. The one atomic writer of the job.

    An ``OSError`` (from the body too: a full disk mid-write) becomes an ``OutputError``
    naming ``path``; the temporary file is removed either way. ``path``'s folder is created.
    """
    ensure_dir(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    except Exception as exc:  # an OSError, or a writer's error that wraps one (xlsxwriter)
        cause = _os_error_in(exc)
        if cause is None:
            raise
        raise OutputError.from_os_error(path, cause) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _os_error_in(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind ``exc``: itself, its first argument or its cause."""
    for candidate in (exc, *exc.args[:1], exc.__cause__):
        if isinstance(candidate, OSError):
            return candidate
    return None


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
