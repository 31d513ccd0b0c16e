"""Pieces shared by the forward, backward and column kernels: entropy modes, launch settings and
the tiled launch (host side); program tiles, q/k/v tile loads and stores, logits and jit math
(``@triton.jit`` helpers, inlined into the kernels that call them).

No ``libdevice`` here: ``expm1`` and ``log1p`` are written as short series so that the same code
runs compiled and on Triton's CPU interpreter.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import torch
import triton
import triton.language as tl

# Entropy modes: which running sums and which derivative the kernels use. ``ENT_*`` are the host's ints
# (what :func:`entropy_mode` returns and the launchers pass as the MODE constexpr); ``MODE_*`` are the
# same values as ``tl.constexpr``, the only globals ``@triton.jit`` code may read, so that the kernels
# compare ``MODE == MODE_SHANNON`` (folded at compile time, as a literal would be) instead of ``MODE == 1``.
ENT_NONE = 0  # no entropy work: the static report's baseline (the op never launches it)
ENT_SHANNON = 1
ENT_MIN = 2
ENT_SUPPORT = 3
ENT_RENYI_LOG1P = 4
ENT_RENYI_DIRECT = 5
MODE_NONE = tl.constexpr(ENT_NONE)
MODE_SHANNON = tl.constexpr(ENT_SHANNON)
MODE_MIN = tl.constexpr(ENT_MIN)
MODE_SUPPORT = tl.constexpr(ENT_SUPPORT)
MODE_RENYI_LOG1P = tl.constexpr(ENT_RENYI_LOG1P)
MODE_RENYI_DIRECT = tl.constexpr(ENT_RENYI_DIRECT)

LOG2E = 1.4426950408889634
_LN2 = tl.constexpr(0.6931471805599453)
_RENYI_DIRECT_MIN_BETA = 0.25  # |β| = |α − 1| at and above which Σ e^{αx} is summed directly
_TINY_ALPHA = 1e-30  # orders below this are evaluated as α = 0
# β at and above which orders are evaluated as α = ∞: H_∞ ≤ H_α ≤ (1 + 1/β)·H_∞ (α > 1), so from
# β = 1/ε of fp32 on the two agree to the kernels' precision (and α·x, α/β stay finite in fp32)
_RENYI_AS_MIN_BETA = 2.0**23

# Tiles under TRITON_INTERPRET=1: large, so the Python-level loops run few iterations.
INTERPRET_BLOCK_M = 64
INTERPRET_BLOCK_N = 128


def entropy_mode(alpha: float) -> int:
    """Kernel entropy mode (an ``ENT_*`` constant) for the Rényi order ``alpha``.

    Args:
        alpha: Rényi order α ≥ 0 or ``math.inf``, already validated (a Python float).

    Returns:
        ``ENT_SHANNON`` for α = 1, ``ENT_MIN`` for α = ∞, ``ENT_SUPPORT`` for α = 0,
        ``ENT_RENYI_LOG1P`` for 0.75 < α < 1.25 (α ≠ 1, the series that keeps β = α − 1 → 0 exact) and
        ``ENT_RENYI_DIRECT`` for 1e-30 ≤ α ≤ 0.75 and 1.25 ≤ α < 1 + 2^23 (Σ p^α summed directly: its
        ln l − ln a carries ~1e-7 absolute error, which the division by |β| ≥ 1/4 keeps). Orders below 1e-30
        use the α = 0 mode and orders from 1 + 2^23 on the α = ∞ mode: they differ from those
        limits by less than fp32 resolves (H_∞ ≤ H_α ≤ (1 + 1/(α − 1))·H_∞), and would underflow
        or overflow in fp32 kernel arithmetic.

    Example:
        >>> import math
        >>> from renyi_prune.kernels import ENT_MIN, ENT_SHANNON, ENT_SUPPORT, entropy_mode
        >>> from renyi_prune.kernels import ENT_RENYI_DIRECT, ENT_RENYI_LOG1P
        >>> entropy_mode(1.0) == ENT_SHANNON, entropy_mode(math.inf) == entropy_mode(1e30) == ENT_MIN
        (True, True)
        >>> entropy_mode(0.0) == entropy_mode(1e-40) == ENT_SUPPORT
        True
        >>> entropy_mode(0.9) == entropy_mode(1.1) == ENT_RENYI_LOG1P
        True
        >>> entropy_mode(0.5) == entropy_mode(2.0) == ENT_RENYI_DIRECT
        True
    """
    if alpha == 1.0:
        return ENT_SHANNON
    if alpha - 1.0 >= _RENYI_AS_MIN_BETA:  # α = ∞ included
        return ENT_MIN
    if alpha < _TINY_ALPHA:
        return ENT_SUPPORT  # H_α − H_0 ≈ α·mean_j log p_j: below fp32 resolution (and α would underflow)
    if abs(alpha - 1.0) >= _RENYI_DIRECT_MIN_BETA:
        return ENT_RENYI_DIRECT
    return ENT_RENYI_LOG1P


def is_interpreting() -> bool:
    """Whether Triton runs kernels on its CPU interpreter, i.e. ``TRITON_INTERPRET`` is set and not 0.

    Read at each call. Under the interpreter the launchers use one fixed tile, upcast half inputs
    to fp32 and accept CPU tensors; otherwise they need CUDA tensors and autotune.

    Returns:
        ``True`` when ``TRITON_INTERPRET`` is set to anything but ``""`` or ``"0"``.

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from renyi_prune.kernels import is_interpreting
        >>> with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}):
        ...     is_interpreting()
        True
        >>> with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "0"}):
        ...     is_interpreting()
        False
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def alpha_args(alpha: float) -> tuple[float, float, float]:
    """(α, β·ln 2, β) as the kernels take them, β = α − 1 in double precision on the host (so
    α = 1 ± 1e-6 keeps its β exactly); zeros for the min-entropy mode (α = ∞ and orders evaluated
    as it), which uses none."""
    if entropy_mode(alpha) == ENT_MIN:
        return 0.0, 0.0, 0.0
    beta = alpha - 1.0
    return alpha, beta * _LN2.value, beta


def empty_bnhd(like: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """An uninitialized (B, H, n, D) tensor of ``like``'s dtype and device (``like`` is (B, H, ·, D);
    n defaults to its token count), laid out as (B, n, H, D) in memory: the layout of every kernel
    output of that shape, so that ``x.transpose(1, 2).reshape(B, n, H * D)`` is a view. Made with
    ``torch.empty`` (also under fake tensors), which the tests NaN-fill to catch unwritten elements."""
    B, H, N, D = like.shape
    return torch.empty((B, N if n is None else n, H, D), dtype=like.dtype, device=like.device).transpose(1, 2)


def block_d(head_dim: int) -> int:
    """BLOCK_D, the head dim padded to a power of two ≥ 16 (tl.dot's minimum); masks cover the rest."""
    return max(16, triton.next_power_of_2(head_dim))


def launch_consts(dtype: torch.dtype, head_dim: int, interpret: bool) -> dict[str, bool | str | int]:
    """Constexprs shared by every launch: upcast, dot precision and the padded head dim."""
    fp32_ieee = dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
    return dict(
        UPCAST=interpret or dtype == torch.float32,
        INPUT_PRECISION="ieee" if (interpret or fp32_ieee) else "tf32",
        BLOCK_D=block_d(head_dim),
    )


@functools.cache
def _blas_threadpools() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency; without it, no limit
        return None
    return ThreadpoolController()


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Within: NumPy's BLAS runs on one thread (threadpoolctl), as the interpreter wants it.

    Triton's CPU interpreter evaluates every ``tl.dot`` of every program as a small ``np.matmul``
    (a 64 × 128 tile). A multi-threaded OpenBLAS wakes its threads for each of them, and beside
    PyTorch's own OpenMP threads they spin against each other: measured on 2 cores, 14 ms per tile
    product instead of 0.02 ms. The limit costs microseconds and is lifted on exit.
    """
    pools = _blas_threadpools()
    return contextlib.nullcontext() if pools is None else pools.limit(limits=1, user_api="blas")


# launch arguments whose values pick the autotuned tile (N_BUCKET: sequence lengths rounded to a power of 2)
AUTOTUNE_KEY = ("N_BUCKET", "HEAD_DIM", "MODE", "UPCAST")


class TiledKernel:
    """A kernel run on a 1-D grid of cdiv(n, BLOCK) · B·H programs (see :func:`_program_tile`).

    Under the interpreter it launches the plain kernel with one fixed tile (INTERPRET_BLOCK_M/N);
    on a GPU, its ``triton.autotune`` twin over ``tiles``, (BLOCK_M, BLOCK_N, num_warps, num_stages)
    each, keyed on ``key``. ``grid_block`` names the tile size that splits ``n`` ("BLOCK_M": one
    program per query tile, "BLOCK_N": one per key tile). ``arch_tiles`` maps compute capabilities
    (90 for sm_90) to their own tile lists; a GPU of the target Triton compiles for takes its list
    (:meth:`tuner`), any other ``tiles``.
    """

    def __init__(
        self,
        kernel: triton.runtime.KernelInterface,
        tiles: list[tuple[int, int, int, int]],
        grid_block: str,
        key: tuple[str, ...] = AUTOTUNE_KEY,
        arch_tiles: dict[int, list[tuple[int, int, int, int]]] | None = None,
    ) -> None:
        def autotuned(tiles: list[tuple[int, int, int, int]]) -> Any:
            configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
                       for bm, bn, w, st in tiles]  # fmt: skip
            return triton.autotune(configs=configs, key=list(key))(kernel)

        self.kernel = kernel
        self.autotuned = autotuned(tiles)
        self.autotuned_for = {arch: autotuned(t) for arch, t in (arch_tiles or {}).items()}
        self.grid_block = grid_block

    def tuner(self, arch: int | None = None) -> Any:
        """The autotuned kernel for compute capability ``arch`` (e.g. 86): over its own tile list if
        it has one, else (and for ``None``) over the default ``tiles``."""
        return self.autotuned_for.get(arch, self.autotuned)

    def __call__(self, q: torch.Tensor, n: int, args: tuple, **consts: object) -> None:
        """Launch over ``n`` query rows or keys of each of the B·H heads of ``q`` (B, H, N, D), with
        ``consts`` and the :func:`launch_consts` of ``q``'s dtype and head dim."""
        B, H, _, D = q.shape
        interpret = is_interpreting()
        consts.update(launch_consts(q.dtype, D, interpret))
        if interpret:
            blocks = dict(BLOCK_M=INTERPRET_BLOCK_M, BLOCK_N=INTERPRET_BLOCK_N)
            with single_threaded_blas():
                self.kernel[(triton.cdiv(n, blocks[self.grid_block]) * B * H,)](*args, **blocks, **consts)
        else:
            arch = triton.runtime.driver.active.get_current_target().arch if self.autotuned_for else None
            tuner = self.tuner(arch)
            tuner[lambda meta: (triton.cdiv(n, meta[self.grid_block]) * B * H,)](*args, **consts)


@triton.jit
def _span(start, n, BLOCK: tl.constexpr):
    """Indices start … start + BLOCK − 1 and their mask (< n)."""
    offs = start + tl.arange(0, BLOCK)
    return offs, offs < n


@triton.jit
def _program_tile(n, BLOCK: tl.constexpr, H):
    """(indices, mask, b, h) of this program's tile in a 1-D grid of cdiv(n, BLOCK) · B · H programs.

    Tiles vary fastest, so programs running together share one head's K/V in L2; a 1-D grid also
    avoids the 65535 limit of a CUDA grid's y dimension for large B·H. b and h are int64 so that
    batch offsets cannot overflow.
    """
    num_tiles = tl.cdiv(n, BLOCK)
    pid_bh = tl.program_id(0) // num_tiles
    offs, mask = _span((tl.program_id(0) % num_tiles) * BLOCK, n, BLOCK)
    return offs, mask, (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)


@triton.jit
def _load_tile(X, strides, b, h, offs, mask, HEAD_DIM, BLOCK_D: tl.constexpr, UPCAST: tl.constexpr,
               TRANS: tl.constexpr):  # fmt: skip
    """Load rows ``offs`` of head (b, h) of a (B, H, N, D) tensor ``X`` (q, k, v, out or dO) whose
    element strides are the tuple ``strides``: a (len(offs), BLOCK_D) tile, (BLOCK_D, len(offs)) if
    TRANS, zeros outside the masks (rows ``mask``, columns < HEAD_DIM), as fp32 if UPCAST."""
    offs_d, mask_d = _span(0, HEAD_DIM, BLOCK_D)
    base = X + b * strides[0] + h * strides[1]
    if TRANS:
        tile_mask = mask_d[:, None] & mask[None, :]
        ptrs = base + offs_d[:, None] * strides[3] + offs[None, :] * strides[2]
    else:
        tile_mask = mask[:, None] & mask_d[None, :]
        ptrs = base + offs[:, None] * strides[2] + offs_d[None, :] * strides[3]
    x = tl.load(ptrs, mask=tile_mask, other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _store_tile(X, strides, b, h, offs, mask, HEAD_DIM, BLOCK_D: tl.constexpr, value):
    """Store ``value``, a (len(offs), BLOCK_D) tile, at rows ``offs`` of head (b, h) of ``X`` (strides
    as in :func:`_load_tile`), in the dtype of ``X``."""
    offs_d, mask_d = _span(0, HEAD_DIM, BLOCK_D)
    tile_mask = mask[:, None] & mask_d[None, :]
    off = b * strides[0] + h * strides[1] + offs[:, None] * strides[2] + offs_d[None, :] * strides[3]
    tl.store(X + off, value.to(X.dtype.element_ty), mask=tile_mask)


@triton.jit
def _load_lse2(Lse, rows, mask):
    """Log-sum-exp of flat ``rows`` of a contiguous (B, H, N) fp32 array, nats → log2 units.

    A row with no attendable key has lse = −inf; it comes back as +inf, so that the recomputed
    p = 2^{s − lse} is 0 there (the row attends to nothing) rather than 2^{−inf + inf} = NaN."""
    lse2 = tl.load(Lse + rows, mask=mask, other=0.0) * 1.4426950408889634
    return tl.where(lse2 == float("-inf"), float("inf"), lse2)


@triton.jit
def _log2_probs(q, kt, lse2, qk_scale_log2, INPUT_PRECISION: tl.constexpr):
    """log2 p = s − lse2 of a (BM, D) query tile and a (D, BN) key tile: P recomputed from the rows'
    log-sum-exp in log2 units (s = q·kᵀ·scale·log2 e). Unmasked: callers mask what they reduce."""
    return tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale_log2 - lse2[:, None]


@triton.jit
def _expm1_series(t):
    """expm1(t) by its Taylor series; relative error < 1e-9 for |t| < 0.1."""
    return t * (1.0 + t * (0.5 + t * (1.0 / 6.0 + t * (1.0 / 24.0 + t * (1.0 / 120.0 + t / 720.0)))))


@triton.jit
def _exp_alpha_minus_exp(x, alpha, beta_ln2):
    """2^{αx} − 2^{x} for x ≤ 0 in log2 units (α = 1 + β), without cancellation for small βx."""
    bx = x * beta_ln2  # β·x in nats
    small = tl.abs(bx) < 0.1
    e = tl.exp2(x)
    return tl.where(small, e * _expm1_series(tl.where(small, bx, 0.0)), tl.exp2(x * alpha) - e)


@triton.jit
def _log1p(z):
    """log(1 + z) for z > −1, accurate for small |z| (2·atanh(z / (2 + z)) series)."""
    w = z / (2.0 + z)
    w2 = w * w
    series = 2.0 * w * (1.0 + w2 * (1.0 / 3.0 + w2 * (1.0 / 5.0 + w2 * (1.0 / 7.0 + w2 * (1.0 / 9.0)))))
    return tl.where(tl.abs(z) < 0.1, series, tl.log(1.0 + z))


@triton.jit
def _entropy_dlogits(p, lp, ent, is_max, alpha, beta, MODE: tl.constexpr):
    """∂H_α(i)/∂s_ij for one tile: s the natural-unit logits, p = softmax, lp = log p, ent = H_α(i).

    Shannon: −p (log p + H). Rényi: α/(1−α)·(p^α/Σp^α − p) = −(α/β)·p·expm1(β(log p + H)), since
    log Σp^α = −β H; formed as a series for small β(log p + H) and as e^{α log p + β H} − p otherwise
    (p^α underflows gracefully where p·e^{…} would give 0·∞). Min-entropy: p − 1[j = argmax].
    log-support (α = 0): 0. Callers zero masked entries.
    """
    # every operand and the result: one tile, (BLOCK_M, BLOCK_N) or its transpose, fp32
    if MODE == MODE_SHANNON:
        d = -p * (lp + ent)
    elif MODE == MODE_MIN:
        d = p - is_max
    elif MODE == MODE_RENYI_LOG1P or MODE == MODE_RENYI_DIRECT:
        y = beta * (lp + ent)
        small = tl.abs(y) < 0.1
        diff = tl.where(
            small, p * _expm1_series(tl.where(small, y, 0.0)), tl.exp(alpha * lp + beta * ent) - p
        )
        d = -(alpha / beta) * diff
    else:  # MODE_SUPPORT (and MODE_NONE): H_0 = ln M does not depend on the logits
        d = p * 0.0
    return d
