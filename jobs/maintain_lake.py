"""spark-submit entry point: `carbonlake maintain` (see `--help`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from carbon_core.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the session and compact and vacuum the lake."""
    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["maintain", *args])


if __name__ == "__main__":
    sys.exit(main())
