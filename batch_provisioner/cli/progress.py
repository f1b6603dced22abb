"""What a person sees while ``apply`` runs: a progress display that stays whole on a terminal,
a short progress line every 10 s when stderr is not a terminal, nothing with ``--quiet``.

Every row counts once, by its row number. Rows an earlier invocation finished (a resume) and
rows settled without a request (invalid, exists, conflict) count as done as soon as they are
known; rows held back on purpose (``--rows``, ``--limit``, a declined question) leave the
total; rows a stop leaves ``not_attempted`` stay to do. So the display ends at N/N when every
row is done, and short of it exactly when rows are left for a resume.

Rate, ETA, requests in flight and what the budget gate waits for are read once a second by
``run`` (a task on the event loop), never per request. Log lines are printed above the display
through its console (``echo``), never into it.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from batch_provisioner.cli.common import shown
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run.apply import HELD_BACK
from batch_provisioner.run.estimate import format_duration

if TYPE_CHECKING:
    from batch_provisioner.api.budgets import BudgetGate
    from batch_provisioner.run.plan import Plan

__all__ = ["Display", "ProgressReporter", "echo_above"]

_log = structlog.get_logger("batch_provisioner.cli")


class Display(enum.Enum):
    """Where progress goes: a bar (stderr is a terminal), a line every 10 s (it is not), or
    only the ``run.progress`` log event (``--log-format json``, ``--quiet``)."""

    BAR = "bar"
    LINES = "lines"
    LOG = "log"


@dataclass(frozen=True)
class Figures:
    """One reading of the run's progress."""

    done: int
    total: int
    rate: float | None  # rows a second since sending began (None: nothing sent yet)
    eta: float | None  # None: not planned yet
    in_flight: str | None  # ``12/64`` (None: not planned yet)
    waiting: str | None  # ``waiting for calls_per_hour budget, 12 s``

    def line(self) -> str:
        """``apply 120/600 rows, 4.1 rows/s, eta 2 min, in flight 12/64, waiting for ...``."""
        parts = [f"apply {self.done}/{self.total} rows"]
        if self.rate is not None:
            parts.append(f"{self.rate:.1f} rows/s")
        if self.eta is not None:
            parts.append(f"eta {format_duration(self.eta)}")
        if self.in_flight is not None:
            parts.append(f"in flight {self.in_flight}")
        if self.waiting:
            parts.append(self.waiting)
        return ", ".join(parts)


class _Bar(Progress):
    """The bar, with a second line: in flight, and what the budgets hold back."""

    status = Text()

    def get_renderables(self) -> Iterator[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.status


class ProgressReporter:
    """Counts every row's outcome and shows the run's progress (see the module docstring)."""

    TICK_SECONDS = 1.0
    LINE_SECONDS = 10.0  # the ``run.progress`` event's cadence, and the piped line's

    def __init__(self, total: int, display: Display, console: Console) -> None:
        """``console``: where the display, its lines and ``say`` go (stderr; every line
        printed while the bar shows must go through it, or it breaks into the bar)."""
        self.total, self.display, self.console = total, display, console
        self.rows_done: set[int] = set()
        self.rows_held: set[int] = set()  # held back on purpose: not part of the total
        self.sent = 0  # rows finished since sending began: the rate
        self.sending_since: float | None = None
        self.last_row_at = 0.0  # when the last row sent finished
        self.gate: BudgetGate | None = None
        self.last_line = time.monotonic()
        self._wanted = anyio.Event()  # something to show: the display may start
        self._shown = False
        self._paused = False
        self.bar: _Bar | None = None
        if display is Display.BAR:
            self.bar = _Bar(TextColumn("[bold]apply"), BarColumn(bar_width=24),
                            MofNCompleteColumn(), TextColumn("rows {task.fields[rate]}"),
                            TextColumn("eta {task.fields[eta]}"), TimeElapsedColumn(),
                            console=console, transient=False)
            self.task = self.bar.add_task("apply", total=total, rate="", eta="?")

    # -- the run's callbacks ----------------------------------------------------------------

    def __call__(self, outcome: Outcome) -> None:
        """One row's outcome (each row once; a repeat changes nothing)."""
        row = outcome.row
        if outcome.status is Status.NOT_ATTEMPTED:
            if outcome.error_code not in HELD_BACK:
                return  # left for a resume by a stop: still to do
            self.rows_held.add(row)
        elif row not in self.rows_done:
            self.rows_done.add(row)
            if self.sending_since is not None:
                self.sent += 1
                self.last_row_at = time.monotonic()
        if self.bar is not None:
            self.bar.update(self.task, completed=len(self.rows_done), total=self._total())
        self._wanted.set()

    def on_plan(self, _plan: Plan, gate: BudgetGate) -> None:
        self.gate = gate
        self._wanted.set()

    def sending(self) -> None:
        """The run starts sending now (after the question, if one was asked): the rate's zero."""
        self.sending_since = time.monotonic()

    def say(self, line: str) -> None:
        """A line for the person running it, above the bar (stderr: stdout stays the report)."""
        self.console.print(shown(line, 4_000))
        self._wanted.set()

    # -- the display ------------------------------------------------------------------------

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._wanted.is_set():
            self.tick(final=True)
        if self.bar is not None and self._shown:
            self.bar.stop()  # not transient: the last frame stays on the screen

    async def run(self) -> None:
        """Refresh the figures every second, once there is something to show (until cancelled);
        log ``run.progress`` (and print the piped line) every 10 s."""
        await self._wanted.wait()
        self.last_line = time.monotonic()
        while True:
            self._show()
            self.tick()
            await anyio.sleep(self.TICK_SECONDS)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No bar while a question is asked on the terminal."""
        was_shown, self._paused = self._shown, True
        if self.bar is not None and was_shown:
            self.bar.stop()
            self._shown = False
        try:
            yield
        finally:
            self._paused = False
            if was_shown:
                self._show()

    def _show(self) -> None:
        if self.bar is not None and not self._shown and not self._paused:
            self.bar.start()
            self._shown = True

    def tick(self, *, final: bool = False) -> None:
        """Read the figures; update the bar; every 10 s (and at the end) log them and, when
        stderr is not a terminal, print them as one line."""
        figures = self.figures(final=final)
        if self.bar is not None:
            self.bar.update(self.task, completed=figures.done, total=figures.total,
                            rate="" if figures.rate is None else f"{figures.rate:.1f}/s",
                            eta="?" if figures.eta is None else format_duration(figures.eta))
            flight = figures.in_flight and f"in flight {figures.in_flight}"
            self.bar.status = Text(" · ".join(filter(None, (flight, figures.waiting))))
            if final:
                self._show()
        now = time.monotonic()
        if final or now - self.last_line >= self.LINE_SECONDS:
            self.last_line = now
            gate = self.gate
            _log.info("run.progress", done=figures.done, total=figures.total,
                      rate=round(figures.rate or 0.0, 2),
                      eta_seconds=None if figures.eta is None else round(figures.eta, 1),
                      in_flight=gate.in_flight if gate else 0,
                      in_flight_limit=gate.level.limit if gate else 0,
                      waiting_for=figures.waiting)
            if self.display is Display.LINES:
                self.console.print(shown(figures.line(), 4_000))

    def figures(self, *, final: bool = False) -> Figures:
        """The progress now: rows done of the total, the rate since sending began, the ETA
        (the budgets' least time for the rows left, or the rate's, whichever is longer).
        ``final``: the run is over: the rate up to its last row, no ETA for rows left."""
        done, total = len(self.rows_done), self._total()
        left = max(0, total - done)
        rate = None
        if self.sending_since is not None:
            until = self.last_row_at if final else time.monotonic()
            rate = self.sent / max(until - self.sending_since, 1e-6)
        gate = self.gate
        if final and gate is not None:
            return Figures(done=done, total=total, rate=rate, eta=None if left else 0.0,
                           in_flight=f"{gate.in_flight}/{gate.level.limit}", waiting=None)
        if gate is None:
            return Figures(done=done, total=total, rate=rate, eta=None, in_flight=None,
                           waiting=None)
        eta = gate.ideal_seconds(left, n_creates=left)
        if rate:
            eta = max(eta, left / rate)
        hold = gate.holding() if left else None
        return Figures(done=done, total=total, rate=rate, eta=eta,
                       in_flight=f"{gate.in_flight}/{gate.level.limit}",
                       waiting=hold.describe() if hold is not None else None)

    def _total(self) -> int:
        return self.total - len(self.rows_held)


def echo_above(console: Console) -> Callable[[str], None]:
    """A log line printer for ``logs.configure``: above a live display on ``console``, ANSI
    colours kept (the renderer's own; a logged value's controls are escaped before)."""

    def echo(line: str) -> None:
        console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)

    return echo
