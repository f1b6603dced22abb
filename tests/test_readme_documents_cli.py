"""Every command and every option of the CLI is documented in the README (sqlite-utils habit),
and the README's option table and each command's ``--help`` agree: the same options for the
same commands, the same placeholder, and a description in the same words."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from batch_provisioner import cli
from batch_provisioner.errors import ExitCode
from batch_provisioner.sandbox.cli import add_serve_options, serve_option_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
ROOT = "batch-provisioner"  # the table's name for the root command (``--version``)
# ``[...]`` in the README's usage lines: the input options every sheet command takes.
INPUT_OPTIONS = ("--defaults", "--custom-reports", "--sheet", "--secrets-dir")
# Words too common to show that two descriptions say the same thing.
_COMMON = frozenset({"with", "from", "that", "this", "they", "their", "when", "than", "else",
                     "default", "each", "every", "into", "what", "them", "once", "only"})


@dataclass(frozen=True)
class Option:
    """One option of one command as its ``--help`` shows it."""

    command: str
    name: str
    metavar: str | None  # None for a flag; choices as ``a|b|c``
    help: str


def _commands() -> list[tuple[str, Any]]:
    cli._register_subcommands()
    root = typer.main.get_command(cli.app)
    found: list[tuple[str, Any]] = [(ROOT, root)]

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", root)
    return found


COMMANDS = _commands()
LEAVES = [(name, command) for name, command in COMMANDS if name != ROOT]


def _typer_metavar(param: Any) -> str | None:
    if getattr(param, "is_flag", False):
        return None
    if param.metavar:
        return str(param.metavar)
    described = param.type_descriptor
    if described.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in described.choices or ())
    return str(param.display_type(None))  # no metavar: typer's <type>, which no row has


def _serve_options() -> list[Option]:
    parser = argparse.ArgumentParser(add_help=False)
    add_serve_options(parser)
    return [Option("sandbox serve", name, "|".join(action.choices) if action.choices
                   else action.metavar, action.help or "")
            for action in parser._actions for name in action.option_strings
            if name.startswith("--")]


def _help_options(name: str, command: Any) -> list[Option]:
    if name == "sandbox serve":  # forwards its raw arguments to the sandbox's argparse parser
        return _serve_options()
    return [Option(name, opt, _typer_metavar(param), param.help or "")
            for param in command.params
            for opt in getattr(param, "opts", []) if opt.startswith("--") and opt != "--help"]


HELP = [option for name, command in COMMANDS for option in _help_options(name, command)]


def _table() -> list[Option]:
    """The rows of the README's option table, one per (option, command)."""
    section = README.split("### Options", 1)[1].split("\n## ", 1)[0]
    rows: list[Option] = []
    for line in section.splitlines():
        if not line.startswith("| `-"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        spelled, commands, what = cells
        first = spelled.split("`")[1].replace("\\|", "|").split(" ", 1)
        for command in (c.strip() for c in commands.split(",")):
            rows.append(Option(command, first[0], first[1] if len(first) > 1 else None,
                               what.replace("\\|", "|")))
    return rows


TABLE = _table()


def test_the_walk_finds_the_commands() -> None:
    names = {name for name, _ in COMMANDS}
    assert {ROOT, "validate", "render", "apply", "template", "sandbox serve"} <= names


def test_sandbox_serve_options_come_from_its_parser() -> None:
    serve = dict(COMMANDS)["sandbox serve"]
    assert [p for p in serve.params if getattr(p, "opts", None)] == []  # one parser, not two
    assert {"--host", "--port", "--profile", "--group", "--api-key"} <= set(serve_option_names())
    assert [o.name for o in _serve_options()] == serve_option_names()


@pytest.mark.parametrize(("name", "command"), LEAVES, ids=[n for n, _ in LEAVES])
def test_every_option_is_in_the_readme(name: str, command: Any) -> None:
    assert f"batch-provisioner {name}" in README, name
    missing = [o.name for o in _help_options(name, command) if o.name not in README]
    assert missing == [], f"{name}: undocumented {missing}"


def test_the_option_table_lists_exactly_the_options_of_each_command() -> None:
    """Both ways: every option a ``--help`` shows has its row for that command, and every
    row names an option the command has."""
    shown = {(o.command, o.name) for o in HELP}
    documented = {(o.command, o.name) for o in TABLE}
    assert sorted(shown - documented) == [], "options missing from the README's table"
    assert sorted(documented - shown) == [], "README table rows for options that do not exist"
    assert len(documented) == len(TABLE), "an option listed twice for one command"


def test_the_table_and_the_help_use_the_same_placeholder() -> None:
    table = {(o.command, o.name): o.metavar for o in TABLE}
    differ = [(o.command, o.name, o.metavar, table.get((o.command, o.name))) for o in HELP
              if set((o.metavar or "").split("|")) != set((table.get((o.command, o.name))
                                                           or "").split("|"))]
    assert differ == []


def _words(text: str, option: str) -> set[str]:
    own = set(option.strip("-").split("-"))
    return {w for w in re.findall(r"[a-z][a-z0-9_']{3,}", text.lower())
            if w not in _COMMON and w not in own}


def test_the_table_and_the_help_describe_each_option_in_the_same_words() -> None:
    """The README's description keeps most of the ``--help`` text's own words (it may add
    some): a rewrite of one without the other shows up here."""
    table = {(o.command, o.name): o.help for o in TABLE}
    apart = []
    for option in HELP:
        said = _words(option.help, option.name)
        kept = said & _words(table[(option.command, option.name)], option.name)
        if not said or len(kept) < 0.75 * len(said):
            apart.append((option.command, option.name, sorted(said - kept)))
    assert apart == []


def test_every_option_has_help_text() -> None:
    assert [(o.command, o.name) for o in HELP if not o.help.strip()] == []


def _usage_lines() -> dict[str, str]:
    """The README's usage block: command -> its options' text (continuation lines joined)."""
    block = README.split("## Commands\n\n```\n", 1)[1].split("```", 1)[0]
    lines: dict[str, str] = {}
    current = ""
    for line in block.splitlines():
        if line.startswith(ROOT + " "):
            words = line.removeprefix(ROOT + " ").split()
            name = [w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w)]
            current = " ".join(name) or ROOT
            lines[current] = line
        elif line.startswith(" ") and current:
            lines[current] += " " + line.strip()
    return lines


def test_the_usage_block_names_every_option_of_each_command_and_no_other() -> None:
    usage = _usage_lines()
    for name, command in COMMANDS:
        line = usage[name]
        written = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
        if "[...]" in line:
            written |= set(INPUT_OPTIONS)
        options = {o.name for o in _help_options(name, command)}
        assert written == options, name


@pytest.mark.parametrize(("name", "_command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_shows_no_bool_type_and_no_braced_arguments(name: str, _command: Any) -> None:
    if name == "sandbox serve":
        return  # argparse's own help (tested with the sandbox)
    words = [] if name == ROOT else name.split()
    shown = CliRunner().invoke(cli.app, [*words, "--help"], prog_name=ROOT,
                               env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    assert "<bool>" not in shown.output
    assert not re.search(r"\{[a-z_]+\}", shown.output), shown.output
    usage = next(line for line in shown.output.splitlines() if "Usage:" in line)
    if name in ("validate", "render", "plan", "apply"):
        assert usage.split("[OPTIONS]")[1].split() == ["SHEET"]
    if name in ("status", "connect-cards", "rollback"):
        assert usage.split("[OPTIONS]")[1].split() == ["RUN_ID"]


def test_every_exit_code_name_in_the_readme_table_is_the_exit_codes_own() -> None:
    table = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    named = dict(re.findall(r"^\| (\d+) \| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    assert named == {str(int(code)): code.name.lower() for code in ExitCode}
