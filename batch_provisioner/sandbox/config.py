"""Configuration of the Fivetran API sandbox: one frozen dataclass and its parsers.

Everything that makes one sandbox differ from another lives in :class:`SandboxConfig`:
the rate-limit profile, the seeded groups, the fault spec and its seed, the credentials
and where (if anywhere) state is kept between restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_API_KEY = "sandbox"
DEFAULT_API_SECRET = "sandbox"  # noqa: S105 - the sandbox's documented default credential
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PROFILE = "fast"
DEFAULT_CREATE_LIMIT = 20
DEFAULT_SLOW_MS = 2500

#: Groups seeded when no ``--group`` is given; the shipped input templates use these ids.
DEFAULT_GROUPS: dict[str, str] = {
    "decent_dropsy": "Acme Retail",
    "happy_harbor": "Blue Fin Media",
    "quiet_quasar": "Crimson Coffee",
}

#: Profile name -> how many times shorter its windows are than Fivetran's (None: no budgets).
PROFILES: dict[str, int | None] = {"fivetran": 1, "fast": 60, "unlimited": None}

_GROUP_ID = re.compile(r"^[^\s/?#%]+$")  # one URL path segment


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything a sandbox instance is configured with.

    Attributes:
        host: interface to listen on (loopback by default).
        port: TCP port; 0 picks a free one.
        profile: ``fast`` (Fivetran's counts over 60x shorter windows), ``fivetran`` (the
            documented numbers) or ``unlimited`` (no budgets at all, for benchmarks).
        groups: group id -> name; ``None`` means :data:`DEFAULT_GROUPS`.
        faults: probabilistic fault spec, e.g. ``"503=0.05,reset=0.01,latency_ms=5..20"``.
        seed: seed of the fault draws and of the generated ids.
        api_key: HTTP Basic user expected on ``/v1``.
        api_secret: HTTP Basic password expected on ``/v1``.
        state_path: SQLite file keeping groups and connections across restarts (None: memory).
        create_limit: connection creates per (scaled) minute; 0 switches the budget off.
        slow_ms: how long a ``slow`` answer is held back; ``None`` defers to the fault spec.
        connections: connections it starts with, as if made earlier (seed objects, see
            :mod:`batch_provisioner.sandbox.seed`); kept in the state file like created ones.
    """

    host: str = DEFAULT_HOST
    port: int = 0
    profile: str = DEFAULT_PROFILE
    groups: Mapping[str, str] | None = None
    faults: str = ""
    seed: int = 0
    api_key: str = DEFAULT_API_KEY
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    state_path: Path | None = None
    create_limit: int = DEFAULT_CREATE_LIMIT
    slow_ms: int | None = None
    connections: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            known = ", ".join(PROFILES)
            raise ValueError(f"unknown profile {self.profile!r}; expected one of {known}")
        if self.create_limit < 0:
            raise ValueError("create_limit must be >= 0 (0 switches the create budget off)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.slow_ms is not None and self.slow_ms < 0:
            raise ValueError("slow_ms must be >= 0")
        for group_id in self.seeded_groups():
            if not _GROUP_ID.match(group_id):
                raise ValueError(f"invalid group id {group_id!r}")

    def seeded_groups(self) -> dict[str, str]:
        """The groups this sandbox starts with (the defaults when none were given)."""
        return dict(DEFAULT_GROUPS if self.groups is None else self.groups)


def parse_group_options(values: Iterable[str]) -> dict[str, str] | None:
    """Turn ``--group ID[=NAME]`` values into a mapping; ``None`` when there are none.

    A group without a name is named after its id.
    """
    groups: dict[str, str] = {}
    for value in values:
        group_id, _, name = value.partition("=")
        group_id = group_id.strip()
        if not group_id:
            raise ValueError(f"invalid --group value {value!r}; expected ID or ID=NAME")
        groups[group_id] = name.strip() or group_id
    return groups or None


def config_from_overrides(
    base: SandboxConfig | None, overrides: Mapping[str, Any]
) -> SandboxConfig:
    """Build a config from an optional base plus keyword overrides (used by the runners)."""
    values: dict[str, Any] = {}
    if base is not None:
        values = {name: getattr(base, name) for name in SandboxConfig.__dataclass_fields__}
    unknown = set(overrides) - set(SandboxConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown sandbox option(s): {', '.join(sorted(unknown))}")
    values.update(overrides)
    values["connections"] = tuple(values.get("connections") or ())
    state_path = values.get("state_path")
    if state_path is not None and not isinstance(state_path, Path):
        values["state_path"] = Path(state_path)
    return SandboxConfig(**values)
