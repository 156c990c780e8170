"""spark-submit entry point: `carbonlake run` (see `--help`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from carbon_core.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the session and run `run` through the library."""
    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["run", *args])


if __name__ == "__main__":
    sys.exit(main())
