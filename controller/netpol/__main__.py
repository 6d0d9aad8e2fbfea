"""Entry point of ``python -m controller.netpol``."""

from __future__ import annotations

import sys

from controller.netpol.cli import main

if __name__ == "__main__":
    sys.exit(main())
