"""``report.html``: one self-contained page a person reads (no external resources).

Counts per status, the run's figures, a timeline of requests per window with the 429s marked
(inline SVG), and a filterable table of rows with their status, error and connect-card link.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from batch_provisioner.sheet.secrets import REDACTOR

_STATUS_COLOURS = {
    "created": "#2e7d32", "exists": "#546e7a", "updated": "#1565c0", "invalid": "#ef6c00",
    "failed": "#c62828", "conflict": "#6a1b9a", "not_attempted": "#9e9e9e",
    "rolled_back": "#00838f",
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}.muted{color:#666}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{border-radius:8px;padding:10px 14px;color:#fff;min-width:96px;cursor:pointer}
.card b{display:block;font-size:22px}.figures td{padding:2px 12px 2px 0}
table.rows{border-collapse:collapse;width:100%;margin-top:12px}
table.rows th,table.rows td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;
vertical-align:top}table.rows th{background:#f4f6f8;position:sticky;top:0}
.status{font-weight:600}.err{color:#b71c1c;max-width:520px}svg{max-width:100%}
"""
_JS = """
document.querySelectorAll('.card').forEach(function(card){
  card.addEventListener('click', function(){
    var want = card.dataset.status, shown = 0;
    document.querySelectorAll('table.rows tbody tr').forEach(function(tr){
      var on = (want === 'all' || tr.dataset.status === want);
      tr.style.display = on ? '' : 'none'; if (on) { shown++; }
    });
    document.getElementById('shown').textContent = shown;
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(REDACTOR.scrub("" if value is None else str(value)), quote=True)


def timeline_svg(timeline: Sequence[tuple[float, str, int]], width: int = 900,
                 height: int = 160) -> str:
    """Requests per time window as bars; the 429s of each window marked in red."""
    if not timeline:
        return '<p class="muted">No requests were sent.</p>'
    end = max(t for t, _m, _s in timeline) or 1.0
    buckets = 60
    size = max(end / buckets, 0.001)
    total = [0] * buckets
    throttled = [0] * buckets
    for t, _method, status in timeline:
        index = min(int(t / size), buckets - 1)
        total[index] += 1
        throttled[index] += status == 429
    top = max(total) or 1
    bar = width / buckets
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
             f'role="img" aria-label="requests per window"><title>Requests per '
             f'{size:.2f} s window; 429s in red</title>']
    for i, (n, bad) in enumerate(zip(total, throttled, strict=True)):
        h = n / top * height
        x = i * bar
        parts.append(f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar - 1:.1f}" '
                     f'height="{h:.1f}" fill="#90a4ae"><title>{n} requests, {bad} x 429'
                     f'</title></rect>')
        if bad:
            hb = bad / top * height
            parts.append(f'<rect class="throttled" x="{x:.1f}" y="{height - hb:.1f}" '
                         f'width="{bar - 1:.1f}" height="{max(hb, 2):.1f}" fill="#e53935"/>')
    parts.append(f'<text x="0" y="{height + 20}" font-size="12">0 s</text>'
                 f'<text x="{width - 60}" y="{height + 20}" font-size="12">{end:.1f} s</text>'
                 f'<text x="{width / 2 - 80:.0f}" y="{height + 20}" font-size="12">'
                 f'peak {top} requests per window</text></svg>')
    return "".join(parts)


def render_html(results: pl.DataFrame, summary: dict[str, Any],
                timeline: Sequence[tuple[float, str, int]], carry: Sequence[str]) -> str:
    counts: dict[str, int] = summary.get("counts", {})
    cards = [f'<div class="card" data-status="all" style="background:#37474f">'
             f'<b>{results.height}</b>all rows</div>']
    for status, count in counts.items():
        if count:
            cards.append(f'<div class="card" data-status="{_e(status)}" '
                         f'style="background:{_STATUS_COLOURS.get(status, "#455a64")}">'
                         f'<b id="count-{_e(status)}">{count}</b>{_e(status)}</div>')
    figures = [("exit code", summary.get("exit_code")), ("wall time (s)", summary.get(
        "wall_seconds")), ("ideal time from the budgets (s)", summary.get("ideal_seconds")),
        ("API calls", summary.get("calls")), ("429 answers", summary.get("throttled_429")),
        ("retries", summary.get("retries")),
        ("reconciled lost answers", summary.get("reconciliations"))]
    head = ["row", "group_id", "schema", *carry, "status", "connection_id", "setup_state",
            "connect card", "error"]
    body = []
    for rec in results.iter_rows(named=True):
        uri = rec.get("connect_card_uri")
        link = (f'<a class="connect-card" href="{_e(uri)}">authorise</a>' if uri else "")
        error = " ".join(str(v) for v in (rec.get("error_code"), rec.get("error_message")) if v)
        cells = [rec.get("source_row"), rec.get("group_id"), rec.get("schema"),
                 *[rec.get(c) for c in carry]]
        colour = _STATUS_COLOURS.get(str(rec.get("status")), "#333")
        body.append(
            f'<tr data-status="{_e(rec.get("status"))}">'
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + f'<td class="status" style="color:{colour}">{_e(rec.get("status"))}</td>'
            f'<td>{_e(rec.get("connection_id"))}</td><td>{_e(rec.get("setup_state"))}</td>'
            f'<td>{link}</td><td class="err">{_e(error)}</td></tr>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>batch-provisioner run {_e(summary.get("run_id"))}</title>'
        f'<style>{_CSS}</style></head><body>'
        f'<h1>Run {_e(summary.get("run_id"))}</h1>'
        f'<div class="muted">batch-provisioner {_e(summary.get("version"))} · started '
        f'{_e(summary.get("started_at"))} · finished {_e(summary.get("finished_at"))}</div>'
        f'<div class="cards">{"".join(cards)}</div>'
        '<table class="figures">' + "".join(
            f"<tr><td>{_e(k)}</td><td><b>{_e(v)}</b></td></tr>" for k, v in figures)
        + '</table><h2>Requests over time</h2>' + timeline_svg(timeline)
        + f'<h2>Rows (<span id="shown">{results.height}</span> shown)</h2>'
        '<table class="rows"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head)
        + '</tr></thead><tbody>' + "".join(body) + '</tbody></table>'
        f'<script type="application/json" id="summary">'
        f'{_e(json.dumps(summary, default=str))}</script>'
        f'<script>{_JS}</script></body></html>\n')


def write_html(path: Path, results: pl.DataFrame, summary: dict[str, Any],
               timeline: Sequence[tuple[float, str, int]], carry: Sequence[str]) -> None:
    path.write_text(render_html(results, summary, timeline, carry), encoding="utf-8")
