"""The reports' one palette: a colour per row status, shared by report.html and results.xlsx."""

from __future__ import annotations

#: Each status's colour (dark enough for white text on it).
STATUS_COLOURS = {
    "created": "#2e7d32", "exists": "#546e7a", "updated": "#1565c0", "invalid": "#ef6c00",
    "failed": "#c62828", "conflict": "#6a1b9a", "not_attempted": "#9e9e9e",
    "rolled_back": "#00838f",
}
