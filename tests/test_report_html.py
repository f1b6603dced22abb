"""report.html: what a person sees, and what hostile text in the data cannot do to the page."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import polars as pl

from batch_provisioner.report.html import render_html, timeline_svg
from batch_provisioner.safety import MASK, REDACTOR

ATTACK = "</script><script>alert(1)</script>"
SECRET = "report-secret-4f8a2c6e1b-never"
CARD = "https://fivetran.example/connect-card/setup?auth=abc&redirect_uri=https%3A%2F%2Fx"


def results(rows: list[dict[str, Any]], carry: tuple[str, ...] = ("client_ref",)
            ) -> pl.DataFrame:
    """A results frame shaped as apply writes it: keys, carry-through columns, outcome."""
    base: dict[str, Any] = {"group_id": "decent_dropsy", "group_name": None, "schema": "tt_x",
                            "action": "create", "status": "created", "connection_id": None,
                            "setup_state": None, "connect_card_uri": None, "http_status": 201,
                            "error_code": None, "error_message": None, "attempts": 1,
                            "reconciled": False, "started_at": None, "finished_at": None}
    records = [{"source_row": i + 2, **dict.fromkeys(carry, f"ref {i}"), **base, **row}
               for i, row in enumerate(rows)]
    order = ["source_row", "group_id", "group_name", "schema", *carry, *list(base)[3:]]
    schema = {name: pl.Int64 if name in ("source_row", "http_status", "attempts")
              else pl.Boolean if name == "reconciled" else pl.String for name in order}
    return pl.DataFrame(records, schema=schema)


def summary(**extra: Any) -> dict[str, Any]:
    return {"run_id": "r-1", "version": "0.1.0", "started_at": "2024-01-01T00:00:00Z",
            "finished_at": "2024-01-01T00:01:00Z", "exit_code": 0, "wall_seconds": 1.5,
            "ideal_seconds": 1.25, "calls": 4, "throttled_429": 1, "retries": 1,
            "reconciliations": 0, "counts": {"created": 2, "failed": 1, "exists": 0}, **extra}


TIMELINE = [(0.0, "GET", 200), (0.4, "POST", 429), (0.9, "POST", 201), (3.0, "GET", 200)]


class Page(HTMLParser):
    """The page as a browser's parser splits it: each script's text, every cell's text, the
    row table's headers (``headers``) and the "What needs you" tables' (``need_headers``)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.cells: list[str] = []
        self.headers: list[str] = []
        self.need_headers: list[list[str]] = []
        self.links: list[dict[str, str | None]] = []
        self.codes: list[str] = []
        self._open: list[str] = []
        self._table: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
        if tag == "a":
            self.links.append(dict(attrs))
        if tag == "code":
            self.codes.append("")
        if tag in ("td", "th"):
            self.cells.append("")
        if tag == "table":
            self._table = dict(attrs).get("class")
            if self._table == "need-rows":
                self.need_headers.append([])
        if tag == "th":
            self._header().append("")
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._open and self._open[-1] == "code":
            self.codes[-1] += data
        elif "td" in self._open or "th" in self._open:
            self.cells[-1] += data
            if self._open[-1] == "th":
                self._header()[-1] += data

    def _header(self) -> list[str]:
        return self.need_headers[-1] if self._table == "need-rows" else self.headers

    def summary(self) -> Any:
        [text] = [t for attrs, t in self.scripts if attrs.get("id") == "summary"]
        return json.loads(text)


def test_the_summary_script_is_json_equal_to_the_scrubbed_summary() -> None:
    with REDACTOR.scoped():
        REDACTOR.add(SECRET)
        data = summary(note=f"token {SECRET} & <more>", nested={"list": [1, 2.5, None, SECRET]},
                       stop_reason="it's done")
        page = Page(render_html(results([{}]), data, TIMELINE, ["client_ref"]))
    expected = {**data, "note": f"token {MASK} & <more>",
                "nested": {"list": [1, 2.5, None, MASK]}}
    assert page.summary() == expected


def test_script_closing_text_in_the_data_cannot_break_out_of_the_page() -> None:
    rows = [{"client_ref": ATTACK, "error_code": "Bad", "error_message": ATTACK + " <!--",
             "schema": "<SCRIPT>x</SCRIPT >", "status": ATTACK}]
    data = summary(run_id=ATTACK, note="</SCRIPT ><!--<script>", counts={ATTACK: 1})
    text = render_html(results(rows, ("client_ref", ATTACK)), data, TIMELINE,
                       ["client_ref", ATTACK])
    page = Page(text)
    assert [attrs.get("id") for attrs, _ in page.scripts] == ["summary", None]  # no extra one
    assert len(re.findall(r"(?i)<script", text)) == 2
    assert len(re.findall(r"(?i)</script", text)) == 2  # only the two real closing tags
    assert page.summary()["run_id"] == ATTACK and page.summary()["counts"] == {ATTACK: 1}
    assert ATTACK in page.cells  # shown as text: the header and the carry-through cell
    assert page.cells.count(ATTACK) == 3  # header, cell, status
    assert f"{ATTACK} <!--" in page.cells and "Bad" in page.cells  # the error, its code


def test_a_registered_secret_never_shows_on_the_page() -> None:
    with REDACTOR.scoped():
        REDACTOR.add(SECRET)
        rows = [{"client_ref": f"x{SECRET}y", "error_message": f"denied for {SECRET}",
                 "connect_card_uri": f"{CARD}&t={SECRET}", "connection_id": SECRET}]
        text = render_html(results(rows), summary(run_id=SECRET, hint={SECRET: SECRET}),
                           TIMELINE, ["client_ref"])
    assert SECRET not in text
    page = Page(text)
    assert f"x{MASK}y" in page.cells and f"denied for {MASK}" in page.cells
    # "What needs you" lists the client's link, and so does the table
    assert page.links == [{"class": "card-link", "href": f"{CARD}&t={MASK}"},
                          {"class": "connect-card", "href": f"{CARD}&t={MASK}"}]
    assert page.summary()["run_id"] == MASK and page.summary()["hint"] == {MASK: MASK}


def test_the_page_shows_counts_cards_rows_links_and_the_429s() -> None:
    rows = [{"connect_card_uri": CARD, "setup_state": "incomplete", "connection_id": "c_1"},
            {"status": "created"},
            {"status": "failed", "error_code": "Boom", "error_message": "it broke"}]
    text = render_html(results(rows), summary(), TIMELINE, ["client_ref"])
    assert '<b id="count-created">2<' in text and '<b id="count-failed">1<' in text
    assert "count-exists" not in text  # a status nobody has gets no card
    assert re.findall(r'class="card" data-status="(\w+)"', text) == ["all", "created", "failed"]
    assert re.findall(r'<tr data-status="(\w+)"', text) == ["created", "created", "failed"]
    assert text.count('class="connect-card"') == 1
    assert CARD.replace("&", "&amp;") in text
    assert '<span id="shown">3</span>' in text
    page = Page(text)
    assert page.headers == ["row", "group_id", "schema", "client_ref", "status",
                            "connection_id", "setup_state", "connect card", "error", "code"]
    assert "it broke" in page.cells and "Boom" in page.cells and "ref 1" in page.cells
    assert text.count('class="throttled"') == 1  # one window held the one 429
    assert text.count("<svg") == 1 and "429 answers (1)" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_a_connect_card_uri_that_is_not_a_web_address_is_shown_not_linked() -> None:
    rows = [{"connect_card_uri": "javascript:alert(document.cookie)"}]
    page = Page(render_html(results(rows), summary(), TIMELINE, ["client_ref"]))
    assert page.links == []
    assert "javascript:alert(document.cookie)" in page.cells


def test_without_requests_the_page_says_so() -> None:
    text = render_html(results([{}]), summary(), (), ["client_ref"])
    assert "<svg" not in text and "No requests were sent." in text
    assert timeline_svg(()) == '<p class="muted">No requests were sent.</p>'
    chart = timeline_svg(TIMELINE)
    assert chart.startswith('<figure class="chart"') and "<svg" in chart
    assert 'class="throttled"' in chart


def test_a_secret_named_field_in_the_summary_is_masked_even_if_never_registered() -> None:
    token = "summary-token-3e9d1c7a5b-never"  # not in REDACTOR: only its key tells
    data = summary(auth={"access_token": token, "client_secret": "cs-5a1b9e", "note": "ok"})
    text = render_html(results([{}]), data, TIMELINE, ["client_ref"])
    assert token not in text and "cs-5a1b9e" not in text
    assert Page(text).summary()["auth"] == {"access_token": MASK, "client_secret": MASK,
                                            "note": "ok"}


# --- "What needs you" -------------------------------------------------------------------------

RERUN = "batch-provisioner apply reports/r-1/failed_rows.csv --sandbox"
NEXT_ACTIONS = [
    {"kind": "fix_rows", "count": 1, "rows": [3], "command": RERUN,
     "message": "1 row to fix: correct it in failed_rows.csv, then run",
     "why": "after fixing failed_rows.csv: its rows as a new run"},
    {"kind": "conflicts", "count": 1, "rows": [4], "command": None,
     "message": "1 conflict: rename the schema or drop the row"},
    {"kind": "resume", "count": 1, "rows": [5], "command": "batch-provisioner apply in.csv "
     "--resume r-1", "message": "the run was interrupted: resume it"},
    {"kind": "connect_cards", "count": 2, "rows": [2, 6], "message": "send each client its link",
     "command": "batch-provisioner connect-cards r-1"},
    {"kind": "status", "count": 0, "rows": [], "message": "check the connections later",
     "command": "batch-provisioner status r-1"},
]
MISTAKES = [
    {"connect_card_uri": CARD, "setup_state": "incomplete", "connection_id": "c_1"},
    {"status": "failed", "error_code": "NotFound_Group", "error_message": "no such group"},
    {"status": "conflict", "error_code": "Conflict", "error_message": "tt_x exists"},
    {"status": "not_attempted", "error_code": "Deadline", "error_message": None},
    {"connect_card_uri": CARD, "setup_state": "connected", "connection_id": "c_2"},
]


def needs_section(text: str) -> Page:
    start, end = text.index('<section id="needs-you"'), text.index("</section>")
    return Page(text[start:end])


def blocks(text: str) -> list[str]:
    section = text[text.index('<section id="needs-you"'):text.index("</section>")]
    return re.findall(r'<div class="(?:need|later)" data-kind="(\w+)"', section)


def test_what_needs_you_gives_each_next_action_its_command_and_its_rows() -> None:
    text = render_html(results(MISTAKES), summary(next_actions=NEXT_ACTIONS), TIMELINE,
                       ["client_ref"])
    assert text.index("What needs you") < text.index("<h2>Counts</h2>") < text.index("<svg")
    assert blocks(text) == ["fix_rows", "conflicts", "resume", "connect_cards", "status"]
    section = needs_section(text)
    assert section.codes == [RERUN, "batch-provisioner apply in.csv --resume r-1",
                             "batch-provisioner connect-cards r-1",
                             "batch-provisioner status r-1"]
    assert text.count('class="copy" hidden>Copy</button>') == 4  # shown by the script
    assert section.need_headers[0] == ["row", "group_id", "schema", "client_ref", "status",
                                       "error", "code"]
    assert section.cells[7:14] == ["3", "decent_dropsy", "tt_x", "ref 1", "failed",
                                   "no such group", "NotFound_Group"]
    assert "tt_x exists" in section.cells and "1 conflict: rename the schema" in text
    # the client who has authorised since (row 6) needs nothing; the one waiting gets its link
    assert section.links == [{"class": "card-link", "href": CARD}]
    assert '<p class="why">↳ after fixing failed_rows.csv: its rows as a new run</p>' in text
    assert "Later: check the connections later" in text and "Nothing needs you" not in text


def test_a_run_from_before_next_actions_still_lists_the_rows_that_need_you() -> None:
    text = render_html(results(MISTAKES), summary(), TIMELINE, ["client_ref"])
    assert blocks(text) == ["fix", "conflicts", "connect_cards", "resume"]
    section = needs_section(text)
    assert section.codes == []  # no command is made up
    assert "1 row failed or is invalid" in text and "1 client must authorise its" in text
    assert "1 row was not attempted: resume the run to send it." in text
    assert section.links == [{"class": "card-link", "href": CARD}]


def test_when_every_row_is_done_nothing_needs_you() -> None:
    rows = [{"status": "created", "setup_state": "connected"}, {"status": "exists"}]
    later = [NEXT_ACTIONS[-1]]
    text = render_html(results(rows), summary(next_actions=later), TIMELINE, ["client_ref"])
    assert '<section id="needs-you" class="clear"' in text
    assert "Nothing needs you" in text and blocks(text) == ["status"]
    assert needs_section(text).codes == ["batch-provisioner status r-1"]
    text = render_html(results(rows), summary(next_actions="not a list"), (), ["client_ref"])
    assert "Nothing needs you" in text and blocks(text) == []


def test_hostile_or_secret_text_in_a_next_action_is_escaped_and_masked() -> None:
    with REDACTOR.scoped():
        REDACTOR.add(SECRET)
        actions = [{"kind": "fix_rows", "count": 1, "rows": [2, "x", True],
                    "message": ATTACK, "command": f"apply --token {SECRET} {ATTACK}"},
                   {"kind": "odd", "message": ""}, "not an object"]
        text = render_html(results([{"status": "failed"}]), summary(next_actions=actions),
                           TIMELINE, ["client_ref"])
    assert SECRET not in text
    assert len(re.findall(r"(?i)<script", text)) == 2
    section = needs_section(text)
    assert section.codes == [f"apply --token {MASK} {ATTACK}"]
    assert blocks(text) == ["fix_rows"]  # entries without a message are left out
    escaped = ATTACK.replace("<", "&lt;").replace(">", "&gt;")
    assert f'<p class="need-message">{escaped}</p>' in text  # shown as text
    assert section.cells[:2] == ["row", "group_id"] and section.cells[7] == "2"  # rows: ints


def test_many_rows_that_need_you_are_listed_up_to_a_hundred_and_counted() -> None:
    rows = [{"status": "failed", "error_message": f"broke {i}"} for i in range(130)]
    text = render_html(results(rows), summary(), TIMELINE, ["client_ref"])
    section = needs_section(text)
    assert "broke 99" in section.cells and "broke 100" not in section.cells
    assert "… and 30 more: every row is in the table below." in text
    assert text.count("<tr data-status=") == 130
