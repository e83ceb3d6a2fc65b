"""``python -m benchmarks``: see :mod:`benchmarks` and ``python -m benchmarks --help``."""

import os
import sys

# before torch loads, as `kensa` does: OpenMP threads that busy-wait slow a forward pass
# many times over when another process holds a core (benchmarks/HISTORY.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.cli import main

sys.exit(main())
