"""An input file as given: a local path, or a URL whose bytes are downloaded first.

Every command reads its inputs (the sheet, ``--defaults``, ``--custom-reports``,
``--sandbox-groups``, and what a run's journal recorded of them) through ``open_source``: a
path is used as it is; a URL (``https://``, ``s3://``, ``gs://``, ``az://``; ``http://`` only
to this machine) is downloaded (``sheet/fetch.py``) into a private file that the local readers
then read, with every check a local file gets. ``Source.name`` is how every message, report
and next command names the input: the path, or the URL with its query secrets masked
(``redacted_url``); ``named`` gives the readers' errors that name. The private file lives as
long as its ``Source`` does (the process's exit removes what is left).

A download is read as the format its URL's file name says (``.csv``, ``.tsv``, ``.xlsx``,
``.parquet``), else a ``format=`` or ``output=`` query says (Google Sheets' export and publish
links), else the server's file name or content type, else its first bytes (a ZIP is a
workbook, ``PAR1`` Parquet); else it is CSV.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from batch_provisioner.errors import InputError
from batch_provisioner.safety import MASK, redacted_url
from batch_provisioner.settings import FetchLimits
from batch_provisioner.sheet.fetch import Fetched, fetch, is_loopback

REMOTE_SCHEMES = ("https", "http", "s3", "gs", "az")
#: What an input is read as: a table (sheet, custom reports, groups) or defaults.toml.
Kind = Literal["sheet", "defaults"]
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".parquet"})
_QUERY_FORMATS = {"csv": ".csv", "tsv": ".tsv", "xlsx": ".xlsx", "parquet": ".parquet"}
_CONTENT_TYPES = {
    "text/csv": ".csv", "application/csv": ".csv", "text/tab-separated-values": ".tsv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.apache.parquet": ".parquet", "application/x-parquet": ".parquet",
    "application/parquet": ".parquet",
}
_folder_lock = threading.Lock()
_folder: list[Path] = []  # the process's private download folder, made on first use


@dataclass(frozen=True, eq=False)
class Source:
    """One input file: where the readers read it (``local``) and how outputs name it."""

    local: Path
    name: str
    remote: bool = False

    @property
    def recorded(self) -> str:
        """What a run's journal records, for later commands to read it again: the absolute
        path, or the URL as shown (a signed URL's masked query cannot be fetched again)."""
        return self.name if self.remote else str(self.local.resolve())


@dataclass(frozen=True)
class Inputs:
    """The input files of one sheet: the sheet, its defaults, its custom reports."""

    sheet: Source
    defaults: Source | None = None
    custom_reports: Source | None = None

    def all(self) -> tuple[Source | None, Source | None, Source | None]:
        return self.sheet, self.defaults, self.custom_reports


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL (``scheme://...``) rather than a path."""
    return isinstance(text, str) and _URL.match(text) is not None


def shown_name(given: str | os.PathLike[str]) -> str:
    """How outputs name an input given as ``given``: the URL as shown, else the path."""
    if not is_url(given):
        return str(Path(given))
    try:
        return redacted_url(str(given).strip())
    except ValueError:
        return _unparsable(str(given))


def is_fetchable(recorded: str) -> bool:
    """Whether an input a journal recorded can be read again: a path, or a URL whose query
    was not masked (a signed URL's was: it cannot be fetched again, and has expired anyway)."""
    return not is_url(recorded) or MASK not in recorded


def as_source(value: Path | Source) -> Source:
    """A local path as a ``Source`` (named by itself); a ``Source`` as it is."""
    return value if isinstance(value, Source) else Source(value, str(value))


def open_source(given: str | os.PathLike[str] | Source, *, kind: Kind = "sheet",
                limits: FetchLimits | None = None) -> Source:
    """The input ``given``: a path as it is, a URL downloaded (``kind`` ``defaults`` is read
    as TOML whatever its name). ``InputError`` (exit 2) naming the URL when it cannot be."""
    if isinstance(given, Source):
        return given
    if not is_url(given):
        return Source(Path(given), str(Path(given)))
    url = str(given).strip()
    try:
        name, parts = redacted_url(url), urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InputError("is not a valid URL", path=_unparsable(url)) from None
    scheme = parts.scheme.lower()
    if scheme not in REMOTE_SCHEMES:
        raise InputError(f"{scheme}:// URLs are not read; give a path, or an https://, s3://, "
                         "gs:// or az:// URL", path=name)
    if scheme == "http" and not is_loopback(host):
        raise InputError("plain http:// is read only from this machine; use https://",
                         path=name)
    if limits is None:
        try:
            limits = FetchLimits.from_env()
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return _download(url, name, kind, limits)


def open_inputs(sheet: str | os.PathLike[str], defaults: str | os.PathLike[str] | None = None,
                custom_reports: str | os.PathLike[str] | None = None) -> Inputs:
    """The three inputs of a sheet, each URL downloaded once (a workbook given as its own
    ``--custom-reports`` too is fetched once)."""
    main = open_source(sheet)
    reports = None
    if custom_reports is not None:
        reports = main if str(custom_reports) == str(sheet) else open_source(custom_reports)
    return Inputs(main, open_source(defaults, kind="defaults") if defaults is not None else None,
                  reports)


@contextmanager
def named(*sources: Source | None) -> Iterator[None]:
    """An ``InputError`` raised inside about a downloaded file names its URL, not the copy."""
    try:
        yield
    except InputError as exc:
        for source in sources:
            if source is not None and source.remote:
                local = str(source.local)
                if local in (exc.path or "") or local in exc.detail:
                    raise exc.renamed(local, source.name) from None
        raise


def _download(url: str, name: str, kind: Kind, limits: FetchLimits) -> Source:
    handle, temporary = tempfile.mkstemp(dir=_download_folder(), prefix=f"{kind}-")
    path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as file:
            fetched = fetch(url, file, limits)
        local = path.with_name(path.name + _suffix(url, kind, fetched))
        os.replace(path, local)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    source = Source(local, name, remote=True)
    weakref.finalize(source, _remove, local)
    return source


def _suffix(url: str, kind: Kind, fetched: Fetched) -> str:
    """The file name ending that tells the local readers how to read a download."""
    if kind == "defaults":
        return ".toml"
    parts = urlsplit(url)
    named_suffix = PurePosixPath(unquote(parts.path)).suffix.lower()
    if named_suffix in _SUFFIXES:
        return named_suffix
    for key, value in parse_qsl(parts.query):
        if key.lower() in ("format", "output", "exportformat") and value.lower() in \
                _QUERY_FORMATS:
            return _QUERY_FORMATS[value.lower()]
    served = PurePosixPath(fetched.filename or "").suffix.lower()
    if served in _SUFFIXES:
        return served
    if fetched.content_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[fetched.content_type]
    if fetched.head.startswith(b"PK\x03\x04"):
        return ".xlsx"
    if fetched.head.startswith(b"PAR1"):
        return ".parquet"
    return named_suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", named_suffix) else ".csv"


def _download_folder() -> Path:
    """A private folder (mode 0700) for this process's downloads, removed at exit."""
    with _folder_lock:
        if not _folder:
            folder = Path(tempfile.mkdtemp(prefix="batch-provisioner-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _folder.append(folder)
        return _folder[0]


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _unparsable(url: str) -> str:
    """A URL ``urlsplit`` refuses, shown without anything past its host."""
    scheme, _, rest = url.strip().partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2].split('?', 1)[0]}/..."
