"""``batch-provisioner sandbox serve``: the typer face of the sandbox's own argparse parser.

The options of ``serve`` are parsed in exactly one place, :mod:`batch_provisioner.sandbox.cli`
(stdlib ``argparse``, because the sandbox imports nothing from the job and no CLI framework).
This group only forwards the raw arguments there, ``--help`` included, and exits with the
code it returns (2 for a usage error). The lead CLI mounts :data:`sandbox_app` with
``app.add_typer(sandbox_app, name="sandbox")``.
"""

from __future__ import annotations

import typer

from batch_provisioner.cli.common import HelpGroup

PROG = "batch-provisioner sandbox"
# The short line shown by ``batch-provisioner sandbox --help``; ``serve --help`` prints the
# parser's own text. Kept here so that listing commands does not import the server.
SERVE_SUMMARY = (
    "Serve the sandbox until Ctrl-C / SIGTERM; prints its URL once it accepts connections."
)

sandbox_app = typer.Typer(
    name="sandbox",
    cls=HelpGroup,
    help="The Fivetran API sandbox: an emulator of Fivetran's REST API for demos and tests.",
    no_args_is_help=True,
    add_completion=False,
)


@sandbox_app.callback()
def _sandbox() -> None:
    """The Fivetran API sandbox: an emulator of Fivetran's REST API for demos and tests."""


@sandbox_app.command(
    help=SERVE_SUMMARY,
    add_help_option=False,  # --help goes to the sandbox's parser with everything else
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
)
def serve(ctx: typer.Context) -> None:
    from batch_provisioner.sandbox.cli import main

    raise typer.Exit(main(["serve", *ctx.args], prog=PROG))
