"""``python -m batch_provisioner.sandbox serve ...``."""

from __future__ import annotations

import sys

from batch_provisioner.sandbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
