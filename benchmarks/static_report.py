"""Static kernel report: registers, spills, shared memory, main-loop instructions and ptxas warnings of
every kernel × autotune tile × entropy mode × arch (sm_90, sm_80, sm_86), compiled on the CPU.

A thin script around :func:`renyi_prune.bench.static.main` (the same as ``renyi-prune bench static`` and
``python -m renyi_prune.bench.static``); see benchmarks/README.md. No GPU is needed: the kernels are
compiled with Triton's bundled ptxas, whatever TRITON_INTERPRET says (the compiles run in worker
processes without it).

Usage::

    python benchmarks/static_report.py          # all -> ./bench-results/static/triton-<version>.csv, .md
    python benchmarks/static_report.py --out benchmarks/results/static  # the committed report
    python benchmarks/static_report.py --quick  # the gates' compiles only (sm_90), into the temp dir
    python benchmarks/static_report.py --arch sm_90 --kernels fwd dkdv --out /tmp/static
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

    from renyi_prune.bench.static import main

    sys.exit(main())
