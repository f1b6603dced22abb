"""What must never reach an output: secret values, and cells a spreadsheet would run.

One redactor for the whole process (``REDACTOR``): every secret the job reads or sends is
registered here (in every form an answer could quote it: ``echo_forms``), and every output
(logs, reports, journal, error messages) is scrubbed through it. ``MASK`` is the one way a
secret is shown. ``FORMULA_PREFIX`` is the one definition of a cell that a spreadsheet could
run as a formula: the writers neutralise it with a leading ``'`` (``NEUTRALISER``) and the
reader strips exactly that again. ``redacted_url`` is the one way a URL the user gave is
shown: a signed URL carries its token in the query string.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

MASK = "******"
#: Keys whose string values are secrets wherever they appear (payloads, log events, answers).
SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "client_secret", "client_id", "password", "api_secret",
    "api_key", "authorization",
})
#: A text cell starting with one of these could run as a formula in a spreadsheet.
FORMULA_PREFIX = r"^[=+\-@\t\r]"
NEUTRALISER = "'"
_MIN_SECRET_LEN = 4  # shorter forms are not registered: they would mask ordinary words
#: A value JSON quotes unchanged (printable ASCII but `"` and `\`), with no blank at either end:
#: its only echo form is itself.
_PLAIN = re.compile(r'(?:[!#-\[\]-~](?:[ !#-\[\]-~]*[!#-\[\]-~])?)?')
#: A secret is indexed by this many of its first characters (all of it when shorter): enough
#: that random tokens rarely share a key with ordinary text, few enough to compile fast.
_KEY_LEN = 6
#: New keys are looked for with ``str.find`` until this many wait; then they are compiled.
_LOOSE_MAX = 16
#: A new chunk absorbs the one before it unless that one is more than this many times larger,
#: so chunk sizes grow geometrically: O(log n) chunks, each key recompiled O(log n) times.
_MERGE_RATIO = 2
#: Query parameters that carry no secret: what a spreadsheet link asks for (Google Sheets'
#: ``output``, ``format``, ``gid``) and a signed URL's signing metadata (algorithm, date,
#: lifetime, signed headers; an Azure SAS's version, permissions and times). Every other
#: parameter's value is masked: a signature, a credential, a token, a SAS ``sig``.
_PLAIN_QUERY_KEYS = frozenset({
    "output", "format", "exportformat", "gid", "single", "range", "headers", "alt",
    "generation", "versionid", "response-content-type", "response-content-disposition",
    "x-amz-algorithm", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
    "x-goog-algorithm", "x-goog-date", "x-goog-expires", "x-goog-signedheaders",
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "sip",
})
#: A masked query value is registered with the redactor when its name says it is a secret
#: (whatever its length), or when it is at least ``_QUERY_SECRET_LEN`` characters long.
_SECRET_QUERY_WORDS = ("sig", "token", "key", "secret", "pass", "auth", "credential", "code")
_QUERY_SECRET_LEN = 8


@dataclass(frozen=True)
class _Chunk:
    """Some of the registered keys, compiled into one prefilter: their trie as a regex that
    consumes a key's first character and looks ahead for the rest, so that it finds
    overlapping starts and ``re`` can skip ahead on the first characters."""

    keys: tuple[str, ...]
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class _Scan:
    """Where to look for keys: the compiled chunks and the keys not compiled yet. Compiling
    swaps in a new scan (``loose`` is only ever appended to, under the lock), so a scrub in
    another thread sees every key that was registered before it began, once."""

    chunks: tuple[_Chunk, ...] = ()
    loose: list[str] = field(default_factory=list)


class Redactor:
    """A set of known secret values; ``scrub`` masks every one of them in any text.

    Every registered form is indexed by its key, its first ``_KEY_LEN`` characters
    (``_lengths``: key -> the lengths of the forms that start with it, longest first). The
    places where a key starts are found by a few compiled prefilters (``_Chunk``) and, for
    the last few keys added, by ``str.find``; a set lookup per candidate length then confirms
    the longest form there. Overlapping matches are masked as one span, so a secret that
    contains or overlaps another one is masked whole.

    The cost stays n log n in the number of distinct secrets however ``add`` and ``scrub``
    interleave: a form whose key is known compiles nothing; a new key waits among the loose
    ones, and once ``_LOOSE_MAX`` wait (or at the first scrub after a bulk add) they become one
    chunk, which absorbs smaller chunks the way a binary counter carries (``_MERGE_RATIO``).
    ``compilations`` and ``compiled_keys`` count that work. ``scrub`` may run in worker threads
    while another thread adds: it reads snapshots and takes the lock only to compile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._lengths: dict[str, tuple[int, ...]] = {}
        self._key_lens: tuple[int, ...] = ()  # the distinct key lengths, longest first
        self._scan = _Scan()
        self.compilations = 0  # patterns compiled, ever (not reset by clear or scoped)
        self.compiled_keys = 0  # keys in them, summed

    def add(self, value: str) -> None:
        """Register one secret value, in every form an API could echo it (``echo_forms``);
        forms shorter than 4 characters are ignored."""
        if value in self._forms:
            return
        forms = [form for form in echo_forms(value) if len(form) >= _MIN_SECRET_LEN]
        if not forms:
            return
        with self._lock:
            for form in forms:
                if form not in self._forms:
                    self._index(form)

    def _index(self, form: str) -> None:
        self._forms.add(form)
        key = form[:_KEY_LEN]
        known = self._lengths.get(key)
        if known is None:
            self._lengths[key] = (len(form),)
            if len(key) not in self._key_lens:
                self._key_lens = tuple(sorted((*self._key_lens, len(key)), reverse=True))
            self._scan.loose.append(key)
        elif len(form) not in known:
            self._lengths[key] = tuple(sorted((*known, len(form)), reverse=True))

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``MASK``."""
        scan = self._compiled()
        if not _may_hold(text, scan):  # most texts: one search per chunk, in C
            return text
        spans = self._spans(text, scan)
        if not spans:
            return text
        out: list[str] = []
        done = 0
        for start, end in spans:
            out += (text[done:start], MASK)
            done = end
        out.append(text[done:])
        return "".join(out)

    def scrub_value(self, value: Any) -> Any:
        """Scrub strings inside any JSON-like value; secret-named keys are masked whole."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: MASK if k in SECRET_KEYS and isinstance(v, str) and v
                    else self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        scan = self._compiled()
        return _may_hold(text, scan) and bool(self._spans(text, scan, first=True))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def keys(self) -> list[str]:
        """Every registered form begins with one of these (its first ``_KEY_LEN`` characters,
        or all of it): a text that contains none holds no secret. For vectorised prefilters
        (``report/scrub.py``), which then ``scrub`` only what they flag."""
        with self._lock:
            return list(self._lengths)

    def clear(self) -> None:
        with self._lock:
            self._forms, self._lengths, self._key_lens, self._scan = set(), {}, (), _Scan()

    @contextmanager
    def scoped(self) -> Iterator[Redactor]:
        """Values added inside the block are forgotten after it (for tests and fuzzing)."""
        with self._lock:
            scan = self._scan
            saved = (set(self._forms), dict(self._lengths), self._key_lens, scan.chunks,
                     list(scan.loose))
        try:
            yield self
        finally:
            with self._lock:
                self._forms, self._lengths, self._key_lens = saved[:3]
                self._scan = _Scan(saved[3], list(saved[4]))

    def _spans(self, text: str, scan: _Scan, *, first: bool = False) -> list[tuple[int, int]]:
        """The (start, end) of every known secret in ``text``, overlapping ones joined, in
        order; with ``first``, at most the first one found."""
        lengths, forms, key_lens, size = self._lengths, self._forms, self._key_lens, len(text)
        starts: list[int] = []
        for chunk in scan.chunks:
            starts += [hit.start() for hit in chunk.pattern.finditer(text)]
        for key in scan.loose:
            start = text.find(key)
            while start >= 0:
                starts.append(start)
                start = text.find(key, start + 1)
        found: list[tuple[int, int]] = []
        for start in sorted(starts) if len(scan.chunks) + len(scan.loose) > 1 else starts:
            end = _longest(text, start, key_lens, lengths, forms, size)
            if end:
                found.append((start, end))
                if first:
                    break
        return _joined(found)

    def _compiled(self) -> _Scan:
        """The scan, with its loose keys compiled into a chunk first once ``_LOOSE_MAX`` wait
        (a sheet's secrets, registered at once, become one chunk at the first scrub)."""
        scan = self._scan
        if len(scan.loose) < _LOOSE_MAX:
            return scan
        with self._lock:
            scan = self._scan
            if len(scan.loose) >= _LOOSE_MAX:
                chunks = [*scan.chunks, self._chunk(tuple(scan.loose))]
                while (len(chunks) > 1 and len(chunks[-2].keys)
                       <= _MERGE_RATIO * len(chunks[-1].keys)):
                    last = chunks.pop()
                    chunks[-1] = self._chunk(chunks[-1].keys + last.keys)
                scan = self._scan = _Scan(tuple(chunks))
        return scan

    def _chunk(self, keys: tuple[str, ...]) -> _Chunk:
        self.compilations += 1
        self.compiled_keys += len(keys)
        return _Chunk(keys, re.compile(_trie_pattern(keys)))


def _may_hold(text: str, scan: _Scan) -> bool:
    """Whether a key of ``scan`` occurs in ``text`` (a secret may start there)."""
    for chunk in scan.chunks:
        if chunk.pattern.search(text):
            return True
    for key in scan.loose:  # noqa: SIM110 - a plain loop: this runs for every scrubbed string
        if key in text:
            return True
    return False


def _longest(text: str, start: int, key_lens: tuple[int, ...],
             lengths: dict[str, tuple[int, ...]], forms: set[str], size: int) -> int:
    """The end of the longest known form at ``start`` in ``text``, or 0."""
    for key_len in key_lens:
        for length in lengths.get(text[start:start + key_len], ()):
            if start + length <= size and text[start:start + length] in forms:
                return start + length
    return 0


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with the overlapping ones joined (adjacent ones stay apart)."""
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and start < joined[-1][1]:
            if end > joined[-1][1]:
                joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _trie_pattern(keys: Iterable[str]) -> str:
    """A regex that matches one character where one of ``keys`` starts (and looks ahead for
    the rest), shaped as their trie: a position costs a few character tests, not one per key."""
    parts = []
    for char, group in groupby(sorted(set(keys)), key=itemgetter(0)):
        rest = _rest(list(group), 1)
        parts.append(re.escape(char) + (f"(?={rest})" if rest else ""))
    return _alternatives(parts)


def _rest(keys: list[str], depth: int) -> str:
    """What must follow ``depth`` shared characters to complete one of ``keys`` (sorted,
    distinct); "" once one of them is complete."""
    if len(keys) == 1 or len(keys[0]) == depth:  # one key left, or the shortest one complete
        return re.escape(keys[0][depth:])
    if all(len(key) == depth + 1 for key in keys):
        return f"[{''.join(re.escape(key[depth]) for key in keys)}]"
    return _alternatives([re.escape(char) + _rest(list(group), depth + 1)
                          for char, group in groupby(keys, key=itemgetter(depth))])


def _alternatives(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"(?:{'|'.join(parts)})"


def echo_forms(value: str) -> set[str]:
    """The forms in which an answer could quote ``value`` back: as is, stripped of surrounding
    whitespace, and JSON-escaped (``\\n``, ``\\"``, ``\\\\``; with and without ``\\u00e9``
    escapes) as a message that embeds the request body shows it. At most six, usually one:
    the redactor's cost stays linear in the number of secrets."""
    if _PLAIN.fullmatch(value):  # most tokens: JSON leaves them as they are
        return {value}
    forms: set[str] = set()
    for base in {value, value.strip()}:
        forms.update((base, json.dumps(base)[1:-1], json.dumps(base, ensure_ascii=False)[1:-1]))
    return forms


def secret_values(body: Any) -> Iterator[str]:
    """Every string value under a secret-named key, anywhere in a JSON-like body."""
    if isinstance(body, Mapping):
        for key, value in body.items():
            if key in SECRET_KEYS and isinstance(value, str):
                yield value
            else:
                yield from secret_values(value)
    elif isinstance(body, list | tuple):
        for value in body:
            yield from secret_values(value)


REDACTOR = Redactor()


def redacted_url(url: str) -> str:
    """``url`` as every output shows it: each query value but the plain ones
    (``_PLAIN_QUERY_KEYS``), a query parameter without ``=``, a ``user:password@`` password
    and a user name without one (a token, as GitHub's are given) replaced by ``MASK``, the
    fragment dropped. The masked values are registered with ``REDACTOR`` (as written and
    percent-decoded), so that a library's error message quoting the URL is masked too.
    Raises ``ValueError`` for a URL ``urlsplit`` refuses."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if not password and user and user != MASK:  # a token as the user name (GitHub's)
            _register_url_secret(user, secret=False)
            user = MASK
        if password:
            _register_url_secret(password, secret=True)
        netloc = f"{user}{colon}{MASK if password else ''}@{host}"
    if parts.fragment:
        _register_url_secret(parts.fragment, secret=False)
    query = "&".join(_redacted_pair(pair) for pair in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _redacted_pair(pair: str) -> str:
    key, equals, value = pair.partition("=")
    name = unquote_plus(key).strip().lower()
    if not equals and key and key != MASK and name not in _PLAIN_QUERY_KEYS:
        _register_url_secret(key, secret=False)  # a bare token as a parameter of its own
        return MASK
    if not value or value == MASK or name in _PLAIN_QUERY_KEYS:
        return pair
    _register_url_secret(value, secret=any(word in name for word in _SECRET_QUERY_WORDS))
    return f"{key}{equals}{MASK}"


def _register_url_secret(value: str, *, secret: bool) -> None:
    forms = {value, unquote(value), unquote_plus(value)}
    if secret or max(map(len, forms)) >= _QUERY_SECRET_LEN:
        REDACTOR.add_all(forms)
