"""Column power sums of the attention matrix, Σ_i p_ij^n, as a second pass over recomputed P tiles.

The Col-Ln criterion ("Rényi Entropy: A New Token Pruning Metric for Vision Transformers", Su,
Zhang & Zhang) scores token j by the column ℓ_n norm (Σ_i p_ij^n)^{1/n} of the softmax attention
matrix P. A column needs the final softmax normalizer of every row, which a single forward pass
only knows at its end, so this is a second pass in the shape of the dk/dv pass of a flash backward
(FlashAttention-2, Dao 2023): one program owns a key tile and loops over query tiles, recomputing

    p_ij = 2^{s_ij − lse2_i},   s = q·k · scale · log2 e,   lse2 = lse · log2 e,

from the natural log-sum-exp ``lse`` that the forward kernel saved, and p_ij^n = 2^{n (s_ij − lse2_i)}
(no ``pow``). Order ∞ keeps max_i (s_ij − lse2_i) and exponentiates once at the end (2^x is
monotone, so this equals max_i p_ij). The (B, H, N, M) matrix never exists; each output element is
written by exactly one program in a fixed loop order, so results are bit-reproducible (no atomics).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import (
    LOG2E,
    TiledKernel,
    _load_lse2,
    _load_tile,
    _log2_probs,
    _program_tile,
    _span,
)

__all__ = ["COLNORM_MAX", "COLNORM_POWER", "alloc_column_sums", "attention_column_power_sum"]

# modes (the kernel's MODE constexpr): host ints, and the same values as the tl.constexpr globals the
# kernel compares MODE with (@triton.jit code reads only constexpr globals)
COLNORM_POWER = 1  # Σ_i p_ij^n, finite order n > 0
COLNORM_MAX = 2  # max_i p_ij, order ∞ (the same number as ENT_MIN, the min-entropy's max_j p_ij)
MODE_COL_POWER = tl.constexpr(COLNORM_POWER)
MODE_COL_MAX = tl.constexpr(COLNORM_MAX)


@triton.jit
def _attn_colnorm_kernel(
    Q, K, Lse, Out,
    stride_q, stride_k,  # (b, h, n, d) element strides of Q and K
    H, N_Q, N_KV, HEAD_DIM, qk_scale_log2,
    alpha,  # the order n (fp32); unused for MODE == MODE_COL_MAX
    N_BUCKET,  # autotune key: next power of two of max(N_Q, N_KV)
    MODE: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    offs_n, mask_n, b, h = _program_tile(N_KV, BLOCK_N, H)
    # k as a (BLOCK_D, BLOCK_N) tile, so that s = q·kᵀ is a plain dot
    kt = _load_tile(K, stride_k, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS=True)
    row0 = (b * H + h) * N_Q  # Lse is contiguous (B, H, N_Q)
    if MODE == MODE_COL_MAX:
        acc = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)  # (BLOCK_N,) max_i log2 p_ij
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)  # (BLOCK_N,) Σ_i p_ij^n

    for start_m in range(0, N_Q, BLOCK_M):
        offs_m, mask_m = _span(start_m, N_Q, BLOCK_M)
        q = _load_tile(Q, stride_q, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)  # (BM, BD)
        lse2 = _load_lse2(Lse, row0 + offs_m, mask_m)  # (BLOCK_M,) fp32
        mask_mn = mask_m[:, None] & mask_n[None, :]  # (BLOCK_M, BLOCK_N)
        x = _log2_probs(q, kt, lse2, qk_scale_log2, INPUT_PRECISION)  # (BLOCK_M, BLOCK_N) fp32 log2 p_ij
        if MODE == MODE_COL_MAX:
            acc = tl.maximum(acc, tl.max(tl.where(mask_mn, x, float("-inf")), 0))
        else:
            acc += tl.sum(tl.where(mask_mn, tl.exp2(x * alpha), 0.0), 0)

    if MODE == MODE_COL_MAX:
        acc = tl.exp2(acc)  # 2^{−inf} = 0 for a key tile with no query rows
    tl.store(Out + (b * H + h) * N_KV + offs_n, acc, mask=mask_n)


# (BLOCK_M, BLOCK_N, warps, stages): small key tiles too, so that ViT-sized N (≈ 197) still gives
# enough programs (cdiv(N, BLOCK_N) · B · H) to fill the GPU at batch 1
_COLNORM_TILES = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2),
                  (64, 128, 8, 2), (64, 32, 4, 3), (32, 32, 4, 3)]  # fmt: skip
_colnorm_launch = TiledKernel(_attn_colnorm_kernel, _COLNORM_TILES, grid_block="BLOCK_N")


def alloc_column_sums(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The uninitialized (B, H, M) fp32 contiguous output of :func:`attention_column_power_sum` for q
    (B, H, N, D) and k (B, H, M, D), on q's device; also the column op's fake implementation.

    Example:
        >>> import torch
        >>> from renyi_prune.kernels.attention_colnorm import alloc_column_sums
        >>> out = alloc_column_sums(torch.zeros(2, 3, 5, 16), torch.zeros(2, 3, 7, 16))
        >>> out.shape, out.dtype, out.is_contiguous()
        (torch.Size([2, 3, 7]), torch.float32, True)
    """
    B, H = q.shape[:2]
    return torch.empty((B, H, k.shape[2]), dtype=torch.float32, device=q.device)


def attention_column_power_sum(
    q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float, order: float
) -> torch.Tensor:
    """Launch the column kernel: Σ_i p_ij^n over the query rows (no input checks: the op layer validates).

    Args:
        q: (B, H, N, D) queries, any strides, fp32/fp16/bf16, 16 ≤ D ≤ 128 (padded to a power of
            two inside, with masks); CUDA, or CPU under the interpreter.
        k: (B, H, M, D) keys, same dtype and device as ``q``, any strides.
        lse: (B, H, N) fp32 natural log-sum-exp (nats) of the scaled logits of every query row, as
            :func:`renyi_prune.kernels.attention_entropy_fwd` returns it (made contiguous here).
        scale: logit scale the forward used (usually D ** -0.5).
        order: the order n > 0 of the column norm, ``math.inf`` for the column max.

    Returns:
        (B, H, M) fp32, contiguous: Σ_i p_ij^n for every key j with p = softmax(q kᵀ · scale)
        rebuilt from ``lse`` (order ∞: max_i p_ij). Take the n-th root for the ℓ_n norm. A key
        with no query rows (N = 0) gets 0.

    Example:
        >>> import torch
        >>> from renyi_prune.kernels import attention_column_power_sum, attention_entropy_fwd
        >>> device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter
        >>> g = torch.Generator().manual_seed(0)
        >>> q = torch.randn(1, 2, 17, 16, generator=g).to(device)  # N = 17 queries
        >>> k, v = torch.randn(2, 1, 2, 9, 16, generator=g).to(device).unbind(0)  # M = 9 keys
        >>> lse = attention_entropy_fwd(q, k, v, 0.25, 1.0)[1]
        >>> sums = attention_column_power_sum(q, k, lse, 0.25, 2.0)  # Σ_i p_ij², one per key
        >>> sums.shape, sums.dtype
        (torch.Size([1, 2, 9]), torch.float32)
        >>> p = torch.softmax(q.double() @ k.double().mT * 0.25, dim=-1)  # (B, H, N, M)
        >>> torch.allclose(sums.double(), (p**2).sum(-2), atol=1e-5)
        True
    """
    B, H, N, D = q.shape
    M = k.shape[2]
    out = alloc_column_sums(q, k)
    if B * H * M == 0:
        return out
    if N == 0:
        return out.zero_()

    is_max = math.isinf(order)
    args = (
        q, k, lse.contiguous(), out,
        q.stride(), k.stride(),
        H, N, M, D, scale * LOG2E,
        0.0 if is_max else float(order),
        triton.next_power_of_2(max(N, M)),
    )  # fmt: skip
    _colnorm_launch(q, M, args, MODE=COLNORM_MAX if is_max else COLNORM_POWER)
    return out
