"""What the static report compiles: kernels, architectures, entropy orders, the cases (one compile each)
and the CSV columns of their rows.

A :class:`Case` is a kernel at one autotune tile, entropy mode, dtype and architecture; the tiles are
the ones the package's launchers declare (:func:`_tiles`), so the report follows the kernels' tile
lists. :func:`enumerate_cases` is the full report, :func:`gate_cases` the compiles the gates need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

#: ``--arch`` names and their compute capability.
ARCHS = {"sm_90": 90, "sm_80": 80, "sm_86": 86}
#: Largest shared memory one block may use (bytes): 227 KiB (H100/H200), 163 KiB (A100), 99 KiB (sm_86).
SMEM_LIMIT = {90: 227 * 1024, 80: 163 * 1024, 86: 99 * 1024}
#: Kernels of the report: the package's five and the tutorial's forward (reference).
KERNELS = ("fwd", "dkdv", "dq", "bwd_preprocess", "colnorm", "tutorial_fwd")
#: Stand-in sizes: DeiT-S at 224 px (N = 197 tokens, 6 heads). B enters no stride, hence no specialization.
SHAPE = {"B": 4, "N": 197, "H": 6}
#: Entropy orders of the forward (mode name, α); ``none`` is MODE = ENT_NONE; α = 0.5, 2 and 3 share the
#: direct mode (each with its own fast path), α = 0.9 is the series mode of orders near 1.
FWD_ORDERS = (("none", None), ("shannon", 1.0), ("min", math.inf), ("support", 0.0), ("renyi_direct", 0.5),
              ("renyi_log1p", 0.9), ("renyi_direct", 2.0), ("renyi_direct", 3.0))  # fmt: skip
#: Column-norm orders (mode name, order n).
COLNORM_ORDERS = (("colnorm_power", 2.0), ("colnorm_max", math.inf))
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
#: Columns of a report row (one compile), in CSV order: the case, what was measured, the stamp.
CSV_COLUMNS = [
    "kernel", "arch", "dtype", "mode", "alpha", "ent_grad", "BLOCK_M", "BLOCK_N", "num_warps", "num_stages",
    "regs", "spill_stores", "spill_loads", "shared_bytes", "fits_smem", "loop_instructions", "mma", "mufu",
    "fp", "int", "pred", "mem", "sync", "other", "loop_instr_per_element", "extra_mufu_per_element",
    "loop_vs_none", "loop_vs_tutorial", "async_copies_in_loop", "wide_loads", "ptxas_warnings",
    "warning_codes", "sass_matches_triton", "head_dim", "triton", "ptxas", "git_commit", "date", "error",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Case:
    """One compile of the report: a kernel at one tile, entropy mode, dtype and architecture.

    ``tile`` is (BLOCK_M, BLOCK_N, num_warps, num_stages), None for the δ preprocess (one fixed launch);
    ``alpha`` the order the op is launched with (None for mode ``none``); ``ent_grad`` 0/1 for the
    backward kernels (whether the entropy is differentiated), None otherwise.

    Example:
        >>> Case("fwd", "sm_90", "bf16", "shannon", 1.0, None, (128, 64, 4, 3)).arch_number
        90
    """

    kernel: str
    arch: str
    dtype: str
    mode: str
    alpha: float | None
    ent_grad: int | None
    tile: tuple[int, int, int, int] | None
    head_dim: int = 64

    @property
    def arch_number(self) -> int:
        """The compute capability, e.g. 90 for ``sm_90``."""
        return ARCHS[self.arch]


def _tiles(kernel: str, arch: str | None = None) -> list[tuple[int, int, int, int]]:
    """The autotune tiles of ``kernel`` on ``arch`` (e.g. ``"sm_90"``; None: the default list) as its
    launcher declares them (the tutorial: the forward's)."""
    configs = _tuner(kernel if kernel != "tutorial_fwd" else "fwd", arch).configs
    return [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in configs]


def _tuner(kernel: str, arch: str | None) -> Any:
    """The autotuner a launch of ``kernel`` goes through on ``arch`` (None: the default tile list)."""
    return _launcher(kernel).tuner(None if arch is None else ARCHS[arch])


def _launcher(kernel: str) -> Any:
    """The :class:`~renyi_prune.kernels._common.TiledKernel` that launches ``kernel``."""
    import importlib

    module, name = {
        "fwd": ("attention_entropy_fwd", "_fwd_launch"),
        "dkdv": ("attention_entropy_bwd", "_dkdv_launch"),
        "dq": ("attention_entropy_bwd", "_dq_launch"),
        "colnorm": ("attention_colnorm", "_colnorm_launch"),
    }[kernel]
    return getattr(importlib.import_module(f"renyi_prune.kernels.{module}"), name)


def _orders(kernel: str, ent_grad: int | None) -> Sequence[tuple[str, float | None]]:
    if kernel == "colnorm":
        return COLNORM_ORDERS
    if kernel == "tutorial_fwd" or ent_grad == 0:
        return (("none", None),)
    return FWD_ORDERS if kernel == "fwd" else FWD_ORDERS[1:]


def enumerate_cases(
    archs: Sequence[str] = tuple(ARCHS),
    dtypes: Sequence[str] = ("bf16",),
    kernels: Sequence[str] = KERNELS,
    head_dim: int = 64,
) -> list[Case]:
    """Every (kernel, tile, mode, ent_grad) of ``kernels`` for each of ``archs`` and ``dtypes``.

    Forward: its tiles × modes ``none``, Shannon, min, support, Rényi α = 0.5, 0.9, 2, 3. Backward dk/dv and
    dq: their tiles × (``none`` without entropy gradient, and every order with it). Column norms: tiles ×
    orders 2 and ∞. The δ preprocess: one launch. The tutorial's forward: the forward's tiles (head dims
    that are powers of two only).

    Example:
        >>> cases = enumerate_cases(["sm_90"], ["bf16"], ["fwd"])
        >>> len(cases), cases[0].mode, sorted({c.mode for c in cases})[:3]
        (48, 'none', ['min', 'none', 'renyi_direct'])
        >>> len(enumerate_cases())  # the full default report: 147 compiles on sm_90, 131 on sm_80 and sm_86
        409
        >>> [len(enumerate_cases([arch], kernels=["dkdv", "dq"])) for arch in ARCHS]  # per-arch tile lists
        [80, 64, 64]
    """
    cases = []
    for arch in archs:
        for dtype in dtypes:
            for kernel in kernels:
                if kernel == "tutorial_fwd" and head_dim & (head_dim - 1):
                    continue  # the tutorial's blocks span the head dim: powers of two only
                if kernel == "bwd_preprocess":
                    cases.append(Case(kernel, arch, dtype, "none", None, None, None, head_dim))
                    continue
                grads = (0, 1) if kernel in ("dkdv", "dq") else (None,)
                for tile in _tiles(kernel, arch):
                    for ent_grad in grads:
                        for mode, alpha in _orders(kernel, ent_grad):
                            cases.append(Case(kernel, arch, dtype, mode, alpha, ent_grad, tile, head_dim))
    return cases


#: The forward tile the gate tests compile: the best config of every mode in the committed report for
#: Triton 3.6.0 (the report's gates take each mode's best over all tiles; rerun it when tiles change).
GATE_TILE = (128, 128, 8, 2)


def gate_cases(tile: tuple[int, int, int, int] | None = None) -> list[Case]:
    """The compiles the gates need at one forward tile (``tile``, default :data:`GATE_TILE`, or the
    forward's first tile if that is no longer one of its tiles): sm_90, bf16, forward in mode ``none``,
    Shannon, min, Rényi α = 0.5, 2, 3, the tutorial's forward at the same tile, and dk/dv at its largest
    key tile (the one that spills) with and without the entropy gradient (the C7515 and spill gates).

    Example:
        >>> [(c.kernel, c.mode) for c in gate_cases()][-3:]
        [('tutorial_fwd', 'none'), ('dkdv', 'none'), ('dkdv', 'shannon')]
        >>> gate_cases()[0].tile, gate_cases()[-1].tile
        ((128, 128, 8, 2), (64, 128, 8, 2))
    """
    if tile is None:
        tile = GATE_TILE if GATE_TILE in _tiles("fwd") else _tiles("fwd")[0]
    orders = [(mode, alpha) for mode, alpha in FWD_ORDERS if mode not in ("support", "renyi_log1p")]
    fwd = [Case("fwd", "sm_90", "bf16", mode, alpha, None, tile) for mode, alpha in orders]
    dkdv_tile = max(_tiles("dkdv", "sm_90"), key=lambda t: (t[1], t[0]))
    return [
        *fwd,
        Case("tutorial_fwd", "sm_90", "bf16", "none", None, None, tile),
        Case("dkdv", "sm_90", "bf16", "none", None, 0, dkdv_tile),
        Case("dkdv", "sm_90", "bf16", "shannon", 1.0, 1, dkdv_tile),
    ]


def _same_build(row: dict[str, Any]) -> tuple:
    """What makes two rows the same build but for the kernel and the mode: arch, dtype, head dim, tile."""
    return (row["arch"], row["dtype"], row["head_dim"], row["BLOCK_M"], row["BLOCK_N"], row["num_warps"],
            row["num_stages"])  # fmt: skip
