"""Static kernel report: what the compiler makes of every kernel, without a GPU.

Compiles each Triton kernel of :mod:`renyi_prune.kernels` (forward; backward dk/dv, dq and its δ
preprocess; the column-norm pass) for every autotune tile, entropy mode, dtype and GPU architecture
(sm_90, sm_80, sm_86) with Triton's own compiler and bundled ``ptxas``/``cuobjdump``, and writes one CSV
row per compile: registers, spill bytes, shared memory, ptxas warnings, and the instructions of the main
loop (count and mix). Everything is a compile-time fact, not a timing; a CPU-only machine runs it.

**What is compiled is what a launch compiles.** A kernel's code depends on how the JIT specializes its
arguments at launch (an integer equal to 1 becomes a constant, one divisible by 16 and a 16-byte-aligned
pointer get a ``tt.divisibility`` attribute; that decides vectorized loads and software pipelining). So
the report does not declare a signature by hand: in a worker process it makes Triton's driver report the
target GPU (a stand-in driver, no device touched), calls the package's own launchers
(:func:`~renyi_prune.kernels.attention_entropy_fwd`, ``attention_entropy_bwd``,
``attention_column_power_sum``) on CPU stand-in tensors laid out as timm lays them out (q, k, v =
``qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``, outputs and dO in (B, N, H, D) memory order;
DeiT-S: N = 197, H = 6, D = 64), each autotuner held to one tile, and catches each launch in Triton's
``knobs.runtime.jit_cache_hook`` just before it would compile. The hook receives the JIT's
specialization of the launch (signature, constants, attributes, options), and
``JITFunction.preload`` compiles exactly that (:mod:`.specialize`). Mode ``none`` (``MODE = ENT_NONE``: no
entropy work, the baseline; the op never launches it) is the Shannon launch with that one constant changed.

**The main loop** is read from the SASS (``cuobjdump -sass``): of the backward branches (``BRA`` to a
lower address), the one whose range holds the most MMA instructions (then the longest); its
instructions (``NOP`` padding excluded) are one iteration of the key-tile loop (forward, dq) or the
query-tile loop (dk/dv, column norms), as each warp executes it when no branch inside is taken. Opcodes
are classed by :func:`classify_opcode` (:mod:`.sass`).

**Extra MUFU per attention element** of a mode = (MUFU instructions in its loop − those in the loop of
mode ``none``, same kernel, tile, arch and dtype) × 32 lanes × num_warps / (BLOCK_M × BLOCK_N): the
special-function operations (exp2, log2, rcp, ...) an entropy mode adds per element of the BLOCK_M ×
BLOCK_N tile that one loop iteration handles (0 when the entropy reuses p = 2^x).

**Gates** (issue 12; sm_90, bf16, D = 64; :data:`GATES`): per mode the *best config* is the tile with the
fewest loop instructions per attention element (loop_instructions × num_warps / (BLOCK_M × BLOCK_N))
among those without spills; a mode's loop is compared with mode ``none``'s per attention element, each
at its best config. :func:`evaluate_gates` judges them (:mod:`.gates`); the Markdown summary lists them.

The forward loop of Triton's fused-attention tutorial is compiled for the same tiles as a reference
(kernel ``tutorial_fwd``; :mod:`.tutorial`, restated from triton-lang/triton,
``python/tutorials/06-fused-attention.py``, MIT license).

Modules, in the order a report runs: :mod:`.cases` (kernels, archs, orders, :class:`Case`, the CSV
columns), :mod:`.tutorial` (the reference kernel), :mod:`.specialize` (stand-in GPU, launches caught at
the JIT), :mod:`.sass` (SASS and ptxas log parsing), :mod:`.compile` (worker processes, rows, derived
columns), :mod:`.gates`, :mod:`.report` (Markdown) and :mod:`.cli` (options, :func:`run`, :func:`main`).

Usage (``renyi-prune bench static`` runs :func:`run`; ``python -m renyi_prune.bench.static`` and
``benchmarks/static_report.py`` call :func:`main`)::

    renyi-prune bench static           # all kernels, sm_90 sm_80 sm_86, bf16 -> ./bench-results/static/
    renyi-prune bench static --quick   # only what the gates need (sm_90), into a temp dir
    renyi-prune bench static --arch sm_90 --dtype bf16 fp16 --kernels fwd --out /tmp/static
"""

from .cases import ARCHS, CSV_COLUMNS, KERNELS, Case, enumerate_cases, gate_cases
from .cli import add_arguments, build_parser, main, run
from .compile import compile_cases
from .gates import GATES, Gate, evaluate_gates
from .sass import CLASSES, LoopStats, analyze_sass, classify_opcode, parse_ptxas_log, wide_loads

__all__ = [
    "ARCHS",
    "CLASSES",
    "CSV_COLUMNS",
    "GATES",
    "KERNELS",
    "Case",
    "Gate",
    "LoopStats",
    "add_arguments",
    "analyze_sass",
    "build_parser",
    "classify_opcode",
    "compile_cases",
    "enumerate_cases",
    "evaluate_gates",
    "gate_cases",
    "main",
    "parse_ptxas_log",
    "run",
    "wide_loads",
]
