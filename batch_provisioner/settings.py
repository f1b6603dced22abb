"""Frozen settings records, parsed once by the CLI and passed down.

Secrets live only in ``ApiCredentials`` and never show in a ``repr``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

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
class ApiCredentials:
    """Basic-auth key and secret. Neither value is ever shown by ``repr`` or ``str``."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    base_url: str = DEFAULT_API_URL

    def __str__(self) -> str:
        return f"ApiCredentials(base_url={self.base_url!r}, api_key=******)"

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
class ClientSettings:
    """What the API client needs besides credentials."""

    concurrency: int = 8
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    budgets: tuple[Budget, ...] = DEFAULT_BUDGETS
