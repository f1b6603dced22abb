"""Fixtures for the sandbox tests: a sandbox per test (in a thread), a client, payloads."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_thread

from .helpers import PayloadFactory, make_payload


@pytest.fixture
def payload() -> PayloadFactory:
    """Factory of create payloads: ``payload(schema=..., group_id=..., **top_level)``."""
    return make_payload


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[SandboxHandle]:
    """One sandbox (profile fast, default groups) per test module, on a free loopback port."""
    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def sandbox(module_sandbox: SandboxHandle) -> SandboxHandle:
    """The module's sandbox, reset: no connections, empty ledger and budgets, no faults."""
    module_sandbox.reset()
    module_sandbox.set_faults("", seed=0)
    return module_sandbox


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """An authenticated httpx client for ``sandbox``."""
    with httpx.Client(base_url=sandbox.url, auth=sandbox.auth, timeout=10, trust_env=False) as http:
        yield http
