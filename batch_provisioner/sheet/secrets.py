"""Secret references (``env:NAME``, ``file:PATH``), late resolution and redaction.

A secret's value goes into a payload only when that payload is about to be sent. Validating
a sheet looks at each of its distinct references once (``register_sheet_secrets``): to check
that it resolves, without ever reading a value into a message, and to register the value with
the process-wide ``REDACTOR``, so that every output of every command (a plan, a rerun that
sends nothing, validation) scrubs a token pasted anywhere in the sheet; the value is kept
nowhere else. A sheet where every row brings its own secret file costs one look, one open and
one read per row (``_plain_file_value``); anything unusual takes the careful path. ``env:``
and ``file:`` values are cleaned alike (``secret_text``), and a secret file larger than
``MAX_SECRET_FILE_BYTES`` is refused, never read whole.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batch_provisioner.safety import MASK, REDACTOR

#: The largest secret file read (a TikTok token is under 1 KB): a bigger one is a mistake.
MAX_SECRET_FILE_BYTES = 64 * 1024
#: Swapped since its lstat, a secret file must not turn into a link, a FIFO that blocks, or a
#: terminal that becomes ours.
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(
    os, "O_NOCTTY", 0)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF_RE = re.compile(r"^(env|file):(.*)$", flags=re.IGNORECASE)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from. ``target`` is an env name, a path, or (literal) the value."""

    kind: str  # "env" | "file" | "literal"
    target: str = field(repr=False)

    def describe(self) -> str:
        """Safe to print: the reference itself, or the mask for a literal value."""
        return f"{self.kind}:{self.target}" if self.kind != "literal" else MASK

    def __str__(self) -> str:
        return self.describe()


def parse_ref(text: str) -> SecretRef:
    match = _REF_RE.match(text.strip())
    if match:
        return SecretRef(match.group(1).lower(), match.group(2).strip())
    return SecretRef("literal", text)


@dataclass(frozen=True)
class SecretContext:
    """What resolution needs: the environment, the folder paths are relative to, and the
    folder that ``file:`` references must stay inside. ``files_refused``: why ``file:``
    references cannot be used at all (a sheet read from a URL has no folder of its own)."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    base_dir: Path = field(default_factory=Path.cwd)
    allowed_root: Path | None = None
    files_refused: str | None = None

    def root(self) -> Path:
        return (self.allowed_root or self.base_dir).resolve()


def secret_text(raw: str) -> str:
    """A secret as sent: surrounding whitespace and newlines removed (``echo tok > f`` and
    ``export TOK=$(cat f)`` both leave one), the same for ``env:`` and ``file:`` values."""
    return raw.strip()


def check_ref(ref: SecretRef, ctx: SecretContext) -> str | None:
    """A problem description if ``ref`` cannot be resolved; never includes a secret value."""
    return _lookup(ref, ctx, _Pass.of(ctx))[0]


def resolve(ref: SecretRef, ctx: SecretContext) -> str:
    """The secret's value, registered for redaction. Raises ``ValueError`` (no value inside)."""
    problem, value = _lookup(ref, ctx, _Pass.of(ctx))
    if problem is not None:
        raise ValueError(problem)
    REDACTOR.add(value)
    return value


@dataclass(frozen=True)
class _Pass:
    """What the look-ups of one pass share: the allowed root, resolved once, and the real
    path of every folder seen (a sheet's secret files are usually in one or two)."""

    root: Path
    inside: str  # the root as a prefix of the real paths inside it
    folders: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: SecretContext) -> _Pass:
        root = ctx.root()
        return cls(root, os.path.join(root, ""))


def _lookup(ref: SecretRef, ctx: SecretContext, where: _Pass) -> tuple[str | None, str]:
    """(problem, "") or (None, value): one look at the environment or one capped read."""
    if ref.kind == "env":
        if not _ENV_NAME.fullmatch(ref.target):
            return f"'{ref.describe()}' is not a valid environment variable name", ""
        value = secret_text(ctx.env.get(ref.target) or "")
        return (None, value) if value else (
            f"environment variable {ref.target} is not set (or empty)", "")
    if ref.kind == "file":
        if ctx.files_refused:
            return ctx.files_refused, ""
        try:
            return _read_file(ref, ctx, where)
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a loop...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"is not a usable path ({reason})", ""  # the value column shows which
    return (None, ref.target) if ref.target else ("empty secret value", "")


def _read_file(ref: SecretRef, ctx: SecretContext, where: _Pass) -> tuple[str | None, str]:
    plain = _plain_file_value(ref, ctx, where)
    if plain:
        return None, plain
    path = _file_path(ref, ctx, where.root)
    if path is None:
        return f"'{ref.describe()}' points outside the allowed folder {where.root}", ""
    if not path.is_file():
        return f"secret file {ref.target} does not exist", ""
    if not os.access(path, os.R_OK):
        return f"secret file {ref.target} is not readable", ""
    size = path.stat().st_size
    if size == 0:
        return f"secret file {ref.target} is empty", ""
    if size > MAX_SECRET_FILE_BYTES:
        return _too_big(ref, size), ""
    try:
        value = secret_text(_read_capped(ref, path))
    except _Unusable as exc:
        return str(exc), ""
    return (None, value) if value else (f"secret file {ref.target} holds only blanks", "")


def _plain_file_value(ref: SecretRef, ctx: SecretContext, where: _Pass) -> str:
    """The value of an ordinary secret file (a regular, non-empty UTF-8 file of at most the
    cap, inside the root, not itself a link) in three system calls: "" when anything is
    unusual, and ``_read_file`` then takes the careful path, which names the problem. A sheet
    where every row has its own file costs one look, one open and one read per row."""
    if ref.target.startswith("~"):
        return ""
    try:
        folder, name = os.path.split(os.path.join(ctx.base_dir, ref.target))
        if name in ("", ".", ".."):
            return ""
        real = where.folders.get(folder)
        if real is None:
            real = where.folders[folder] = os.path.realpath(folder)
        path = os.path.join(real, name)  # its real path, unless it is a link: lstat says
        if not path.startswith(where.inside):
            return ""
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= MAX_SECRET_FILE_BYTES:
            return ""
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except (OSError, ValueError):
        return ""
    try:
        data = os.read(fd, info.st_size + 1)  # a byte more tells if it changed since
    except OSError:
        return ""
    finally:
        os.close(fd)
    if len(data) != info.st_size:
        return ""
    try:
        return secret_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        return ""


class _Unusable(Exception):
    """A secret file that cannot be used; the message names the file, never its content."""


def _too_big(ref: SecretRef, size: int | None = None) -> str:
    shown = f"{size:,} bytes" if size is not None else "more than that"
    return (f"secret file {ref.target} is too large ({shown}; a secret file holds at most "
            f"{MAX_SECRET_FILE_BYTES // 1024} KiB)")


def _read_capped(ref: SecretRef, path: Path) -> str:
    """The file's text, reading at most one byte past the cap (it may have grown since its
    size was looked at); ``_Unusable`` when over the cap, unreadable or not UTF-8."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise _Unusable(f"secret file {ref.target} cannot be read "
                        f"({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise _Unusable(_too_big(ref))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unusable(f"secret file {ref.target} is not UTF-8 text") from None


@dataclass(frozen=True)
class SheetSecrets:
    """What one look at each distinct secret cell found: the references that do not resolve
    (cell -> problem, never a value) and the cells that hold a literal value."""

    problems: dict[str, str]
    literals: list[str]


def register_sheet_secrets(cells: Iterable[str], ctx: SecretContext) -> SheetSecrets:
    """Resolve every distinct reference among ``cells`` once, only to register its value with
    ``REDACTOR`` (literal values too); the value is kept nowhere. A reference that does not
    resolve is returned with its problem, for validation to report.

    One look per distinct cell, whatever the sheet's size: checking and registering are the
    same pass, and the allowed root is resolved once for all of them."""
    problems: dict[str, str] = {}
    literals: list[str] = []
    where = _Pass.of(ctx)
    for text in dict.fromkeys(cells):
        ref = parse_ref(text)
        if ref.kind == "literal":
            literals.append(text)
            REDACTOR.add(text)  # already in memory: make sure no output can echo it
            continue
        problem, value = _lookup(ref, ctx, where)
        if problem is None:
            REDACTOR.add(value)
        else:
            problems[text] = problem
    return SheetSecrets(problems, literals)


def _file_path(ref: SecretRef, ctx: SecretContext, root: Path) -> Path | None:
    raw = Path(ref.target).expanduser()
    path = (raw if raw.is_absolute() else ctx.base_dir / raw).resolve()
    return path if path.is_relative_to(root) else None
