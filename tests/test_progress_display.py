"""What apply shows on the terminal while it runs: a progress bar that stays whole and ends at
N/N, a resumed run's bar starting from the rows already done, log lines above the bar (or in
run.log.jsonl only), one progress line every 10 s when stderr is piped, and --quiet for cron.

The terminal tests run the CLI on a pseudo-terminal (``os.openpty``, stdout and stderr both on
it, as for a person) and replay what it wrote on a small screen model (text, ``\\r``, ``\\n``,
cursor up, erase line: what rich's live display sends), so that they read the screen a person
sees once the command has ended.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import structlog
from rich.console import Console

from batch_provisioner import logs
from batch_provisioner.cli.progress import Display, ProgressReporter
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run.plan import Plan
from batch_provisioner.sandbox import SandboxHandle
from batch_provisioner.settings import Budget
from tests.api.test_budget_holding import held_gate, hold_back
from tests.apply_helpers import ENV, cli, write_dict_rows, write_sheet

ROOT = Path(__file__).resolve().parents[1]
#: Any frame of the bar, whole or broken (the tables' borders share its glyph, not this).
BAR = re.compile(r"\d+/\d+ rows")
#: A log line, whatever its format: an event name, a JSON object, an ISO timestamp.
LOG_TEXT = re.compile(r"row\.created|\{\"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
#: The bar's line, whole: nothing before the command's name, nothing after the elapsed time.
WHOLE_BAR = r"^apply [━╸╺ ]+ {done}/{total} rows [\d.]+/s eta 0 s \d+:\d\d:\d\d$"
PROGRESS_LINE = re.compile(r"^apply \d+/\d+ rows(, [\d.]+ rows/s)?(, eta [^,]+)?"
                           r"(, in flight \d+/\d+)?(, waiting for .+)?$")
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|(\r)|(\n)|([^\x1b\r\n]+)")


class Screen:
    """An endless terminal screen (its scrollback included) that replays written text."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        for match in CSI.finditer(text):
            params, final, cr, lf, chars = match.groups()
            if chars:
                self._write(chars)
            elif cr:
                self.col = 0
            elif lf:
                self.row += 1
                self.rows += [[] for _ in range(self.row + 1 - len(self.rows))]
            else:
                self._control(params, final)

    def _control(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        if final == "A":
            self.row = max(0, self.row - count)
        elif final == "K":  # erase in line: 2 the whole line, else from the cursor on
            line = self.rows[self.row]
            del line[0 if params == "2" else self.col:]
        elif final not in "mhl":  # colours, cursor shown/hidden: nothing on the screen
            raise AssertionError(f"the screen model does not know ESC[{params}{final}")

    def _write(self, chars: str) -> None:
        line = self.rows[self.row]
        line += [" "] * (self.col - len(line))
        line[self.col:self.col + len(chars)] = list(chars)
        self.col += len(chars)

    def lines(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.rows]


def on_a_terminal(*args: str | Path) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a 200-column pseudo-terminal; (exit, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, **ENV, "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                            cwd=ROOT, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed: the command has ended
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
    output = b"".join(chunks).decode("utf-8", errors="replace")
    assert "Traceback" not in output, output
    return code, output


def screen_of(output: str) -> list[str]:
    screen = Screen()
    screen.feed(output)
    return screen.lines()


def plain(output: str) -> str:
    return CSI.sub(lambda m: "" if m.group(2) else m.group(0), output)


def unlimited(sheet: Path, reports: Path, *extra: str) -> list[str | Path]:
    return ["apply", sheet, "--sandbox", "--sandbox-profile", "unlimited", "--reports-dir",
            reports, *extra]


# -- on a terminal ----------------------------------------------------------------------------


def test_on_a_terminal_the_bar_stays_whole_reaches_300_of_300_and_no_log_line_breaks_in(
        tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 300)
    code, output = on_a_terminal(*unlimited(sheet, tmp_path / "r", "--run-id", "t300"))
    assert code == 0, output
    lines = screen_of(output)
    bars = [line for line in lines if BAR.search(line)]
    assert len(bars) == 1, bars  # redrawn in place: no broken frame left in the scrollback
    assert re.match(WHOLE_BAR.format(done=300, total=300), bars[0]), bars[0]
    assert [line for line in lines if LOG_TEXT.search(line)] == []
    assert "row.created" not in output  # the log went to run.log.jsonl only
    log = (tmp_path / "r" / "t300" / "run.log.jsonl").read_text("utf-8")
    assert log.count('"event": "row.created"') == 300
    closing = lines.index("exit code 0 (ok)")
    assert lines.index(bars[0]) < closing  # the last frame stays, above the closing lines


def test_console_log_lines_go_above_the_bar_never_into_it(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 40)
    code, output = on_a_terminal(*unlimited(sheet, tmp_path / "r", "--log-format", "console"))
    assert code == 0, output
    lines = screen_of(output)
    logged = [i for i, line in enumerate(lines) if "row.created" in line]
    assert len(logged) == 40
    assert not any(BAR.search(lines[i]) for i in logged)
    [bar] = [i for i, line in enumerate(lines) if BAR.search(line)]
    assert re.match(WHOLE_BAR.format(done=40, total=40), lines[bar]), lines[bar]
    assert bar > max(logged)  # every line printed while it ran went above the bar


def test_a_resumed_run_starts_from_the_rows_already_done_and_a_canary_counts_only_its_rows(
        tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 40)
    reports = tmp_path / "r"
    canary = cli(*unlimited(sheet, reports, "--run-id", "res", "--limit", "10"))
    assert canary.returncode == 4, canary.stderr
    progress = [line for line in canary.stderr.splitlines() if PROGRESS_LINE.match(line)]
    assert progress[-1].startswith("apply 10/10 rows, ")  # the 30 held back leave the total
    code, output = on_a_terminal(*unlimited(sheet, reports, "--resume", "res"))
    assert code == 0, output
    counts = [int(done) for done in re.findall(r" (\d+)/40 rows", plain(output))]
    assert counts[0] == 10 and counts[-1] == 40  # the first frame already counts the ten
    assert counts == sorted(counts)


# -- piped ------------------------------------------------------------------------------------


def test_piped_stderr_has_the_notices_then_only_progress_lines_and_stdout_the_closing_lines(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 20)
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "p1")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    [sending] = [i for i, line in enumerate(lines) if line.startswith("apply: sending 20 ")]
    after = lines[sending + 1:]  # what it printed while it ran
    assert [line for line in after if not line.startswith("warning: ")] == [
        line for line in after if PROGRESS_LINE.match(line)]
    assert after[-1].startswith("apply 20/20 rows, ") and "rows/s" in after[-1]
    assert [line for line in lines if LOG_TEXT.search(line)] == []
    out = done.stdout.splitlines()
    assert out[-1] == "exit code 0 (ok)" and any(line.startswith("next: ") for line in out)
    assert not any(PROGRESS_LINE.match(line) for line in out)


def test_json_logs_on_stderr_only_when_asked_for_and_plan_takes_the_flag_too(
        tmp_path: Path, box: SandboxHandle) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3)
    target = ["--sandbox-url", box.url, "--reports-dir", tmp_path / "r"]
    asked = cli("apply", sheet, *target, "--log-format", "json")
    assert asked.returncode == 0, asked.stderr
    assert '"event": "row.created"' in asked.stderr and '"event": "run.progress"' in asked.stderr
    planned = cli("plan", sheet, *target, "--run-id", "pj", "--log-format", "json")
    assert planned.returncode == 0, planned.stderr  # the three rows exist now
    assert '"event": "plan.listing"' in planned.stderr
    auto = cli("plan", sheet, *target, "--run-id", "pa")
    assert "{" not in auto.stderr and auto.returncode == 0
    logged = (tmp_path / "r" / "pa" / "run.log.jsonl").read_text("utf-8")
    assert '"event": "plan.listing"' in logged  # the whole log is still in the file


# -- --quiet ----------------------------------------------------------------------------------


def test_quiet_prints_nothing_when_all_is_well_and_the_closing_lines_when_not(
        tmp_path: Path, box: SandboxHandle) -> None:
    reports: list[str | Path] = ["--reports-dir", tmp_path / "r", "--quiet"]
    target = ["--sandbox-url", box.url, *reports]
    good = write_sheet(tmp_path / "good.csv", 5)
    for done in (cli("validate", good, *reports), cli("apply", good, *target)):
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done.args
    bad = write_dict_rows(tmp_path / "bad.csv", [
        {"group_id": "decent_dropsy", "schema": "fine_one"},
        {"group_id": "decent_dropsy", "schema": "Not A Schema"}],
        ["group_id", "schema", "sync_mode", "sync_frequency", "access_token"])
    applied = cli("apply", bad, *target, "--run-id", "q1")
    assert applied.returncode == 1 and applied.stderr == ""
    said = applied.stdout.splitlines()  # the closing summary, the next lines, the exit code
    assert any(line.startswith("next: ") for line in said) and "failed_rows.csv" in applied.stdout
    assert said[0] == "run q1" and said[-1] == "exit code 1 (rows_failed)"
    assert "Problems in" not in applied.stdout  # no tables but the closing summary
    checked = cli("validate", bad, *reports)
    assert checked.returncode == 1 and "validation.csv" in checked.stdout
    assert "Problems in" not in checked.stdout + checked.stderr
    missing = cli("apply", tmp_path / "nope.csv", *target)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")  # errors always


# -- the figures ------------------------------------------------------------------------------


def _outcome(row: int, status: Status = Status.CREATED, code: str | None = None) -> Outcome:
    return Outcome(row=row, status=status, error_code=code)


def test_every_row_counts_once_held_rows_leave_the_total_and_stopped_rows_stay_to_do() -> None:
    reporter = ProgressReporter(6, Display.LOG, Console(file=io.StringIO()))
    for outcome in (_outcome(2), _outcome(2), _outcome(3, Status.EXISTS),
                    _outcome(4, Status.NOT_ATTEMPTED, "not_selected"),
                    _outcome(5, Status.NOT_ATTEMPTED, "deadline")):
        reporter(outcome)
    figures = reporter.figures()
    assert (figures.done, figures.total) == (2, 5)
    assert figures.line() == "apply 2/5 rows"  # nothing planned or sent yet: no rate, no eta


@pytest.mark.anyio
async def test_the_progress_line_says_which_budget_holds_requests_back_and_for_how_long() -> None:
    gate, clock = held_gate([Budget("creates_per_minute", 1, 60.0, "create")])
    reporter = ProgressReporter(3, Display.LINES, Console(file=io.StringIO()))
    reporter.on_plan(Plan(), gate)
    reporter.sending()
    async with gate.slot("create"):
        pass
    reporter(_outcome(2))
    async with anyio.create_task_group() as tg:
        await hold_back(gate, "create", tg)
        clock.now = 48.0
        line = reporter.figures().line()
        gate.close("test", "the test is over")
    assert re.fullmatch(r"apply 1/3 rows, [\d.]+ rows/s, eta [^,]+, in flight 0/4, "
                        r"waiting for creates_per_minute budget, 12 s", line), line


# -- the log on the terminal ------------------------------------------------------------------


@pytest.fixture()
def terminal(tmp_path: Path) -> Iterator[tuple[list[str], io.StringIO, Path]]:
    """What the log echoes to the terminal, the stream JSON goes to, the run log's path."""
    saved = structlog.get_config()
    shown: list[str] = []
    stream = io.StringIO()
    yield shown, stream, tmp_path / "run.log.jsonl"
    logs.close_run_log()
    structlog.configure(**saved)


def _log_a_run() -> None:
    log = structlog.get_logger("test")
    log.info("row.created", row=2)
    log.warning("row.failed", row=3, error="HTTP 400")
    log.warning("run.interrupted", note="no new rows", signal="SIGINT")
    log.error("run.fatal", error="HTTP 401")
    log.error("journal.unwritable", error="disk full \x1b[31m")


def test_auto_shows_the_warnings_a_person_must_see_and_the_file_gets_every_event(
        terminal: tuple[list[str], io.StringIO, Path]) -> None:
    shown, stream, path = terminal
    logs.configure(log_format="auto", run_log=path, stream=stream, echo=shown.append)
    _log_a_run()
    logs.close_run_log()
    assert shown == ["warning: run.interrupted: no new rows (signal=SIGINT)",
                     "error: journal.unwritable: disk full \\x1b[31m"]
    assert stream.getvalue() == ""
    events = [line.split('"event": "')[1].split('"')[0]
              for line in path.read_text("utf-8").splitlines()]
    assert events == ["row.created", "row.failed", "run.interrupted", "run.fatal",
                      "journal.unwritable"]


def test_quiet_shows_errors_only_and_json_writes_every_event_to_the_stream(
        terminal: tuple[list[str], io.StringIO, Path]) -> None:
    shown, stream, path = terminal
    logs.configure(log_format="auto", run_log=path, stream=stream, echo=shown.append,
                   quiet=True)
    _log_a_run()
    assert shown == ["error: journal.unwritable: disk full \\x1b[31m"]
    logs.configure(log_format="json", run_log=path, stream=stream, echo=shown.append)
    _log_a_run()
    assert len(shown) == 1 and len(stream.getvalue().splitlines()) == 5
    assert "\x1b" not in stream.getvalue()  # JSON escapes it
