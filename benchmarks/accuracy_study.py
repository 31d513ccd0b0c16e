"""Accuracy study: token-pruning criteria on real data (Fashion-MNIST), the paper's protocol scaled down.

A thin script around :func:`renyi_prune.studies.accuracy.main` (see that package's docstring for the
protocol); it writes ``runs.csv``, ``summary.csv``, ``results.md``, ``accuracy_vs_gflops.png``,
``config.json`` and ``environment.json`` to ``./bench-results/accuracy/<config-name>/`` in the current
directory, or ``--out DIR``. The committed studies under ``benchmarks/results/accuracy/`` (from which
``readme_tables.py`` builds the README) are replaced only on purpose, with an explicit ``--out``.

Usage::

    python benchmarks/accuracy_study.py --smoke                 # seconds, tiny model, writes to a temp dir
    python benchmarks/accuracy_study.py --config cpu-vit12-d64  # CPU: minutes (2 cores), see its results.md
    python benchmarks/accuracy_study.py --config gpu-vit12-d192 # one GPU, bf16, full data, more epochs
    python benchmarks/accuracy_study.py --config cpu-vit12-d64 --out benchmarks/results/accuracy/cpu-vit12-d64
    python benchmarks/accuracy_study.py --rerender benchmarks/results/accuracy/cpu-vit12-d64  # report only

On CPU keep ``TRITON_INTERPRET`` unset (the eager attention path); the script sets
``OMP_WAIT_POLICY=PASSIVE`` (unless set): spinning OpenMP workers slow a shared small machine many-fold.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first torch import

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from renyi_prune.studies.accuracy import CONFIGS, main  # noqa: E402

__all__ = ["CONFIGS", "main"]

if __name__ == "__main__":
    sys.exit(main())
