import sys

from carbonlake_tools.bench.cli import main

sys.exit(main())
