"""``python -m caesura.server`` = ``caesura serve``."""

from __future__ import annotations

import sys

from caesura.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
