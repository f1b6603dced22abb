"""Truth about ownership: when a connection is this run's, and the per-key reservations that
keep two runs of one reports dir from ever sending the same create.

A run claims a connection (``created``) only on proof:

* a 201 answer to its own POST; or
* after a create whose answer was lost (timeout or reset after send, 5xx on the POST), a
  connection under that (group_id, schema) that was absent from this run's listing (the run
  only sends creates for keys its listing showed absent), whose ``created_at`` lies between
  the first send that may have landed and the last one plus the read timeout (each widened by
  ``CLOCK_SKEW_SECONDS``), whose settings equal what the run sent, and whose key this run
  holds the reservation for (so no other run of the reports dir can have sent it). Sends are
  journaled before they leave, so the window survives a kill.

Anything else found under the key is ``exists``, with the reason it is not claimed. A lookup
that shows the key absent settles the doubt: a 409 after it is someone else's connection.

Reservations live in ``<reports_dir>/.claims/``, one file per key, written before a run's
first POST of that key. A run keeps the file while the key is created by it or in
doubt, and removes it when its outcome shows it sent nothing that landed; rollback removes it
with the connection. Another run finding the file of a run that has the key in doubt does not
send, and reports the key ``conflict`` (resume that run first); a holder that settled the key
is taken over.

Reservations are a group commit (``Reservations.areserve`` and ``asettle``, what the runner's
workers await): the requests that come in while a batch is being served wait for the next one,
whose leader takes the lock once, decides its requests in the order they came exactly as lone
``reserve`` and ``release`` calls one after the other would (``blocked_by``, ``not_ours``), puts
their files in place, makes them durable, lets the lock go and only then answers each request,
in one worker-thread hop for the batch. An error writing (``OutputError``) reaches every request
of the batch: none of them got what it asked for.

Durable means that a key's file survives a kill -9, for which a name in place is enough (the
page cache survives), and a machine crash, for which the file's contents and its name must both
be on disk. A run writes its record (``{"run_id", "t"}``) once, to a fresh file
``.<run_id>.record``, and fsyncs it; every key the run takes becomes a hard link to that file (a
file in the way, a settled holder's, is replaced by a link under a spare name renamed over it,
so a name always shows a whole record, the old one or the new); and one fsync of the folder per
batch makes the batch's new names durable. That is the guarantee the per-key write gave before
(a fresh file fsynced, renamed into place, the folder fsynced), since a link, like that rename,
only adds a name for a file whose contents are on disk already; the fsync that cannot be shared
between keys, one of each key's own file, is gone, so a batch costs one fsync however many keys
it has (the per-key write cost two a key). Every key still has its own file, found by its name in
O(1), holding a record that older code reads (it reads ``run_id``; the key is the name, a digest
of group_id and schema, which the record no longer repeats, and ``t`` is when the run made its
record). A run's files share their contents, so no claims file is ever written in place: every
writer, older code too, writes a fresh file and renames it over the old. The record file is
left in place after the run (one per run id, read by nobody). On a filesystem without hard
links, each key's record goes to its own fresh file, each fsynced, each renamed into place, and
the folder is fsynced once.

A released key's file is removed without an fsync: a removal lost in a crash leaves the key held
by a run whose journal settled it (the outcome is journaled before the release), and such a
holder is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batch_provisioner.errors import OutputError
from batch_provisioner.models import Outcome, Status
from batch_provisioner.report.files import ensure_dir
from batch_provisioner.run.drift import diff, format_changes
from batch_provisioner.run.journal import JOURNAL_NAME, JournalState, Key, load, now_iso

#: How far the API's clock may be behind ours. A connection created up to this long before
#: our first send that may have landed still counts as ours (the safe side is the other one:
#: a clock far ahead of the API's makes our own lost creates ``exists``, never a false claim).
CLOCK_SKEW_SECONDS = 1.0
CLAIMS_DIR = ".claims"
#: ``link`` failing so: the filesystem (or its mount) has no hard links.
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS,
                       errno.EXDEV})


def parse_time(text: object) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` or an offset), or None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def unproven(connection: dict[str, Any], since: str | None, last_send: str | None = None,
             landing_seconds: float | None = None,
             payload: Mapping[str, Any] | None = None) -> str | None:
    """Why a connection found after a lost answer is not provably ours, or None if it is.

    Ours means created inside the window in which one of our creates could have been applied:
    from the first send that may have landed (``since``) to the last one (``last_send``) plus
    the longest the API can take to apply it while we wait (``landing_seconds``: the read
    timeout), both widened by the clock-skew margin.
    """
    created = parse_time(connection.get("created_at"))
    sent = parse_time(since)
    if sent is None:
        return "no create of this run may have landed (a lookup since showed the key absent)"
    if created is None:
        return "the API gave no created_at for it, so it cannot be told from another's"
    skew = timedelta(seconds=CLOCK_SKEW_SECONDS)
    if created < sent - skew:
        return (f"it was created at {connection.get('created_at')}, before this run first "
                f"sent it ({since}; clock-skew margin {CLOCK_SKEW_SECONDS:g} s)")
    last = parse_time(last_send)
    if last is not None and landing_seconds is not None:
        latest = last + timedelta(seconds=landing_seconds) + skew
        if created > latest:
            return (f"it was created at {connection.get('created_at')}, after any create of "
                    f"this run could have landed (last sent {last_send}, read timeout "
                    f"{landing_seconds:g} s)")
    if payload is not None:  # what we sent: another tool's connection rarely matches it
        mutable, immutable = diff(payload, connection, known_only=True)
        if mutable or immutable:
            return ("its settings differ from what this run sent: "
                    + format_changes({**immutable, **mutable}))
    return None


@dataclass(frozen=True)
class Reservation:
    """What reserving a key gave: held by another run (``blocked_by``: do not send), or ours,
    never to be claimed as any of ``not_ours`` (connections other runs claimed)."""

    blocked_by: str | None = None
    not_ours: frozenset[str] = frozenset()


@dataclass(eq=False)
class _Request:
    """One reserve (or release) of a key, waiting for the batch that serves it."""

    key: Key
    release: bool = False
    done: anyio.Event | None = None  # set when served, or when made the next leader
    result: Reservation | None = None
    error: Exception | None = None
    served: bool = False  # answered (``result`` or ``error``): the batch's lock is released
    lead: bool = False  # made the leader of the next batch


@dataclass
class _Changes:
    """What one batch decided, key by key, in the order its requests came in."""

    holders: dict[Key, str | None] = field(default_factory=dict)  # as the batch leaves them
    ours: dict[Key, bool] = field(default_factory=dict)  # True: write our file, False: remove

    def take(self, key: Key, run_id: str | None) -> None:
        self.holders[key] = run_id
        self.ours[key] = run_id is not None


class Reservations:
    """Per-key reservations of one reports dir (see the module docstring).

    Every change happens under one ``flock`` of ``.claims/lock``, so two runs can never both
    take a key. A run writes its ``start`` record (fsynced) before it reserves, so a holder
    that has not settled its key is always visible as "in doubt" in its own journal.

    ``areserve`` and ``asettle`` are a group commit (see the module docstring): the requests
    of one event loop that arrive while a batch is being served are served together by the
    next, in one worker thread, under one lock. ``reserve``, ``settle`` and ``release`` serve
    one request at once, from any thread.
    """

    def __init__(self, reports_dir: Path, run_id: str) -> None:
        self.reports_dir = reports_dir
        self.folder = reports_dir / CLAIMS_DIR
        self.run_id = run_id
        self._journals: dict[str, tuple[tuple[int, int], JournalState]] = {}
        self._queue: list[_Request] = []  # waiting for the next batch
        self._leading = False  # a batch is being served (or its leader is about to serve it)
        self._links = True  # False once the filesystem refused a hard link
        self._record_id: tuple[int, int] | None = None  # (device, inode) of the run's record

    def _path(self, key: Key) -> Path:
        digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:32]
        return self.folder / f"{digest}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        path = self.folder / "lock"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except OSError:  # no folder yet (or none can be made: ensure_dir says why)
            ensure_dir(self.folder)
            try:
                fd = os.open(path, flags, 0o666)
            except OSError as exc:  # a full disk, a read-only folder: the run stops (2/4)
                raise OutputError.from_os_error(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def reserve(self, key: Key) -> Reservation:
        """Take the key for this run (the caller's listing showed it absent), unless another
        run has it in doubt: that run may still create it, so this one must not send it.

        A holder that settled the key is taken over: with nothing landed or rolled back, the
        key is free; with a connection it created that the listing no longer shows (deleted
        since, or made on another API target), the key is free too, and that connection's id
        is returned so that this run never claims it (see ``Reservation.not_ours``).
        """
        return self._served_now(_Request(key))

    async def areserve(self, key: Key) -> Reservation:
        """``reserve``, served in a batch with the other requests waiting at the time; it
        returns once the key's file is durable (``OutputError`` for every request of a batch
        that could not be written)."""
        return await self._served(_Request(key))

    def release(self, key: Key) -> None:
        """Give the key back if this run holds it."""
        self._served_now(_Request(key, release=True))

    def settle(self, key: Key | None, outcome: Outcome) -> None:
        """Keep the reservation while the key is ours or in doubt; release it otherwise."""
        if _keeps(key, outcome):
            return
        assert key is not None
        self.release(key)

    async def asettle(self, key: Key | None, outcome: Outcome) -> None:
        """``settle``, served in a batch like ``areserve`` (at once when the key is kept)."""
        if _keeps(key, outcome):
            return
        assert key is not None
        await self._served(_Request(key, release=True))

    def holder(self, key: Key) -> str | None:
        """The run whose file the key has; None when it has none (or an unreadable one)."""
        try:
            data = json.loads(_read(self._path(key)))
        except (OSError, ValueError):
            return None
        run_id = data.get("run_id") if isinstance(data, dict) else None
        return str(run_id) if run_id else None

    def _journal_of(self, run_id: str) -> JournalState:
        """The holder's journal, re-read only when the file changed since the last read: many
        keys of one other run are checked in a row."""
        path = self.reports_dir / run_id / JOURNAL_NAME
        try:
            stamp = os.stat(path)
        except FileNotFoundError:
            return JournalState()
        mark = (stamp.st_size, stamp.st_mtime_ns)
        cached = self._journals.get(run_id)
        if cached is None or cached[0] != mark:
            cached = (mark, load(self.reports_dir / run_id))
            self._journals[run_id] = cached
        return cached[1]

    # -- the group commit ----------------------------------------------------------------

    def _served_now(self, request: _Request) -> Reservation:
        self._commit([request])
        return _answer(request)

    async def _served(self, request: _Request) -> Reservation:
        """Queue ``request``; the first to find no batch under way leads: it serves everything
        queued by then in one thread hop, answers each, and makes the first request queued
        meanwhile the next leader (so no caller waits for more than the batch after its own).
        """
        request.done = anyio.Event()
        self._queue.append(request)
        if not self._leading:  # lead, after one checkpoint: the tasks ready now queue theirs
            self._leading = request.lead = True
            request.done.set()
        try:
            await request.done.wait()
        except BaseException:  # cancelled: a request not taken yet is dropped
            self._drop(request)
            raise
        if request.served:
            return _answer(request)
        batch, self._queue = self._queue, []
        try:
            await anyio.to_thread.run_sync(self._commit, batch)
        finally:  # cancelled before the thread started: the others go to the next leader
            self._queue[:0] = [r for r in batch if not r.served and r is not request]
            for each in batch:
                if each.served and each.done is not None:
                    each.done.set()
            self._pass_lead()
        return _answer(request)

    def _pass_lead(self) -> None:
        if self._queue:
            first = self._queue[0]
            first.lead = True
            assert first.done is not None
            first.done.set()
        else:
            self._leading = False

    def _drop(self, request: _Request) -> None:
        """A cancelled caller's request, unless a batch has it already (then it is served and
        the answer unread: a reservation made is kept, as a kill would keep it)."""
        if any(r is request for r in self._queue):
            self._queue.remove(request)
            if request.lead:
                self._pass_lead()

    def _commit(self, batch: Sequence[_Request]) -> None:
        """Serve ``batch`` under one lock: decide each request in order (as if one after the
        other), make the batch's changes durable, then mark every request served. An error in
        one decision (an unreadable journal of another run) is that request's; an error
        writing (``OutputError``) is every request's: none of them got what it asked for."""
        try:
            with self._locked():
                changes = _Changes()
                for request in batch:
                    try:
                        request.result = self._decide(request, changes)
                    except Exception as exc:  # that request's alone, as it is today
                        request.error = exc
                self._make_durable(changes)
        except Exception as exc:  # reaches every caller of the batch
            for request in batch:
                request.result, request.error = None, exc
        finally:
            for request in batch:
                request.served = True

    def _decide(self, request: _Request, changes: _Changes) -> Reservation:
        key = request.key
        holder = changes.holders[key] if key in changes.holders else self.holder(key)
        if request.release:
            if holder == self.run_id:
                changes.take(key, None)
            return Reservation()
        if holder == self.run_id:
            return Reservation()
        not_ours: frozenset[str] = frozenset()
        if holder is not None:
            state = self._journal_of(holder)
            if key in state.started:
                return Reservation(blocked_by=holder)
            final = state.final(key)
            if final is not None and final.status is Status.CREATED and final.connection_id:
                not_ours = frozenset({final.connection_id})
        changes.take(key, self.run_id)
        return Reservation(not_ours=not_ours)

    def _make_durable(self, changes: _Changes) -> None:
        """Put the batch's files in place, durable before any request is answered: a name
        for each key taken, linked to this run's record, then one fsync of the folder (the
        module docstring says why that is enough). Released keys' files are removed without
        an fsync: a removal lost in a crash leaves the key held by a run whose journal settled
        it, and such a holder is taken over."""
        writes = [key for key, ours in changes.ours.items() if ours]
        if writes and self._links:
            writes = self._link_all(writes)
        self._write_each(writes)
        if any(changes.ours.values()):
            try:
                _fsync_folder(self.folder)
            except OSError as exc:
                raise OutputError.from_os_error(self.folder, exc) from None
        for key, ours in changes.ours.items():
            if not ours:
                path = self._path(key)
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    raise OutputError.from_os_error(path, exc) from None

    def _link_all(self, keys: Sequence[Key]) -> list[Key]:
        """Each key's name made a link to this run's record; the keys left for
        ``_write_each`` when the filesystem has no hard links."""
        source = self._record_file()
        path = source
        try:
            for index, key in enumerate(keys):
                path = self._path(key)
                try:
                    _link(source, path)
                except OSError as exc:
                    if exc.errno == errno.EMLINK:  # as many names as a file may have: anew
                        source = self._record_file(renew=True)
                        _link(source, path)
                    elif exc.errno in _NO_LINKS:
                        self._links = False  # one file per key from now on
                        return list(keys[index:])
                    else:
                        raise
        except OSError as exc:  # a full disk, a read-only folder: the run stops (exit 2/4)
            raise OutputError.from_os_error(path, exc) from None
        return []

    def _record_file(self, *, renew: bool = False) -> Path:
        """``.<run_id>.record``: this run's record, written to a fresh file and fsynced once,
        then linked under the name of every key the run takes. Made anew when it is not the
        file this object made (never written into: keys may be links to it)."""
        source = self.folder / f".{self.run_id}.record"
        try:
            with contextlib.suppress(FileNotFoundError):
                stamp = os.stat(source)
                if not renew and (stamp.st_dev, stamp.st_ino) == self._record_id:
                    return source
            record = {"run_id": self.run_id, "t": now_iso()}
            # a new file, fsynced, renamed over the name (the one atomic writer's way; the
            # folder's fsync follows in the batch): keys linked to an earlier record keep it
            temporary = source.with_name(f"{source.name}.tmp")
            try:
                _write_synced(temporary, json.dumps(record).encode())
                os.replace(temporary, source)
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
            stamp = os.stat(source)
        except OSError as exc:
            raise OutputError.from_os_error(source, exc) from None
        self._record_id = (stamp.st_dev, stamp.st_ino)
        return source

    def _write_each(self, keys: Sequence[Key]) -> None:
        """Each key's record to its own temporary file, each fsynced, then each renamed into
        place (the folder's fsync follows)."""
        placed: list[tuple[Path, Path]] = []
        path = self.folder
        try:
            for key in keys:
                path = self._path(key)
                temporary = path.with_name(f".{path.name}.tmp")
                placed.append((temporary, path))
                _write_synced(temporary, self._record(key))
            for temporary, path in placed:
                os.replace(temporary, path)
        except OSError as exc:  # a full disk, a read-only folder: the run stops (exit 2/4)
            for temporary, _ in placed:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
            raise OutputError.from_os_error(path, exc) from None

    def _record(self, key: Key) -> bytes:
        record = {"run_id": self.run_id, "group_id": key[0], "schema": key[1], "t": now_iso()}
        return json.dumps(record).encode()


def _keeps(key: Key | None, outcome: Outcome) -> bool:
    """Whether settling keeps the key's reservation: no key, or the key ours or in doubt."""
    return key is None or outcome.status is Status.CREATED or outcome.in_doubt


def _answer(request: _Request) -> Reservation:
    """The served request's reservation, or its error raised (each caller its own copy of
    a batch's ``OutputError``)."""
    error = request.error
    if isinstance(error, OutputError):
        raise OutputError(error.message, path=error.path, sent=error.sent) from None
    if error is not None:
        raise error
    assert request.result is not None
    return request.result


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65_536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes, *, fresh: bool = False) -> None:
    """Create (or truncate; ``fresh``: only create) ``path``, write ``data``, fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if fresh else os.O_TRUNC)
    fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(source: Path, path: Path) -> None:
    """``path`` becomes a name of ``source``'s file; a file in its way is replaced at once (a
    link under a spare name, renamed over it), so ``path`` always shows a whole record."""
    try:
        os.link(source, path)
    except FileExistsError:  # a settled holder's record, or an unreadable one
        spare = path.with_name(f".{path.name}.link")
        spare.unlink(missing_ok=True)
        os.link(source, spare)
        os.replace(spare, path)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
