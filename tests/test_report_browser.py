"""report.html of real runs, in headless Chromium: what needs you, search, filters, the chart.

Two real runs on the embedded sandbox, each with failed rows (a group that does not exist),
invalid rows (a misspelt ``sync_mode``), connect-card rows and 429s (scripted on the first
creates): 17 rows, and 600. The page is loaded from its ``file://`` path with every network
request refused and recorded; nothing may be asked for. Full-page screenshots go to
``$REPORT_SHOTS_DIR`` when it is set (to look at), else to the test's own folder.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batch_provisioner.report.html import render_html
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from tests.apply_helpers import cli, csv_rows, write_sheet

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not "
                                "installed at /usr/bin/chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: A run of a sheet: its folder and its results.csv rows.
Run = tuple[Path, list[dict[str, str]]]


@pytest.fixture(scope="module")
def limited() -> Iterator[SandboxHandle]:
    """The fast profile as it comes: the create budget (20 per second) binds small runs."""
    with run_in_thread(profile="fast") as handle:
        yield handle


@pytest.fixture(scope="module")
def roomy() -> Iterator[SandboxHandle]:
    """The fast profile without its create budget, so that 600 rows take seconds."""
    with run_in_thread(profile="fast", create_limit=0) as handle:
        yield handle


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REPORT_SHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_with_mistakes(tmp_path: Path, box: SandboxHandle, n: int, *, cards_every: int,
                      failing: set[int], invalid: set[int], throttled: int) -> Run:
    """Apply ``n`` rows: ``failing`` name a group that does not exist, ``invalid`` misspell
    sync_mode, every ``cards_every``-th row is a connect-card row, and the first
    ``throttled`` creates get a 429."""
    box.reset()
    sheet = write_sheet(tmp_path / "in.csv", n, connect_card_every=cards_every)
    with sheet.open(encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    for i in failing:
        lines[i + 1][0] = "no_such_group"
    for i in invalid:
        lines[i + 1][2] = "AllAcounts"
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(lines)
    box.script([{"fault": "429", "method": "POST", "path": "/v1/connections",
                 "times": throttled}])
    reports = tmp_path / "reports"
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "seen", "--log-format", "json")
    assert done.returncode == 1, done.stderr[-2000:]
    run_dir = reports / "seen"
    return run_dir, csv_rows(run_dir / "results.csv")


def open_page(browser: Any, page_path: Path, *, script: bool = True
              ) -> tuple[Any, list[str], list[str]]:
    """The page in a new window (JavaScript on or off; the clipboard usable): every network
    request is refused and recorded, and so is every console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  java_script_enabled=script)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    asked: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        if route.request.url != page_path.as_uri():
            asked.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", refuse)
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_path.as_uri())
    return page, asked, errors


def visible_rows(page: Any) -> int:
    return int(page.eval_on_selector_all("table.rows tbody tr",
                                         "rows => rows.filter(r => !r.hidden).length"))


def shown_count(page: Any) -> str:
    return str(page.locator("#visible-count").inner_text())


def needs_rows(page: Any) -> dict[str, list[str]]:
    """Each "What needs you" block's row numbers, by its kind."""
    return dict(page.eval_on_selector_all("#needs-you .need", """blocks => blocks.map(b =>
        [b.dataset.kind, Array.from(b.querySelectorAll('tbody tr td:first-child'))
                              .map(td => td.textContent)])"""))


def check_chart(page: Any) -> None:
    """The limit line is drawn inside the plot; the axes have their titles and tick labels;
    429s are marked."""
    chart = page.locator("#calls-chart svg").bounding_box()
    limit = page.locator("#calls-chart .limit-line").bounding_box()
    assert limit is not None and limit["width"] > 0.5 * chart["width"]
    assert chart["y"] < limit["y"] < chart["y"] + chart["height"]
    # which budget came closest depends on how fast the machine sent: any, named with its window
    window = re.fullmatch(r"calls per (\d+ (?:s|min|h)) window",
                          str(page.locator("#calls-chart .y-axis-title").text_content()))
    assert window is not None
    assert f"in one {window[1]} window" in page.locator("#calls-chart figcaption").inner_text()
    assert page.locator("#calls-chart .x-axis-title").text_content() == (
        "seconds since the run started")
    for axis in ("x-axis", "y-axis"):
        labels = page.locator(f"#calls-chart .{axis} text").all_text_contents()
        assert len(labels) >= 3 and labels[0].startswith("0"), (axis, labels)
    assert page.locator("#calls-chart .throttled").count() >= 1
    assert str(page.locator("#calls-chart .limit-label").text_content()).startswith("limit ")
    assert "Budget shown:" in page.locator("#calls-chart figcaption").inner_text()
    flight = page.locator("#in-flight-chart .in-flight-level").bounding_box()
    assert flight is not None and flight["width"] > 0


def test_a_17_row_run_with_mistakes_says_what_needs_you_and_filters_its_rows(
        tmp_path: Path, limited: SandboxHandle, browser: Any) -> None:
    run_dir, results = run_with_mistakes(
        tmp_path, limited, 17, cards_every=4, failing={2, 9}, invalid={5, 14}, throttled=2)
    broken = [r["source_row"] for r in results if r["status"] in ("failed", "invalid")]
    cards = [r["source_row"] for r in results if r["connect_card_uri"]]
    assert len(broken) == 4 and len(cards) == 5
    page, asked, errors = open_page(browser, run_dir / "report.html")

    needs = page.locator("#needs-you")
    listed = needs_rows(page)
    assert sorted(listed["fix_rows"], key=int) == broken
    assert sorted(listed["connect_cards"], key=int) == cards
    links = needs.locator("a.card-link")
    assert links.count() == 5
    assert all(href.startswith("https://") and "connect-card" in href
               for href in links.evaluate_all("links => links.map(a => a.href)"))
    commands = needs.locator("code").all_inner_texts()
    [rerun] = [c for c in commands if "failed_rows.csv" in c]
    assert rerun.startswith("batch-provisioner apply ") and str(run_dir) in rerun
    assert any(c.startswith("batch-provisioner connect-cards seen ") for c in commands)
    for text in ("group 'no_such_group' does not exist", "sync_mode 'AllAcounts'"):
        assert text in needs.inner_text()
    copy = needs.locator("button.copy").first
    assert copy.is_visible() and copy.inner_text() == "Copy"
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == rerun

    assert shown_count(page) == "showing 17 of 17 rows"
    page.fill("#search", "NO_SUCH")  # any visible text, whatever its case
    assert visible_rows(page) == 2 and shown_count(page) == "showing 2 of 17 rows"
    page.fill("#search", "")
    assert visible_rows(page) == 17
    invalid = page.locator('button.filter[data-status="invalid"]')
    every = page.locator('button.filter[data-status="all"]')
    resting = invalid.evaluate("b => getComputedStyle(b).backgroundColor")
    invalid.click()
    assert invalid.get_attribute("aria-pressed") == "true"
    assert every.get_attribute("aria-pressed") == "false"
    assert invalid.evaluate("b => getComputedStyle(b).backgroundColor") != resting
    assert visible_rows(page) == 2 and shown_count(page) == "showing 2 of 17 rows"
    assert set(page.eval_on_selector_all(
        "table.rows tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.status)"
    )) == {"invalid"}
    page.fill("#search", "CLIENT-14")  # the filter and the search together
    assert visible_rows(page) == 1
    every.click()
    page.fill("#search", "")
    assert every.get_attribute("aria-pressed") == "true" and visible_rows(page) == 17

    check_chart(page)
    page.screenshot(path=str(shots_dir(tmp_path) / "report-17-rows.png"), full_page=True)
    assert asked == [] and errors == []
    page.context.close()


def test_a_600_row_run_keeps_its_header_in_view_and_its_chart_readable(
        tmp_path: Path, roomy: SandboxHandle, browser: Any) -> None:
    run_dir, results = run_with_mistakes(
        tmp_path, roomy, 600, cards_every=40, failing={3, 123, 301, 457},
        invalid={77, 250, 599}, throttled=3)
    page, asked, errors = open_page(browser, run_dir / "report.html")
    listed = needs_rows(page)
    assert len(listed["fix_rows"]) == 7 and len(listed["connect_cards"]) == 15
    assert shown_count(page) == "showing 600 of 600 rows"
    page.fill("#search", "tt_0030")  # tt_00300 .. tt_00309
    assert visible_rows(page) == 10 and shown_count(page) == "showing 10 of 600 rows"
    page.fill("#search", "")

    page.locator("table.rows tbody tr").nth(450).scroll_into_view_if_needed()
    header = page.locator("table.rows thead th").first.bounding_box()
    search = page.locator("#search").bounding_box()
    assert 0 <= search["y"] < header["y"] < 200  # the search box and the header stay on top
    assert page.evaluate("window.scrollY") > 5000

    check_chart(page)
    assert page.locator("#calls-chart .bars rect").count() > 60  # bars all along the run
    page.screenshot(path=str(shots_dir(tmp_path) / "report-600-rows.png"), full_page=True)
    assert asked == [] and errors == []
    page.context.close()
    assert len(results) == 600


def test_without_javascript_everything_is_still_there_to_read(tmp_path: Path,
                                                             browser: Any) -> None:
    frame = pl.DataFrame({"source_row": [2, 3], "group_id": ["g", "g"], "schema": ["a", "b"],
                          "status": ["created", "failed"], "error_message": [None, "broke"],
                          "connect_card_uri": [None, None]})
    actions = [{"kind": "fix_rows", "count": 1, "rows": [3], "message": "1 row to fix",
                "command": "batch-provisioner apply failed_rows.csv"}]
    summary = {"counts": {"created": 1, "failed": 1}, "next_actions": actions,
               "budgets": [{"name": "calls", "limit": 5, "window_seconds": 1.0}]}
    page_path = tmp_path / "report.html"
    page_path.write_text(render_html(frame, summary, [(0.0, "GET", 200), (0.2, "POST", 429)],
                                     []), encoding="utf-8")
    page, asked, errors = open_page(browser, page_path, script=False)
    assert page.locator("#needs-you code").inner_text() == (
        "batch-provisioner apply failed_rows.csv")
    assert not page.locator("button.copy").is_visible()  # no button that cannot work
    assert not page.locator("#search").is_visible()
    assert page.locator("#visible-count").inner_text() == "showing 2 of 2 rows"
    assert page.locator("table.rows tbody tr").count() == 2
    assert page.locator("#calls-chart .limit-line").bounding_box()["width"] > 100
    assert asked == [] and errors == []
    page.context.close()
