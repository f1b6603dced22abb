"""What travels on the wire: envelopes, path segments, headers and connection fields.

Stateless helpers of :mod:`batch_provisioner.api.client` (they raise nothing of the error tree),
plus :func:`schema_of`, which reads the schema of a connection object the same way wherever one
comes back from the API.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from batch_provisioner.settings import Budget

__all__ = [
    "budgets_of",
    "data_of",
    "header_int",
    "read_envelope",
    "schema_of",
    "seg",
    "skip_failing_sniffio_import",
]

JSON = dict[str, Any]


def skip_failing_sniffio_import() -> None:
    """httpcore tries ``import sniffio`` on every lock and event it sets up. Without sniffio
    installed (httpx no longer needs it) each try scans all of sys.path: ~10 failed imports per
    request, a third of the client's CPU at 300 requests/s. A ``None`` in sys.modules makes that
    import fail at once, which httpcore already handles (it then assumes asyncio)."""
    if importlib.util.find_spec("sniffio") is None:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


def read_envelope(response: httpx.Response) -> JSON | None:
    """The JSON object of a Fivetran answer, or None when the body is not one."""
    if not response.content.strip():
        return None
    try:
        parsed = response.json()
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not ({"code", "data", "budgets"} & parsed.keys()):
        return None
    return parsed


def seg(value: str) -> str:
    """One URL path segment: an id can never reach another path or carry a query.

    ``.`` and ``..`` are percent-encoded too: left bare, URL normalisation would remove them
    and turn ``/v1/groups/../connections`` into another endpoint.
    """
    segment = quote(str(value), safe="")
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment


def data_of(envelope: JSON) -> JSON:
    """The ``data`` object of an envelope, or an empty dict."""
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}


def budgets_of(envelope: JSON) -> list[Budget] | None:
    """The budgets of a ``/sandbox/limits`` answer (inside ``data`` or not); None if malformed."""
    body = data_of(envelope) if "budgets" in data_of(envelope) else envelope
    try:
        return [
            Budget(
                name=str(item["name"]),
                limit=int(item["limit"]),
                window_seconds=float(item["window_seconds"]),
                applies_to=str(item.get("applies_to", "all")),
            )
            for item in body["budgets"]
        ]
    except (KeyError, TypeError, ValueError):
        return None


def schema_of(item: Mapping[str, Any]) -> str:
    """The schema of a connection object: ``schema``, else ``config.schema``; "" when absent."""
    schema = item.get("schema")
    config = item.get("config")
    if not schema and isinstance(config, Mapping):
        schema = config.get("schema")
    return str(schema) if schema else ""


def header_int(response: httpx.Response, name: str) -> int | None:
    """A header's integer value, or None when it is absent or not an integer."""
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
