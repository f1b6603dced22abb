"""First contact: until the API has answered once as Fivetran does, a failure is the URL's.

One request at a time, a wrong base URL looks like a row's bad luck: a closed port, a DNS or TLS
failure or a silent host gives transport errors, a proxy gives HTML pages (often a 502). So
:class:`FirstContact` (one per :class:`~batch_provisioner.api.client.FivetranClient`) keeps
whether the API has ever answered with Fivetran's envelope. Until it has, ``UNREACHABLE_AFTER``
tries that fail (no answer, or a 408/429/5xx that is not an envelope) stop the run with a
:class:`FatalApiError` naming the base URL, and every later request of the client fails at
once with it; any other answer that is not an envelope (HTML, non-JSON, JSON without ``code`` /
``data``, an empty body) stops it at the first one. Once a proper answer has come, a transport
error or a 5xx is a row's matter again (retried, the row failed or in doubt), and only a 2xx
with a body, a 3xx or a 404 that is not an envelope stays fatal. 401 and 403 are the
credentials' (see ``error_for_status``), whatever their body.

The messages name the base URL (without any user:password part) and the cause in words; they
never carry headers or credentials, and pass through :data:`REDACTOR`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from batch_provisioner.errors import FatalApiError, network_cause
from batch_provisioner.safety import REDACTOR

__all__ = ["UNREACHABLE_AFTER", "FirstContact", "shown_url", "transport_cause"]

#: Tries without any proper Fivetran answer (no answer, or a transient non-envelope status)
#: after which the client gives the base URL up: the run stops with exit 3.
UNREACHABLE_AFTER = 3
_HINT = "check --api-url / FIVETRAN_API_URL (or --sandbox-url)"
_CAUSE_MAX = 160


class FirstContact:
    """Whether the API at ``base_url`` has answered properly yet, and what failing means."""

    def __init__(self, base_url: str, *, answered: bool = False,
                 limit: int = UNREACHABLE_AFTER) -> None:
        self.base = shown_url(base_url)
        self.answered = answered
        self.limit = max(1, limit)
        self.failures = 0  # tries that failed before any proper answer
        self._fatal: FatalApiError | None = None

    def check(self) -> None:
        """Raise the stop already decided (before a request is sent), if there is one."""
        if self._fatal is not None:
            raise _copy(self._fatal)

    def proper_answer(self) -> None:
        """An answer in Fivetran's envelope came: from now on failures are the rows'."""
        self.answered = True

    def no_answer(self, method: str, path: str, error_name: str,
                  cause: str) -> FatalApiError | None:
        """A transport failure: the fatal error it completes, or None (a row matter)."""
        if self.answered:
            return None
        self.failures += 1
        if self._fatal is None and self.failures < self.limit:
            return None
        return self._stop(f"cannot reach the Fivetran API at {self.base}: {cause} "
                          f"({error_name}) on {self.failures} tries; {_HINT} and the network",
                          method=method, path=path)

    def unusable(self, method: str, path: str, error_name: str, cause: str) -> FatalApiError:
        """The URL itself cannot be used (no http/https scheme, malformed): fatal at once."""
        return self._stop(f"the Fivetran API URL {self.base} cannot be used: {cause} "
                          f"({error_name}); {_HINT}", method=method, path=path)

    def not_an_answer(self, method: str, path: str, status: int, content_type: str | None,
                      empty: bool) -> FatalApiError | None:
        """An answer without the envelope: the fatal error it means, or None."""
        if status in (401, 403):
            return None
        transient = status in (408, 429) or status >= 500
        if self.answered:
            fatal = (200 <= status < 300 and not empty) or 300 <= status < 400 or status == 404
            tries = ""
        elif transient:
            self.failures += 1
            fatal = self._fatal is not None or self.failures >= self.limit
            tries = f" on {self.failures} tries"
        else:
            fatal, tries = True, ""
        if not fatal:
            return None
        kind = "empty body" if empty else _short(content_type or "no content type", 60)
        message = (f"not a Fivetran API answer from {self.base}: {method} {path}: HTTP {status} "
                   f"({kind}){tries}; {_HINT}")
        if self.answered:
            return FatalApiError(REDACTOR.scrub(message), http_status=status, method=method,
                                 path=path)
        return self._stop(message, http_status=status, method=method, path=path)

    def _stop(self, message: str, *, method: str, path: str,
              http_status: int | None = None) -> FatalApiError:
        if self._fatal is None:
            self._fatal = FatalApiError(REDACTOR.scrub(message), http_status=http_status,
                                        method=method, path=path)
        return _copy(self._fatal)


def _copy(error: FatalApiError) -> FatalApiError:
    """A fresh instance per raise: concurrent tasks never share one traceback."""
    return FatalApiError(error.message, http_status=error.http_status, code=error.code,
                         method=error.method, path=error.path)


def shown_url(url: str) -> str:
    """``url`` for a message: scheme, host, port and path; never a user:password part."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return REDACTOR.scrub(_short(url.rpartition("@")[2], 200))
    if not host:
        return REDACTOR.scrub(_short(url.rpartition("@")[2], 200))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return REDACTOR.scrub(_short(f"{parts.scheme}://{netloc}{parts.path}".rstrip("/"), 200))


def transport_cause(exc: BaseException) -> str:
    """What went wrong on the wire, in words: from the exception and the errors under it."""
    cause = network_cause(exc)
    if cause is not None:
        return _short(REDACTOR.scrub(cause), _CAUSE_MAX)
    if isinstance(exc, httpx.ConnectTimeout):
        return "no connection within the connect timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer within the read timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    if "ssl" in text.lower() or "certificate" in text.lower():
        text = f"TLS failure: {text}"
    return _short(REDACTOR.scrub(text), _CAUSE_MAX)


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
