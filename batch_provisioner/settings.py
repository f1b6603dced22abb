"""Frozen settings records, parsed once by the CLI and passed down.

Secrets live only in ``ApiCredentials`` and never show in a ``repr``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The most requests in flight when ``--concurrency`` does not pin them (``--max-concurrency``).
DEFAULT_MAX_CONCURRENCY = 64

VERSION = "0.1.0"
DEFAULT_API_URL = "https://api.fivetran.com"


@dataclass(frozen=True)
class Budget:
    """A rolling-window budget: at most ``limit`` events of ``applies_to`` per ``window_seconds``.

    ``applies_to`` is ``"all"`` (every API call), ``"create"`` (connection creates) or
    ``"setup_test"`` (a create or update that runs setup tests).
    """

    name: str
    limit: int
    window_seconds: float
    applies_to: str = "all"


# Fivetran's documented paid-plan numbers (reference/fivetran_api.md). The per-minute create
# budget is historical: it is off unless set in [limits] or by --create-limit, and the sandbox
# announces it through /sandbox/limits when it enforces it.
DEFAULT_BUDGETS: tuple[Budget, ...] = (
    Budget("calls_per_hour", 20_000, 3600.0, "all"),
    Budget("setup_tests_per_minute", 250, 60.0, "setup_test"),
    Budget("setup_tests_per_hour", 2_500, 3600.0, "setup_test"),
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``max_wait`` caps one Retry-After pause (seconds)."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_wait: float = 3600.0


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 60.0


@dataclass(frozen=True)
class FetchLimits:
    """How much an input given as a URL may download, and for how long.

    The bytes arrive in a private file that then goes through every check a local file gets
    (row and column caps, the XLSX unzip caps); ``max_bytes`` stops a download before that,
    the moment it passes the cap. ``timeout`` bounds the whole download, connecting and
    redirects included; ``connect_timeout`` one connection. ``BATCH_PROVISIONER_FETCH_MAX_MB``
    and ``BATCH_PROVISIONER_FETCH_TIMEOUT`` (seconds) change the first two.
    """

    max_bytes: int = 512 * 2**20
    timeout: float = 120.0
    connect_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FetchLimits:
        """The limits, with the environment's overrides; ``ValueError`` naming a variable
        that is not a positive number."""
        env = os.environ if env is None else env
        found: dict[str, float] = {}
        for name in (_FETCH_MAX_MB, _FETCH_TIMEOUT):
            text = env.get(name, "").strip()
            if not text:
                continue
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number <= 0:
                raise ValueError(f"{name}={text!r} must be a positive number")
            found[name] = number
        limits = cls()
        if _FETCH_MAX_MB in found:
            limits = dataclasses.replace(limits, max_bytes=int(found[_FETCH_MAX_MB] * 2**20))
        if _FETCH_TIMEOUT in found:
            limits = dataclasses.replace(limits, timeout=found[_FETCH_TIMEOUT])
        return limits


_FETCH_MAX_MB = "BATCH_PROVISIONER_FETCH_MAX_MB"
_FETCH_TIMEOUT = "BATCH_PROVISIONER_FETCH_TIMEOUT"


#: The embedded sandbox's documented default credentials (``sandbox.config`` has the same).
SANDBOX_CREDENTIALS = ("sandbox", "sandbox")


@dataclass(frozen=True)
class ApiCredentials:
    """Basic-auth key and secret. Neither value is ever shown by ``repr`` or ``str``."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    base_url: str = DEFAULT_API_URL

    def __str__(self) -> str:
        return f"ApiCredentials(base_url={self.base_url!r}, api_key=******)"

    @property
    def public(self) -> bool:
        """The embedded sandbox's documented default key and secret: not secrets, so they are
        not redacted (masking the word "sandbox" would garble every message naming it)."""
        return (self.api_key, self.api_secret) == SANDBOX_CREDENTIALS

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, base_url: str | None = None
    ) -> ApiCredentials | None:
        """Read FIVETRAN_API_KEY/SECRET (or Terraform's FIVETRAN_APIKEY/APISECRET)."""
        env = os.environ if env is None else env
        key = env.get("FIVETRAN_API_KEY") or env.get("FIVETRAN_APIKEY")
        secret = env.get("FIVETRAN_API_SECRET") or env.get("FIVETRAN_APISECRET")
        if not key or not secret:
            return None
        url = base_url or env.get("FIVETRAN_API_URL") or DEFAULT_API_URL
        return cls(api_key=key, api_secret=secret, base_url=url.rstrip("/"))


@dataclass(frozen=True)
class Limits:
    """Job-wide limits from ``[limits]`` in defaults.toml or the command line; None = not set.

    The field names are the ``[limits]`` keys. ``client_settings`` turns them into what the
    API client needs: a set budget replaces Fivetran's default of the same name, and 0 turns
    that budget off.
    """

    calls_per_hour: int | None = None
    creates_per_minute: int | None = None
    setup_tests_per_minute: int | None = None
    setup_tests_per_hour: int | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None
    max_attempts: int | None = None
    max_wait_seconds: float | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_numbers(cls, values: Mapping[str, float]) -> Limits:
        """From ``{key: number}`` that ``limit_problem`` has passed (whole-number keys get
        ``int``, the others ``float``)."""
        typed: dict[str, float | int] = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                number = values[f.name]
                typed[f.name] = float(number) if "float" in str(f.type) else int(number)
        return cls(**typed)  # type: ignore[arg-type]

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every value set that ``limit_problem`` refuses."""
        found = [(f.name, limit_problem(f.name, getattr(self, f.name)))
                 for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        return [(key, problem) for key, problem in found if problem is not None]

    def overridden_by(self, other: Limits) -> Limits:
        """These limits with every value ``other`` sets taking precedence."""
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(other)
                   if getattr(other, f.name) is not None}
        return dataclasses.replace(self, **changes)

    def budgets_set(self) -> frozenset[str]:
        """The budget names these limits set (to a number, or 0 = off)."""
        return frozenset(name for name in _BUDGET_LIMITS if getattr(self, name) is not None)

    def client_settings(self) -> ClientSettings:
        for key, problem in self.problems():
            raise ValueError(f"{key} {problem}")
        budgets = {b.name: b for b in DEFAULT_BUDGETS}
        for name, (window, applies) in _BUDGET_LIMITS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value > 0:
                budgets[name] = Budget(name, int(value), window, applies)
            else:
                budgets.pop(name, None)
        retry = RetryPolicy(
            max_attempts=self.max_attempts if self.max_attempts is not None else 5,
            max_wait=self.max_wait_seconds if self.max_wait_seconds is not None else 3600.0)
        timeouts = Timeouts(
            connect=self.connect_timeout if self.connect_timeout is not None else 10.0,
            read=self.read_timeout if self.read_timeout is not None else 60.0)
        return ClientSettings(concurrency=self.concurrency, timeouts=timeouts, retry=retry,
                              budgets=tuple(budgets.values()),
                              max_concurrency=(self.max_concurrency
                                               if self.max_concurrency is not None
                                               else DEFAULT_MAX_CONCURRENCY))


#: What each ``Limits`` value may be, as the ``apply`` flags check it: (whole number?, least,
#: most). Budgets 0 = off; timeouts at least 0.1 s; ``max_wait_seconds`` any finite number >= 0.
_LIMIT_RANGES: dict[str, tuple[bool, float, float | None]] = {
    "calls_per_hour": (True, 0, None),
    "creates_per_minute": (True, 0, None),
    "setup_tests_per_minute": (True, 0, None),
    "setup_tests_per_hour": (True, 0, None),
    "concurrency": (True, 1, 256),
    "max_concurrency": (True, 1, 256),
    "max_attempts": (True, 1, None),
    "max_wait_seconds": (False, 0, None),
    "connect_timeout": (False, 0.1, None),
    "read_timeout": (False, 0.1, None),
}


def limit_problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be the limit ``key`` (None when it can): the one check of
    ``[limits]`` in defaults.toml and of ``Limits`` given to the library, the same as the
    ``apply`` flags (``--concurrency`` 1..256, ``--max-attempts`` >= 1, budgets whole numbers
    >= 0, timeouts >= 0.1). Booleans, text, nan and inf are refused."""
    whole, least, most = _LIMIT_RANGES[key]
    if whole:
        wanted = (f"a whole number from {least:g} to {most:g}" if most is not None
                  else f"a whole number >= {least:g}")
    else:
        wanted = f"a number >= {least:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be {wanted} (got {value!r})"
    if (not math.isfinite(value) or (whole and not isinstance(value, int)) or value < least
            or (most is not None and value > most)):
        return f"must be {wanted} (got {value!r})"
    return None


#: The ``Limits`` fields that are budgets: (window seconds, what the budget counts).
_BUDGET_LIMITS: dict[str, tuple[float, str]] = {
    "calls_per_hour": (3600.0, "all"),
    "creates_per_minute": (60.0, "create"),
    "setup_tests_per_minute": (60.0, "setup_test"),
    "setup_tests_per_hour": (3600.0, "setup_test"),
}


@dataclass(frozen=True)
class ClientSettings:
    """What the API client needs besides credentials.

    ``concurrency`` pins the requests in flight; None (the default) lets them follow what the
    budgets need, up to ``max_concurrency`` (:mod:`batch_provisioner.api.concurrency`).
    """

    concurrency: int | None = None
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    budgets: tuple[Budget, ...] = DEFAULT_BUDGETS
    #: Budgets set on purpose (command-line flags, ``limits=``): they win over the budgets a
    #: sandbox announces, which otherwise replace ``budgets``. Absent from ``budgets`` = off.
    explicit_budgets: frozenset[str] = frozenset()
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY

    @property
    def adaptive(self) -> bool:
        """True when the requests in flight adapt (no pinned ``concurrency``)."""
        return self.concurrency is None

    @property
    def in_flight_cap(self) -> int:
        """The most requests in flight: the pinned ``concurrency``, else ``max_concurrency``."""
        return self.concurrency if self.concurrency is not None else self.max_concurrency
