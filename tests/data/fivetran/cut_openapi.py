"""Cut the test copy of Fivetran's OpenAPI spec: ``python tests/data/fivetran/cut_openapi.py``.

Source: ``shared/reference/fivetran-openapi.json`` beside the repository, Fivetran's official
OpenAPI spec (several MB, every connector). The tests only need the part the job and the
sandbox speak, so this script writes ``openapi_subset.json`` next to itself with:

* the operations of ``OPERATIONS`` (the endpoints ``batch_provisioner.api.client`` calls and
  ``batch_provisioner.sandbox`` answers), each copied whole;
* every component they reference through ``$ref``, transitively, plus the tiktok_ads
  schemas of ``ROOT_SCHEMAS`` (the tests validate payloads and answers against them);
* the spec's ``openapi``, ``info``, ``servers``, ``security``, ``tags`` (its ``updated`` and
  ``hash`` say which release this was cut from) and ``securitySchemes``.

Nothing inside a kept schema is changed except ``discriminator.mapping``, which in the source
lists every connector; it keeps only the entries whose target schema is kept, so the subset
has no dangling reference. The normalisation of the spec's quirks stays in
``tests/openapi.py``.

It also copies ``shared/seed/tiktok_ads_api_configuration.txt`` (the seed document: the
create request the job must reproduce) next to itself, byte for byte.

The output is deterministic (sorted keys, indent 1, trailing newline). ``--check`` writes
nothing and exits 1 when a committed file differs from what would be written; without
``../shared`` it exits 0 with a note (a clone without the reference material uses the
committed copies as they are). Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared"
SPEC_SOURCE = SHARED / "reference" / "fivetran-openapi.json"
SEED_SOURCE = SHARED / "seed" / "tiktok_ads_api_configuration.txt"
SUBSET = HERE / "openapi_subset.json"
SEED = HERE / "tiktok_ads_api_configuration.txt"

#: (path, method) of every operation the job calls or the sandbox serves.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("/v1/connections", "get"),
    ("/v1/connections", "post"),
    ("/v1/connections/{connectionId}", "get"),
    ("/v1/connections/{connectionId}", "patch"),
    ("/v1/connections/{connectionId}", "delete"),
    ("/v1/connections/{connectionId}/connect-card", "post"),
    ("/v1/groups", "get"),
    ("/v1/groups/{groupId}", "get"),
    ("/v1/groups/{groupId}/connections", "get"),
)
#: Component schemas kept even if no kept operation names them.
ROOT_SCHEMAS = (
    "tiktok_ads_NewConnectorRequestV1",
    "tiktok_ads_ConnectorResponseV1",
    "tiktok_ads_config_V1",
    "tiktok_ads_auth_V1",
)
TOP_LEVEL = ("openapi", "info", "servers", "security", "tags")
REF_PREFIX = "#/components/"


def _target(ref: str) -> tuple[str, str]:
    """``("schemas", "X")`` for ``#/components/schemas/X``."""
    if not ref.startswith(REF_PREFIX):
        raise ValueError(f"unsupported reference {ref!r}")
    kind, _, name = ref[len(REF_PREFIX):].partition("/")
    return kind, name


def _refs(node: Any) -> set[tuple[str, str]]:
    """Every ``#/components/<kind>/<name>`` that ``node`` references, as ``(kind, name)``."""
    found: set[tuple[str, str]] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            for key, value in current.items():
                if key == "$ref" and isinstance(value, str):
                    found.add(_target(value))
                else:
                    stack.append(value)
    return found


def _trim_mappings(node: Any, kept: set[tuple[str, str]]) -> Any:
    """A copy of ``node`` whose discriminator mappings point only at kept components."""
    if isinstance(node, list):
        return [_trim_mappings(item, kept) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _trim_mappings(value, kept) for key, value in node.items()}
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
        discriminator["mapping"] = {
            key: target for key, target in discriminator["mapping"].items()
            if isinstance(target, str) and _target(target) in kept
        }
    return out


def cut(spec: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``spec`` described in the module docstring."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method in OPERATIONS:
        item = spec["paths"][path]
        kept_item = paths.setdefault(path, {
            key: value for key, value in item.items()
            if key in ("parameters", "servers", "summary", "description")
        })
        kept_item[method] = item[method]
    components = spec["components"]
    needed: set[tuple[str, str]] = set()
    todo = sorted(_refs(paths) | {("schemas", name) for name in ROOT_SCHEMAS})
    while todo:
        kind, name = todo.pop()
        if (kind, name) in needed:
            continue
        needed.add((kind, name))
        todo.extend(_refs(components[kind][name]))
    kept: dict[str, dict[str, Any]] = {}
    for kind, name in needed:
        kept.setdefault(kind, {})[name] = _trim_mappings(components[kind][name], needed)
    if "securitySchemes" in components:
        kept["securitySchemes"] = components["securitySchemes"]
    subset = {key: spec[key] for key in TOP_LEVEL if key in spec}
    subset["paths"] = paths
    subset["components"] = kept
    return subset


def render(subset: dict[str, Any]) -> str:
    return json.dumps(subset, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    unknown = [arg for arg in argv if arg != "--check"]
    if unknown:
        print(f"usage: {Path(__file__).name} [--check]", file=sys.stderr)
        return 2
    if not SPEC_SOURCE.is_file() or not SEED_SOURCE.is_file():
        print(f"note: {SHARED} has no spec or seed; the committed copies are used as they are")
        return 0
    spec = json.loads(SPEC_SOURCE.read_text("utf-8"))
    wanted = {SUBSET: render(cut(spec)).encode("utf-8"), SEED: SEED_SOURCE.read_bytes()}
    if check:
        stale = [path for path, data in wanted.items()
                 if not path.is_file() or path.read_bytes() != data]
        for path in stale:
            print(f"{path.relative_to(REPO)} is out of date: run "
                  f"python {Path(__file__).relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    for path, data in wanted.items():
        path.write_bytes(data)
        print(f"wrote {path.relative_to(REPO)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
