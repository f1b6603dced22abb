"""Test-wide setup: structlog events go nowhere (tests that read them use ``capture_logs``);
the shared sandbox fixtures (a module's own ``sandbox`` fixture overrides them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from batch_provisioner.sandbox import SandboxHandle, run_in_thread

structlog.configure(processors=[structlog.processors.KeyValueRenderer()],
                    logger_factory=structlog.ReturnLoggerFactory(),
                    cache_logger_on_first_use=False)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    """One embedded sandbox (profile fast, the default groups) per test module."""
    with run_in_thread(profile="fast") as handle:
        yield handle


@pytest.fixture()
def box(sandbox: SandboxHandle) -> SandboxHandle:
    """The module's sandbox, emptied for each test."""
    sandbox.reset()
    return sandbox
