import sys

from carbon_core.bench.cli import main

sys.exit(main())
