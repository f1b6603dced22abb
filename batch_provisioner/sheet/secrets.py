"""Secret references (``env:NAME``, ``file:PATH``), late resolution and redaction.

A secret's value is read only when its payload is about to be sent, is registered with the
process-wide ``REDACTOR`` at that moment, and is scrubbed from every log line and output.
Validation checks that a reference resolves without ever reading it into a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batch_provisioner.safety import MASK, REDACTOR

_MIN_SECRET_LEN = 4
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
    folder that ``file:`` references must stay inside."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    base_dir: Path = field(default_factory=Path.cwd)
    allowed_root: Path | None = None

    def root(self) -> Path:
        return (self.allowed_root or self.base_dir).resolve()


def check_ref(ref: SecretRef, ctx: SecretContext) -> str | None:
    """A problem description if ``ref`` cannot be resolved; never includes a secret value."""
    if ref.kind == "env":
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref.target):
            return f"'{ref.describe()}' is not a valid environment variable name"
        if not ctx.env.get(ref.target):
            return f"environment variable {ref.target} is not set (or empty)"
        return None
    if ref.kind == "file":
        try:
            return _check_file(ref, ctx)
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a loop...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"is not a usable path ({reason})"  # the value column shows which
    return None if ref.target else "empty secret value"


def _check_file(ref: SecretRef, ctx: SecretContext) -> str | None:
    path = _file_path(ref, ctx)
    if path is None:
        return f"'{ref.describe()}' points outside the allowed folder {ctx.root()}"
    if not path.is_file():
        return f"secret file {ref.target} does not exist"
    if not os.access(path, os.R_OK):
        return f"secret file {ref.target} is not readable"
    if path.stat().st_size == 0:
        return f"secret file {ref.target} is empty"
    return None


def resolve(ref: SecretRef, ctx: SecretContext) -> str:
    """The secret's value, registered for redaction. Raises ``ValueError`` (no value inside)."""
    problem = check_ref(ref, ctx)
    if problem:
        raise ValueError(problem)
    if ref.kind == "env":
        value = ctx.env[ref.target]
    elif ref.kind == "file":
        path = _file_path(ref, ctx)
        assert path is not None
        value = path.read_text("utf-8").strip()
    else:
        value = ref.target
    REDACTOR.add(value)
    return value


def _file_path(ref: SecretRef, ctx: SecretContext) -> Path | None:
    raw = Path(ref.target).expanduser()
    path = (raw if raw.is_absolute() else ctx.base_dir / raw).resolve()
    return path if path.is_relative_to(ctx.root()) else None
