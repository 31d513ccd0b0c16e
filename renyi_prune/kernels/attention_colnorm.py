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
    INTERPRET_BLOCK_M,
    INTERPRET_BLOCK_N,
    LOG2E,
    _program_tile,
    _tile,
    autotune,
    is_interpreting,
    launch_consts,
)

__all__ = ["COLNORM_MAX", "COLNORM_POWER", "attention_column_power_sum"]

# modes (the kernel's MODE constexpr)
COLNORM_POWER = 1  # Σ_i p_ij^n, finite order n > 0
COLNORM_MAX = 2  # max_i p_ij, order ∞ (the same number as ENT_MIN, the min-entropy's max_j p_ij)


@triton.jit
def _attn_colnorm_kernel(
    Q, K, Lse, Out,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    H, N_Q, N_KV, HEAD_DIM,
    qk_scale_log2,
    alpha,  # the order n (fp32); unused for MODE == COLNORM_MAX
    N_BUCKET,  # autotune key: next power of two of max(N_Q, N_KV)
    MODE: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n, b, h = _program_tile(N_KV, BLOCK_N, H)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < N_KV
    mask_d = offs_d < HEAD_DIM

    # k as a (D, BN) tile, so that s = q·kᵀ is a plain dot
    kt = _tile(K + b * stride_kb + h * stride_kh, offs_d, offs_n, stride_kd, stride_kn, mask_d, mask_n)
    if UPCAST:
        kt = kt.to(tl.float32)
    q_base = Q + b * stride_qb + h * stride_qh
    row0 = (b * H + h) * N_Q  # Lse is contiguous (B, H, N_Q)
    if MODE == 2:
        acc = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)  # max_i log2 p_ij
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)  # Σ_i p_ij^n

    for start_m in range(0, N_Q, BLOCK_M):
        offs_m = start_m + offs_m0
        mask_m = offs_m < N_Q
        q = _tile(q_base, offs_m, offs_d, stride_qn, stride_qd, mask_m, mask_d)
        if UPCAST:
            q = q.to(tl.float32)
        lse2 = tl.load(Lse + row0 + offs_m, mask=mask_m, other=0.0) * 1.4426950408889634
        s2 = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale_log2  # logits in log2 units
        x = s2 - lse2[:, None]  # log2 p_ij
        mask_mn = mask_m[:, None] & mask_n[None, :]
        if MODE == 2:
            acc = tl.maximum(acc, tl.max(tl.where(mask_mn, x, float("-inf")), 0))
        else:
            acc += tl.sum(tl.where(mask_mn, tl.exp2(x * alpha), 0.0), 0)

    if MODE == 2:
        acc = tl.exp2(acc)  # 2^{−inf} = 0 for a key tile with no query rows
    tl.store(Out + (b * H + h) * N_KV + offs_n, acc, mask=mask_n)


# (BLOCK_M, BLOCK_N, warps, stages): small key tiles too, so that ViT-sized N (≈ 197) still gives
# enough programs (cdiv(N, BLOCK_N) · B · H) to fill the GPU at batch 1
_COLNORM_TILES = [
    (64, 64, 4, 2),
    (64, 64, 4, 3),
    (128, 64, 8, 2),
    (64, 128, 8, 2),
    (64, 32, 4, 3),
    (32, 32, 4, 3),
]
_colnorm_autotuned = autotune(_COLNORM_TILES, key=["N_BUCKET", "HEAD_DIM", "MODE", "UPCAST"])(
    _attn_colnorm_kernel
)


def attention_column_power_sum(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    order: float,
) -> torch.Tensor:
    """Launch the column kernel: Σ_i p_ij^n over the query rows (no input checks: the op layer validates).

    Args:
        q: (B, H, N, D) queries, any strides, fp32/fp16/bf16, 16 ≤ D ≤ 128 (padded to a power of
            two inside, with masks).
        k: (B, H, M, D) keys, same dtype and device as ``q``, any strides.
        lse: (B, H, N) fp32 natural log-sum-exp of the scaled logits of every query row, as
            :func:`renyi_prune.kernels.attention_entropy_fwd` returns it (made contiguous here).
        scale: logit scale the forward used (usually D ** -0.5).
        order: the order n > 0 of the column norm, ``math.inf`` for the column max.

    Returns:
        (B, H, M) fp32, contiguous: Σ_i p_ij^n for every key j with p = softmax(q kᵀ · scale)
        rebuilt from ``lse`` (order ∞: max_i p_ij). Take the n-th root for the ℓ_n norm. A key
        with no query rows (N = 0) gets 0.
    """
    B, H, N, D = q.shape
    M = k.shape[2]
    out = torch.empty((B, H, M), dtype=torch.float32, device=q.device)
    if B * H * M == 0:
        return out
    if N == 0:
        return out.zero_()

    interpret = is_interpreting()
    is_max = math.isinf(order)
    lse = lse.contiguous()
    args = (
        q, k, lse, out,
        *q.stride(), *k.stride(),
        H, N, M, D,
        scale * LOG2E,
        0.0 if is_max else float(order),
        triton.next_power_of_2(max(N, M)),
    )  # fmt: skip
    consts = dict(MODE=COLNORM_MAX if is_max else COLNORM_POWER, **launch_consts(q.dtype, D, interpret))
    if interpret:
        grid = (triton.cdiv(M, INTERPRET_BLOCK_N) * B * H,)
        _attn_colnorm_kernel[grid](*args, BLOCK_M=INTERPRET_BLOCK_M, BLOCK_N=INTERPRET_BLOCK_N, **consts)
    else:

        def grid(meta):
            return (triton.cdiv(M, meta["BLOCK_N"]) * B * H,)

        _colnorm_autotuned[grid](*args, **consts)
    return out
