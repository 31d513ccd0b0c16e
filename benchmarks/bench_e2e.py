"""End-to-end benchmark: images/s and GFLOPs of timm DeiTs, unpruned and pruned (paper Table 3).

A thin script around :func:`renyi_prune.bench.e2e.main` (the same as ``renyi-prune bench e2e`` and
``python -m renyi_prune.bench.e2e``); see benchmarks/README.md.

Outputs as the command's: ``./bench-results/<device-slug>/e2e[_<px>px][_compile].csv`` in the current
directory, or ``--out``; ``benchmarks/run_gpu.sh`` passes ``--out benchmarks/results/<device-slug>/...`` to
commit GPU results. Installed users run ``renyi-prune bench e2e`` with the same options.

Usage::

    python benchmarks/bench_e2e.py --smoke          # CPU, seconds: deit_tiny at 64 px, batch 2, temp dir
    python benchmarks/bench_e2e.py --device cpu     # CPU: DeiT-S, batch 32, r = 0.7 0.5; estimate first
    python benchmarks/bench_e2e.py                  # GPU: DeiT-Ti/S/B, 224 px, batch 256, bf16 -> e2e.csv
    python benchmarks/bench_e2e.py --compile --models deit_small_patch16_224 --keep-rates 0.7 0.5
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

    from renyi_prune.bench.e2e import main

    sys.exit(main())
