"""Downloading an input given as a URL into a local file, bounded and time-limited.

``https://`` (and ``http://`` to this machine) goes through httpx: redirects followed (at most
``MAX_REDIRECTS``), proxies taken from the environment as httpx takes them (``HTTPS_PROXY``,
``NO_PROXY``), certificates checked; a redirect to plain ``http://`` elsewhere is refused.
``s3://``, ``gs://`` and ``az://`` go through obstore, the Python face of the Rust
``object_store`` crate that polars' own cloud reads use, so Google and Azure credentials are
found where that crate finds them (their environment variables, Google's application default
credentials file, the cloud's metadata server). For S3, botocore resolves the credentials and
region first, exactly as the AWS CLI does (the ``AWS_*`` variables, ``AWS_PROFILE``,
``~/.aws/credentials`` and ``~/.aws/config`` with SSO and roles, the ECS and EC2 roles); with
none at all the request goes unsigned, as a public bucket needs.

The bytes are written as they arrive (``_Sink``): counted against
``FetchLimits.max_bytes`` (a size announced past it is refused before the first byte, and a
download stops the moment it passes it), held to the deadline, and their beginning looked
at: an HTML page (a sign-in page answered with 200) or JSON is refused rather than read as
CSV. Every failure is an ``InputError`` (exit 2) naming the URL as shown (``redacted_url``):
not found, forbidden, timed out, too big, not a spreadsheet, unreachable. The local file is
what a run fingerprints (``run/journal.fingerprint``): the content's hash, wherever it came
from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import httpx

from batch_provisioner.errors import InputError, network_cause
from batch_provisioner.safety import REDACTOR, redacted_url
from batch_provisioner.settings import VERSION, FetchLimits

MAX_REDIRECTS = 5
_CHUNK = 2**20
_HEAD = 1024  # the first bytes kept: enough to tell an HTML page or a format's magic
#: An HTML page's beginning: a BOM, blanks, an XML declaration and comments may come first.
_HTML = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
                   rb"<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL)
_NOT_FILES = {"text/html": "an HTML page", "application/xhtml+xml": "an HTML page",
              "application/json": "JSON", "application/problem+json": "JSON"}
_ACCEPT = ("text/csv, text/tab-separated-values, "
           "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, "
           "application/vnd.apache.parquet, application/toml, */*;q=0.5")
_STATUS = {
    401: "needs signing in (HTTP 401): the link is not public",
    403: "forbidden (HTTP 403): the file is not shared with this link, or a signed URL has "
         "expired",
    404: "not found (HTTP 404)",
    407: "the proxy asks for credentials (HTTP 407)",
    410: "not found (HTTP 410: gone)",
    429: "the server is rate limiting (HTTP 429): try again later",
}
_STORE_RETRIES = 2
_SILENCE = 30.0  # seconds an https answer may send nothing before it is given up
_NO_AWS_CREDENTIALS = ("no AWS credentials were found (AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials), so the request "
                       "went unsigned")


@dataclass(frozen=True)
class Fetched:
    """What a download brought besides its bytes: the first of them, and what the server said
    the file is (``Content-Type``, a ``Content-Disposition`` file name)."""

    head: bytes
    content_type: str | None = None
    filename: str | None = None


def fetch(url: str, handle: BinaryIO, limits: FetchLimits) -> Fetched:
    """Download ``url`` into ``handle``; ``InputError`` naming the URL as shown when it fails."""
    shown = redacted_url(url)  # registers the query's secrets before anything can quote them
    sink = _Sink(handle, shown, limits)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        content_type, filename = _http_get(url, sink)
    else:
        content_type, filename = _store_get(url, scheme, sink), None
    sink.finish()
    return Fetched(sink.head, content_type, filename)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Sink:
    """Where the downloaded bytes go: the file, their count against the cap, the deadline."""

    def __init__(self, handle: BinaryIO, shown: str, limits: FetchLimits) -> None:
        self.handle, self.shown, self.limits = handle, shown, limits
        self.deadline = time.monotonic() + limits.timeout
        self.size = 0
        self.head = b""

    def left(self) -> float:
        """Seconds until the deadline (at least a tenth: a timeout of 0 means none)."""
        return max(0.1, self.deadline - time.monotonic())

    def expect(self, size: int | None) -> None:
        """Refuse a size announced past the cap before the first byte."""
        if size is not None and size > self.limits.max_bytes:
            raise self.too_big(f"is {size / 2**20:,.1f} MB")

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_bytes:
            raise self.too_big("is larger than that")
        if len(self.head) < _HEAD:
            self.head += bytes(chunk[: _HEAD - len(self.head)])
            if len(self.head) == _HEAD:
                self.check_head()
        self.handle.write(chunk)
        if time.monotonic() > self.deadline:
            raise self.timed_out()

    def finish(self) -> None:
        if len(self.head) < _HEAD:
            self.check_head()

    def check_head(self) -> None:
        if _HTML.match(self.head):
            raise self.not_a_file("an HTML page")

    def too_big(self, size: str) -> InputError:
        most = self.limits.max_bytes / 2**20
        return InputError(f"too big: a downloaded input may be at most {most:,.0f} MB "
                          f"(BATCH_PROVISIONER_FETCH_MAX_MB), and this one {size}",
                          path=self.shown)

    def timed_out(self) -> InputError:
        return InputError(f"timed out: not downloaded within {self.limits.timeout:g} s "
                          "(BATCH_PROVISIONER_FETCH_TIMEOUT)", path=self.shown)

    def not_a_file(self, what: str) -> InputError:
        return InputError(f"not a spreadsheet: the server answered with {what} (a sign-in "
                          "or error page?); the link must serve the file itself, e.g. "
                          "Google Sheets' File > Share > Publish to web, as CSV or XLSX",
                          path=self.shown)


def _http_get(url: str, sink: _Sink) -> tuple[str | None, str | None]:
    """GET ``url`` into ``sink``; (its content type, its Content-Disposition file name)."""
    shown = sink.shown

    def checked(request: httpx.Request) -> None:  # every request, redirects included
        redacted_url(str(request.url))  # a redirect's own signed query is masked too
        if request.url.scheme != "https" and not is_loopback(request.url.host):
            raise InputError(f"refused: it leads to plain http:// at {request.url.host}; only "
                             "https:// is fetched (http:// only from this machine)",
                             path=shown)

    # the sink holds the whole download to its budget as bytes arrive; a read that waits
    # longer than _SILENCE (or the budget) for any byte is given up
    budget = sink.limits.timeout
    timeout = httpx.Timeout(min(_SILENCE, budget),
                            connect=min(sink.limits.connect_timeout, budget))
    try:
        with httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=timeout,
                          event_hooks={"request": [checked]},
                          headers={"User-Agent": f"batch-provisioner/{VERSION}",
                                   "Accept": _ACCEPT}) as client, \
                client.stream("GET", url) as response:
            content_type = _checked_answer(response, sink)
            for chunk in response.iter_bytes():  # as they arrive: the deadline is checked
                sink.write(chunk)
            return content_type, _attachment_name(response.headers.get("content-disposition"))
    except httpx.TooManyRedirects:
        raise InputError(f"more than {MAX_REDIRECTS} redirects", path=shown) from None
    except httpx.TimeoutException:
        raise sink.timed_out() from None
    except httpx.ConnectError as exc:
        raise InputError(f"unreachable: cannot connect ({_cause(exc)})", path=shown) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise InputError(f"the download failed ({_cause(exc)})", path=shown) from None


def _checked_answer(response: httpx.Response, sink: _Sink) -> str | None:
    """The answer's content type, once its status, size and type are fit to read."""
    status = response.status_code
    if status not in (200, 203):
        problem = _STATUS.get(status) or (
            f"the server failed (HTTP {status}): try again later" if status >= 500
            else f"answered HTTP {status} instead of the file")
        raise InputError(problem, path=sink.shown)
    length = response.headers.get("content-length", "")
    sink.expect(int(length) if length.isdigit() else None)
    codings = [c.strip() for c in response.headers.get("content-encoding", "").split(",")
               if c.strip().lower() not in ("", "identity")]
    if len(codings) > 1:  # each layer multiplies what one read may expand to in memory
        raise InputError(f"refused: the server compressed it {len(codings)} times over "
                         f"(Content-Encoding: {', '.join(codings)})", path=sink.shown)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _NOT_FILES:
        raise sink.not_a_file(_NOT_FILES[content_type])
    return content_type or None


def _attachment_name(header: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives, if any."""
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    return os.path.basename(name) if name else None


def _cause(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words (scrubbed)."""
    return _short(network_cause(exc) or str(exc) or type(exc).__name__)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return REDACTOR.scrub(line if len(line) <= 200 else line[:197] + "...")


def _store_get(url: str, scheme: str, sink: _Sink) -> str | None:
    """GET an object of ``s3://``, ``gs://`` or ``az://`` into ``sink``; its content type."""
    import obstore
    from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
    from obstore.store import from_url

    make_store: Any = from_url  # its overloads are per scheme; the options are checked here
    shown = sink.shown
    parts = urlsplit(url)
    key = unquote(parts.path.lstrip("/"))
    if not parts.netloc or not key or key.endswith("/"):
        raise InputError(f"names no file: give {scheme}://BUCKET/path/to/file", path=shown)
    options, unsigned = _s3_options(shown) if scheme == "s3" else ({}, False)
    left = timedelta(seconds=sink.left())
    client: dict[str, Any] = {
        "timeout": left, "user_agent": f"batch-provisioner/{VERSION}",
        "connect_timeout": timedelta(seconds=min(sink.limits.connect_timeout, sink.left()))}
    if scheme == "s3" and os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true"):
        client["allow_http"] = True  # an S3-compatible store on plain http (object_store's key)
    retry = {"max_retries": _STORE_RETRIES, "retry_timeout": left,
                  "backoff": {"init_backoff": timedelta(milliseconds=200),
                              "max_backoff": timedelta(seconds=2), "base": 2}}
    try:
        store = make_store(f"{scheme}://{parts.netloc}", client_options=client,
                           retry_config=retry, **options)
        result = obstore.get(store, key)
        sink.expect(int(result.meta["size"]))
        for chunk in result.stream(min_chunk_size=_CHUNK):
            sink.write(memoryview(chunk))
        content_type = result.attributes.get("Content-Type")
    except FileNotFoundError:
        raise InputError("not found (no such object)", path=shown) from None
    except PermissionDeniedError:
        raise InputError("forbidden (HTTP 403)" + (f": {_NO_AWS_CREDENTIALS}" if unsigned else
                         ": these credentials may not read it"), path=shown) from None
    except UnauthenticatedError:
        raise InputError("not signed in (HTTP 401): the credentials were refused",
                         path=shown) from None
    except (BaseError, ValueError, OSError) as exc:
        raise InputError(_store_problem(exc, sink), path=shown) from None
    return str(content_type).split(";")[0].strip().lower() if content_type else None


def _store_problem(exc: BaseException, sink: _Sink) -> str:
    """An object store's error in words: its first line says what happened."""
    text = _short(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return sink.timed_out().message
    if "error sending request" in lowered or "connect" in lowered or "dns" in lowered:
        return f"unreachable: cannot connect ({text})"
    return f"cannot be fetched ({text})"


def _s3_options(shown: str) -> tuple[dict[str, Any], bool]:
    """(obstore's S3 options from botocore's credential chain and region, unsigned?)."""
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session()
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    except botocore.exceptions.ProfileNotFound as exc:
        raise InputError(f"the AWS profile {exc.kwargs.get('profile')!r} (AWS_PROFILE) is in "
                         "neither ~/.aws/config nor ~/.aws/credentials", path=shown) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise InputError(f"AWS credentials cannot be loaded ({_short(str(exc))})",
                         path=shown) from None
    options: dict[str, Any] = {"region": region} if region else {}
    if frozen is None or not frozen.access_key:
        return {**options, "skip_signature": True}, True
    REDACTOR.add_all(value for value in (frozen.secret_key, frozen.token) if value)
    options |= {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key}
    if frozen.token:
        options["token"] = frozen.token
    return options, False
