#!/usr/bin/env python3
"""Run the README's library example against an *installed* batch_provisioner.

    <venv>/bin/python -P .ci/readme_example.py [--readme README.md]

Takes the first ```python fenced block under the heading ``## Using it from Python`` in
README.md and runs it as ``__main__``, with tracebacks pointing at README.md's own lines.
Before that it prints which file ``batch_provisioner`` was imported from and fails when
that file is inside this repository: run it with ``python -P`` (or ``PYTHONSAFEPATH=1``)
and without ``PYTHONPATH`` from a venv where the wheel is installed, so the source tree is
not importable. Exit 1 when the section or its block is missing, or the package came from
the source tree; otherwise the example's own exit status.

Only the standard library is used: this runs in a freshly made venv.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Using it from Python"
_HEADING = re.compile(r"^##\s+Using it from Python\s*$")
_SECTION_END = re.compile(r"^#{1,2}\s")  # the next heading of the same or a higher level
_FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*python\b.*$")


class ExampleError(Exception):
    """The README does not hold a runnable example where it should."""


def extract(text: str, source: str = "README.md") -> tuple[str, int]:
    """The first ```python block under ``## Using it from Python``: (code, its first line no.).

    Raises ExampleError with a message for the reader when the section or block is missing.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADING.match(line.rstrip())), None)
    if start is None:
        raise ExampleError(
            f"{source} has no {HEADING!r} section: write it, with the library example as its "
            "first ```python block"
        )
    in_fence: str | None = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if in_fence is None:
            if _SECTION_END.match(line):
                break
            opened = _FENCE_OPEN.match(line.strip())
            if opened:
                fence = opened.group("fence")
                for j in range(i + 1, len(lines)):
                    if lines[j].strip() == fence:
                        return "\n".join(lines[i + 1 : j]) + "\n", i + 2
                raise ExampleError(f"{source}:{i + 1}: the ```python block is never closed")
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = line.strip()[:3]
        elif line.strip().startswith(in_fence):  # a non-python block (e.g. ```console) ends
            in_fence = None
    raise ExampleError(f"{source}:{start + 1}: the {HEADING!r} section has no ```python block")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    readme: Path = args.readme

    try:
        code, first_line = extract(readme.read_text(encoding="utf-8"), readme.name)
    except (ExampleError, OSError) as exc:
        print(f"readme_example: error: {exc}", file=sys.stderr, flush=True)
        return 1

    package = importlib.import_module("batch_provisioner")
    where = Path(package.__file__ or "<unknown>")
    print(f"readme_example: batch_provisioner {getattr(package, '__version__', '?')} "
          f"imported from {where}", flush=True)
    if package.__file__ is None or _inside(where, ROOT):
        print(f"readme_example: error: batch_provisioner came from the source tree ({ROOT}), "
              "not from an installed wheel; run with `python -P` and no PYTHONPATH",
              file=sys.stderr, flush=True)
        return 1

    print(f"readme_example: running {readme.name} lines {first_line}.."
          f"{first_line + code.count(chr(10)) - 1}", flush=True)
    # Pad with blank lines so that a traceback names README.md's own line numbers.
    compiled = compile("\n" * (first_line - 1) + code, str(readme.resolve()), "exec")
    namespace = {"__name__": "__main__", "__file__": str(readme.resolve())}
    exec(compiled, namespace)  # noqa: S102 - running the documented example is the point
    print("readme_example: the example ran to the end", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
