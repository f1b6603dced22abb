"""The Fivetran API side of the job: client, shared budgets and retry rules.

``FivetranClient`` (client.py) is the only place where HTTP answers and httpx exceptions become
the error tree; ``BudgetGate`` (budgets.py) paces every worker; retry.py holds the pure rules.
"""

from __future__ import annotations

from batch_provisioner.api.budgets import KIND_APPLIES_TO, BudgetGate, GateStats, Slot
from batch_provisioner.api.client import ClientStats, FivetranClient
from batch_provisioner.api.retry import (
    backoff_delay,
    error_for_status,
    error_for_transport,
    parse_limit_message,
    parse_retry_after,
    request_kind,
    retry_idempotent,
)

__all__ = [
    "KIND_APPLIES_TO",
    "BudgetGate",
    "ClientStats",
    "FivetranClient",
    "GateStats",
    "Slot",
    "backoff_delay",
    "error_for_status",
    "error_for_transport",
    "parse_limit_message",
    "parse_retry_after",
    "request_kind",
    "retry_idempotent",
]
