"""What must never reach an output: secret values, and cells a spreadsheet would run.

One redactor for the whole process (``REDACTOR``): every secret the job reads or sends is
registered here (in every form an answer could quote it: ``echo_forms``), and every output
(logs, reports, journal, error messages) is scrubbed through it. ``MASK`` is the one way a
secret is shown. ``FORMULA_PREFIX`` is the one definition of a cell that a spreadsheet could
run as a formula: the writers neutralise it with a leading ``'`` (``NEUTRALISER``) and the
reader strips exactly that again.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

MASK = "******"
#: Keys whose string values are secrets wherever they appear (payloads, log events, answers).
SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "client_secret", "client_id", "password", "api_secret",
    "api_key", "authorization",
})
#: A text cell starting with one of these could run as a formula in a spreadsheet.
FORMULA_PREFIX = r"^[=+\-@\t\r]"
NEUTRALISER = "'"
_MIN_SECRET_LEN = 4


class Redactor:
    """A set of known secret values; ``scrub`` masks every one of them in any text.

    The pattern is compiled lazily, once per change of the set, not once per ``add``: a sheet
    whose rows each bring their own token adds hundreds of values before anything is scrubbed.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Register one secret value, in every form an API could echo it (``echo_forms``);
        forms shorter than 4 characters are ignored."""
        if value in self._values:
            return
        forms = [form for form in echo_forms(value) if len(form) >= _MIN_SECRET_LEN]
        if not forms:
            return
        with self._lock:
            self._values.update(forms)
            self._dirty = True

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._dirty:
            with self._lock:
                if self._dirty:
                    ordered = sorted(self._values, key=len, reverse=True)
                    self._pattern = (re.compile("|".join(re.escape(v) for v in ordered))
                                     if ordered else None)
                    self._dirty = False
        return self._pattern

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``MASK``."""
        pattern = self._compiled()
        return pattern.sub(MASK, text) if pattern is not None else text

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
        pattern = self._compiled()
        return isinstance(text, str) and pattern is not None and bool(pattern.search(text))

    def __bool__(self) -> bool:
        return self._compiled() is not None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None
            self._dirty = False

    @contextmanager
    def scoped(self) -> Iterator[Redactor]:
        """Values added inside the block are forgotten after it (for tests and fuzzing)."""
        with self._lock:
            saved = set(self._values)
        try:
            yield self
        finally:
            with self._lock:
                self._values = saved
                self._dirty = True


def echo_forms(value: str) -> set[str]:
    """The forms in which an answer could quote ``value`` back: as is, stripped of surrounding
    whitespace, and JSON-escaped (``\\n``, ``\\"``, ``\\\\``; with and without ``\\u00e9``
    escapes) as a message that embeds the request body shows it. At most six, usually one:
    the redactor's cost stays linear in the number of secrets."""
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
