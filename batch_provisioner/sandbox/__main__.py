"""``python -m batch_provisioner.sandbox serve ...``."""

from __future__ import annotations

from batch_provisioner.sandbox.cli import sandbox_app

if __name__ == "__main__":
    sandbox_app(prog_name="python -m batch_provisioner.sandbox")
