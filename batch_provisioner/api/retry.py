"""Classification and delays: status → error, Retry-After, backoff, 429 messages, retries.

Everything here except :func:`retrying` (and its wrapper :func:`retry_idempotent`) is a pure
function. ``retrying`` is the one retry loop of the job: the client's reads and the runner's
creates and updates all go through it. It waits through an injectable ``sleep`` (the gate's, on
a fake clock in tests), so tests never wait for real.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import structlog

from batch_provisioner.errors import (
    AmbiguousApiError,
    ApiError,
    ConflictApiError,
    FatalApiError,
    NotFoundApiError,
    RetriableApiError,
    RowApiError,
    RunStopped,
    ThrottledError,
)
from batch_provisioner.settings import RetryPolicy

__all__ = [
    "OnRetry",
    "SupportsSleep",
    "backoff_delay",
    "error_for_status",
    "error_for_transport",
    "parse_limit_message",
    "parse_retry_after",
    "request_kind",
    "resumable",
    "retry_after_of",
    "retry_delay",
    "retry_idempotent",
    "retrying",
]

T = TypeVar("T")

#: ``on_retry(attempt_that_failed, error, delay_seconds)``, called before each new attempt.
OnRetry = Callable[[int, ApiError, float], None]

_log = structlog.get_logger(__name__)


class SupportsSleep(Protocol):
    """Anything with an awaitable ``sleep(seconds)``; the :class:`BudgetGate` is one."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (on a real or a fake clock)."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds, or None.

    Accepts whole or fractional seconds and RFC 7231 HTTP dates (counted from ``now``, by
    default the current UTC time). The result is never negative; a date in the past gives 0.
    Absent, empty or unparseable values give None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_http_date(text: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return max(0.0, (when - reference).total_seconds())


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter for the retry after failed attempt ``attempt``.

    ``uniform(0, min(backoff_max, backoff_base * 2 ** (attempt - 1)))``; ``attempt`` starts at 1.
    """
    exponent = min(max(attempt, 1) - 1, 64)  # 2**64 already dwarfs any sane backoff_max
    ceiling = min(policy.backoff_max, policy.backoff_base * float(2**exponent))
    return rng.uniform(0.0, max(0.0, ceiling))


_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "five": 5, "ten": 10, "fifteen": 15}
_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}

_WINDOW = r"(?:(?P<count>\d+|a|an|one|two|five|ten|fifteen)[\s-]*)?(?P<unit>second|minute|hour|day)"

# "No more than 20 connectors can be created in one-minute time period"
_CREATE_RE = re.compile(
    r"no more than\s+(?P<limit>[\d,]+)\s+(?:connectors|connections)\s+can be created\s+"
    r"(?:in|per|within)\s+(?:an?\s+|the\s+)?" + _WINDOW,
    re.IGNORECASE,
)
# "Max 20000 api calls allowed in one-hour rolling time period"; also setup tests / requests.
_MAX_RE = re.compile(
    r"max(?:imum)?\s+(?:of\s+)?(?P<limit>[\d,]+)\s+(?P<subject>[a-z\s-]+?)\s+allowed\s+"
    r"(?:in|per|within)\s+(?:an?\s+|the\s+)?" + _WINDOW,
    re.IGNORECASE,
)


def parse_limit_message(message: str) -> tuple[str, int, float] | None:
    """Recognise a Fivetran 429 message and return ``(applies_to, limit, window_seconds)``.

    >>> parse_limit_message("No more than 20 connectors can be created in one-minute time period")
    ('create', 20, 60.0)
    >>> parse_limit_message("Max 20000 api calls allowed in one-hour rolling time period")
    ('all', 20000, 3600.0)

    Returns None for messages that reveal no budget this job can model.
    """
    match = _CREATE_RE.search(message)
    applies_to: str | None = "create"
    if match is None:
        match = _MAX_RE.search(message)
        if match is None:
            return None
        applies_to = _subject_to_budget(match.group("subject"))
    if applies_to is None:
        return None
    limit = int(match.group("limit").replace(",", ""))
    count_text = (match.group("count") or "1").lower()
    count = int(count_text) if count_text.isdigit() else _NUMBER_WORDS[count_text]
    window = count * _UNIT_SECONDS[match.group("unit").lower()]
    if limit < 1 or window <= 0:
        return None
    return applies_to, limit, window


def _subject_to_budget(subject: str) -> str | None:
    text = subject.lower()
    if "setup" in text and "test" in text:
        return "setup_test"
    if ("connector" in text or "connection" in text) and "creat" in text:
        return "create"
    if "source" in text:  # source-touching calls have no budget kind of their own here
        return None
    if "call" in text or "request" in text:
        return "all"
    return None


async def retrying(
    op: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random,
    retry_on: tuple[type[ApiError], ...] = (RetriableApiError,),
    on_retry: OnRetry | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Any = None,
) -> T:
    """Run ``op(attempt)`` for attempt 1, 2, ... until it returns; the job's one retry loop.

    An error of ``retry_on`` is retried after :func:`retry_delay`, reported first to
    ``on_retry`` and logged as ``request.retry_scheduled`` (on ``log``, by default this module's
    logger). The error is re-raised at once, with no wait after it, when it is not of
    ``retry_on``, when it was attempt ``policy.max_attempts``, or when ``should_stop()``
    says the run is stopping. An error whose ``retry_after`` exceeds ``policy.max_wait`` is not
    waited for: :class:`RunStopped` (reason ``max_wait``) is raised at once instead.
    ``should_stop`` is asked again after the wait, so a stop that came meanwhile sends nothing
    more. ``sleep`` is injectable: tests never wait for real.
    """
    attempts = max(1, policy.max_attempts)
    stopping = should_stop or _never
    attempt = 1
    while True:
        try:
            return await op(attempt)
        except retry_on as exc:
            if attempt >= attempts or stopping():
                raise
            if _waits_too_long(exc, policy):
                raise _wait_refused(exc, policy) from None
            error = exc
        delay = retry_delay(error, attempt, policy, rng)
        _log_retry(log if log is not None else _log, attempt, error, delay)
        if on_retry is not None:
            on_retry(attempt, error, delay)
        if delay > 0:
            await sleep(delay)
        if stopping():
            raise error
        attempt += 1


def _wait_refused(error: ApiError, policy: RetryPolicy) -> RunStopped:
    """A Retry-After past ``--max-wait`` is not waited: the run stops sending instead."""
    after = retry_after_of(error) or 0.0
    return RunStopped(f"not sent again: the API asked to wait {after:g}s (Retry-After), longer "
                      f"than --max-wait {policy.max_wait:g}s ({error.message})",
                      reason="max_wait", wait=after)


async def retry_idempotent(
    op: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    gate: SupportsSleep,
    rng: random.Random,
    on_retry: OnRetry | None = None,
) -> T:
    """Run an idempotent call through :func:`retrying`, retrying :class:`RetriableApiError`.

    A :class:`ThrottledError` is retried at once: the client has already paused the shared gate,
    so the next attempt waits for the pause inside ``gate.slot``. Ambiguous, row and fatal errors
    propagate untouched; after the last attempt the last error is re-raised.
    """

    async def attempt(_number: int) -> T:
        return await op()

    return await retrying(attempt, policy=policy, sleep=gate.sleep, rng=rng, on_retry=on_retry)


def retry_delay(error: ApiError, attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """The wait before retrying ``error``, which ended attempt ``attempt``.

    0 for a :class:`ThrottledError` (the gate's global pause is the wait); the error's own
    ``retry_after`` when it has one and it is within ``policy.max_wait``; otherwise full-jitter
    :func:`backoff_delay`.
    """
    if isinstance(error, ThrottledError):
        return 0.0
    after = retry_after_of(error)
    if after is not None and after <= policy.max_wait:
        return after
    return backoff_delay(attempt, policy, rng)


def retry_after_of(error: ApiError) -> float | None:
    """The server's ``Retry-After`` carried by ``error`` (seconds), or None."""
    value = getattr(error, "retry_after", None)  # RetriableApiError has one; others may
    return float(value) if isinstance(value, int | float) else None


def resumable(error: ApiError) -> bool:
    """May a later run (a resume) get past ``error``? Only a row's own 4xx is final.

    Retriable, ambiguous and transport errors may pass; so may a fatal one: a row stopped by a
    401/403 succeeds once the credentials are fixed.
    """
    return not isinstance(error, RowApiError)


def _waits_too_long(exc: ApiError, policy: RetryPolicy) -> bool:
    after = retry_after_of(exc)
    return after is not None and after > policy.max_wait


def _log_retry(log: Any, attempt: int, error: ApiError, delay: float) -> None:
    log.info(
        "request.retry_scheduled",
        attempt=attempt,
        delay=round(delay, 3),
        error=type(error).__name__,
        http_status=error.http_status,
        method=error.method,
        path=error.path,
    )


def _never() -> bool:
    return False


# -- classification ---------------------------------------------------------------------------

_SCHEMA_EXISTS = re.compile(
    r"already\s+(?:exists|in use|taken|used)|exists already|duplicate|not unique|must be unique",
    re.IGNORECASE,
)
_MESSAGE_MAX = 500


def error_for_status(
    method: str,
    path: str,
    status: int,
    envelope: Mapping[str, Any] | None,
    *,
    idempotent: bool,
    retry_after: float | None = None,
    redact: Callable[[str], str] = str,
) -> ApiError | None:
    """The error an HTTP answer stands for, or None for a 2xx.

    ``envelope`` is the parsed Fivetran envelope (``{"code", "message", "data"}``) or None when
    the body was not one. ``idempotent`` says whether sending again is safe (GET, DELETE, ...):
    a 5xx is then retriable; on a create or update it is ambiguous (it may have been applied).
    A 429 gives a :class:`ThrottledError`; pausing the gate is the client's job.
    """
    if 200 <= status < 300:
        return None
    code = _text(envelope, "code")
    message = redact(_text(envelope, "message"))[:_MESSAGE_MAX]
    described = f"{method} {path}: HTTP {status}"
    if code or message:
        described += f" {code or '(no code)'}: {message or '(no message)'}"
    kw: dict[str, Any] = {
        "http_status": status,
        "code": code or None,
        "method": method,
        "path": path,
    }
    if status == 429:
        return ThrottledError(described, retry_after=retry_after, **kw)
    if status in (401, 403):
        return FatalApiError(f"{described} (check FIVETRAN_API_KEY / FIVETRAN_API_SECRET)", **kw)
    if status >= 500 or status == 408:
        if idempotent:
            return RetriableApiError(described, retry_after=retry_after, **kw)
        return AmbiguousApiError(f"{described} (the request may have been applied)", **kw)
    if envelope is None or not code:
        if status == 404 or status < 400:
            return FatalApiError(
                f"{described}: not a Fivetran API answer; check the API base URL", **kw
            )
        return RowApiError(described, **kw)
    if status == 404 and code.startswith("NotFound"):
        return NotFoundApiError(described, **kw)
    if status == 409 or (status == 400 and _names_existing_schema(message)):
        return ConflictApiError(described, **kw)
    if 400 <= status < 500:
        return RowApiError(described, **kw)
    return FatalApiError(f"{described}: unexpected status", **kw)


def error_for_transport(
    method: str, path: str, error_name: str, *, sent: bool, idempotent: bool
) -> ApiError:
    """The error a transport failure stands for; ``error_name`` is the httpx class name.

    Before the request left (connect error, pool timeout): retriable. After (read timeout,
    reset, protocol error): retriable when ``idempotent``, otherwise ambiguous.
    """
    kw: dict[str, Any] = {"method": method, "path": path}
    if not sent:
        return RetriableApiError(f"{method} {path}: {error_name} before the request was sent", **kw)
    if idempotent:
        return RetriableApiError(f"{method} {path}: {error_name} after the request was sent", **kw)
    return AmbiguousApiError(
        f"{method} {path}: {error_name} after the request was sent (it may have been applied)",
        **kw,
    )


def request_kind(method: str, path: str, body: Mapping[str, Any] | None = None) -> str:
    """The budget kind of a request (a key of ``KIND_APPLIES_TO`` in budgets.py).

    A create with auth and ``run_setup_tests`` not false (Fivetran's default is true) runs setup
    tests; so does an update that asks for them explicitly.
    """
    method = method.upper()
    parts = [part for part in path.split("?")[0].split("/") if part]
    body = body or {}
    if method == "POST" and parts == ["v1", "connections"]:
        runs_tests = body.get("run_setup_tests", True) is not False and bool(body.get("auth"))
        return "setup_test_create" if runs_tests else "create"
    if method == "PATCH" and len(parts) == 3 and parts[:2] == ["v1", "connections"]:
        return "setup_test_update" if body.get("run_setup_tests") is True else "call"
    return "call"


def _text(envelope: Mapping[str, Any] | None, key: str) -> str:
    if envelope is None:
        return ""
    value = envelope.get(key)
    return value.strip() if isinstance(value, str) else ""


def _names_existing_schema(message: str) -> bool:
    return "schema" in message.lower() and _SCHEMA_EXISTS.search(message) is not None
