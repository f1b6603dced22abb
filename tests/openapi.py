"""Fivetran's OpenAPI spec as plain JSON Schema, for validating payloads in tests.

``load_schema("tiktok_ads_NewConnectorRequestV1")`` returns a self-contained JSON Schema: the
named component with every schema it references embedded under ``components/schemas``, so
``#/components/schemas/...`` references resolve, and two quirks of the published spec
normalised. The same normalisation serves the sandbox's answers (``response_validator``,
``component_validator``). The published spec's quirks, fixed here:

* enum fields declared ``"type": "object"`` whose enum values are strings (``sync_mode``,
  ``timeframe_months``, ...) are treated as strings;
* enum values whose JSON type differs from the declared type (``sync_frequency`` is declared
  ``integer`` with the enum ``["1", "5", ...]``) are coerced to the declared type;
* ``nullable: true`` becomes ``type: [T, "null"]``;
* ``ConnectorResponse.config.additionalProperties: {type: object}`` is dropped: config values
  are strings and lists for every connector (the service-specific schemas type them so);
* optional ``date-time`` properties may be ``null``: Fivetran sends ``succeeded_at`` /
  ``failed_at`` as null until a sync happened (as in the official Go SDK's fixtures).

OpenAPI-only keywords (``discriminator``, ``example``, ``format``) are ignored by JSON Schema
validators, so they are left as they are. The spec is the committed subset
``tests/data/fivetran/openapi_subset.json`` (``spec_path()``): the operations the job and the
sandbox use and every schema they reference, cut by ``tests/data/fivetran/cut_openapi.py``
from Fivetran's full spec, ``shared/reference/fivetran-openapi.json`` beside the repository.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC_PATH = Path(__file__).resolve().parent / "data" / "fivetran" / "openapi_subset.json"


def spec_path() -> Path:
    """``tests/data/fivetran/openapi_subset.json``."""
    return SPEC_PATH


@cache
def _spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(spec_path().read_text("utf-8"))
    return data


def _coerce(value: Any, declared: str) -> Any:
    if declared == "integer" and isinstance(value, str):
        return int(value)
    if declared == "number" and isinstance(value, str):
        return float(value)
    if declared == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


def normalise(node: Any) -> Any:
    """A copy of ``node`` with the spec's enum quirks fixed, recursively."""
    if isinstance(node, list):
        return [normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: normalise(value) for key, value in node.items()}
    enum = out.get("enum")
    declared = out.get("type")
    if isinstance(enum, list) and isinstance(declared, str):
        if declared == "object" and enum and all(isinstance(v, str) for v in enum):
            out["type"] = "string"
        else:
            out["enum"] = [_coerce(v, declared) for v in enum]
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("additionalProperties") == {"type": "object"}:
        del out["additionalProperties"]
    properties = out.get("properties")
    if isinstance(properties, dict):
        required = set(out.get("required", []))
        for name, prop in properties.items():
            if (isinstance(prop, dict) and name not in required
                    and prop.get("format") == "date-time" and prop.get("type") == "string"):
                prop["type"] = ["string", "null"]
    return out


@cache
def _normalised_components() -> dict[str, Any]:
    components: dict[str, Any] = normalise(_spec()["components"])
    return components


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*(_refs(value) for value in node.values()))


def load_schema(name: str) -> dict[str, Any]:
    """The component schema ``name`` as a self-contained, normalised JSON Schema: a fresh
    copy, with the schemas it references (directly or not) under ``components/schemas``."""
    schemas: dict[str, Any] = _normalised_components()["schemas"]
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in {spec_path()}")
    needed, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in needed:
            needed.add(current)
            todo.extend(_refs(schemas[current]))
    schema: dict[str, Any] = copy.deepcopy(schemas[name])
    schema["components"] = {"schemas": {n: copy.deepcopy(schemas[n]) for n in sorted(needed)}}
    return schema


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A Draft 7 validator for the component ``name`` (refs resolve inside the document)."""
    schema = load_schema(name)
    cls = jsonschema.Draft7Validator
    cls.check_schema({k: v for k, v in schema.items() if k != "components"})
    result: jsonschema.protocols.Validator = cls(schema)
    return result


def errors(name: str, instance: Any) -> list[str]:
    """Every schema violation of ``instance`` as ``path: message`` lines (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator(name).iter_errors(instance)
    ]


def component_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for ``#/components/schemas/<name>`` (an alias kept for the sandbox tests)."""
    return validator(name)


def response_validator(path: str, method: str, status: str) -> jsonschema.protocols.Validator:
    """A validator for the JSON answer of ``method path`` with ``status``."""
    answer = _spec()["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = normalise(answer["content"]["application/json"]["schema"])
    schema["components"] = _normalised_components()
    return jsonschema.Draft7Validator(schema)


def validator_errors(checker: jsonschema.protocols.Validator, document: Any) -> list[str]:
    """Every violation of ``document`` under ``checker`` as ``path: message`` lines."""
    return [f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in checker.iter_errors(document)]


def property_paths(name: str) -> set[tuple[str, ...]]:
    """Every object property path the schema declares (through ``allOf`` and ``$ref``).

    The spec's schemas don't forbid unknown properties, so a test that wants to catch a
    misspelt key checks a payload's key paths against this set.
    """
    components = _normalised_components()["schemas"]
    paths: set[tuple[str, ...]] = set()

    def walk(node: Any, prefix: tuple[str, ...], seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = ref.rsplit("/", 1)[-1]
            if target not in seen:
                walk(components[target], prefix, seen | {target})
            return
        for part in node.get("allOf", []):
            walk(part, prefix, seen)
        for key, sub in node.get("properties", {}).items():
            paths.add((*prefix, key))
            walk(sub, (*prefix, key), seen)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, (*prefix, "[]"), seen)

    walk(components[name], (), frozenset({name}))
    return paths
