"""``report.html``: one self-contained page a person reads (no external resources).

Counts per status, the run's figures, a timeline of requests per window with the 429s marked
(inline SVG), and a filterable table of rows with their status, error and connect-card link.

The page is the jinja2 template ``templates/report.html.j2``. The environment escapes every
value (``autoescape``) and its ``finalize`` hook scrubs every value through ``REDACTOR`` before
escaping, so no template line can forget either. ``tojson`` (the summary in its
``<script type="application/json">``) scrubs the value first, then jinja escapes ``< > & '``
so the JSON cannot close the script element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup

from batch_provisioner.report.palette import STATUS_COLOURS as _STATUS_COLOURS
from batch_provisioner.report.scrub import scrub_json
from batch_provisioner.safety import REDACTOR

#: The request timeline of a run: (seconds since start, HTTP method, HTTP status) per request.
Timeline = Sequence[tuple[float, str, int]]

_BUCKETS = 60
#: Only these become a clickable connect-card link (never ``javascript:`` and the like).
_LINKABLE = re.compile(r"(?i)^https?://")


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: None shows as nothing, and every known secret is masked."""
    if value is None:
        return ""
    if isinstance(value, Markup):  # already escaped (tojson): masking keeps it safe
        return Markup(REDACTOR.scrub(str(value)))  # noqa: S704 - MASK has no markup
    return REDACTOR.scrub(str(value))


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(scrub_json(value), **kwargs)


@cache
def environment() -> jinja2.Environment:
    """The one jinja2 environment of the reports (templates ship in the package)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("batch_provisioner.report", "templates"),
        autoescape=True, finalize=_finalize, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.policies["json.dumps_function"] = _dumps
    env.policies["json.dumps_kwargs"] = {}
    return env


def timeline_chart(timeline: Timeline, width: int = 900,
                   height: int = 160) -> dict[str, Any] | None:
    """Requests per time window as bars, the 429s of each window as a red bar; None if empty."""
    if not timeline:
        return None
    end = max(t for t, _m, _s in timeline) or 1.0
    size = max(end / _BUCKETS, 0.001)
    total = [0] * _BUCKETS
    throttled = [0] * _BUCKETS
    for t, _method, status in timeline:
        index = min(int(t / size), _BUCKETS - 1)
        total[index] += 1
        throttled[index] += status == 429
    top = max(total) or 1
    bar = width / _BUCKETS
    bars = []
    for i, (n, bad) in enumerate(zip(total, throttled, strict=True)):
        h = n / top * height
        hb = bad / top * height
        bars.append({"x": f"{i * bar:.1f}", "y": f"{height - h:.1f}", "width": f"{bar - 1:.1f}",
                     "height": f"{h:.1f}", "n": n, "bad": bad, "bad_y": f"{height - hb:.1f}",
                     "bad_height": f"{max(hb, 2):.1f}"})
    return {"width": width, "height": height, "svg_height": height + 30,
            "window": f"{size:.2f}", "end": f"{end:.1f}", "end_x": width - 60,
            "peak_x": f"{width / 2 - 80:.0f}", "label_y": height + 20, "peak": top,
            "bars": bars}


def timeline_svg(timeline: Timeline, width: int = 900, height: int = 160) -> str:
    """The timeline alone, as the report shows it (an inline ``<svg>``, or a note if empty)."""
    template = environment().get_template("timeline.svg.j2")
    return template.render(chart=timeline_chart(timeline, width, height)).strip()


def _rows(results: pl.DataFrame, carry: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for rec in results.iter_rows(named=True):
        uri = rec.get("connect_card_uri")
        status = rec.get("status")
        rows.append({
            "status": status,
            "colour": _STATUS_COLOURS.get(str(status), "#333"),
            "cells": [rec.get("source_row"), rec.get("group_id"), rec.get("schema"),
                      *[rec.get(c) for c in carry]],
            "connection_id": rec.get("connection_id"),
            "setup_state": rec.get("setup_state"),
            "uri": uri or None,
            "linkable": bool(uri) and bool(_LINKABLE.match(str(uri))),
            "error": " ".join(str(v) for v in (rec.get("error_code"),
                                               rec.get("error_message")) if v),
        })
    return rows


def render_html(results: pl.DataFrame, summary: dict[str, Any], timeline: Timeline,
                carry: Sequence[str]) -> str:
    """The page for ``results`` (one row per input row) and the run's ``summary``."""
    counts: dict[str, int] = summary.get("counts", {})
    cards = [{"status": status, "count": count,
              "colour": _STATUS_COLOURS.get(status, "#455a64")}
             for status, count in counts.items() if count]
    invocations = summary.get("invocations") or []
    figures = [("exit code", summary.get("exit_code")),
               ("invocations", len(invocations) or 1),
               ("active time over all invocations (s)" if len(invocations) > 1
                else "wall time (s)", summary.get("wall_seconds")),
               ("ideal time from the budgets (s)", summary.get("ideal_seconds")),
               ("API calls", summary.get("calls")),
               ("429 answers", summary.get("throttled_429")),
               ("retries", summary.get("retries")),
               ("reconciled lost answers", summary.get("reconciliations"))]
    head = ["row", "group_id", "schema", *carry, "status", "connection_id", "setup_state",
            "connect card", "error"]
    run = {key: summary.get(key) for key in ("run_id", "version", "started_at", "finished_at")}
    return environment().get_template("report.html.j2").render(
        run=run, summary=summary, total=results.height, cards=cards, figures=figures,
        invocations=invocations if len(invocations) > 1 else [],
        chart=timeline_chart(timeline), head=head, rows=_rows(results, carry))

