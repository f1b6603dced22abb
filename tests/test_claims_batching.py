"""Per-key reservations served in batches (a group commit): the same answers as one reserve
after the other, one holder a key across runs, durable before the answer, errors for every
waiter, and far fewer locks and fsyncs than keys."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import shutil
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from batch_provisioner.errors import OutputError
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run import ownership
from batch_provisioner.run.journal import Key
from batch_provisioner.run.ownership import CLAIMS_DIR, Reservation, Reservations

GROUP = "decent_dropsy"
DOUBT, CREATED, SETTLED, OLD, MINE = ((GROUP, f"tt_{name}") for name in
                                      ("doubt", "created", "settled", "old", "mine"))
TASKS = 64


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def keys(n: int, prefix: str = "tt") -> list[Key]:
    return [(GROUP, f"{prefix}_{i:04d}") for i in range(n)]


def journal(root: Path, run_id: str, records: list[dict[str, Any]]) -> None:
    (root / run_id).mkdir(parents=True, exist_ok=True)
    with (root / run_id / "journal.jsonl").open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({"t": now(), **record}) + "\n")


def start(row: int, key: Key) -> dict[str, Any]:
    return {"type": "start", "row": row, "key": list(key), "op": "create"}


def final(row: int, key: Key, status: str, connection_id: str | None = None) -> dict[str, Any]:
    return {"type": "outcome", "final": True, "row": row, "status": status, "group_id": key[0],
            "schema": key[1], "connection_id": connection_id, "key": list(key),
            "in_doubt": False}


def seed(root: Path) -> None:
    """run-b holds a key in doubt, one it created (settled) and one it settled without a
    claim; run-c (no journal) left a file in the format of older code; run-a holds one."""
    journal(root, "run-b", [start(2, DOUBT), start(3, CREATED), start(4, SETTLED),
                            final(3, CREATED, "created", "conn-b"), final(4, SETTLED, "exists")])
    other = Reservations(root, "run-b")
    for key in (DOUBT, CREATED, SETTLED):
        assert other.reserve(key) == Reservation()
    old = {"run_id": "run-c", "group_id": OLD[0], "schema": OLD[1], "t": now()}
    other._path(OLD).write_text(json.dumps(old), encoding="utf-8")
    assert Reservations(root, "run-a").reserve(MINE) == Reservation()


async def concurrently(count: int,
                       work: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(work, index)


async def reserve_all(reservations: Reservations, todo: list[Key],
                      after: Callable[[Key], None] = lambda _key: None) -> dict[Key, Reservation]:
    """``areserve`` of every key from ``TASKS`` tasks at once; what each got."""
    got: dict[Key, Reservation] = {}

    async def work(index: int) -> None:
        for key in todo[index::TASKS]:
            got[key] = await reservations.areserve(key)
            after(key)

    await concurrently(TASKS, work)
    return got


class Counts:
    """Lock acquisitions and fsyncs (of files and of folders) while it counts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.locks = self.fsyncs = self.folder_fsyncs = 0
        real_flock, real_fsync = fcntl.flock, os.fsync

        def flock(fd: int, operation: int) -> None:
            self.locks += operation == fcntl.LOCK_EX
            real_flock(fd, operation)

        def fsync(fd: int) -> None:
            self.fsyncs += 1
            self.folder_fsyncs += os.path.isdir(f"/proc/self/fd/{fd}")
            real_fsync(fd)

        monkeypatch.setattr(fcntl, "flock", flock)
        monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture()
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    return Counts(monkeypatch)


@pytest.mark.anyio
async def test_concurrent_areserve_answers_as_reserve_one_after_the_other(
        tmp_path: Path, counts: Counts) -> None:
    todo = [*keys(300), DOUBT, CREATED, SETTLED, OLD, MINE]
    random.Random(14).shuffle(todo)
    one_by_one, batched = tmp_path / "one", tmp_path / "batched"
    seed(one_by_one)
    shutil.copytree(one_by_one, batched, symlinks=True)
    sequential = Reservations(one_by_one, "run-a")
    expected = {key: sequential.reserve(key) for key in todo}
    locks, fsyncs = counts.locks, counts.fsyncs

    mine = Reservations(batched, "run-a")
    got = await reserve_all(mine, todo)

    assert got == expected
    assert got[DOUBT] == Reservation(blocked_by="run-b")  # run-b may still create it
    assert got[CREATED] == Reservation(not_ours=frozenset({"conn-b"}))  # taken over, not ours
    assert got[SETTLED] == got[OLD] == got[MINE] == Reservation()
    for root in (one_by_one, batched):
        view = Reservations(root, "nobody")
        assert {key: view.holder(key) for key in todo} == {
            key: "run-b" if key == DOUBT else "run-a" for key in todo}
    assert sorted(p.name for p in (batched / CLAIMS_DIR).glob("*.json")) == sorted(
        p.name for p in (one_by_one / CLAIMS_DIR).glob("*.json"))
    # batched: a lock and one fsync a batch (plus the run's record), not one or two a key
    assert counts.locks - locks <= len(todo) // 8
    assert counts.fsyncs - fsyncs <= counts.locks - locks + 1 < len(todo)


def test_a_file_another_run_shares_is_replaced_never_written_into(tmp_path: Path) -> None:
    seed(tmp_path)
    other = Reservations(tmp_path, "run-b")
    shared = os.stat(other._path(DOUBT)).st_ino
    assert os.stat(other._path(CREATED)).st_ino == shared  # one record, linked under each key
    assert Reservations(tmp_path, "run-a").reserve(CREATED).not_ours == {"conn-b"}
    assert other.holder(CREATED) == "run-a"
    assert other.holder(DOUBT) == other.holder(SETTLED) == "run-b"  # the shared file as it was
    assert os.stat(other._path(DOUBT)).st_ino == shared
    for path in (tmp_path / CLAIMS_DIR).glob("*.json"):  # what older code reads
        assert json.loads(path.read_text("utf-8"))["run_id"] in {"run-a", "run-b", "run-c"}


def test_two_runs_reserving_the_same_keys_at_once_never_both_get_one(tmp_path: Path) -> None:
    """Two runs (each its own Reservations and event loop, in threads; the flock is taken per
    open file, so threads exclude each other as processes do), all keys started in both
    journals: each key goes to exactly one, and the other is blocked by it."""
    todo = keys(200)
    for run_id in ("run-a", "run-b", "run-c"):
        journal(tmp_path, run_id, [start(i + 2, key) for i, key in enumerate(todo)])
    got: dict[str, dict[Key, Reservation]] = {}

    def batched(run_id: str, seed_: int) -> None:
        mine = list(todo)
        random.Random(seed_).shuffle(mine)
        got[run_id] = anyio.run(reserve_all, Reservations(tmp_path, run_id), mine)

    def one_by_one(run_id: str) -> None:  # the synchronous API, as older code reserves
        reservations = Reservations(tmp_path, run_id)
        got[run_id] = {key: reservations.reserve(key) for key in reversed(todo)}

    threads = [threading.Thread(target=batched, args=("run-a", 1)),
               threading.Thread(target=batched, args=("run-b", 2)),
               threading.Thread(target=one_by_one, args=("run-c",))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(got) == {"run-a", "run-b", "run-c"}
    view = Reservations(tmp_path, "nobody")
    for key in todo:
        winners = [run for run, answers in got.items() if answers[key].blocked_by is None]
        assert len(winners) == 1, (key, {run: got[run][key] for run in got})
        assert {got[run][key].blocked_by for run in got} - {None} == {winners[0]}
        assert view.holder(key) == winners[0]


@pytest.mark.anyio
async def test_each_key_is_durable_when_its_await_returns(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """When ``areserve`` returns, the key's name was in the folder at a folder fsync, and its
    file's contents were fsynced before that."""
    synced_files: set[int] = set()
    durable_names: set[str] = set()
    real_write, real_fsync_folder = ownership._write_synced, ownership._fsync_folder

    def write_synced(path: Path, data: bytes, *, fresh: bool = False) -> None:
        real_write(path, data, fresh=fresh)
        synced_files.add(os.stat(path).st_ino)

    def fsync_folder(folder: Path) -> None:
        names = set(os.listdir(folder))
        real_fsync_folder(folder)
        durable_names.update(names)

    monkeypatch.setattr(ownership, "_write_synced", write_synced)
    monkeypatch.setattr(ownership, "_fsync_folder", fsync_folder)
    mine = Reservations(tmp_path, "run-a")

    def check(key: Key) -> None:
        path = mine._path(key)
        assert path.name in durable_names
        assert os.stat(path).st_ino in synced_files
        assert mine.holder(key) == "run-a"

    got = await reserve_all(mine, keys(150), after=check)
    assert set(got.values()) == {Reservation()}


@pytest.mark.anyio
@pytest.mark.parametrize("failing", ["link", "replace"])
async def test_an_os_error_reaches_every_waiter_of_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    def no_links(source: Any, target: Any) -> None:  # the fallback writes a file a key
        raise OSError(errno.EPERM, "Operation not permitted")

    def full(*_args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full if failing == "link" else no_links)
    if failing == "replace":
        monkeypatch.setattr(os, "replace", full)
    mine = Reservations(tmp_path, "run-a")
    errors: dict[Key, OutputError] = {}
    todo = keys(100)

    async def work(index: int) -> None:
        for key in todo[index::TASKS]:
            try:
                await mine.areserve(key)
            except OutputError as exc:
                errors[key] = exc

    await concurrently(TASKS, work)
    assert set(errors) == set(todo)
    assert all("No space left on device" in exc.message for exc in errors.values())
    assert len({id(exc) for exc in errors.values()}) == len(todo)  # each its own copy
    assert not list((tmp_path / CLAIMS_DIR).glob("*.json"))  # and no file left behind
    assert not list((tmp_path / CLAIMS_DIR).glob(".*.tmp"))
    monkeypatch.undo()
    assert await Reservations(tmp_path, "run-a").areserve(todo[0]) == Reservation()


@pytest.mark.anyio
async def test_a_failed_release_reaches_every_waiter(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mine = Reservations(tmp_path, "run-a")
    todo = keys(40)
    await reserve_all(mine, todo)

    def unlink(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", unlink)
    failed = Outcome(row=2, status=Status.FAILED, group_id=GROUP, schema="x")
    errors: list[OutputError] = []

    async def work(index: int) -> None:
        try:
            await mine.asettle(todo[index], failed)
        except OutputError as exc:
            errors.append(exc)

    await concurrently(len(todo), work)
    assert len(errors) == len(todo)
    assert all("Read-only file system" in exc.message for exc in errors)


@pytest.mark.anyio
async def test_asettle_releases_in_batches_and_keeps_what_is_ours_or_in_doubt(
        tmp_path: Path, counts: Counts) -> None:
    mine = Reservations(tmp_path, "run-a")
    todo = keys(192)
    await reserve_all(mine, todo)
    created = Outcome(row=2, status=Status.CREATED, group_id=GROUP, schema="x")
    doubt = Outcome(row=2, status=Status.FAILED, group_id=GROUP, schema="x", in_doubt=True)
    failed = Outcome(row=2, status=Status.FAILED, group_id=GROUP, schema="x")
    outcomes = (created, doubt, failed)
    locks = counts.locks

    async def work(index: int) -> None:
        for number, key in enumerate(todo[index::TASKS]):
            await mine.asettle(key, outcomes[number % 3])

    await concurrently(TASKS, work)
    assert counts.locks - locks <= TASKS // 8  # only releases take the lock, a batch at once
    for index in range(TASKS):
        for number, key in enumerate(todo[index::TASKS]):
            assert mine.holder(key) == (None if outcomes[number % 3] is failed else "run-a")
    await mine.asettle(None, failed)  # no key: nothing to do


@pytest.mark.anyio
async def test_a_reserve_and_a_release_of_one_key_in_one_batch_end_as_in_that_order(
        tmp_path: Path) -> None:
    mine = Reservations(tmp_path, "run-a")
    failed = Outcome(row=2, status=Status.FAILED, group_id=GROUP, schema="x")
    key, kept = (GROUP, "tt_once"), (GROUP, "tt_twice")
    async with anyio.create_task_group() as tg:  # queued together behind the first
        tg.start_soon(mine.areserve, (GROUP, "tt_first"))
        tg.start_soon(mine.areserve, key)
        tg.start_soon(mine.asettle, key, failed)
        tg.start_soon(mine.asettle, kept, failed)
        tg.start_soon(mine.areserve, kept)
    assert mine.holder(key) is None
    assert mine.holder(kept) == "run-a"


@pytest.mark.anyio
async def test_a_cancelled_leader_hands_its_batch_on(tmp_path: Path) -> None:
    """The leader cancelled while its batch waits for a worker thread: the others in it are
    served by the next leader, and the cancelled request is not reserved."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1
    mine = Reservations(tmp_path, "run-a")
    release = threading.Event()
    leader, first, second = keys(3)
    got: dict[Key, Reservation] = {}

    async def reserve(key: Key) -> None:
        got[key] = await mine.areserve(key)

    async def busy() -> None:
        await anyio.to_thread.run_sync(release.wait)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(busy)  # the one worker thread is busy
            await anyio.sleep(0.05)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(reserve, leader)  # leads, and lets the next two queue
                    tg.start_soon(reserve, first)
                    tg.start_soon(reserve, second)
                    await anyio.sleep(0.05)  # the leader took all three; no thread is free
                    assert mine._queue == []
                    scope.cancel()
            release.set()
    assert got == {first: Reservation(), second: Reservation()}
    assert mine.holder(leader) is None
    assert mine.holder(first) == mine.holder(second) == "run-a"
    assert await mine.areserve(leader) == Reservation()  # nothing is left waiting


@pytest.mark.anyio
async def test_cancelled_waiters_leave_the_queue(tmp_path: Path) -> None:
    mine = Reservations(tmp_path, "run-a")
    folder = tmp_path / CLAIMS_DIR
    folder.mkdir()
    todo = keys(20)
    with (folder / "lock").open("a") as lock:  # another run holds the lock: the batch waits
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        async with anyio.create_task_group() as tg:
            tg.start_soon(mine.areserve, todo[0])
            await anyio.sleep(0.05)  # the first batch is under way (blocked on the lock)
            with anyio.move_on_after(0.05):
                async with anyio.create_task_group() as waiting:
                    for key in todo[1:]:
                        waiting.start_soon(mine.areserve, key)
            assert mine._queue == []
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    assert mine.holder(todo[0]) == "run-a"
    assert [mine.holder(key) for key in todo[1:]] == [None] * 19
    assert await mine.areserve(todo[1]) == Reservation()


def test_a_filesystem_without_hard_links_gets_a_file_a_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counts: Counts) -> None:
    def no_links(*_args: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    todo = keys(30)
    mine = Reservations(tmp_path, "run-a")
    got = anyio.run(reserve_all, mine, todo)
    assert set(got.values()) == {Reservation()}
    for key in todo:
        record = json.loads(mine._path(key).read_text("utf-8"))
        assert record["run_id"] == "run-a" and (record["group_id"], record["schema"]) == key
        assert os.stat(mine._path(key)).st_nlink == 1
    assert counts.folder_fsyncs < len(todo)  # still one a batch


def test_a_record_with_as_many_links_as_allowed_is_made_anew(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link
    made = 0

    def link(source: Any, target: Any) -> None:
        nonlocal made
        if made == 5 and str(source).endswith(".record"):
            made += 1
            raise OSError(errno.EMLINK, "Too many links")
        made += 1
        real_link(source, target)

    monkeypatch.setattr(os, "link", link)
    mine = Reservations(tmp_path, "run-a")
    todo = keys(12)
    assert anyio.run(reserve_all, mine, todo) == dict.fromkeys(todo, Reservation())
    assert len({os.stat(mine._path(key)).st_ino for key in todo}) == 2
    assert {mine.holder(key) for key in todo} == {"run-a"}
