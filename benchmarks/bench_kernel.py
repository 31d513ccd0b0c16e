"""Kernel benchmark: fused attention + Rényi entropy vs PyTorch SDPA vs the eager reference.

A thin script around :func:`renyi_prune.bench.kernel.main` (the same as ``renyi-prune bench kernel``
and ``python -m renyi_prune.bench.kernel``); see benchmarks/README.md. One convenience it adds: with
``--smoke`` on a machine without CUDA it sets ``TRITON_INTERPRET=1`` (unless already set) before
``renyi_prune`` is imported, so that the smoke run exercises the Triton kernel on Triton's CPU
interpreter; the variable has no effect once the kernels are imported.

Outputs as the command's: ``./bench-results/<device-slug>/kernel_<mode>.csv`` in the current directory,
or ``--out``; ``benchmarks/run_gpu.sh`` passes ``--out benchmarks/results/<device-slug>/...`` to commit
GPU results. Installed users run ``renyi-prune bench kernel`` with the same options.

Usage::

    python benchmarks/bench_kernel.py --smoke                  # CPU: tiny shapes, Triton interpreter
    python benchmarks/bench_kernel.py --smoke --mode fwdbwd
    python benchmarks/bench_kernel.py                          # GPU: DeiT-S shapes, bf16 -> kernel_fwd.csv
    python benchmarks/bench_kernel.py --mode fwdbwd            # -> kernel_fwdbwd.csv
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _wants_interpreter(argv: list[str]) -> bool:
    """``--smoke`` on CPU (no CUDA, or ``--device cpu``) with ``TRITON_INTERPRET`` unset."""
    if "--smoke" not in argv or "TRITON_INTERPRET" in os.environ:
        return False
    if "--device=cpu" in argv or any(argv[i : i + 2] == ["--device", "cpu"] for i in range(len(argv))):
        return True
    import torch  # torch alone does not import renyi_prune

    return not torch.cuda.is_available()


if __name__ == "__main__":
    if _wants_interpreter(sys.argv[1:]):
        os.environ["TRITON_INTERPRET"] = "1"
        print("[bench] --smoke without CUDA: set TRITON_INTERPRET=1", file=sys.stderr)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

    from renyi_prune.bench.kernel import main

    sys.exit(main())
