"""``template``: the input templates written out, each file atomically (``report.files``).

The contents come from :mod:`batch_provisioner.sheet.templates` (generated from the code's
column definitions); this module only writes them.
"""

from __future__ import annotations

from pathlib import Path

from batch_provisioner.report.files import ensure_dir, replacing, write_text
from batch_provisioner.sheet.templates import template_texts, write_xlsx


def write_templates(out: Path) -> list[Path]:
    """Write every template into ``out``; returns the paths written. A folder that cannot be
    written (a file in the way, a full disk) is an ``OutputError`` naming it."""
    ensure_dir(out / "secrets")
    xlsx = out / "advertiser_groups.xlsx"
    with replacing(xlsx) as temporary:
        write_xlsx(temporary)
    return [xlsx, *(write_text(out / name, content)
                    for name, content in template_texts().items())]
