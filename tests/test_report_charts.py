"""report.html's charts: calls against the budget that came closest to its limit, in flight."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batch_provisioner.api.budgets import KIND_APPLIES_TO as GATE_KINDS
from batch_provisioner.report.charts import (
    KIND_APPLIES_TO,
    TimelineEntry,
    in_flight_chart,
    nice_ticks,
    request_chart,
    slice_peaks,
    window_words,
)
from batch_provisioner.report.files import read_timeline, write_timeline
from batch_provisioner.report.html import timeline_svg

CALLS = {"name": "calls_per_hour", "limit": 30, "window_seconds": 1.0, "applies_to": "all"}
TESTS = {"name": "setup_tests_per_minute", "limit": 10, "window_seconds": 1.0,
         "applies_to": "setup_test"}
CREATES = {"name": "creates_per_minute", "limit": 6, "window_seconds": 2.0,
           "applies_to": "create"}


def burst(n: int, kind: str, start: float = 0.0, method: str = "POST",
          status: int = 201) -> list[TimelineEntry]:
    return [(start + i * 0.01, method, status, kind) for i in range(n)]


def test_the_chart_counts_each_kind_as_the_budget_gate_does() -> None:
    assert KIND_APPLIES_TO == GATE_KINDS


def test_the_limit_line_is_the_budget_that_came_closest_to_its_limit() -> None:
    # 20 listings and 5 creates with setup tests: all calls 25 of 30 (83 %), setup tests
    # 5 of 10 (50 %). Counted by method, the 25 would all be "calls" and the POSTs tests.
    timeline = [*burst(20, "call", method="GET", status=200), *burst(5, "setup_test_create")]
    chart = request_chart(timeline, [TESTS, CALLS])
    assert chart is not None and chart["limit"]["value"] == 30
    assert chart["y_title"] == "calls per 1 s window"
    assert ("calls_per_hour, the one that came closest to its limit (25 of 30 calls in one "
            "1 s window, 83%)") in chart["caption"]
    assert "setup_tests_per_minute 5 of 10 per 1 s" in chart["caption"]
    more_tests = [*burst(10, "call", method="GET", status=200), *burst(9, "setup_test_create")]
    chart = request_chart(more_tests, [TESTS, CALLS])
    assert chart is not None and chart["limit"]["value"] == 10  # 9 of 10 beats 19 of 30
    assert chart["legend"][1]["label"] == "its limit: 10 per 1 s"


def test_the_bars_are_the_most_calls_in_one_window_and_429s_are_marked_not_counted() -> None:
    timeline = [*burst(4, "create"), (0.5, "POST", 429, "create"), *burst(2, "create", 1.5),
                (3.9, "GET", 200, "call")]
    chart = request_chart(timeline, [CREATES])
    assert chart is not None
    peaks = [bar["n"] for bar in chart["bars"]]
    assert max(peaks) == 6  # the 2-second window ending at 1.5 s holds all six creates
    assert peaks[-1] == 0  # the last GET is not a create
    assert chart["throttled"] == 1 and sum(bar["bad"] for bar in chart["bars"]) == 1
    assert "6 of 6 creates" in chart["caption"]
    svg = timeline_svg(timeline, [CREATES])
    assert svg.count('class="limit-line"') == 1 and svg.count('class="throttled"') == 1
    assert "429 answers (1)" in svg and 'class="x-axis-title"' in svg


def test_a_timeline_kept_without_kinds_is_read_by_method() -> None:
    timeline: list[TimelineEntry] = [(0.1 * i, "POST", 201) for i in range(4)]
    timeline.append((0.5, "GET", 200))
    chart = request_chart(timeline, [CREATES, CALLS])
    assert chart is not None and chart["limit"]["value"] == 6  # 4 of 6 creates beats 5 of 30


def test_without_a_budget_the_chart_has_no_limit_line_but_still_its_axes() -> None:
    chart = request_chart([(0.0, "GET", 200), (2.0, "GET", 200)], [])
    assert chart is not None and chart["limit"] is None
    assert "No budget counted these calls" in chart["caption"]
    assert [t["label"] for t in chart["x_ticks"]][:2] == ["0.0 s", "0.5 s"]
    assert request_chart([], [CALLS]) is None
    broken = [{"limit": "many"}, {"limit": 0, "window_seconds": 1}, None, {"limit": True}]
    assert request_chart([(0.0, "GET", 200)], broken)["limit"] is None  # type: ignore[index]


@pytest.mark.parametrize("rows", [1, 3, 600, 20_000])
def test_the_chart_stays_the_same_size_and_readable_at_any_length(rows: int) -> None:
    timeline = [(i * 0.004, "POST", 201, "setup_test_create") for i in range(rows)]
    chart = request_chart(timeline, [TESTS, CALLS])
    assert chart is not None and len(chart["bars"]) == 120
    assert 3 <= len(chart["x_ticks"]) <= 12 and 3 <= len(chart["y_ticks"]) <= 12
    labels = [t["label"] for t in chart["x_ticks"]]
    assert len(set(labels)) == len(labels)  # no two ticks read the same
    assert all(float(bar["x"]) >= chart["left"] for bar in chart["bars"])


def test_a_burst_that_straddles_two_slices_is_not_halved() -> None:
    times = [0.9, 0.95, 1.05, 1.1]
    assert slice_peaks(times, 1.0, [0.0, 1.0, 2.0]) == [2, 4]
    assert slice_peaks(times, 0.1, [0.0, 1.0, 2.0, 3.0]) == [2, 2, 0]
    assert slice_peaks([0.95, 1.0], 0.1, [0.0, 0.5, 1.0]) == [0, 2]  # the end is in the last


@pytest.mark.parametrize(("top", "ticks"), [
    (0.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), (1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (26.3, [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]), (270.0, [0, 50, 100, 150, 200, 250, 300]),
])
def test_ticks_are_round_numbers_from_zero_past_the_top(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_windows_read_as_a_person_says_them() -> None:
    assert [window_words(s) for s in (1.0, 60.0, 3600.0, 90.0, 0.5)] == [
        "1 s", "1 min", "1 h", "90 s", "0.5 s"]


def test_the_in_flight_chart_draws_the_limit_and_the_level_as_steps() -> None:
    history: list[Any] = [{"t": 0.0, "limit": 8, "in_flight": 3},
                          {"t": 1.0, "limit": 12, "in_flight": 12}, {"t": "x"}, "bad"]
    chart = in_flight_chart(history, run_end=2.0, mode="pinned")
    assert chart is not None
    assert chart["peak_in_flight"] == 12 and chart["peak_limit"] == 12
    assert re.fullmatch(r"M[\d.]+,[\d.]+ H[\d.]+ V[\d.]+ H[\d.]+", chart["limit_path"])
    assert chart["x_ticks"][-1]["label"] == "2.0 s" and chart["y_title"] == "requests"
    assert "--concurrency" in chart["caption"]
    assert in_flight_chart([], 1.0) is None and in_flight_chart(["bad"], 1.0) is None


def test_timeline_json_keeps_each_request_kind_and_still_reads_older_files(
        tmp_path: Path) -> None:
    timeline: list[TimelineEntry] = [(0.1, "GET", 200, "call"),
                                     (0.2, "POST", 201, "setup_test_create")]
    write_timeline(tmp_path, timeline)
    assert read_timeline(tmp_path) == timeline
    (tmp_path / "timeline.json").write_text('[[0.1, "GET", 200], [0.2, "POST", 201, 7]]')
    assert read_timeline(tmp_path) == [(0.1, "GET", 200)]  # a kind that is not text: skipped
