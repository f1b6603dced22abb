"""The Fivetran API side of the job: client, shared budgets and retry rules.

``FivetranClient`` (client.py) is the only place where HTTP answers and httpx exceptions become
the error tree; ``BudgetGate`` (budgets.py) paces every worker; retry.py holds the rules and the
one retry loop (``retrying``); wire.py reads what comes back (``schema_of``, envelopes);
edge.py gives up a base URL that never answers as Fivetran does (exit 3, the URL named).
"""

from __future__ import annotations

from batch_provisioner.api.budgets import KIND_APPLIES_TO, BudgetGate, GateStats, Slot
from batch_provisioner.api.client import ClientStats, FivetranClient
from batch_provisioner.api.retry import (
    OnRetry,
    backoff_delay,
    error_for_status,
    error_for_transport,
    parse_limit_message,
    parse_retry_after,
    request_kind,
    resumable,
    retry_after_of,
    retry_delay,
    retry_idempotent,
    retrying,
)
from batch_provisioner.api.wire import schema_of

__all__ = [
    "KIND_APPLIES_TO",
    "BudgetGate",
    "ClientStats",
    "FivetranClient",
    "GateStats",
    "OnRetry",
    "Slot",
    "backoff_delay",
    "error_for_status",
    "error_for_transport",
    "parse_limit_message",
    "parse_retry_after",
    "request_kind",
    "resumable",
    "retry_after_of",
    "retry_delay",
    "retry_idempotent",
    "retrying",
    "schema_of",
]
