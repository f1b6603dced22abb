"""Every command and every option of the CLI is documented in the README (sqlite-utils habit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main

from batch_provisioner import cli
from batch_provisioner.sandbox.cli import serve_option_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _commands() -> list[tuple[str, Any]]:
    cli._register_subcommands()
    root = typer.main.get_command(cli.app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", root)
    return found


COMMANDS = _commands()


def test_the_walk_finds_the_commands() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"validate", "render", "apply", "template", "sandbox serve"} <= names


def _options(name: str, command: Any) -> list[str]:
    if name == "sandbox serve":  # forwards its raw arguments to the sandbox's argparse parser
        return serve_option_names()
    return [opt for param in command.params
            for opt in getattr(param, "opts", []) if opt.startswith("--") and opt != "--help"]


def test_sandbox_serve_options_come_from_its_parser() -> None:
    serve = dict(COMMANDS)["sandbox serve"]
    assert [p for p in serve.params if getattr(p, "opts", None)] == []  # one parser, not two
    assert {"--host", "--port", "--profile", "--group", "--api-key"} <= set(serve_option_names())


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_is_in_the_readme(name: str, command: Any) -> None:
    assert f"batch-provisioner {name}" in README, name
    options = _options(name, command)
    missing = [opt for opt in options if opt not in README]
    assert missing == [], f"{name}: undocumented {missing}"
