"""Mutation benchmark: named, deliberate breakages of the package, each of which a test must catch.

    .venv/bin/python tests/benchmarks/mutants.py [--only NAME ...] [--list] [--jobs N]
        [--timeout S] [--rev REV] [--keep]

Each mutant (:data:`MUTANTS`) is data: a file, an exact snippet ``old`` that must occur exactly
once in it, its replacement ``new``, and the tests that should catch the change. The working
tree (``batch_provisioner/``, ``tests/``, ``pyproject.toml``, ``input_templates/``,
``README.md``) is copied once into a snapshot, so edits made meanwhile do not mix into the
benchmark; ``--rev REV`` takes those files from a git revision instead (``git archive``,
read-only), plus the working tree's files that revision lacks (tests written since). For each
mutant the snapshot is copied to a scratch folder, the edit applied, and
``python -m pytest -x -q -p no:cacheprovider <tests>`` run there with ``PYTHONPATH=<scratch>``
(so the ``python -m batch_provisioner`` subprocesses of the CLI tests import the mutated copy,
not the editable install; checked before anything runs). Every distinct test selection is
first run on the unmutated snapshot: a selection that fails there says nothing about its
mutants.

Verdicts: ``killed`` (pytest exit 1: a test failed), ``timeout`` (counts as killed, shown
apart), ``survived`` (exit 0: a gap in the suite), ``stale`` (the snippet is not in the file
exactly once: update the mutant), ``broken`` (exit 2/3/4/5: collection or usage error, no
tests: the mutant proves nothing), ``baseline_failed`` (its tests fail unmutated). Only
``killed`` and ``timeout`` count as killed. Prints a table and ``killed K / tried N``, writes
``reports/benchmarks/mutants.json``, and exits 0 only when every mutant is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "benchmarks" / "mutants.json"
COPIED = ("batch_provisioner", "tests", "pyproject.toml", "input_templates", "README.md")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis",
                                ".pytest-tmp")
KILLED = ("killed", "timeout")
MAX_JOBS = 2  # a 2-core machine: the tests start sandboxes and CLI subprocesses of their own


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in ``path``
    new: str
    tests: tuple[str, ...]  # pytest node ids or files, fastest first (-x stops at the first)
    why: str  # what a user would notice


@dataclass
class Verdict:
    name: str
    path: str
    tests: list[str]
    verdict: str = "pending"
    seconds: float = 0.0
    exit_code: int | None = None
    first_failure: str | None = None
    detail: str = ""
    why: str = ""


@dataclass
class Baseline:
    tests: list[str]
    passed: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    detail: str = ""


# -- the mutants ---------------------------------------------------------------------------------

RUNNER = "batch_provisioner/run/runner.py"
JOURNAL = "batch_provisioner/run/journal.py"
APPLY = "batch_provisioner/run/apply.py"
ROLLBACK = "batch_provisioner/run/rollback.py"
SETTLE = "batch_provisioner/run/settle.py"
RESUME = "tests/test_resume.py"
OWNERSHIP = "batch_provisioner/run/ownership.py"
OWNED = "tests/test_ownership_regressions.py"
RETRY_TESTS = "tests/api/test_runner_retry.py"
LIFECYCLE_ROLLBACK = ("tests/test_lifecycle.py::"
                      "test_rollback_deletes_only_what_the_run_created_even_across_a_kill")
SIGKILL = ("tests/test_run_lifecycle.py::"
           "test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing")
DEADLINE = "tests/test_run_lifecycle.py::test_deadline_then_resume_completes_in_two_invocations"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "resume_ignores_started_rows", APPLY,
        "started_before={k: d.since for k, d in previous.started.items()},",
        "started_before={},",
        (RESUME, SIGKILL),
        "a resumed run resends a create a killed run left in flight without looking it up "
        "first: a 409, and the connection the run made is reported 'exists', not 'created' "
        "(so rollback would leave it behind)"),
    Mutant(
        "retriable_failures_final_on_resume", JOURNAL,
        "or (outcome.status is Status.FAILED and not retriable)",
        "or outcome.status is Status.FAILED",
        (f"{RESUME}::test_resume_retries_a_row_that_failed_for_a_passing_reason",
         f"{RETRY_TESTS}::test_regression_a_401_outcome_is_retriable_but_a_400_is_final"),
        "a row that failed for a passing reason (503s, a 401 fixed since) stays failed on "
        "--resume instead of being tried again"),
    Mutant(
        "skip_last_lookup", RUNNER,
        "        if row.maybe_sent:  # one last look before giving the row up\n",
        "        if False:  # one last look before giving the row up\n",
        (RETRY_TESTS,),
        "a create whose last attempt's answer was lost is reported failed although it landed; "
        "the rerun then calls it 'exists', not ours"),
    Mutant(
        "rollback_deletes_updated", ROLLBACK,
        "if o.status is Status.CREATED and o.connection_id and key in by_key]",
        "if o.status in (Status.CREATED, Status.UPDATED) and o.connection_id and key in by_key]",
        ("tests/test_rollback_scope.py", LIFECYCLE_ROLLBACK),
        "rollback deletes connections that existed before the run and were only PATCHed"),
    Mutant(
        "redactor_scrub_noop", "batch_provisioner/safety.py",
        "return pattern.sub(MASK, text) if pattern is not None else text",
        "return text",
        ("tests/test_report_files.py", "tests/test_report_html.py"),
        "access tokens show in results.csv, report.html and the logs"),
    Mutant(
        "csv_not_neutralised", "batch_provisioner/report/scrub.py",
        ".then(pl.lit(NEUTRALISER) + pl.col(name))",
        ".then(pl.col(name))",
        ("tests/test_report_files.py",
         "tests/test_output_safety.py::test_formula_cells_are_neutralised_as_text"),
        "a cell like =HYPERLINK(...) runs as a formula when results.csv is opened"),
    Mutant(
        "journal_tail_glued", JOURNAL,
        "        if torn_tail:  # a kill tore the last line: never glue the next record onto it\n",
        "        if False:  # a kill tore the last line: never glue the next record onto it\n",
        ("tests/test_run_lifecycle.py::"
         "test_regression_a_torn_tail_does_not_swallow_the_next_record",
         "tests/test_run_lifecycle.py::test_a_torn_last_journal_line_is_tolerated"),
        "after a kill mid-write, the resumed run's first record is glued onto the torn line "
        "and lost (its header: a later --resume no longer checks the input)"),
    Mutant(
        "conflict_always_created", RUNNER,
        "        return await self._reconciled(action, looked.connection, row, row.attempt, "
        "started, log)\n",
        "        return from_connection(action, looked.connection, Status.CREATED, "
        "row.attempt, started,\n                               reconciled=True)\n",
        (RETRY_TESTS,),
        "a 409 for a connection someone else made is claimed 'created' (and rollback would "
        "delete it)"),
    Mutant(
        "html_summary_not_scrubbed", "batch_provisioner/report/html.py",
        "return json.dumps(scrub_json(value), **kwargs)",
        "return json.dumps(value, **kwargs)",
        ("tests/test_report_html.py",),
        "report.html's embedded summary shows the value of a secret-named field"),
    Mutant(
        "lock_not_exclusive", "batch_provisioner/run/lock.py",
        "fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)",
        ("tests/test_run_lifecycle.py::"
         "test_a_live_lock_refuses_a_second_run_and_a_dead_one_is_taken_over",),
        "two applies on one run folder both go ahead"),
    # -- our own, in the runner, journal and rollback --------------------------------------------
    Mutant(
        "journal_skips_start_record", RUNNER,
        "            await self.journal.astart(request.row, request.key, str(action.kind))\n",
        "            pass\n",
        ("tests/test_journal_file.py", SIGKILL),
        "a create in flight when the run is killed is not known on resume: it is reported "
        "'exists', not 'created', and rollback leaves it behind"),
    Mutant(
        "resume_forgets_landed_creates", SETTLE,
        "        elif doubt is not None and doubt.op == str(ActionKind.CREATE):\n"
        "            to_run.append(Action(ActionKind.CREATE, request))  # reconciled by the "
        "runner\n",
        "        elif False:\n"
        "            pass\n",
        (RESUME, SIGKILL),
        "a create that landed just before a kill is not claimed after --resume, so rollback "
        "leaves it behind"),
    Mutant(
        "rollback_not_journaled", ROLLBACK,
        "            await journal.aoutcome(outcome)  # durable before it counts: a rerun "
        "skips it\n",
        "            pass\n",
        (LIFECYCLE_ROLLBACK,),
        "a second rollback tries to delete everything again, and the run's record keeps "
        "'created'"),
    Mutant(
        "rollback_404_is_failure", ROLLBACK,
        "        return replace(base, http_status=exc.http_status, error_code=ALREADY_GONE,\n",
        "        return replace(base, status=Status.FAILED, http_status=exc.http_status,\n"
        "                       error_code=ALREADY_GONE,\n",
        (LIFECYCLE_ROLLBACK,),
        "a rollback rerun after a crash fails on the connections it had already deleted"),
    # -- the ownership rule (run/ownership.py) and rollback's proof -------------------------
    Mutant(
        "claim_ignores_created_before_send", OWNERSHIP,
        "    if created < sent - skew:\n",
        "    if False:\n",
        (f"{OWNED}::test_regression_a_lost_answer_never_claims_an_older_connection",),
        "after a lost answer, another tool's older connection under the key is claimed "
        "'created' (and rollback would delete it)"),
    Mutant(
        "claim_ignores_landing_window", OWNERSHIP,
        "        if created > latest:\n",
        "        if False:\n",
        (f"{OWNED}::test_regression_a_lost_answer_never_claims_one_made_after_it_could_have_"
         "landed",),
        "a connection another tool made after our lost create could have landed is claimed"),
    Mutant(
        "claim_ignores_settings", OWNERSHIP,
        "        if mutable or immutable:\n",
        "        if False:\n",
        (f"{OWNED}::test_regression_a_lost_answer_never_claims_a_connection_with_other_"
         "settings",),
        "a connection with other settings than the run sent is claimed after a lost answer"),
    Mutant(
        "reservations_ignored", RUNNER,
        "        if self.reservations is None:\n            return Reservation()\n",
        "        if True:\n            return Reservation()\n",
        (f"{OWNED}::test_regression_a_key_another_run_has_in_doubt_is_not_sent",),
        "two runs of one reports dir both send the create of one key; either may then claim "
        "the other's connection"),
    Mutant(
        "rollback_skips_the_reread", ROLLBACK,
        "        reason = why_not_ours(row, current)\n",
        "        reason = None\n",
        (f"{OWNED}::test_regression_rollback_deletes_only_what_still_matches_its_claim",),
        "rollback deletes a connection that no longer matches the run's claim"),
    Mutant(
        "deadline_ignored", "batch_provisioner/run/control.py",
        "if self.deadline is not None and anyio.current_time() >= self.deadline:",
        "if False:",
        (DEADLINE,),
        "--deadline 4s does not stop the run (only a CLI subprocess test can see it: this "
        "mutant also proves the subprocesses import the mutated copy)"),
)


# -- the machinery ---------------------------------------------------------------------------


def make_snapshot(dest: Path, rev: str | None) -> None:
    """Copy the working tree's files to ``dest``; with ``rev``, the files of that revision,
    plus the working tree's files it does not have (tests written since)."""
    dest.mkdir(parents=True)
    if rev is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", rev, *COPIED], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=IGNORED, symlinks=True,
                            copy_function=_copy_new if rev else shutil.copy2,
                            dirs_exist_ok=True)
        elif source.is_file() and not (dest / name).exists():
            shutil.copy2(source, dest / name)


def _copy_new(source: str, target: str) -> None:
    if not os.path.exists(target):
        shutil.copy2(source, target)


def occurrences(snapshot: Path, mutant: Mutant) -> int:
    target = snapshot / mutant.path
    return target.read_text(encoding="utf-8").count(mutant.old) if target.is_file() else 0


def scratch_copy(snapshot: Path, dest: Path, mutant: Mutant | None = None) -> None:
    shutil.copytree(snapshot, dest, ignore=IGNORED, symlinks=True)
    if mutant is not None:
        target = dest / mutant.path
        text = target.read_text(encoding="utf-8")
        target.write_text(text.replace(mutant.old, mutant.new, 1), encoding="utf-8")


def env_for(scratch: Path) -> dict[str, str]:
    """The scratch copy first on the path; pytest's tmp_path folders inside the scratch copy
    (so parallel runs never clean up each other's, and nothing is left behind)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(scratch)
    temp = scratch / ".pytest-tmp"
    temp.mkdir(exist_ok=True)
    env["PYTEST_DEBUG_TEMPROOT"] = str(temp)
    return env


def check_imports(scratch: Path) -> str:
    """Where ``import batch_provisioner`` resolves with the scratch env (cwd elsewhere)."""
    code = "import batch_provisioner; print(batch_provisioner.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env_for(scratch), cwd=tempfile.gettempdir(), timeout=60)
    where = done.stdout.strip()
    if not Path(where).resolve().is_relative_to(scratch.resolve()):
        raise SystemExit(f"the scratch copy is not what gets imported: {where or done.stderr}")
    return where


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)
_HEADER = re.compile(r"^_{3,} (\S.*?) _{3,}$", re.MULTILINE)


def first_failure(output: str) -> str | None:
    found = _FAILED.search(output) or _HEADER.search(output)
    return found.group(1) if found else None


def run_pytest(scratch: Path, tests: tuple[str, ...] | list[str],
               timeout: float) -> tuple[int | None, float, str]:
    """(exit code, or None on timeout; seconds; output). Kills the whole process group."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(cmd, cwd=scratch, env=env_for(scratch), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # the tests' sandboxes and CLI subprocesses too, whatever happened
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.seek(0)
        output = log.read()
    return code, round(time.monotonic() - started, 1), output


def judge(code: int | None, output: str) -> str:
    if code is None:
        return "timeout"
    if code == 0:
        return "survived"
    if code == 1:
        return "killed"
    return "broken"


@dataclass
class Bench:
    snapshot: Path
    work: Path
    timeout: float
    keep: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def scratch(self, label: str) -> Path:
        with self.lock:
            self.counter += 1
            return self.work / f"{self.counter:02d}-{label}"

    def baseline(self, tests: tuple[str, ...]) -> Baseline:
        scratch = self.scratch("baseline")
        scratch_copy(self.snapshot, scratch)
        try:
            code, seconds, output = run_pytest(scratch, tests, self.timeout)
        finally:
            self._clean(scratch)
        result = Baseline(list(tests), code == 0, code, seconds)
        if code != 0:
            result.detail = (f"first failure {first_failure(output)}" if code == 1
                             else f"pytest exit {code}: {_cause(output)}")
        print(f"  baseline {'ok  ' if result.passed else 'FAIL'} {seconds:6.1f}s  "
              f"{' '.join(tests)}" + ("" if result.passed else f"  ({result.detail})"),
              flush=True)
        return result

    def mutant(self, mutant: Mutant) -> Verdict:
        verdict = Verdict(mutant.name, mutant.path, list(mutant.tests), why=mutant.why)
        scratch = self.scratch(mutant.name)
        scratch_copy(self.snapshot, scratch, mutant)
        try:
            code, verdict.seconds, output = run_pytest(scratch, mutant.tests, self.timeout)
        finally:
            self._clean(scratch)
        verdict.exit_code = code
        verdict.verdict = judge(code, output)
        verdict.first_failure = first_failure(output) if code == 1 else None
        if verdict.verdict == "broken":
            verdict.detail = f"pytest exit {code}: {_cause(output)}"
        elif verdict.verdict == "timeout":
            verdict.detail = f"no result within {self.timeout:g} s"
        print(f"  {verdict.verdict:<9} {verdict.seconds:6.1f}s  {mutant.name}", flush=True)
        return verdict

    def _clean(self, scratch: Path) -> None:
        if not self.keep:
            shutil.rmtree(scratch, ignore_errors=True)


_CAUSE = re.compile(r"^E\s+(\w+(?:Error|Exception)\b.*)$|^(ERROR: .*)$", re.MULTILINE)


def _cause(output: str) -> str:
    """The first error pytest reports (a syntax or import error), else its last line."""
    found = _CAUSE.search(output)
    if found:
        return (found.group(1) or found.group(2)).strip()
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip("= !") if lines else "no output"


def _shown(path: str) -> str:
    return os.path.relpath(path, ROOT) if Path(path).is_relative_to(ROOT) else path


def table(verdicts: list[Verdict]) -> str:
    width = max(len(v.name) for v in verdicts)
    lines = [f"{'mutant':<{width}}  {'verdict':<15}  {'seconds':>7}  first failing test / note"]
    for v in verdicts:
        note = v.first_failure or v.detail
        lines.append(f"{v.name:<{width}}  {v.verdict:<15}  {v.seconds:>7.1f}  {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=1, help=f"parallel runs (1..{MAX_JOBS})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run")
    parser.add_argument("--rev", help="take batch_provisioner/ from this git revision")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}\n    {m.path}\n    tests: {' '.join(m.tests)}\n    {m.why}")
        return 0
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be 1..{MAX_JOBS} on this machine")
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mutants-"))
    try:
        snapshot = work / "snapshot"
        make_snapshot(snapshot, args.rev)
        imported = check_imports(snapshot)
        print(f"snapshot of {ROOT} (batch_provisioner/ from {args.rev or 'the working tree'}); "
              f"PYTHONPATH imports {imported}", flush=True)
        bench = Bench(snapshot, work, args.timeout, args.keep)
        verdicts = {m.name: Verdict(m.name, m.path, list(m.tests), why=m.why) for m in chosen}
        live: list[Mutant] = []
        for m in chosen:
            count = occurrences(snapshot, m)
            if count == 1:
                live.append(m)
            else:
                verdicts[m.name].verdict = "stale"
                verdicts[m.name].detail = f"snippet found {count} times in {m.path}"
        selections = list(dict.fromkeys(m.tests for m in live))
        print(f"{len(selections)} test selections, unmutated first:", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            baselines = dict(zip(selections, pool.map(bench.baseline, selections), strict=True))
            runnable = [m for m in live if baselines[m.tests].passed]
            for m in live:
                if not baselines[m.tests].passed:
                    verdicts[m.name].verdict = "baseline_failed"
                    verdicts[m.name].detail = baselines[m.tests].detail
            print(f"{len(runnable)} mutants:", flush=True)
            for result in pool.map(bench.mutant, runnable):
                verdicts[result.name] = result
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch copies kept in {work}")
    ordered = [verdicts[m.name] for m in chosen]
    killed = sum(v.verdict in KILLED for v in ordered)
    counts = {name: sum(v.verdict == name for v in ordered)
              for name in ("killed", "timeout", "survived", "stale", "broken", "baseline_failed")}
    seconds = round(time.monotonic() - started, 1)
    print("\n" + table(ordered))
    print(f"\nkilled {killed} / tried {len(ordered)}  ("
          + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + f"; {seconds} s)")
    report = {
        "command": " ".join([_shown(sys.executable), "tests/benchmarks/mutants.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "package_from": args.rev or "working tree",
        "imported": imported,
        "mutants": [asdict(v) for v in ordered],
        "baselines": [asdict(b) for b in baselines.values()],
        "totals": {"tried": len(ordered), "killed": killed, **counts, "seconds": seconds},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {os.path.relpath(OUT, ROOT)}")
    return 0 if killed == len(ordered) else 1


if __name__ == "__main__":
    sys.exit(main())
