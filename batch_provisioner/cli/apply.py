"""``plan`` and ``apply``: flags → settings, the embedded sandbox, signals, progress, reports."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from batch_provisioner import logs
from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.models import ActionKind, Outcome, Status
from batch_provisioner.report.results import write_results
from batch_provisioner.run.apply import ApplyOptions, RunResult, run_apply
from batch_provisioner.run.journal import RunLock
from batch_provisioner.run.plan import Plan
from batch_provisioner.run.runner import RunControl
from batch_provisioner.settings import (
    DEFAULT_BUDGETS,
    ApiCredentials,
    Budget,
    ClientSettings,
    RetryPolicy,
    Timeouts,
)
from batch_provisioner.sheet.load import Prepared
from batch_provisioner.sheet.secrets import SecretContext

PLAN_CHANGES_PENDING = 5
_log = structlog.get_logger("batch_provisioner.cli")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``45m``, ``1h``, ``1h30m`` → seconds."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                         r"(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 45m or 1h")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Target:
    credentials: ApiCredentials
    adopt_sandbox_limits: bool


def client_settings(prepared: Prepared, flags: dict[str, float | None]) -> ClientSettings:
    """Flags win over ``[limits]`` in defaults.toml, which win over Fivetran's numbers."""
    merged: dict[str, float] = dict(prepared.defaults.limits)
    merged.update({k: v for k, v in flags.items() if v is not None})
    budgets = {b.name: b for b in DEFAULT_BUDGETS}
    spec = {"calls_per_hour": (3600.0, "all"), "creates_per_minute": (60.0, "create"),
            "setup_tests_per_minute": (60.0, "setup_test"),
            "setup_tests_per_hour": (3600.0, "setup_test")}
    for name, (window, applies) in spec.items():
        if name in merged:
            if merged[name] > 0:
                budgets[name] = Budget(name, int(merged[name]), window, applies)
            else:
                budgets.pop(name, None)
    retry = RetryPolicy(max_attempts=int(merged.get("max_attempts", 5)),
                        max_wait=merged.get("max_wait_seconds", 3600.0))
    timeouts = Timeouts(connect=merged.get("connect_timeout", 10.0),
                        read=merged.get("read_timeout", 60.0))
    concurrency = int(merged.get("concurrency", 8))
    if concurrency < 1:
        raise InputError("concurrency must be at least 1", column="concurrency")
    return ClientSettings(concurrency=concurrency, timeouts=timeouts, retry=retry,
                          budgets=tuple(budgets.values()))


@contextlib.contextmanager
def target(api_url: str | None, sandbox: bool, sandbox_url: str | None, prepared: Prepared,
           reports_dir: Path) -> Iterator[Target]:
    """Where requests go: Fivetran (env credentials), the embedded sandbox, or a running one."""
    if sandbox:
        from batch_provisioner.sandbox import DEFAULT_GROUPS, run_in_thread

        groups = dict(DEFAULT_GROUPS)
        for group_id in prepared.frame.get_column("group_id").drop_nulls().unique().to_list():
            groups.setdefault(group_id, group_id)
        for name in prepared.frame.get_column("group_name").drop_nulls().unique().to_list():
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "group"
            if name not in groups.values():
                groups.setdefault(slug, name)
        state = reports_dir / "sandbox" / "state.sqlite"
        state.parent.mkdir(parents=True, exist_ok=True)
        with run_in_thread(profile="fast", groups=groups, state_path=state) as handle:
            err.print(f"Embedded Fivetran sandbox at {handle.url} (profile fast, state {state})")
            yield Target(ApiCredentials(handle.api_key, handle.api_secret, handle.url), True)
        return
    creds = ApiCredentials.from_env(base_url=sandbox_url or api_url)
    if sandbox_url:
        creds = creds or ApiCredentials("sandbox", "sandbox", sandbox_url.rstrip("/"))
        yield Target(creds, True)
        return
    if creds is None:
        raise InputError("set FIVETRAN_API_KEY and FIVETRAN_API_SECRET (or use --sandbox); "
                         "credentials are never taken on the command line")
    yield Target(creds, False)


class ProgressReporter:
    """A rich bar on a TTY; otherwise a ``run.progress`` log line every 10 s."""

    def __init__(self, total: int, tty: bool) -> None:
        self.total, self.done, self.tty = total, 0, tty
        self.started = time.monotonic()
        self.last_log = self.started
        self.gate: BudgetGate | None = None
        self.creates_left = 0
        self.progress: Progress | None = None
        if tty:
            self.progress = Progress(TextColumn("[bold]apply"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}/s"),
                                     TextColumn("eta {task.fields[eta]}"), TimeElapsedColumn(),
                                     console=err, transient=True)
            self.task = self.progress.add_task("apply", total=total, rate="0.0", eta="?")

    def __enter__(self) -> ProgressReporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_plan(self, plan: Plan, gate: BudgetGate) -> None:
        self.gate = gate
        self.creates_left = plan.count(ActionKind.CREATE)

    def eta(self) -> float:
        return self.gate.ideal_seconds(0, n_creates=self.creates_left) if self.gate else 0.0

    def __call__(self, outcome: Outcome) -> None:
        self.done += 1
        if outcome.action == "create" and self.creates_left:
            self.creates_left -= 1
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, rate=f"{rate:.1f}",
                                 eta=f"{self.eta():.0f}s")
        elif time.monotonic() - self.last_log >= 10 or self.done == self.total:
            self.last_log = time.monotonic()
            _log.info("run.progress", done=self.done, total=self.total, rate=round(rate, 2),
                      eta_seconds=round(self.eta(), 1))


async def _apply_async(prepared: Prepared, options: ApplyOptions, tgt: Target,
                       secrets: SecretContext, reporter: ProgressReporter) -> RunResult:
    control = RunControl()
    result: RunResult | None = None

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not control.interrupted:
                    control.interrupted = True
                    _log.warning("run.interrupted", signal=signal.Signals(signum).name,
                                 note="no new rows; in-flight requests finish; again to abort")
                else:
                    _log.warning("run.aborted", note="in-flight rows are looked up on resume")
                    control.abort()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals)
        result = await run_apply(prepared, options, tgt.credentials, secrets, control=control,
                                 on_outcome=reporter, on_plan=reporter.on_plan)
        tg.cancel_scope.cancel()
    assert result is not None
    return result


def apply_command(
    prepared: Prepared, *, secrets: SecretContext, reports_dir: Path, run_id: str,
    api_url: str | None, sandbox: bool, sandbox_url: str | None, flags: dict[str, float | None],
    deadline: float | None, update: bool, force: bool, log_format: str,
    input_paths: tuple[Path | None, ...],
) -> int:
    run_dir = reports_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    logs.configure(log_format=log_format, run_log=run_dir / "run.log.jsonl")
    settings = client_settings(prepared, flags)
    with RunLock(run_dir) as lock, target(api_url, sandbox, sandbox_url, prepared,
                                          reports_dir) as tgt:
        if lock.took_over_from is not None:
            _log.warning("run.lock_taken_over", previous=lock.took_over_from,
                         note="the process holding the lock is gone")
        options = ApplyOptions(run_id=run_id, run_dir=run_dir, client=settings,
                               deadline_seconds=deadline, update=update, force=force,
                               adopt_sandbox_limits=tgt.adopt_sandbox_limits,
                               input_paths=input_paths)
        tty = sys.stderr.isatty() and log_format != "json"
        with ProgressReporter(len(prepared.rows), tty) as reporter:
            result = anyio.run(_apply_async, prepared, options, tgt, secrets, reporter)
        paths = write_results(run_dir, prepared, result.outcomes, result.summary,
                              result.timeline)
    logs.close_run_log()
    _print_summary(result, paths)
    return int(result.exit_code)


def _print_summary(result: RunResult, paths: dict[str, Path]) -> None:
    table = RichTable(title=f"run {result.summary['run_id']}")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status, count in result.summary["counts"].items():
        if count:
            table.add_row(status, str(count))
    out.print(table)
    s = result.summary
    out.print(f"wall {s['wall_seconds']} s (ideal {s['ideal_seconds']} s), {s['calls']} calls, "
              f"{s['throttled_429']} throttled, {s['retries']} retries, "
              f"{s['reconciliations']} reconciled")
    out.print(f"results: {paths['results.csv']}")
    failed = sum(result.summary["counts"].get(k, 0) for k in (
        str(Status.INVALID), str(Status.FAILED), str(Status.NOT_ATTEMPTED)))
    if failed:
        out.print(f"rows to fix and feed back: {paths['failed_rows.csv']}")
    out.print(f"exit code {int(result.exit_code)} ({ExitCode(result.exit_code).name.lower()})")
