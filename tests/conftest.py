"""Test-wide setup: structlog events go nowhere (tests that read them use ``capture_logs``);
the CLI's consoles 200 columns wide in this process; the shared sandbox fixtures (a module's
own ``sandbox`` fixture overrides them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from batch_provisioner.cli import common
from batch_provisioner.sandbox import SandboxHandle, run_in_thread

structlog.configure(processors=[structlog.processors.KeyValueRenderer()],
                    logger_factory=structlog.ReturnLoggerFactory(),
                    cache_logger_on_first_use=False)


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    """The CLI run in this process prints 200 columns wide, whichever test ran first.

    rich reads ``COLUMNS`` once, when a console is made (on the first import of
    ``cli.common``), so without this a cell wraps or not by which test imported it, and under
    pytest-xdist by which worker ran what. Subprocess runs get ``COLUMNS=200`` from the helpers.
    """
    consoles = [common.out, common.err, common.plain_out, common.plain_err]
    saved = [console._width for console in consoles]
    for console in consoles:
        console.width = 200
    yield
    for console, width in zip(consoles, saved, strict=True):
        console._width = width


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
