"""Seeded, replayable fault injection for ``/v1`` requests.

How a fault is chosen for a request
-----------------------------------
1. Scripted faults first: the first entry of the script (``POST /sandbox/faults``) whose
   method, path (exact path or route template) and ``match`` facts fit the request is used
   and its ``times`` count is decremented.
2. Otherwise the probabilistic spec is consulted. The draw is a pure function of
   ``(seed, method, route template, identity, ordinal)`` hashed with BLAKE2b, where the
   *identity* is ``group_id/schema`` from the body for a create and the request path for
   everything else, and the *ordinal* counts earlier requests with the same
   (method, template, identity). The fault for a request therefore does not depend on how
   concurrent requests interleave: the same request sequence per identity and the same
   seed give the same faults. Faults are tried in :data:`FAULT_NAMES` order against the
   cumulative probabilities. A drawn ``drop_after_commit`` only applies to creates (other
   requests then get no fault); a scripted one applies to whatever request it matches.

The same hash also draws the added latency when one is set: ``latency_ms=LO..HI`` for every
request, ``create_latency_ms=LO..HI`` for creates only (Fivetran runs a create's setup tests
before it answers: seconds, while listings answer at once); a create gets the larger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batch_provisioner.sandbox.config import DEFAULT_SLOW_MS

#: Every fault name, in the order the probabilistic draw tries them.
FAULT_NAMES: tuple[str, ...] = (
    "429",
    "429_date",
    "500",
    "502",
    "503",
    "reset",
    "drop_after_commit",
    "slow",
)
#: Faults answered (or cut) before anything is applied.
PRE_EFFECT_FAULTS = frozenset({"429", "429_date", "500", "502", "503", "reset"})
#: Faults that let the request take effect, then lose or delay its answer.
POST_EFFECT_FAULTS = frozenset({"drop_after_commit", "slow"})
CREATE_ONLY_FAULTS = frozenset({"drop_after_commit"})

_TWO_64 = float(2**64)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A parsed ``--faults`` value."""

    probabilities: tuple[tuple[str, float], ...] = ()
    latency_ms: tuple[float, float] | None = None
    slow_ms: int = DEFAULT_SLOW_MS
    create_latency_ms: tuple[float, float] | None = None

    def describe(self) -> str:
        """The spec back in ``--faults`` syntax."""
        parts = [f"{name}={p:g}" for name, p in self.probabilities]
        for name, span in (("latency_ms", self.latency_ms),
                           ("create_latency_ms", self.create_latency_ms)):
            if span is not None:
                parts.append(f"{name}={span[0]:g}..{span[1]:g}")
        parts.append(f"slow_ms={self.slow_ms}")
        return ",".join(parts)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{what}: {text!r} must not be negative")
    return value


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse ``name=probability`` items plus ``latency_ms=LO..HI``,
    ``create_latency_ms=LO..HI`` and ``slow_ms=N``.

    Raises ValueError on unknown names, probabilities outside [0, 1], or a total above 1.
    """
    probabilities: dict[str, float] = {}
    latencies: dict[str, tuple[float, float]] = {}
    slow_ms = DEFAULT_SLOW_MS
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"fault item {item!r} is not NAME=VALUE")
        if name in ("latency_ms", "create_latency_ms"):
            low, dots, high = value.partition("..")
            lo = _number(low, name)
            hi = _number(high, name) if dots else lo
            if hi < lo:
                raise ValueError(f"{name} range {value!r} is reversed")
            latencies[name] = (lo, hi)
        elif name == "slow_ms":
            slow_ms = int(_number(value, "slow_ms"))
        elif name in FAULT_NAMES:
            p = _number(value, name)
            if p > 1:
                raise ValueError(f"probability of {name} must be within [0, 1], got {value}")
            probabilities[name] = p
        else:
            raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(FAULT_NAMES)}")
    if sum(probabilities.values()) > 1 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    ordered = tuple((n, probabilities[n]) for n in FAULT_NAMES if n in probabilities)
    return FaultSpec(ordered, latencies.get("latency_ms"), slow_ms,
                     latencies.get("create_latency_ms"))


@dataclass(slots=True)
class ScriptedFault:
    """One scripted entry: the next ``times`` matching requests get ``fault``."""

    fault: str
    method: str | None = None
    path: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    times: int = 1

    @classmethod
    def from_json(cls, entry: Any) -> ScriptedFault:
        """Validate one ``script`` item of ``POST /sandbox/faults``."""
        if not isinstance(entry, dict):
            raise ValueError("each script entry must be an object")
        fault = entry.get("fault")
        if fault not in FAULT_NAMES:
            raise ValueError(f"script fault must be one of {', '.join(FAULT_NAMES)}")
        method, path = entry.get("method"), entry.get("path")
        match, times = entry.get("match") or {}, entry.get("times", 1)
        if method is not None and not isinstance(method, str):
            raise ValueError("script method must be a string")
        if path is not None and not isinstance(path, str):
            raise ValueError("script path must be a string")
        if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
            raise ValueError("script match must be an object of strings")
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ValueError("script times must be a positive integer")
        return cls(str(fault), method.upper() if method else None, path, dict(match), times)

    def matches(
        self, method: str, path: str, template: str, facts: Mapping[str, str | None]
    ) -> bool:
        """Whether this entry applies to the request."""
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and self.path not in (path, template):
            return False
        return all(facts.get(key) == value for key, value in self.match.items())

    def describe(self) -> dict[str, Any]:
        """The entry as JSON."""
        return {
            "fault": self.fault,
            "method": self.method,
            "path": self.path,
            "match": self.match,
            "times": self.times,
        }


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fault (if any) and added latency chosen for one request."""

    fault: str | None
    latency_s: float


class FaultInjector:
    """Chooses faults per request; see the module docstring for the determinism rules."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self._ordinals: dict[str, int] = {}
        self._script: list[ScriptedFault] = []

    def configure(self, spec: FaultSpec, seed: int) -> None:
        """Swap the probabilistic spec and seed, restarting the ordinals (a fresh replay)."""
        self.spec, self.seed = spec, seed
        self._ordinals.clear()

    def add_script(self, entries: Sequence[ScriptedFault]) -> None:
        """Append scripted entries (consumed in order)."""
        self._script.extend(entries)

    def clear_script(self) -> None:
        """Drop every scripted entry."""
        self._script.clear()

    def reset(self) -> None:
        """Forget ordinals and the script."""
        self._ordinals.clear()
        self._script.clear()

    def describe(self) -> dict[str, Any]:
        """The current fault state as JSON."""
        return {
            "faults": self.spec.describe(),
            "seed": self.seed,
            "script": [entry.describe() for entry in self._script],
        }

    def choose(
        self,
        method: str,
        path: str,
        template: str,
        identity: str,
        facts: Mapping[str, str | None],
        *,
        is_create: bool,
    ) -> FaultDecision:
        """Pick this request's fault: scripted first, else the seeded draw."""
        key = f"{method}\x1f{template}\x1f{identity}"
        ordinal = self._ordinals.get(key, 0)
        self._ordinals[key] = ordinal + 1
        spec = self.spec
        if (not spec.probabilities and spec.latency_ms is None and not self._script
                and (spec.create_latency_ms is None or not is_create)):
            return FaultDecision(None, 0.0)
        digest = hashlib.blake2b(
            f"{self.seed}\x1f{key}\x1f{ordinal}".encode(), digest_size=16
        ).digest()
        share = int.from_bytes(digest[8:], "big") / _TWO_64
        spans = [spec.latency_ms, spec.create_latency_ms if is_create else None]
        latency = max(((lo + (hi - lo) * share) / 1000 for lo, hi in filter(None, spans)),
                      default=0.0)
        scripted = self._take_scripted(method, path, template, facts)
        if scripted is not None:
            return FaultDecision(scripted, latency)
        draw = int.from_bytes(digest[:8], "big") / _TWO_64
        cumulative = 0.0
        for name, probability in spec.probabilities:
            cumulative += probability
            if draw < cumulative:
                if name in CREATE_ONLY_FAULTS and not is_create:
                    break
                return FaultDecision(name, latency)
        return FaultDecision(None, latency)

    def _take_scripted(
        self, method: str, path: str, template: str, facts: Mapping[str, str | None]
    ) -> str | None:
        for index, entry in enumerate(self._script):
            if entry.matches(method, path, template, facts):
                entry.times -= 1
                if entry.times == 0:
                    del self._script[index]
                return entry.fault
        return None
