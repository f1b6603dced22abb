"""``report.html``: one self-contained page a person reads (no external resources).

Top to bottom: "What needs you" (``report/needs.py``: the next actions with their commands to
copy, and the rows they concern), the counts, a chart of calls against the budget's limit and
one of the requests in flight (inline SVG, ``report/charts.py``), then every row in a table
with a search box, status filters and a header that stays in view. Everything is readable
without JavaScript; the script only filters the table and copies commands.

The page is the jinja2 template ``templates/report.html.j2``. The environment escapes every
value (``autoescape``) and its ``finalize`` hook scrubs every value through ``REDACTOR`` before
escaping, so no template line can forget either. ``tojson`` (the summary in its
``<script type="application/json">``) scrubs the value first, then jinja escapes ``< > & '``
so the JSON cannot close the script element.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup

from batch_provisioner.report.charts import Timeline, TimelineEntry, in_flight_chart, request_chart
from batch_provisioner.report.needs import LINKABLE, needs_you
from batch_provisioner.report.palette import STATUS_COLOURS as _STATUS_COLOURS
from batch_provisioner.report.scrub import scrub_json
from batch_provisioner.safety import REDACTOR

__all__ = ["Timeline", "TimelineEntry", "environment", "render_html", "timeline_svg"]


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


def timeline_svg(timeline: Timeline, budgets: Sequence[Any] = ()) -> str:
    """The calls chart alone, as the report shows it (an inline ``<svg>`` with its caption,
    or a note if no request was sent)."""
    template = environment().get_template("timeline.svg.j2")
    return template.render(chart=request_chart(timeline, budgets)).strip()


def _rows(records: Sequence[dict[str, Any]], carry: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        uri = rec.get("connect_card_uri")
        status = rec.get("status")
        message, code = rec.get("error_message"), rec.get("error_code")
        rows.append({
            "status": status,
            "colour": _STATUS_COLOURS.get(str(status), "#333"),
            "cells": [rec.get("source_row"), rec.get("group_id"), rec.get("schema"),
                      *[rec.get(c) for c in carry]],
            "connection_id": rec.get("connection_id"),
            "setup_state": rec.get("setup_state"),
            "uri": uri or None,
            "linkable": bool(uri) and bool(LINKABLE.match(str(uri))),
            "error": message or code,
            "code": code if message else None,
        })
    return rows


def _figures(summary: dict[str, Any], invocations: Sequence[Any]) -> list[tuple[str, Any]]:
    return [("exit code", summary.get("exit_code")),
            ("invocations", len(invocations) or 1),
            ("active time over all invocations (s)" if len(invocations) > 1
             else "wall time (s)", summary.get("wall_seconds")),
            ("ideal time from the budgets (s)", summary.get("ideal_seconds")),
            ("API calls", summary.get("calls")),
            ("429 answers", summary.get("throttled_429")),
            ("retries", summary.get("retries")),
            ("reconciled lost answers", summary.get("reconciliations"))]


def _in_flight(summary: dict[str, Any], timeline: Timeline,
               invocations: Sequence[Any]) -> dict[str, Any] | None:
    """The in-flight chart: the history is the last invocation's, so it shares the calls
    chart's end only when the run had one invocation."""
    level = summary.get("in_flight")
    if not isinstance(level, dict) or not isinstance(level.get("history"), list):
        return None
    end = max((entry[0] for entry in timeline), default=0.0) if len(invocations) <= 1 else 0.0
    return in_flight_chart(level["history"], end, level.get("mode"))


def render_html(results: pl.DataFrame, summary: dict[str, Any], timeline: Timeline,
                carry: Sequence[str]) -> str:
    """The page for ``results`` (one row per input row) and the run's ``summary``."""
    records = list(results.iter_rows(named=True))
    counts: dict[str, int] = summary.get("counts", {})
    cards = [{"status": status, "count": count,
              "colour": _STATUS_COLOURS.get(status, "#455a64")}
             for status, count in counts.items() if count]
    invocations = summary.get("invocations") or []
    budgets = summary.get("budgets")
    head = ["row", "group_id", "schema", *carry, "status", "connection_id", "setup_state",
            "connect card", "error", "code"]
    run = {key: summary.get(key) for key in ("run_id", "version", "started_at", "finished_at")}
    return environment().get_template("report.html.j2").render(
        run=run, summary=summary, total=results.height, cards=cards,
        figures=_figures(summary, invocations), needs=needs_you(records, summary, carry),
        invocations=invocations if len(invocations) > 1 else [],
        chart=request_chart(timeline, budgets if isinstance(budgets, list) else ()),
        in_flight=_in_flight(summary, timeline, invocations), head=head,
        rows=_rows(records, carry))
