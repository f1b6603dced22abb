"""The Fivetran API sandbox: the other side of the wire, for demos, tests and benchmarks.

It emulates the parts of Fivetran's REST API the job uses (connections, connect cards,
groups), with Fivetran's envelope, status codes, pagination and rolling-window rate
limits, plus seeded fault injection and a ledger of every request served. It imports
nothing from the rest of ``batch_provisioner``.

Start it with ``batch-provisioner sandbox serve`` / ``python -m batch_provisioner.sandbox
serve``, or from Python with :func:`run_in_thread` / :func:`run_in_process`.
See :mod:`batch_provisioner.sandbox.faults` for how faults are chosen (deterministically
per seed, independent of how concurrent requests interleave).
"""

from __future__ import annotations

from batch_provisioner.sandbox.app import SandboxApp
from batch_provisioner.sandbox.config import DEFAULT_GROUPS, SandboxConfig
from batch_provisioner.sandbox.server import (
    SandboxHandle,
    SandboxRequestError,
    run_in_process,
    run_in_thread,
)

__all__ = [
    "DEFAULT_GROUPS",
    "SandboxApp",
    "SandboxConfig",
    "SandboxHandle",
    "SandboxRequestError",
    "run_in_process",
    "run_in_thread",
]
