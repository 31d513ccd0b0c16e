"""Pieces shared by the forward and backward kernels: entropy modes, launch settings, jit math.

No ``libdevice`` here: ``expm1`` and ``log1p`` are written as short series so that the same code
runs compiled and on Triton's CPU interpreter.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

# entropy modes (a constexpr of the kernels): which running sums and which derivative they use
ENT_NONE = 0
ENT_SHANNON = 1
ENT_MIN = 2
ENT_SUPPORT = 3
ENT_RENYI_LOG1P = 4
ENT_RENYI_DIRECT = 5

LOG2E = 1.4426950408889634
_LN2 = tl.constexpr(0.6931471805599453)
_RENYI_DIRECT_MIN_BETA = 0.25  # β = α − 1 at and above which Σ e^{αx} is summed directly
_TINY_ALPHA = 1e-30  # orders below this are evaluated as α = 0

# Tiles under TRITON_INTERPRET=1: large, so the Python-level loops run few iterations.
INTERPRET_BLOCK_M = 64
INTERPRET_BLOCK_N = 128


def entropy_mode(alpha: float) -> int:
    """Kernel entropy mode for the Rényi order ``alpha`` (already validated, ≥ 0).

    Orders below 1e-30 use the α = 0 mode: they differ from it by less than fp32 resolves, and
    would underflow to 0 in fp32 kernel arithmetic.
    """
    if alpha == 1.0:
        return ENT_SHANNON
    if math.isinf(alpha):
        return ENT_MIN
    if alpha < _TINY_ALPHA:
        return ENT_SUPPORT  # H_α − H_0 ≈ α·mean_j log p_j: below fp32 resolution (and α would underflow)
    if alpha - 1.0 >= _RENYI_DIRECT_MIN_BETA:
        return ENT_RENYI_DIRECT
    return ENT_RENYI_LOG1P


def is_interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def alpha_args(alpha: float) -> tuple[float, float, float]:
    """(α, β·ln 2, β) as the kernels take them, β = α − 1 in double precision on the host (so
    α = 1 ± 1e-6 keeps its β exactly); zeros for α = ∞ (the min-entropy uses none)."""
    if math.isinf(alpha):
        return 0.0, 0.0, 0.0
    beta = alpha - 1.0
    return alpha, beta * _LN2.value, beta


def launch_consts(dtype: torch.dtype, head_dim: int, interpret: bool) -> dict:
    """Constexprs shared by every launch: upcast, dot precision and the padded head dim."""
    fp32_ieee = dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
    return dict(
        UPCAST=interpret or dtype == torch.float32,
        INPUT_PRECISION="ieee" if (interpret or fp32_ieee) else "tf32",
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
    )


def autotune(tiles: list[tuple[int, int, int, int]], key: list[str]):
    """``triton.autotune`` over (BLOCK_M, BLOCK_N, num_warps, num_stages) tiles (GPU launches only;
    the interpreter path launches the plain kernel with one fixed tile)."""
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st) for bm, bn, w, st in tiles
    ]
    return triton.autotune(configs=configs, key=key)


@triton.jit
def _program_tile(n, BLOCK: tl.constexpr, H):
    """(tile index, batch b, head h) of this program in a 1-D grid of cdiv(n, BLOCK) · B · H programs.

    Tiles vary fastest, so programs running together share one head's K/V in L2; a 1-D grid also
    avoids the 65535 limit of a CUDA grid's y dimension for large B·H. b and h are int64 so that
    batch offsets cannot overflow.
    """
    num_tiles = tl.cdiv(n, BLOCK)
    pid_bh = tl.program_id(0) // num_tiles
    return tl.program_id(0) % num_tiles, (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)


@triton.jit
def _tile(base, rows, cols, stride_r, stride_c, mask_r, mask_c):
    """Load a (len(rows), len(cols)) tile at ``base``, zeros outside the masks."""
    return tl.load(base + rows[:, None] * stride_r + cols[None, :] * stride_c,
                   mask=mask_r[:, None] & mask_c[None, :], other=0.0)  # fmt: skip


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
    if MODE == 1:
        d = -p * (lp + ent)
    elif MODE == 2:
        d = p - is_max
    elif MODE == 4 or MODE == 5:
        y = beta * (lp + ent)
        small = tl.abs(y) < 0.1
        diff = tl.where(
            small, p * _expm1_series(tl.where(small, y, 0.0)), tl.exp(alpha * lp + beta * ent) - p
        )
        d = -(alpha / beta) * diff
    else:
        d = p * 0.0
    return d
