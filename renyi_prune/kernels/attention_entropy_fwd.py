"""Fused forward kernel: softmax attention + per-row Rényi attention entropy in one pass.

Flash-attention-style online softmax over key tiles (Dao et al., FlashAttention-2) extended with
running sums from which the Rényi entropy H_α(i) = log(Σ_j p_ij^α) / (1 − α) of every attention
row (Defs. 2–3 of "Rényi Attention Entropy for Patch Pruning", arXiv 2604.03803) is finished at
the end of the row, so the (B, H, N, N) attention matrix never exists.

Notation inside a row: s_j are logits (in log2 units, s_j = q·k_j · scale · log2 e), m the running
row max, x_j = s_j − m ≤ 0, e_j = 2^{x_j}, l = Σ e_j. When the max moves from m_old to m_new,
δ = m_old − m_new ≤ 0 and c = 2^δ. Running sums and their rescale:

* ``l``: l ← c·l + Σ e_j;  log-sum-exp = (m + log2 l)·ln 2.
* Shannon (α = 1): t = Σ e_j x_j ← c·(t + δ·l_old) + Σ e_j x_j;  H_1 = ln 2 · (log2 l − t / l).
* min-entropy (α = ∞): H_∞ = −ln max_j p_j = ln l.
* α = 0: every key has p_j > 0 in exact arithmetic, so H_0 = ln N_kv.
* Rényi, α = 1 + β near 1 (−1 < β < 1/4): u = Σ (e_j^α − e_j) ← c^α·u + (c^α − c)·l_old + Σ(e_j^α − e_j),
  each e^{αx} − e^{x} formed as e^x·expm1(βx) when |βx| is small, so nothing cancels; then
  Σ p^α = (l + u)/l^α and H_α = ln l − log1p(u/l)/β, exact in the limit β → 0. β comes from the host
  in double precision (α − 1 loses all digits of a small β once α is rounded to fp32).
* Rényi, β ≥ 1/4: a = Σ e_j^α ← c^α·a + Σ e_j^α;  H_α = (ln a − α ln l)/(1 − α).

The running max starts at a finite −1e30 instead of −inf, so a key tile that is fully masked or
the first rescale never evaluates 0·(−inf) or (−inf) − (−inf).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = [
    "ENT_NONE",
    "ENT_SHANNON",
    "ENT_MIN",
    "ENT_SUPPORT",
    "ENT_RENYI_LOG1P",
    "ENT_RENYI_DIRECT",
    "entropy_mode",
    "attention_entropy_fwd",
    "is_interpreting",
]

# entropy modes (constexpr): which running sums the kernel keeps
ENT_NONE = 0
ENT_SHANNON = 1
ENT_MIN = 2
ENT_SUPPORT = 3
ENT_RENYI_LOG1P = 4
ENT_RENYI_DIRECT = 5

_LOG2E = 1.4426950408889634
_LN2 = tl.constexpr(0.6931471805599453)
_RENYI_DIRECT_MIN_BETA = 0.25  # β = α − 1 at and above which Σ e^{αx} is summed directly


def entropy_mode(alpha: float) -> int:
    """Kernel entropy mode for the Rényi order ``alpha`` (already validated, ≥ 0)."""
    if alpha == 1.0:
        return ENT_SHANNON
    if alpha == float("inf"):
        return ENT_MIN
    if alpha == 0.0:
        return ENT_SUPPORT
    if alpha - 1.0 >= _RENYI_DIRECT_MIN_BETA:
        return ENT_RENYI_DIRECT
    return ENT_RENYI_LOG1P


def is_interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _exp_alpha_minus_exp(x, alpha, beta_ln2):
    """2^{αx} − 2^{x} for x ≤ 0 in log2 units (α = 1 + β), without cancellation for small βx."""
    bx = x * beta_ln2  # β·x in nats
    small = tl.abs(bx) < 0.1
    t = tl.where(small, bx, 0.0)
    # expm1(t) by its Taylor series (no libdevice expm1 on the interpreter); |t| < 0.1 → rel. err < 1e-9
    expm1 = t * (1.0 + t * (0.5 + t * (1.0 / 6.0 + t * (1.0 / 24.0 + t * (1.0 / 120.0 + t / 720.0)))))
    e = tl.exp2(x)
    return tl.where(small, e * expm1, tl.exp2(x * alpha) - e)


@triton.jit
def _log1p(z):
    """log(1 + z) for z > −1, accurate for small |z| (2·atanh(z / (2 + z)) series)."""
    w = z / (2.0 + z)
    w2 = w * w
    series = 2.0 * w * (1.0 + w2 * (1.0 / 3.0 + w2 * (1.0 / 5.0 + w2 * (1.0 / 7.0 + w2 * (1.0 / 9.0)))))
    return tl.where(tl.abs(z) < 0.1, series, tl.log(1.0 + z))


@triton.jit
def _attn_entropy_fwd_kernel(
    Q, K, V, Out, Lse, Ent,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H, N_Q, N_KV, HEAD_DIM,
    qk_scale_log2,
    alpha, beta_ln2, beta,
    N_BUCKET,  # autotune key: next power of two of N_KV
    MODE: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    # 1-D grid, query tiles fastest: programs running together share one head's K/V in L2, and
    # B·H is not bound by the 65535 limit of a CUDA grid's y dimension
    num_m = tl.cdiv(N_Q, BLOCK_M)
    pid_m = tl.program_id(0) % num_m
    pid_bh = tl.program_id(0) // num_m
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < N_Q
    mask_d = offs_d < HEAD_DIM

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = K + b * stride_kb + h * stride_kh + offs_d[:, None] * stride_kd
    v_base = V + b * stride_vb + h * stride_vh + offs_d[None, :] * stride_vd

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    r_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # entropy running sum (t, u or a; see module doc)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, N_KV, BLOCK_N):
        cur_n = start_n + offs_n
        mask_n = cur_n < N_KV
        k = tl.load(k_base + cur_n[None, :] * stride_kn, mask=mask_d[:, None] & mask_n[None, :], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
        s = tl.dot(q, k, input_precision=INPUT_PRECISION) * qk_scale_log2
        s = tl.where(mask_n[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        delta = m_i - m_new
        c = tl.exp2(delta)
        x = s - m_new[:, None]
        p = tl.exp2(x)
        if MODE == 1:  # Shannon
            r_i = c * (r_i + delta * l_i) + tl.sum(p * tl.where(mask_n[None, :], x, 0.0), 1)
        elif MODE == 4:  # Rényi near α = 1
            r_i = (
                tl.exp2(delta * alpha) * r_i
                + _exp_alpha_minus_exp(delta, alpha, beta_ln2) * l_i
                + tl.sum(_exp_alpha_minus_exp(x, alpha, beta_ln2), 1)
            )
        elif MODE == 5:  # Rényi, direct power sum
            r_i = tl.exp2(delta * alpha) * r_i + tl.sum(tl.exp2(x * alpha), 1)
        l_i = c * l_i + tl.sum(p, 1)

        v = tl.load(v_base + cur_n[:, None] * stride_vn, mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        if UPCAST:
            v = v.to(tl.float32)
        acc = acc * c[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION)
        m_i = m_new

    log2_l = tl.log2(l_i)
    acc = acc / l_i[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])

    row = (b * H + h) * N_Q + offs_m  # Lse and Ent are contiguous (B, H, N_Q)
    tl.store(Lse + row, (m_i + log2_l) * _LN2, mask=mask_m)
    if MODE != 0:
        if MODE == 1:
            ent = (log2_l - r_i / l_i) * _LN2
        elif MODE == 2:
            ent = log2_l * _LN2
        elif MODE == 3:
            ent = tl.log(tl.zeros([BLOCK_M], dtype=tl.float32) + N_KV)
        elif MODE == 4:
            ent = log2_l * _LN2 - _log1p(r_i / l_i) / beta
        else:
            ent = (tl.log2(r_i) - alpha * log2_l) * _LN2 / (-beta)
        tl.store(Ent + row, ent, mask=mask_m)


def _gpu_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s in [
            (128, 64, 4, 3),
            (128, 64, 8, 3),
            (64, 64, 4, 3),
            (128, 128, 8, 2),
            (64, 32, 4, 4),
            (128, 32, 4, 4),
        ]
    ]


_fwd_autotuned = triton.autotune(configs=_gpu_configs(), key=["N_BUCKET", "HEAD_DIM", "MODE", "UPCAST"])(
    _attn_entropy_fwd_kernel
)

# Tiles under TRITON_INTERPRET=1: large, so the Python-level loop runs few iterations.
_INTERPRET_BLOCK_M = 64
_INTERPRET_BLOCK_N = 128


def attention_entropy_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    alpha: float,
    beta: float,
    mode: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Launch the fused forward kernel (no input checks: the op layer validates).

    Args:
        q: (B, H, N, D) queries, any strides, fp32/fp16/bf16.
        k, v: (B, H, M, D) keys and values, same dtype and device as ``q``.
        scale: logit scale (usually D ** -0.5).
        alpha: Rényi order α (used by the Rényi modes).
        beta: α − 1 computed in double precision on the host.
        mode: one of the ``ENT_*`` constants (see :func:`entropy_mode`).

    Returns:
        ``(out, lse, entropy)``: out (B, H, N, D) in the input dtype, laid out as (B, N, H, D) in
        memory so that ``out.transpose(1, 2).reshape(B, N, H * D)`` is free; lse (B, H, N) fp32
        natural log-sum-exp of the scaled logits; entropy (B, H, N) fp32 in nats, or ``None`` for
        ``ENT_NONE``.
    """
    B, H, N, D = q.shape
    M = k.shape[2]
    out = torch.empty((B, N, H, D), dtype=q.dtype, device=q.device).transpose(1, 2)
    lse = torch.empty((B, H, N), dtype=torch.float32, device=q.device)
    ent = torch.empty((B, H, N), dtype=torch.float32, device=q.device) if mode != ENT_NONE else lse
    if B * H * N == 0:
        return out, lse, (ent if mode != ENT_NONE else None)

    interpret = is_interpreting()
    fp32_ieee = q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
    args = (
        q, k, v, out, lse, ent,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        H, N, M, D,
        scale * _LOG2E,
        alpha if alpha != float("inf") else 0.0,
        beta * _LN2.value if alpha != float("inf") else 0.0,
        beta if alpha != float("inf") else 0.0,
        triton.next_power_of_2(M),
    )  # fmt: skip
    consts = dict(
        MODE=mode,
        UPCAST=interpret or q.dtype == torch.float32,
        INPUT_PRECISION="ieee" if (interpret or fp32_ieee) else "tf32",
        BLOCK_D=max(16, triton.next_power_of_2(D)),
    )
    if interpret:
        grid = (triton.cdiv(N, _INTERPRET_BLOCK_M) * B * H,)
        _attn_entropy_fwd_kernel[grid](
            *args, BLOCK_M=_INTERPRET_BLOCK_M, BLOCK_N=_INTERPRET_BLOCK_N, **consts
        )
    else:

        def grid(meta):
            return (triton.cdiv(N, meta["BLOCK_M"]) * B * H,)

        _fwd_autotuned[grid](*args, **consts)
    return out, lse, (ent if mode != ENT_NONE else None)
