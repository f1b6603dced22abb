"""``sandbox serve``: the Fivetran API sandbox on the command line (stdlib ``argparse``).

This is the one parser of the ``serve`` options. ``python -m batch_provisioner.sandbox serve
...`` calls :func:`main` directly; ``batch-provisioner sandbox serve ...`` (the typer group
in :mod:`batch_provisioner.cli.sandbox`) forwards its raw arguments here, so both spell the
options, defaults and messages the same way. :func:`main` returns an exit code and never
raises ``SystemExit``: 0 after a clean stop (Ctrl-C / SIGTERM) or ``--help``, 2 on a usage
error (bad option or value, with the usage line and one ``error:`` line on stderr) or when
the address cannot be bound.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from batch_provisioner.sandbox.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_CREATE_LIMIT,
    DEFAULT_HOST,
    DEFAULT_PROFILE,
    PROFILES,
    SandboxConfig,
    parse_group_options,
)
from batch_provisioner.sandbox.faults import parse_fault_spec
from batch_provisioner.sandbox.seed import read_seed_file
from batch_provisioner.sandbox.server import API_KEY_ENV, API_SECRET_ENV, serve as serve_forever

PROG = "python -m batch_provisioner.sandbox"
DESCRIPTION = "The Fivetran API sandbox: an emulator of Fivetran's REST API for demos and tests."
SERVE_HELP = "Serve the sandbox until Ctrl-C / SIGTERM; prints its URL once it accepts connections."
USAGE_ERROR = 2


class _Stop(Exception):
    """Raised instead of ``SystemExit`` by the parsers (``--help``, usage errors)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose exits are returned by :func:`main`, not raised at the caller."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _Stop(status)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``: their names, defaults and meanings are the CLI contract."""
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, metavar="HOST",
        help=f"Interface to listen on (default: {DEFAULT_HOST}).")
    add("--port", type=int, default=0, metavar="N",
        help="TCP port; 0 picks a free one (default: 0).")
    add("--profile", choices=list(PROFILES), default=DEFAULT_PROFILE,
        help="Rate limits: 'fast' (Fivetran's counts, 60x shorter windows), 'fivetran' (the "
             f"documented numbers) or 'unlimited' (none) (default: {DEFAULT_PROFILE}).")
    add("--group", action="append", default=[], metavar="ID[=NAME]",
        help="Seed a group, as ID or ID=NAME (repeatable; default: three demo groups).")
    add("--faults", default="", metavar="SPEC",
        help="Fault spec: NAME=PROBABILITY,... with NAME in 429, 429_date, 500, 502, 503, "
             "reset, drop_after_commit, slow; plus latency_ms=LO..HI (every request), "
             "create_latency_ms=LO..HI (creates only) and slow_ms=N.")
    add("--seed", type=int, default=0, metavar="N",
        help="Seed of fault draws and generated ids (default: 0).")
    add("--api-key", default=None, metavar="K",
        help=f"Expected API key (env {API_KEY_ENV}; default: {DEFAULT_API_KEY}).")
    add("--api-secret", default=None, metavar="S",
        help=f"Expected API secret (env {API_SECRET_ENV}).")
    add("--state", type=Path, default=None, metavar="FILE",
        help="SQLite file keeping groups and connections across restarts.")
    add("--create-limit", type=int, default=DEFAULT_CREATE_LIMIT, metavar="N",
        help="Connection creates per (scaled) minute; 0 switches the budget off "
             f"(default: {DEFAULT_CREATE_LIMIT}).")
    add("--slow-ms", type=int, default=None, metavar="N",
        help="How long a 'slow' answer is held back (overrides the spec).")
    add("--connections", type=Path, default=None, metavar="FILE",
        help="Seed connections that exist already (as if made by hand), from a JSON or CSV "
             "file; kept in --state like created ones (a seed already there is skipped).")


def _parsers(prog: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = _Parser(prog=prog, description=DESCRIPTION, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                     required=True)
    serve = commands.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP,
                                allow_abbrev=False)
    add_serve_options(serve)
    return parser, serve


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The whole sandbox command line: ``PROG serve [options]``."""
    return _parsers(prog)[0]


def serve_option_names() -> list[str]:
    """Every long option of ``serve`` (``--help`` excluded), e.g. for documentation checks."""
    parser = _Parser(add_help=False)
    add_serve_options(parser)
    return [opt for action in parser._actions for opt in action.option_strings
            if opt.startswith("--")]


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SandboxConfig:
    """The config the parsed options describe; an invalid combination is a usage error."""
    try:
        parse_fault_spec(args.faults)
        seeds = read_seed_file(args.connections) if args.connections is not None else ()
        return SandboxConfig(
            host=args.host,
            port=args.port,
            profile=args.profile,
            groups=parse_group_options(args.group),
            faults=args.faults,
            seed=args.seed,
            # An empty environment variable counts as unset, as it always has.
            api_key=args.api_key
            if args.api_key is not None
            else os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY,
            api_secret=args.api_secret
            if args.api_secret is not None
            else os.environ.get(API_SECRET_ENV) or DEFAULT_API_SECRET,
            state_path=args.state,
            create_limit=args.create_limit,
            slow_ms=args.slow_ms,
            connections=seeds,
        )
    except ValueError as exc:
        parser.error(str(exc))


def _serve(config: SandboxConfig) -> int:
    def announce(url: str) -> None:
        print(f"Fivetran sandbox listening on {url} (profile {config.profile})", flush=True)

    try:
        serve_forever(config, announce=announce)
    except ValueError as exc:  # a seed connection the sandbox refuses (its group, its schema)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return USAGE_ERROR
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc}",
              file=sys.stderr, flush=True)
        return USAGE_ERROR
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run ``PROG serve [options]`` (``argv`` without the program name); return the exit code."""
    parser, serve_parser = _parsers(prog)
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if not arguments:
            parser.print_help(sys.stderr)
            return USAGE_ERROR
        args, extra = parser.parse_known_args(arguments)
        if extra:  # only ``serve`` gets this far: name it in the usage line
            serve_parser.error(f"unrecognized arguments: {' '.join(extra)}")
        config = _config(serve_parser, args)
    except _Stop as stop:
        return stop.status
    return _serve(config)
