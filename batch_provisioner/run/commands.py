"""The job's commands as library calls: ``load``, ``validate``, ``plan``, ``apply``.

Each takes a sheet (a path, or what ``load`` returned) and returns a frozen result. Nothing
here prints, exits or configures logging: progress reaches the caller through callbacks, and
``control`` (a :class:`RunControl`) is how a caller stops a run (Ctrl-C, a deadline). Every
``*_async`` function has a sync twin for callers without an event loop.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.errors import ExitCode, InputError, OutputError
from batch_provisioner.models import Outcome
from batch_provisioner.report.files import ensure_dir
from batch_provisioner.report.results import write_csv, write_results
from batch_provisioner.run.apply import ApplyOptions, run_apply
from batch_provisioner.run.control import RunControl
from batch_provisioner.run.estimate import Estimate, estimate
from batch_provisioner.run.invocation import Invocation
from batch_provisioner.run.journal import checked_run_id
from batch_provisioner.run.lock import RunLock
from batch_provisioner.run.next_actions import RunEnd, apply_next_actions
from batch_provisioner.run.operations import find_run_to_resume
from batch_provisioner.run.plan import DriftCheck, Plan, make_plan, plan_frame
from batch_provisioner.run.results import PLAN_CHANGES_PENDING, ApplyResult, PlanResult, Validation
from batch_provisioner.run.sync import sync
from batch_provisioner.run.target import (
    ConnectionsSource,
    GroupsSource,
    SheetGroups,
    Target,
    check_target_options,
    open_client,
    select_target,
)
from batch_provisioner.safety import REDACTOR
from batch_provisioner.settings import Budget, ClientSettings, Limits
from batch_provisioner.sheet.common import CUSTOM_REPORTS_SHEET, normalise_header
from batch_provisioner.sheet.expand import masked
from batch_provisioner.sheet.load import Prepared, prepare, secret_context
from batch_provisioner.sheet.read import detect_format, xlsx_sheet_names
from batch_provisioner.sheet.secrets import SecretContext
from batch_provisioner.sheet.source import Source, as_source, open_inputs, open_source, shown_name

PathLike = str | os.PathLike[str]
SheetLike = PathLike | Prepared
_log = structlog.get_logger("batch_provisioner.commands")


def new_run_id() -> str:
    """``20261201T204500Z-1a2b``: sortable by start time, unique enough for one reports dir."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(2)


def load(sheet: PathLike, *, defaults: PathLike | None = None,
         custom_reports: PathLike | None = None, sheet_name: str | None = None,
         secrets_dir: PathLike | None = None) -> Prepared:
    """Read, fill from the defaults, validate and expand a sheet. Raises ``InputError``.

    ``sheet``, ``defaults`` and ``custom_reports`` are paths or URLs (``https://``, ``s3://``,
    ``gs://``, ``az://``): a URL is downloaded first, bounded and time-limited, and every
    message names it with its query secrets masked. A sheet read from a URL has no folder:
    its ``file:`` references need ``secrets_dir``."""
    inputs = open_inputs(sheet, defaults or None, custom_reports or None)
    ctx = secret_context(inputs.sheet, Path(secrets_dir) if secrets_dir else None)
    return prepare(inputs.sheet, sheet_name=sheet_name, secrets=ctx,
                   defaults_path=inputs.defaults, custom_reports=inputs.custom_reports)


def _sheet(sheet: SheetLike, **load_options: PathLike | str | None) -> Prepared:
    if isinstance(sheet, Prepared):
        return sheet
    return load(sheet, **load_options)  # type: ignore[arg-type]


def validate(sheet: SheetLike, *, defaults: PathLike | None = None,
             custom_reports: PathLike | None = None, sheet_name: str | None = None,
             secrets_dir: PathLike | None = None, reports_dir: PathLike | None = None,
             run_id: str | None = None) -> Validation:
    """Every problem of every row at once; with ``reports_dir``, also ``validation.csv``
    when there is a problem to list, or when ``run_id`` names the folder (a clean sheet's
    file then holds only the header, where a script looks for it). A clean sheet without a
    ``run_id`` writes nothing: no empty run folder per check."""
    prepared = _sheet(sheet, defaults=defaults, custom_reports=custom_reports,
                      sheet_name=sheet_name, secrets_dir=secrets_dir)
    paths = {}
    if reports_dir is not None and (run_id is not None or not prepared.problems.is_empty()):
        path = Path(reports_dir) / checked_run_id(run_id or new_run_id()) / "validation.csv"
        write_csv(prepared.problems, path)
        paths["validation.csv"] = path
    code = ExitCode.ROWS_FAILED if prepared.error_count else ExitCode.OK
    return Validation(prepared, code, paths)


def render(sheet: SheetLike, *, defaults: PathLike | None = None,
           custom_reports: PathLike | None = None, sheet_name: str | None = None,
           secrets_dir: PathLike | None = None) -> list[dict[str, Any]]:
    """The payloads exactly as they would be sent, secrets shown as ``******``: one
    ``{"row", "key": {"group_id", "schema"}, "payload"}`` per valid row, in input order.
    A secret of the sheet pasted into another cell is masked too (``REDACTOR``)."""
    prepared = _sheet(sheet, defaults=defaults, custom_reports=custom_reports,
                      sheet_name=sheet_name, secrets_dir=secrets_dir)
    return [REDACTOR.scrub_value({"row": r.row, "key": {"group_id": r.group_id,
                                                         "schema": r.schema},
                                  "payload": masked(r.payload)}) for r in prepared.requests]


def _client_settings(prepared: Prepared, limits: Limits | None) -> ClientSettings:
    """Command-line limits win over ``[limits]`` in defaults.toml, which win over Fivetran's;
    the budgets they set also win over a sandbox's announced ones (``explicit_budgets``)."""
    given = limits or Limits()
    for key, problem in given.problems():  # the library's limits=, checked as the flags are
        raise InputError(f"limits: {key} {problem}", column=key)
    merged = prepared.defaults.limits.overridden_by(given)
    try:
        settings = merged.client_settings()
    except ValueError as exc:
        raise InputError(str(exc), column=str(exc).split()[0]) from None
    return replace(settings, explicit_budgets=given.budgets_set())


def _groups_of(prepared: Prepared) -> SheetGroups:
    frame = prepared.frame
    return SheetGroups(tuple(frame.get_column("group_id").drop_nulls().unique().to_list()),
                       tuple(frame.get_column("group_name").drop_nulls().unique().to_list()))


async def plan_async(sheet: SheetLike, *, target: Target | None = None, sandbox: bool = False,
                     sandbox_url: str | None = None, api_url: str | None = None,
                     reports_dir: PathLike = "reports", run_id: str | None = None,
                     limits: Limits | None = None, sandbox_groups: GroupsSource | None = None,
                     sandbox_profile: str | None = None,
                     sandbox_connections: ConnectionsSource | None = None,
                     on_target: Callable[[Target], None] = lambda _t: None) -> PlanResult:
    """Compare the sheet with the live connections; change nothing; write ``plan.csv``.

    With ``sandbox=True``, ``sandbox_groups`` (a groups file ``id,name``, or the groups
    themselves) seeds the embedded sandbox with exactly those groups, so a group the account
    lacks is ``invalid``; ``sandbox_profile`` is ``fast`` (default), ``fivetran`` or
    ``unlimited``; ``sandbox_connections`` (a JSON or CSV file, or the seed objects) adds
    connections that exist already, as if made by hand.
    """
    exact = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                 sandbox_groups=sandbox_groups, sandbox_profile=sandbox_profile,
                                 sandbox_connections=sandbox_connections,
                                 reports_dir=Path(reports_dir))
    prepared = _sheet(sheet)
    run_dir = Path(reports_dir) / checked_run_id(run_id or new_run_id())
    result = Plan()
    budgets: list[Budget] = []
    if prepared.requests:
        settings = _client_settings(prepared, limits)
        with select_target(target=target, sandbox=sandbox, sandbox_url=sandbox_url,
                           api_url=api_url, reports_dir=Path(reports_dir),
                           groups=_groups_of(prepared), sandbox_groups=exact,
                           sandbox_profile=sandbox_profile,
                           sandbox_connections=sandbox_connections) as tgt:
            on_target(tgt)
            async with open_client(tgt, settings) as client:
                result = await make_plan(client, prepared.requests, drift=DriftCheck.FULL)
                budgets = client.gate.budgets
    frame = plan_frame(prepared, result)
    path = run_dir / "plan.csv"
    write_csv(frame, path)
    counts = {str(k): int(v) for k, v in frame.group_by("action").len().iter_rows()}
    if counts.get("invalid") or counts.get("conflict"):
        code = int(ExitCode.ROWS_FAILED)
    elif counts.get("create") or counts.get("drift"):
        code = PLAN_CHANGES_PENDING
    else:
        code = int(ExitCode.OK)
    preview = estimate(result.actions, budgets)
    return PlanResult(prepared, frame, counts, code, result, {"plan.csv": path}, preview)


async def apply_async(
    sheet: SheetLike, *, target: Target | None = None, sandbox: bool = False,
    sandbox_url: str | None = None, api_url: str | None = None,
    reports_dir: PathLike = "reports", run_id: str | None = None, limits: Limits | None = None,
    deadline: float | None = None, update: bool = False, force: bool = False,
    resume: bool = False, input_paths: tuple[PathLike | Source | None, ...] = (),
    secrets: SecretContext | None = None,
    sandbox_groups: GroupsSource | None = None, sandbox_profile: str | None = None,
    sandbox_connections: ConnectionsSource | None = None,
    control: RunControl | None = None,
    rows: str | Iterable[int] | None = None, limit: int | None = None,
    confirm: Callable[[Estimate], Awaitable[bool]] | None = None,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    on_plan: Callable[[Plan, BudgetGate], None] = lambda _p, _g: None,
    on_preview: Callable[[Estimate], None] = lambda _e: None,
    on_target: Callable[[Target], None] = lambda _t: None,
    transport: httpx.AsyncBaseTransport | None = None,
    invocation: Invocation | None = None,
) -> ApplyResult:
    """Create every valid row's connection inside the budgets, then write the reports.

    ``run_id`` names the run's folder under ``reports_dir``; an existing run of that id is
    resumed (its finished rows are skipped); with ``resume``, the run must exist already.
    ``deadline`` is in seconds from now. ``sandbox_groups`` and ``sandbox_profile``: as for
    :func:`plan_async`. A budget ``limits`` sets wins over a sandbox's announced one.

    ``input_paths`` (the sheet, defaults and custom reports, as paths, URLs or the
    ``Prepared.inputs`` sources) are the files a resume must find unchanged; by default the
    sheet ``sheet`` was loaded from.

    A canary: ``rows`` (``"2-11,40"`` or row numbers as the sheet shows them) and ``limit``
    (at most that many creates/updates) run a subset; the rest are ``not_attempted`` and a
    resume carries on. ``on_preview`` gets the estimate once planned; ``confirm`` is awaited
    with it before anything is sent (False: nothing is). ``sandbox_connections``: as for
    :func:`plan_async`.
    """
    exact = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                 sandbox_groups=sandbox_groups, sandbox_profile=sandbox_profile,
                                 sandbox_connections=sandbox_connections,
                                 reports_dir=Path(reports_dir))
    prepared = _sheet(sheet)
    selected, rows_text = select_rows(rows, prepared)
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give at least 1 (the number of rows to send)")
    run_id = checked_run_id(run_id or new_run_id())
    run_dir = Path(reports_dir) / run_id
    if resume:
        find_run_to_resume(run_id, reports_dir)  # an unknown run is an error, not a new run
    ensure_dir(run_dir)
    settings = _client_settings(prepared, limits)
    paths = _input_sources(prepared, input_paths)
    ctx = secrets or prepared.secrets
    control = control or RunControl()  # read back below: a fatal stop's message
    with RunLock(run_dir) as lock, select_target(
            target=target, sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
            reports_dir=Path(reports_dir), groups=_groups_of(prepared),
            sandbox_groups=exact, sandbox_profile=sandbox_profile,
            sandbox_connections=sandbox_connections) as tgt:
        if lock.took_over_from is not None:
            _log.warning("run.lock_taken_over", previous=lock.took_over_from,
                         note="the process holding the lock is gone")
        on_target(tgt)
        options = ApplyOptions(run_id=run_id, run_dir=run_dir, client=settings,
                               deadline_seconds=deadline, update=update, force=force,
                               adopt_sandbox_limits=tgt.adopt_sandbox_limits,
                               input_paths=paths, rows=selected, rows_text=rows_text,
                               limit=limit)
        result = await run_apply(prepared, options, tgt.credentials, ctx, control=control,
                                 transport=transport, on_outcome=on_outcome, on_plan=on_plan,
                                 on_preview=on_preview, confirm=confirm)
        names = [source.name if source is not None else None for source in paths]
        how = invocation or Invocation(
            sheet=names[0], defaults=names[1] if len(names) > 1 else None,
            custom_reports=names[2] if len(names) > 2 else None,
            sheet_name=prepared.table.sheet, secrets_dir=ctx.allowed_root,
            reports_dir=Path(reports_dir), api_url=api_url, sandbox=sandbox,
            sandbox_url=sandbox_url, sandbox_profile=sandbox_profile,
            sandbox_groups=shown_name(sandbox_groups) if isinstance(
                sandbox_groups, str | os.PathLike) else None,
            apply_flags=("--update",) if update else ())
        end = RunEnd(run_id, run_dir, int(result.exit_code),
                     control.fatal.message if control.fatal is not None else None,
                     control.stop_message())
        actions = apply_next_actions(result.outcomes, end, how,
                                     how.rerun(run_dir / "failed_rows.csv",
                                               custom_reports=_workbook_reports(prepared),
                                               secrets_dir=_rerun_secrets_dir(ctx)))
        result.summary["next_actions"] = [a.as_dict() for a in actions]
        try:
            written = await anyio.to_thread.run_sync(  # off the event loop
                write_results, run_dir, prepared, result.outcomes, result.summary,
                result.timeline)
        except OutputError as exc:  # every outcome is journaled already: exit 4 if sent
            raise exc.after_sending(result.writes_sent, (
                f"every outcome is in {run_dir / 'journal.jsonl'}: fix the cause, then apply "
                f"--resume {run_id} (or status {run_id}) writes the reports")) from None
    return ApplyResult(run_id, run_dir, tuple(result.outcomes), result.exit_code,
                       result.summary, written, lock.took_over_from,
                       control.fatal.message if control.fatal is not None else None,
                       result.estimate, control.stop_message(), tuple(actions))


def _input_sources(prepared: Prepared, given: tuple[PathLike | Source | None, ...]
                   ) -> tuple[Source | None, ...]:
    """The input files a run fingerprints and records: ``given`` (sheet, defaults, custom
    reports; each URL downloaded, a ``Source`` as it is), else the sheet it was loaded from."""
    if given:
        return tuple(open_source(p, kind="defaults" if i == 1 else "sheet")
                     if p is not None else None for i, p in enumerate(given))
    return (prepared.inputs.sheet if prepared.inputs else as_source(prepared.table.path),)


def _workbook_reports(prepared: Prepared) -> str | None:
    """The workbook itself (as outputs name it) when its custom reports came from its
    ``custom_reports`` sheet: ``failed_rows.csv`` fed back needs ``--custom-reports`` naming
    it."""
    path = prepared.table.path
    if detect_format(path) != "xlsx":
        return None
    names = xlsx_sheet_names(path)
    if not any(normalise_header(n) == CUSTOM_REPORTS_SHEET for n in names):
        return None
    return prepared.table.name or str(path)


def _rerun_secrets_dir(ctx: SecretContext) -> Path | None:
    """The folder ``file:`` references of ``failed_rows.csv`` fed back resolve in: the one
    the sheet's did (none for a sheet read from a URL without ``--secrets-dir``)."""
    return None if ctx.files_refused else ctx.root()


def select_rows(rows: str | Iterable[int] | None, prepared: Prepared
                ) -> tuple[frozenset[int] | None, str | None]:
    """``--rows 2-11,40``: the sheet rows (numbered as the file shows them) to run, and the
    text to quote. A row the sheet does not have is an input error, not a silent no-op."""
    if rows is None:
        return None, None
    if isinstance(rows, str):
        text = rows.strip()
        chosen: set[int] = set()
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", part)
            if match is None:
                raise InputError(f"--rows {text!r}: {part!r} is not a row number or a range "
                                 "such as 2-11 (rows as the sheet numbers them)")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise InputError(f"--rows {text!r}: the range {part!r} runs backwards")
            if last - first > 10_000_000:
                raise InputError(f"--rows {text!r}: the range {part!r} is too long")
            chosen.update(range(first, last + 1))
    else:
        chosen = {int(r) for r in rows}
        text = ",".join(str(r) for r in sorted(chosen))
    if not chosen:
        raise InputError(f"--rows {text!r}: name at least one row, e.g. --rows 2-11,40")
    known = set(prepared.rows)
    missing = sorted(chosen - known)
    if missing:
        raise InputError(f"--rows {text!r}: the sheet has no row {_ranges(missing)} (its rows "
                         f"are {_ranges(sorted(known))}, numbered as the file shows them; "
                         "blank rows are not rows)")
    return frozenset(chosen), text


def _ranges(rows: list[int], most: int = 8) -> str:
    """``2-5, 9, 12-20``: sorted row numbers as ranges (at most ``most`` of them shown)."""
    spans: list[tuple[int, int]] = []
    for row in rows:
        if spans and row == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], row)
        else:
            spans.append((row, row))
    shown = [f"{a}-{b}" if b > a else str(a) for a, b in spans[:most]]
    return ", ".join(shown) + (f" and {len(spans) - most} more ranges" if len(spans) > most
                               else "")


plan = sync(plan_async)
apply = sync(apply_async)
