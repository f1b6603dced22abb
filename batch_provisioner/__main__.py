"""``python -m batch_provisioner`` runs the same CLI as the console script."""

from __future__ import annotations

from batch_provisioner.cli import main

if __name__ == "__main__":
    main()
