"""Benchmarks of the fused kernel and of pruned models, reachable as ``renyi-prune bench``.

* :mod:`renyi_prune.bench.kernel`: time of the fused attention + Rényi entropy op against PyTorch's
  ``scaled_dot_product_attention`` and the eager reference, forward or forward + backward.
* :mod:`renyi_prune.bench.e2e`: end-to-end images/s and GFLOPs of timm DeiTs, unpruned and pruned
  with EViT, EViT + token fusion, and Rényi entropy (fused Triton kernel, or the paper's eager code)
  ("Rényi Attention Entropy for Patch Pruning", arXiv 2604.03803, Table 3).
* :mod:`renyi_prune.bench.static`: the static kernel report, no GPU needed: every kernel × autotune tile ×
  entropy mode × arch (sm_90, sm_80, sm_86) compiled as a launch compiles it; registers, spills, shared
  memory, main-loop instruction count and mix, ptxas warnings, and the issue-12 gates.

Each module has ``main(argv=None) -> int`` (and ``build_parser``/``add_arguments``/``run``); in a source
checkout ``benchmarks/bench_kernel.py``, ``benchmarks/bench_e2e.py`` and ``benchmarks/static_report.py``
are thin scripts calling them. Outputs (CSV, PNG) go under the current directory by default:
``./bench-results/<device-slug>/`` (the static report: ``./bench-results/static/``), or a temp folder
with ``--smoke`` (the static report: ``--quick``), or where ``--out`` says. Nothing is written into the
package or its checkout unless ``--out`` says so (``benchmarks/run_gpu.sh`` passes ``--out
benchmarks/results/<device-slug>/...`` to commit GPU results). On the CPU the kernel and end-to-end
benchmarks take CPU-sized defaults and print an estimate of their run time first. See
``benchmarks/README.md``.

Importing this package imports none of the submodules.
"""

__all__ = ["e2e", "kernel", "static"]
