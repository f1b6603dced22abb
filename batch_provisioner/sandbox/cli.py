"""``sandbox serve``: the Fivetran API sandbox on the command line.

The lead CLI mounts :data:`sandbox_app` with ``app.add_typer(sandbox_app, name="sandbox")``;
``python -m batch_provisioner.sandbox serve ...`` runs it standalone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from batch_provisioner.sandbox.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_CREATE_LIMIT,
    DEFAULT_HOST,
    DEFAULT_PROFILE,
    SandboxConfig,
    parse_group_options,
)
from batch_provisioner.sandbox.faults import parse_fault_spec
from batch_provisioner.sandbox.server import API_KEY_ENV, API_SECRET_ENV
from batch_provisioner.sandbox.server import serve as serve_forever

sandbox_app = typer.Typer(
    name="sandbox",
    help="The Fivetran API sandbox: an emulator of Fivetran's REST API for demos and tests.",
    no_args_is_help=True,
    add_completion=False,
)


@sandbox_app.callback()
def _sandbox() -> None:
    """The Fivetran API sandbox: an emulator of Fivetran's REST API for demos and tests."""


@sandbox_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 0,
    profile: Annotated[
        str,
        typer.Option(
            help="Rate limits: 'fast' (Fivetran's counts, 60x shorter windows), "
            "'fivetran' (the documented numbers) or 'unlimited' (none)."
        ),
    ] = DEFAULT_PROFILE,
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="Seed a group, as ID or ID=NAME (repeatable; default: three demo groups)."
        ),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault spec: NAME=PROBABILITY,... with NAME in 429, 429_date, 500, 502, 503, "
            "reset, drop_after_commit, slow; plus latency_ms=LO..HI and slow_ms=N."
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of fault draws and generated ids.")] = 0,
    api_key: Annotated[
        str, typer.Option(help="Expected API key.", envvar=API_KEY_ENV)
    ] = DEFAULT_API_KEY,
    api_secret: Annotated[
        str, typer.Option(help="Expected API secret.", envvar=API_SECRET_ENV, show_default=False)
    ] = DEFAULT_API_SECRET,
    state: Annotated[
        Path | None,
        typer.Option(help="SQLite file keeping groups and connections across restarts."),
    ] = None,
    create_limit: Annotated[
        int, typer.Option(help="Connection creates per (scaled) minute; 0 switches the budget off.")
    ] = DEFAULT_CREATE_LIMIT,
    slow_ms: Annotated[
        int | None, typer.Option(help="How long a 'slow' answer is held back (overrides the spec).")
    ] = None,
) -> None:
    """Serve the sandbox until Ctrl-C / SIGTERM; prints its URL once it accepts connections."""
    try:
        parse_fault_spec(faults)
        config = SandboxConfig(
            host=host,
            port=port,
            profile=profile,
            groups=parse_group_options(group or []),
            faults=faults,
            seed=seed,
            api_key=api_key,
            api_secret=api_secret,
            state_path=state,
            create_limit=create_limit,
            slow_ms=slow_ms,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    def announce(url: str) -> None:
        print(f"Fivetran sandbox listening on {url} (profile {config.profile})", flush=True)

    try:
        serve_forever(config, announce=announce)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(2) from None
