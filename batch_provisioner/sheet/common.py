"""What the file readers share: header names, the width and height limits and reader failures.

``read`` (the entry points and Parquet), ``csv_file`` and ``xlsx`` all import this module; it
imports none of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from batch_provisioner.errors import InputError

CUSTOM_REPORTS_SHEET = "custom_reports"
MAX_COLUMNS = 16_384  # Excel's own limit (column XFD): no sheet a person made is wider
#: Excel's own limit too (header included): a reader reads at most one row more, so a file of
#: millions of rows is refused before it is held in memory. 1,048,575 data rows.
MAX_ROWS = 1_048_576
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u2060"))  # BOM, zero-width space, joiner


def normalise_header(name: str) -> str:
    """``" Group-ID "`` → ``"group_id"``: case, spaces and dashes don't matter."""
    text = re.sub(r"[\s\-]+", "_", name.translate(_INVISIBLE).strip().lower())
    return re.sub(r"_+", "_", text).strip("_")


def check_width(path: Path, width: int) -> None:
    if width > MAX_COLUMNS:
        raise InputError(f"has {width} columns; a sheet has at most {MAX_COLUMNS} "
                         "(Excel's limit)", path=str(path))


def check_height(path: Path, rows: int) -> None:
    """``rows``: the last row number the file shows (header and blank rows included)."""
    if rows > MAX_ROWS:
        raise InputError(f"has more than {MAX_ROWS:,} rows; a sheet has at most {MAX_ROWS:,} "
                         "(Excel's limit, header included): split it into several files",
                         path=str(path))


def reraise_fatal(exc: BaseException) -> None:
    """Let interrupts and exits through; everything else a reader raises (including a Rust
    panic, which is a ``BaseException``) means the file is damaged."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
        raise exc


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
