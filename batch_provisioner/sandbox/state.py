"""The sandbox's mutable state, built from a :class:`SandboxConfig`.

One event loop serves every request, and handlers never await while they change
state, so each request's check-and-change is atomic with respect to the others.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from batch_provisioner.sandbox.config import SandboxConfig
from batch_provisioner.sandbox.faults import FaultInjector, FaultSpec, parse_fault_spec
from batch_provisioner.sandbox.ledger import Ledger
from batch_provisioner.sandbox.limits import Clock, RateLimiter, build_budgets, limits_document
from batch_provisioner.sandbox.store import Store


class SandboxState:
    """Store, limiter, fault injector and ledger of one sandbox."""

    def __init__(self, config: SandboxConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.budgets = build_budgets(config.profile, config.create_limit)
        self.limiter = RateLimiter(self.budgets, clock)
        self.faults = FaultInjector(self.fault_spec(config.faults), config.seed)
        self.ledger = Ledger(clock)
        self.store = Store(config.seeded_groups(), config.state_path)
        self.rng = random.Random(config.seed)
        self.connected_by = (
            "sandbox_" + "".join(c for c in config.api_key.lower() if c.isalnum())[:16]
        )

    def fault_spec(self, text: str) -> FaultSpec:
        """Parse a fault spec, applying the config's ``slow_ms`` unless the text sets one."""
        spec = parse_fault_spec(text)
        if self.config.slow_ms is not None and "slow_ms" not in text:
            spec = replace(spec, slow_ms=self.config.slow_ms)
        return spec

    def limits(self) -> dict[str, object]:
        """``GET /sandbox/limits``."""
        return limits_document(self.config.profile, self.budgets)

    def reset(self) -> None:
        """Clear connections, ledger, budget windows, fault ordinals and scripts."""
        self.store.clear()
        self.ledger.reset()
        self.limiter.reset()
        self.faults.reset()

    def close(self) -> None:
        """Release the state file."""
        self.store.close()
