"""Fivetran's OpenAPI 3.0 spec as JSON Schema validators (with its known quirks fixed).

The spec lives in ``<repo>/../shared/reference/fivetran-openapi.json`` (``shared/`` is a
sibling of the clone, locally and in CI). OpenAPI 3.0 schemas are close to JSON Schema
draft 4; these quirks of Fivetran's spec are translated before validating:

* ``nullable: true`` becomes ``type: [T, "null"]`` (none today; kept for spec updates);
* an ``enum`` of strings under ``type: object`` (``tiktok_ads_config_V1``'s ``sync_mode``,
  ``timeframe_months``, ``attribution_window_size``) is typed ``string``;
* an ``enum`` of digit strings under ``type: integer`` (``sync_frequency``) becomes integers;
* ``ConnectorResponse.config.additionalProperties: {type: object}`` is dropped: config
  values are strings and lists for every connector (the service-specific response
  schemas type them so);
* optional ``date-time`` properties may be ``null``: Fivetran sends ``succeeded_at`` /
  ``failed_at`` as null until a sync happened (as in the official Go SDK's fixtures).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT.parent / "shared" / "reference" / "fivetran-openapi.json"
_DROPPED_KEYS = frozenset({"discriminator", "example", "description", "title"})


def _adapt(node: Any) -> Any:
    """One schema (or list of schemas), adapted; property maps are walked by name."""
    if isinstance(node, list):
        return [_adapt(item) for item in node]
    if not isinstance(node, dict):
        return node
    adapted: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            adapted[key] = {name: _adapt(sub) for name, sub in value.items()}
        elif key in ("enum", "required", "default"):
            adapted[key] = value
        else:
            adapted[key] = _adapt(value)
    _fix_types(adapted)
    return adapted


def _fix_types(node: dict[str, Any]) -> None:
    enum = node.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
        if node.get("type") == "object":
            node["type"] = "string"
        elif node.get("type") == "integer" and all(e.isdigit() for e in enum):
            node["enum"] = [int(e) for e in enum]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if node.get("additionalProperties") == {"type": "object"}:
        del node["additionalProperties"]
    properties = node.get("properties")
    if isinstance(properties, dict):
        required = set(node.get("required", []))
        for name, prop in properties.items():
            if not isinstance(prop, dict) or name in required:
                continue
            if prop.get("format") == "date-time" and prop.get("type") == "string":
                prop["type"] = ["string", "null"]


@cache
def load_spec() -> dict[str, Any]:
    """The adapted spec (raises FileNotFoundError when absent)."""
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    schemas = {name: _adapt(schema) for name, schema in spec["components"]["schemas"].items()}
    return {"paths": spec["paths"], "components": {"schemas": schemas}}


def component_validator(name: str) -> Draft4Validator:
    """A validator for ``#/components/schemas/<name>``."""
    spec = load_spec()
    return Draft4Validator(
        {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    )


def response_validator(path: str, method: str, status: str) -> Draft4Validator:
    """A validator for the JSON answer of ``method path`` with ``status``."""
    spec = load_spec()
    schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]
    return Draft4Validator({**_adapt(schema), "components": spec["components"]})


def errors(validator: Draft4Validator, document: Any) -> list[str]:
    """Every validation error, as ``path: message``."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]
