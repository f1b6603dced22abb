"""Ownership under contention: is a run's record of what it created true, seen from outside?

One scenario (:func:`run_scenario`) starts ONE sandbox in its own process and points 2-3
``apply`` processes (different run ids, ONE shared reports dir) at it, with overlapping
sheets, while a *foreign* client (plain httpx, not this package) creates some of the same
keys at random moments. Faults may hit every ``/v1`` request, the foreign client's too.
Optionally one run is SIGKILLed at a random moment and resumed once the others are done.
Then each run's claims (its journal) are checked against what the sandbox holds, one run is
rolled back, and the rollback is checked too.

Ground truth is a *marker*: each creator sends its own ``sync_frequency`` (run 0: 480, run 1:
720, run 2: 1440, foreign: 60; the sandbox echoes it back, and nothing in these scenarios
PATCHes it because no run is given ``--update``), so any connection's listing tells whose POST
created it, whatever any run believes.

Figures (all counted once per offending connection or row):

* ``claimed_twice``: a connection id claimed (``created``) by two or more runs.
* ``foreign_claimed``: a claimed connection carrying the foreign marker.
* ``misattributed``: a claim by run R on a connection carrying another run's marker.
* ``claimed_missing``: a claim on a connection id the sandbox does not hold (before rollback).
* ``lost``: a valid row whose ``results.csv`` status is neither created nor exists, or a row
  missing from it; ``conflict`` rows whose note says another run is creating the key are not
  lost but ``deferred`` (as long as the key exists in the end: deferred to nobody is lost).
* ``duplicated``: a (group_id, schema) the sandbox stored twice (ledger ``creations``).
* ``rollback_over_deletes``: connections that disappeared during the rollback of run R but
  did not carry R's marker; ``rollback_left_own`` (report only): R's claimed connections with
  R's marker still there afterwards.
* ``unclaimed_own`` (report only): connections carrying R's marker that R does not claim;
  ``unjournaled_created`` (report only): rows ``created`` in R's results.csv with no
  ``created`` outcome in R's journal (what rollback reads); ``results_claims_false`` (report
  only): rows ``created`` in R's results.csv whose connection R did not make.

Harness self-checks land in ``problems`` (a run that did not finish, a connection with no
known marker, a foreign create whose fate stayed unknown, ...): a scenario with problems
says nothing about ownership.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from batch_provisioner.sandbox import run_in_process
from tests.apply_helpers import ENV, GROUPS, HEADER, TOKEN, creations

ROOT = Path(__file__).resolve().parents[1]
RUN_MARKERS = (480, 720, 1440)  # sync_frequency per run index: whose POST made a connection
FOREIGN_MARKER = 60
OK = frozenset({"created", "exists"})
#: A conflict saying another run of the reports dir is creating the key (deferred, not lost):
#: error_code ReservedByRun, or a note like "run run1 of this reports dir is creating ...".
DEFERRED_CODES = frozenset({"ReservedByRun"})
DEFERRED_NOTE = re.compile(r"another run|other run|being created by|of this reports dir is "
                           r"creating", re.IGNORECASE)
#: The figures that must be 0 for a run's record of what it created to be true.
MUST_BE_ZERO = ("claimed_twice", "foreign_claimed", "misattributed", "claimed_missing",
                "rollback_over_deletes", "duplicated", "lost")
APPLY_ENV = {**ENV, "FIVETRAN_API_KEY": "sandbox", "FIVETRAN_API_SECRET": "sandbox"}
_FAULT_NAMES = ("429", "429_date", "500", "502", "503", "reset", "drop_after_commit", "slow")

Key = tuple[str, str]


@dataclass
class ScenarioFigures:
    seed: int
    runs: int
    rows: int
    kill: bool
    foreign: int
    faults: str
    run_ids: list[str] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)
    shared_keys: int = 0
    victim: str | None = None
    killed_after_starts: int = 0  # 0: no kill landed (not asked, or the run ended first)
    exit_codes: dict[str, list[int]] = field(default_factory=dict)
    claims: int = 0
    claimed_twice: int = 0
    foreign_claimed: int = 0
    misattributed: int = 0
    claimed_missing: int = 0
    unclaimed_own: int = 0
    unjournaled_created: int = 0
    results_claims_false: int = 0
    lost: int = 0
    deferred: int = 0
    duplicated: int = 0
    reconciliations: int = 0
    connections: int = 0
    foreign_landed: int = 0
    foreign_taken: int = 0
    faults_injected: int = 0
    rolled_back_run: str | None = None
    rollback_exit: int = -1
    rollback_deleted: int = 0
    rollback_over_deletes: int = 0
    rollback_left_own: int = 0
    runs_seconds: float = 0.0
    resume_seconds: float = 0.0
    rollback_seconds: float = 0.0
    total_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # harness self-checks
    details: list[str] = field(default_factory=list)  # each ownership violation, spelled out

    def violations(self) -> dict[str, int]:
        """The must-be-zero figures that are not."""
        return {name: getattr(self, name) for name in MUST_BE_ZERO if getattr(self, name)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the sheets -------------------------------------------------------------------------------


def _row(key: Key, index: int, marker: int) -> list[str]:
    """One sheet row; the config depends on the key only, the marker on the run."""
    card = index % 7 == 3
    specific = index % 2 == 1
    return [key[0], key[1], "SpecificAccounts" if specific else "AllAccounts",
            f"70123456789012{index:05d}" if specific else "",
            "" if card else "env:TT_TOKEN", "https://agency.example/done" if card else "",
            str(marker), f"CLIENT-{index}"]


def make_sheets(rng: random.Random, runs: int, rows: int, work: Path
                ) -> tuple[list[Path], list[list[Key]], set[Key]]:
    """``runs`` sheets of ``rows`` rows each: a shared part in every sheet, the rest in one only.

    Each sheet lists its keys in its own order, so the runs reach shared keys at different
    moments. Returns (paths, keys per sheet, the shared keys).
    """
    shared_n = max(1, round(rows * rng.uniform(0.4, 0.75)))
    own_n = rows - shared_n
    pool = [(GROUPS[i % len(GROUPS)], f"k{i:03d}") for i in range(shared_n + runs * own_n)]
    index = {key: i for i, key in enumerate(pool)}
    shared = pool[:shared_n]
    paths, sheets = [], []
    for r in range(runs):
        keys = shared + pool[shared_n + r * own_n: shared_n + (r + 1) * own_n]
        rng.shuffle(keys)
        path = work / f"sheet{r}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for key in keys:
                writer.writerow(_row(key, index[key], RUN_MARKERS[r]))
        paths.append(path)
        sheets.append(keys)
    return paths, sheets, set(shared)


# -- talking to the sandbox from outside ------------------------------------------------------


class Outside:
    """A plain httpx client of the sandbox's ``/v1`` (Basic sandbox/sandbox), faults and all."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.http = httpx.Client(base_url=url, auth=("sandbox", "sandbox"), timeout=timeout,
                                 trust_env=False, headers={"Accept": "application/json"})

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, Any] | None = None,
            attempts: int = 60) -> dict[str, Any] | None:
        """``data`` of a GET, retried through faults and 429s; None on 404."""
        for attempt in range(attempts):
            try:
                answer = self.http.get(path, params=params)
            except httpx.TransportError:
                time.sleep(min(0.02 * (attempt + 1), 0.3))
                continue
            if answer.status_code == 200:
                data: dict[str, Any] = answer.json()["data"]
                return data
            if answer.status_code == 404:
                return None
            if answer.status_code == 429 or answer.status_code >= 500:
                time.sleep(min(0.02 * (attempt + 1), 0.3))
                continue
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
        raise RuntimeError(f"GET {path}: no clear answer in {attempts} attempts")

    def connections(self, group_id: str, schema: str | None = None) -> list[dict[str, Any]]:
        """Every connection of a group (``GET /v1/groups/{id}/connections``, paginated)."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        if schema is not None:
            params["schema"] = schema
        while True:
            data = self.get(f"/v1/groups/{group_id}/connections", params)
            if data is None:
                raise RuntimeError(f"group {group_id} is missing")
            items += data.get("items", [])
            cursor = data.get("next_cursor")
            if not cursor:
                return items
            params = {**params, "cursor": cursor}

    def everything(self) -> dict[str, dict[str, Any]]:
        """connection id -> its listing item, over every group."""
        return {str(item["id"]): item for group in GROUPS for item in self.connections(group)}


@dataclass
class ForeignResult:
    landed: dict[Key, str] = field(default_factory=dict)  # key -> connection id (our marker)
    taken: dict[Key, int | None] = field(default_factory=dict)  # key -> marker of the holder
    unsure: list[Key] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Foreign(threading.Thread):
    """Creates ``keys`` with the foreign marker at the given moments, and finds out for sure
    whether each create landed: after any unclear answer (a cut connection, a timeout, a 5xx,
    a 429, a 409) it looks the key up by group and schema and reads the marker."""

    def __init__(self, url: str, plan: list[tuple[float, Key]], go: threading.Event,
                 rng: random.Random) -> None:
        super().__init__(name="foreign-client", daemon=True)
        self.url, self.plan, self.go, self.rng = url, sorted(plan), go, rng
        self.result = ForeignResult()
        self.early_done = threading.Event()

    def run(self) -> None:
        outside = Outside(self.url, timeout=1.0)  # as short as apply's --read-timeout
        try:
            for moment, key in self.plan:
                if moment < 0:
                    self._create(outside, key)
            self.early_done.set()
            self.go.wait(60)
            started = time.monotonic()
            for moment, key in self.plan:
                if moment < 0:
                    continue
                time.sleep(max(0.0, started + moment - time.monotonic()))
                self._create(outside, key)
        except Exception as exc:  # reported as a harness problem, never swallowed
            self.result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.early_done.set()
            outside.close()

    def _create(self, outside: Outside, key: Key) -> None:
        body = {"group_id": key[0], "service": "tiktok_ads", "sync_frequency": FOREIGN_MARKER,
                "config": {"schema": key[1], "sync_mode": "AllAccounts"},
                "auth": {"access_token": TOKEN}}
        for attempt in range(15):
            try:
                answer: httpx.Response | None = outside.http.post("/v1/connections", json=body)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 201:
                self.result.landed[key] = str(answer.json()["data"]["id"])
                return
            if answer is not None and answer.status_code not in (409, 429) \
                    and answer.status_code < 500:
                self.result.errors.append(f"create {key}: {answer.status_code} {answer.text}")
                return
            # No clear answer (or a 409): did this, or an earlier attempt, land? Look it up.
            found = [c for c in outside.connections(key[0], key[1]) if c.get("schema") == key[1]]
            if found:
                marker = found[0].get("sync_frequency")
                if marker == FOREIGN_MARKER:
                    self.result.landed[key] = str(found[0]["id"])
                else:
                    self.result.taken[key] = marker
                return
            time.sleep(min(0.02 * 2 ** attempt, 0.5) * self.rng.uniform(0.5, 1.0))
        self.result.unsure.append(key)


# -- runs -------------------------------------------------------------------------------------


def _apply(sheet: Path, url: str, reports: Path, concurrency: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batch_provisioner", "apply", str(sheet), "--sandbox-url", url,
            "--reports-dir", str(reports), "--concurrency", str(concurrency), "--read-timeout",
            "1", "--max-attempts", "10", "--log-format", "json", *extra]


def _starts(journal: Path) -> int:
    try:
        return journal.read_text("utf-8", errors="replace").count('"type": "start"')
    except FileNotFoundError:
        return 0


def read_journal(run_dir: Path) -> dict[Key, dict[str, Any]]:
    """The last final outcome record per (group_id, schema); torn lines are skipped."""
    last: dict[Key, dict[str, Any]] = {}
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return last
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("type") == "outcome" and record.get("final"):
            last[(str(record.get("group_id")), str(record.get("schema")))] = record
    return last


def claims_of(run_dir: Path) -> dict[Key, str]:
    """key -> connection id the run says it created (and has not rolled back)."""
    return {key: str(r["connection_id"]) for key, r in read_journal(run_dir).items()
            if r.get("status") == "created" and r.get("connection_id")}


def _read_results(run_dir: Path) -> list[dict[str, str]] | None:
    try:
        with (run_dir / "results.csv").open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return None


def _marker_owner(item: dict[str, Any], markers: dict[int, str]) -> str | None:
    """Run id, ``"foreign"``, or None (no known marker) for a connection's listing item."""
    marker = item.get("sync_frequency")
    if marker == FOREIGN_MARKER:
        return "foreign"
    return markers.get(marker) if isinstance(marker, int) else None


# -- the scenario -----------------------------------------------------------------------------


def run_scenario(seed: int, tmp: Path, *, runs: int = 2, rows: int = 24, kill: bool = False,
                 foreign: int = 0, faults: str = "", foreign_spread: float = 2.0,
                 slow_ms: int = 1200) -> ScenarioFigures:
    """One seeded scenario; see the module docstring. ``tmp`` must exist and be empty-ish."""
    if not 2 <= runs <= len(RUN_MARKERS):
        raise ValueError(f"runs must be 2..{len(RUN_MARKERS)}")
    t0 = time.monotonic()
    rng = random.Random(seed)
    fig = ScenarioFigures(seed=seed, runs=runs, rows=rows, kill=kill, foreign=foreign,
                          faults=faults)
    work = tmp / f"scenario-{seed}"
    work.mkdir(parents=True)
    reports = work / "reports"
    paths, sheets, shared = make_sheets(rng, runs, rows, work)
    fig.shared_keys = len(shared)
    fig.run_ids = [f"run{r}" for r in range(runs)]
    fig.concurrency = [rng.randint(2, 12) for _ in range(runs)]
    markers = {RUN_MARKERS[r]: fig.run_ids[r] for r in range(runs)}
    universe = sorted({k for keys in sheets for k in keys})
    foreign_keys = rng.sample(universe, min(foreign, len(universe)))
    # ~1 in 8 foreign creates comes before the runs start; the rest while they create.
    foreign_plan = [(-1.0 if rng.random() < 0.125 else rng.uniform(0, foreign_spread), key)
                    for key in foreign_keys]
    victim = rng.randrange(runs) if kill else None
    kill_at = rng.randint(1, max(1, rows // 2))
    rolled_back = rng.randrange(runs)
    env = {**os.environ, **APPLY_ENV}

    with run_in_process(profile="fast", faults=faults, seed=seed, slow_ms=slow_ms,
                        create_limit=0) as box:
        go = threading.Event()
        stranger = Foreign(box.url, foreign_plan, go, random.Random(seed ^ 0x5EED))
        stranger.start()
        stranger.early_done.wait(60)  # the early foreign creates settle before any run plans
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs: dict[str, Any] = {}
        for r, run_id in enumerate(fig.run_ids):
            logs[run_id] = (work / f"{run_id}.stderr").open("ab")
            procs[run_id] = subprocess.Popen(
                _apply(paths[r], box.url, reports, fig.concurrency[r], "--run-id", run_id),
                stdout=subprocess.DEVNULL, stderr=logs[run_id], env=env, cwd=ROOT)
        try:
            _drive(fig, procs, logs, victim, kill_at, reports, paths, box.url, env, go)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for handle in logs.values():
                handle.close()
        go.set()
        stranger.join(60)
        if stranger.is_alive():
            fig.problems.append("the foreign client did not finish")
        outside = Outside(box.url)
        try:
            before = outside.everything()
            ledger = box.ledger()
            _check_claims(fig, reports, sheets, before, markers, stranger.result, ledger)
            fig.rolled_back_run = fig.run_ids[rolled_back]
            t_rb = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "batch_provisioner", "rollback", fig.rolled_back_run,
                 "--yes", "--sandbox-url", box.url, "--reports-dir", str(reports)],
                capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False)
            fig.rollback_seconds = round(time.monotonic() - t_rb, 2)
            fig.rollback_exit = done.returncode
            if done.returncode not in (0, 1):
                fig.problems.append(f"rollback exit {done.returncode}: {done.stderr[-300:]}")
            after = outside.everything()
            _check_rollback(fig, reports, before, after, markers)
        finally:
            outside.close()
    fig.total_seconds = round(time.monotonic() - t0, 2)
    return fig


def _drive(fig: ScenarioFigures, procs: dict[str, subprocess.Popen[bytes]], logs: dict[str, Any],
           victim: int | None, kill_at: int, reports: Path, paths: list[Path], url: str,
           env: dict[str, str], go: threading.Event) -> None:
    """Release the foreign client, kill the victim (if any), wait, resume the victim."""
    started = time.monotonic()
    _wait_first_creation(url, procs, go)
    if victim is not None:
        fig.victim = fig.run_ids[victim]
        proc, journal = procs[fig.victim], reports / fig.victim / "journal.jsonl"
        while proc.poll() is None and _starts(journal) < kill_at:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            fig.killed_after_starts = _starts(journal)
        fig.exit_codes[fig.victim] = [proc.wait()]
    for run_id, proc in procs.items():
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            fig.problems.append(f"{run_id} did not finish within 180 s")
        fig.exit_codes.setdefault(run_id, [code])
    fig.runs_seconds = round(time.monotonic() - started, 2)
    if fig.killed_after_starts:
        assert fig.victim is not None
        resumed = time.monotonic()
        index = fig.run_ids.index(fig.victim)
        done = subprocess.run(
            _apply(paths[index], url, reports, fig.concurrency[index], "--resume", fig.victim),
            stdout=subprocess.DEVNULL, stderr=logs[fig.victim], env=env, cwd=ROOT,
            timeout=180, check=False)
        fig.exit_codes[fig.victim].append(done.returncode)
        fig.resume_seconds = round(time.monotonic() - resumed, 2)


def _creations(url: str) -> int:
    with httpx.Client(trust_env=False, timeout=10) as http:
        return int(http.get(f"{url}/sandbox/ledger", params={"since": 1 << 40})
                   .json()["counts"]["creations"])


def _wait_first_creation(url: str, procs: dict[str, subprocess.Popen[bytes]],
                         go: threading.Event) -> None:
    """Release the foreign client once the runs have stored their first connection."""
    counted = _creations(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and all(p.poll() is None for p in procs.values()):
        if _creations(url) > counted:
            break
        time.sleep(0.02)
    go.set()


def _check_claims(fig: ScenarioFigures, reports: Path, sheets: list[list[Key]],
                  live: dict[str, dict[str, Any]], markers: dict[int, str],
                  stranger: ForeignResult, ledger: dict[str, Any]) -> None:
    made = creations(ledger)
    fig.faults_injected = sum(1 for r in ledger["requests"] if r["fault"])
    fig.duplicated = sum(1 for n in made.values() if n > 1)
    fig.details += [f"{k} stored {n} times" for k, n in made.items() if n > 1]
    fig.connections = len(live)
    owner = {cid: _marker_owner(item, markers) for cid, item in live.items()}
    unknown = [cid for cid, who in owner.items() if who is None]
    if unknown:
        fig.problems.append(f"{len(unknown)} connections carry no known marker: {unknown[:3]}")
    # the foreign client's own account must match the markers, or the harness is wrong
    fig.foreign_landed, fig.foreign_taken = len(stranger.landed), len(stranger.taken)
    foreign_ids = {cid for cid, who in owner.items() if who == "foreign"}
    if foreign_ids != set(stranger.landed.values()):
        fig.problems.append(f"foreign client believes it made {sorted(stranger.landed.values())}"
                            f", the markers say {sorted(foreign_ids)}")
    if stranger.unsure or stranger.errors:
        fig.problems.append(f"foreign client unsure of {stranger.unsure}, errors "
                            f"{stranger.errors[:2]}")

    live_keys = {(str(item.get("group_id")), str(item.get("schema"))) for item in live.values()}
    claimants: dict[str, list[str]] = defaultdict(list)
    for r, run_id in enumerate(fig.run_ids):
        run_dir = reports / run_id
        claims = claims_of(run_dir)
        fig.claims += len(claims)
        for key, cid in claims.items():
            claimants[cid].append(run_id)
            who = owner.get(cid, "missing")
            item = live.get(cid, {})
            if who == "missing":
                fig.claimed_missing += 1
                fig.details.append(f"{run_id} claims {cid} {key}: no such connection")
            elif (item.get("group_id"), item.get("schema")) != key:
                fig.misattributed += 1
                fig.details.append(f"{run_id} claims {cid} for {key}, it is "
                                   f"{(item.get('group_id'), item.get('schema'))}")
            elif who == "foreign":
                fig.foreign_claimed += 1
                fig.details.append(f"{run_id} claims {cid} {key}: the foreign client made it")
            elif who is not None and who != run_id:
                fig.misattributed += 1
                fig.details.append(f"{run_id} claims {cid} {key}: {who} made it")
        unclaimed = sorted({cid for cid, who in owner.items() if who == run_id}
                           - set(claims.values()))
        fig.unclaimed_own += len(unclaimed)
        journal = read_journal(run_dir)
        for cid in unclaimed:
            key = (str(live[cid]["group_id"]), str(live[cid]["schema"]))
            fig.details.append(f"(report only) {run_id} made {cid} {key} but does not claim it "
                               f"(journal: {journal.get(key, {}).get('status')})")
        summary_path = run_dir / "summary.json"
        if summary_path.exists():
            fig.reconciliations += int(json.loads(summary_path.read_text()).get(
                "reconciliations", 0))
        _check_results(fig, run_id, run_dir, sheets[r], claims, owner, live_keys)
    for cid, who in claimants.items():
        if len(who) > 1:
            fig.claimed_twice += 1
            fig.details.append(f"{cid} claimed by {', '.join(who)}")


def _check_results(fig: ScenarioFigures, run_id: str, run_dir: Path, keys: list[Key],
                   claims: dict[Key, str], owner: dict[str, str | None],
                   live_keys: set[Key]) -> None:
    results = _read_results(run_dir)
    if results is None:
        fig.lost += len(keys)
        fig.problems.append(f"{run_id}: no results.csv")
        return
    seen: set[Key] = set()
    for line in results:
        key = (line.get("group_id") or "", line.get("schema") or "")
        seen.add(key)
        status = line.get("status") or ""
        if status == "created" and key not in claims:
            fig.unjournaled_created += 1
            fig.details.append(f"(report only) {run_id} {key}: created in results.csv, "
                               "no created outcome in its journal")
        made_by = owner.get(line.get("connection_id") or "", "missing")
        if status == "created" and made_by != run_id:
            fig.results_claims_false += 1
            fig.details.append(f"(report only) {run_id} {key}: created in results.csv, "
                               f"{line.get('connection_id')} made by {made_by}")
        if status in OK or status == "invalid":
            continue
        if status == "conflict" and (line.get("error_code") in DEFERRED_CODES
                                     or DEFERRED_NOTE.search(line.get("error_message") or "")):
            if key in live_keys:  # deferred to a run that did create it (or someone did)
                fig.deferred += 1
                continue
            fig.details.append(f"{run_id} {key}: deferred to another run, nobody created it")
        fig.lost += 1
        fig.details.append(f"{run_id} {key}: {status} {line.get('error_code')} "
                           f"{(line.get('error_message') or '')[:120]}")
    missing = set(keys) - seen
    fig.lost += len(missing)
    fig.details += [f"{run_id} {key}: missing from results.csv" for key in sorted(missing)]


def _check_rollback(fig: ScenarioFigures, reports: Path, before: dict[str, dict[str, Any]],
                    after: dict[str, dict[str, Any]], markers: dict[int, str]) -> None:
    run_id = fig.rolled_back_run
    assert run_id is not None
    gone = set(before) - set(after)
    fig.rollback_deleted = len(gone)
    for cid in sorted(gone):
        who = _marker_owner(before[cid], markers)
        if who != run_id:
            fig.rollback_over_deletes += 1
            fig.details.append(f"rollback of {run_id} deleted {cid} "
                               f"{(before[cid]['group_id'], before[cid]['schema'])} made by {who}")
    if set(after) - set(before):
        fig.problems.append("connections appeared during the rollback")
    journal = read_journal(reports / run_id)
    claimed_before = {str(r["connection_id"]) for r in journal.values()
                      if r.get("connection_id") and r.get("status") in ("created", "rolled_back")}
    fig.rollback_left_own = sum(1 for cid in claimed_before & set(after)
                                if _marker_owner(after[cid], markers) == run_id)


# -- random scenario parameters (the benchmark's) ---------------------------------------------


def random_faults(rng: random.Random, *, scale: float = 1.0) -> str:
    """A random fault mix in ``--faults`` syntax; ``drop_after_commit`` half the time."""
    chosen = [f"{name}={rng.uniform(0.01, 0.06) * scale:.3f}" for name in _FAULT_NAMES
              if rng.random() < 0.5]
    if rng.random() < 0.5:
        low = rng.randint(0, 10)
        chosen.append(f"latency_ms={low}..{low + rng.randint(0, 20)}")
    return ",".join(chosen)


def tally(figures: list[ScenarioFigures]) -> Counter[str]:
    """Sums of the integer figures over scenarios."""
    totals: Counter[str] = Counter()
    for fig in figures:
        for name, value in fig.as_dict().items():
            if isinstance(value, int) and not isinstance(value, bool) and name != "seed":
                totals[name] += value
    return totals
