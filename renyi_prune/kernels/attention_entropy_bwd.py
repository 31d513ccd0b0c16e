"""Backward kernels of the fused attention + Rényi entropy op: dq, dk, dv without atomics.

FlashAttention-2 style (Dao, 2023): P is recomputed tile by tile from the log-sum-exp the forward
saved, never stored. With dO the output gradient, δ_i = Σ_d dO_id·O_id and g_i the gradient reaching
the entropy H_α(i) of row i (zero unless the entropy is differentiated),

    dS_ij = P_ij (dO_i·v_j − δ_i) + g_i ∂H_α(i)/∂s_ij,
    dq_i = scale Σ_j dS_ij k_j,   dk_j = scale Σ_i dS_ij q_i,   dv_j = Σ_i P_ij dO_i,

with s = q·k·scale and ∂H/∂s from :func:`renyi_prune.kernels._common._entropy_dlogits` (Shannon
−p(log p + H); Rényi α/(1−α)(p^α/Σp^α − p); min-entropy p − 1[argmax]). One kernel owns a key tile
and loops over query tiles (dk, dv); another owns a query tile and loops over key tiles (dq). Each
output element is written by exactly one program in a fixed loop order, so results are
bit-reproducible (no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    _LN2,
    INTERPRET_BLOCK_M,
    INTERPRET_BLOCK_N,
    LOG2E,
    _entropy_dlogits,
    _program_tile,
    _tile,
    alpha_args,
    autotune,
    entropy_mode,
    is_interpreting,
    launch_consts,
)

__all__ = ["attention_entropy_bwd"]


@triton.jit
def _bwd_preprocess_kernel(Out, DOut, Delta, stride_ob, stride_oh, stride_on, stride_od,
                           stride_gb, stride_gh, stride_gn, stride_gd, H, N, HEAD_DIM,
                           BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """δ_i = Σ_d dO_id · O_id, fp32 (B, H, N) contiguous."""
    pid_m, b, h = _program_tile(N, BLOCK_M, H)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < N
    mask_d = offs_d < HEAD_DIM
    o = _tile(Out + b * stride_ob + h * stride_oh, offs_m, offs_d, stride_on, stride_od, mask_m, mask_d)
    do = _tile(DOut + b * stride_gb + h * stride_gh, offs_m, offs_d, stride_gn, stride_gd, mask_m, mask_d)
    o = o.to(tl.float32)
    do = do.to(tl.float32)
    tl.store(Delta + (b * H + h) * N + offs_m, tl.sum(o * do, 1), mask=mask_m)


@triton.jit
def _row_stats(Lse, Delta, Ent, GEnt, Argmax, rows, mask, BLOCK_M: tl.constexpr, MODE: tl.constexpr,
               ENT_GRAD: tl.constexpr):  # fmt: skip
    """Per-row inputs of dS: lse (log2 units), δ, and for the entropy gradient H, its gradient, argmax."""
    lse2 = tl.load(Lse + rows, mask=mask, other=0.0) * 1.4426950408889634
    delta = tl.load(Delta + rows, mask=mask, other=0.0)
    ent = tl.zeros([BLOCK_M], dtype=tl.float32)
    gent = tl.zeros([BLOCK_M], dtype=tl.float32)
    amax = tl.zeros([BLOCK_M], dtype=tl.int32)
    if ENT_GRAD:
        ent = tl.load(Ent + rows, mask=mask, other=0.0)
        gent = tl.load(GEnt + rows, mask=mask, other=0.0)
        if MODE == 2:
            amax = tl.load(Argmax + rows, mask=mask, other=-1)
    return lse2, delta, ent, gent, amax


@triton.jit
def _dscores(q, k, v, do, lse2, delta, ent, gent, amax, offs_m, offs_n, mask_mn,
             qk_scale_log2, alpha, beta,
             MODE: tl.constexpr, ENT_GRAD: tl.constexpr, INPUT_PRECISION: tl.constexpr):  # fmt: skip
    """P and dS for one (query tile, key tile) pair; q, do (BM, D); k, v (D, BN) transposed."""
    s2 = tl.dot(q, k, input_precision=INPUT_PRECISION) * qk_scale_log2  # logits in log2 units
    p = tl.where(mask_mn, tl.exp2(s2 - lse2[:, None]), 0.0)
    dp = tl.dot(do, v, input_precision=INPUT_PRECISION)
    ds = p * (dp - delta[:, None])
    if ENT_GRAD:
        lp = tl.where(mask_mn, (s2 - lse2[:, None]) * _LN2, 0.0)  # log p in nats
        is_max = (offs_n[None, :] == amax[:, None]).to(tl.float32)
        dh = _entropy_dlogits(p, lp, ent[:, None], is_max, alpha, beta, MODE)
        ds += tl.where(mask_mn, gent[:, None] * dh, 0.0)
    return p, ds


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DOut, Lse, Delta, Ent, GEnt, Argmax, DK, DV,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_gb, stride_gh, stride_gn, stride_gd,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    H, N_Q, N_KV, HEAD_DIM,
    scale, qk_scale_log2, alpha, beta,
    N_BUCKET,
    MODE: tl.constexpr, ENT_GRAD: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n, b, h = _program_tile(N_KV, BLOCK_N, H)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < N_KV
    mask_d = offs_d < HEAD_DIM

    # k and v as (D, BN) tiles: s = q·kᵀ and dp = dO·vᵀ are plain dots
    kt = _tile(K + b * stride_kb + h * stride_kh, offs_d, offs_n, stride_kd, stride_kn, mask_d, mask_n)
    vt = _tile(V + b * stride_vb + h * stride_vh, offs_d, offs_n, stride_vd, stride_vn, mask_d, mask_n)
    if UPCAST:
        kt = kt.to(tl.float32)
        vt = vt.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    row0 = (b * H + h) * N_Q

    for start_m in range(0, N_Q, BLOCK_M):
        offs_m = start_m + offs_m0
        mask_m = offs_m < N_Q
        q = _tile(Q + b * stride_qb + h * stride_qh, offs_m, offs_d, stride_qn, stride_qd, mask_m, mask_d)
        do = _tile(DOut + b * stride_gb + h * stride_gh, offs_m, offs_d, stride_gn, stride_gd, mask_m, mask_d)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse2, delta, ent, gent, amax = _row_stats(Lse, Delta, Ent, GEnt, Argmax, row0 + offs_m, mask_m,
                                                  BLOCK_M, MODE, ENT_GRAD)  # fmt: skip
        mask_mn = mask_m[:, None] & mask_n[None, :]
        p, ds = _dscores(q, kt, vt, do, lse2, delta, ent, gent, amax, offs_m, offs_n, mask_mn,
                         qk_scale_log2, alpha, beta, MODE, ENT_GRAD, INPUT_PRECISION)  # fmt: skip
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=INPUT_PRECISION)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=INPUT_PRECISION)

    out_mask = mask_n[:, None] & mask_d[None, :]
    off = b * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd
    tl.store(DK + off, (dk * scale).to(DK.dtype.element_ty), mask=out_mask)
    tl.store(DV + off, dv.to(DV.dtype.element_ty), mask=out_mask)


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DOut, Lse, Delta, Ent, GEnt, Argmax, DQ,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_gb, stride_gh, stride_gn, stride_gd,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    H, N_Q, N_KV, HEAD_DIM,
    scale, qk_scale_log2, alpha, beta,
    N_BUCKET,
    MODE: tl.constexpr, ENT_GRAD: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m, b, h = _program_tile(N_Q, BLOCK_M, H)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < N_Q
    mask_d = offs_d < HEAD_DIM
    qd_mask = mask_m[:, None] & mask_d[None, :]
    q = _tile(Q + b * stride_qb + h * stride_qh, offs_m, offs_d, stride_qn, stride_qd, mask_m, mask_d)
    do = _tile(DOut + b * stride_gb + h * stride_gh, offs_m, offs_d, stride_gn, stride_gd, mask_m, mask_d)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    row0 = (b * H + h) * N_Q
    lse2, delta, ent, gent, amax = _row_stats(Lse, Delta, Ent, GEnt, Argmax, row0 + offs_m, mask_m,
                                              BLOCK_M, MODE, ENT_GRAD)  # fmt: skip
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, N_KV, BLOCK_N):
        offs_n = start_n + offs_n0
        mask_n = offs_n < N_KV
        kt = _tile(K + b * stride_kb + h * stride_kh, offs_d, offs_n, stride_kd, stride_kn, mask_d, mask_n)
        vt = _tile(V + b * stride_vb + h * stride_vh, offs_d, offs_n, stride_vd, stride_vn, mask_d, mask_n)
        if UPCAST:
            kt = kt.to(tl.float32)
            vt = vt.to(tl.float32)
        mask_mn = mask_m[:, None] & mask_n[None, :]
        p, ds = _dscores(q, kt, vt, do, lse2, delta, ent, gent, amax, offs_m, offs_n, mask_mn,
                         qk_scale_log2, alpha, beta, MODE, ENT_GRAD, INPUT_PRECISION)  # fmt: skip
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=INPUT_PRECISION)

    off = b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqn + offs_d[None, :] * stride_dqd
    tl.store(DQ + off, (dq * scale).to(DQ.dtype.element_ty), mask=qd_mask)


_BWD_TILES = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (64, 128, 8, 2), (32, 64, 4, 3)]
_KEY = ["N_BUCKET", "HEAD_DIM", "MODE", "ENT_GRAD", "UPCAST"]
_dkdv_autotuned = autotune(_BWD_TILES, key=_KEY)(_bwd_dkdv_kernel)
_dq_autotuned = autotune(_BWD_TILES, key=_KEY)(_bwd_dq_kernel)


def attention_entropy_bwd(
    dout: torch.Tensor,
    grad_ent: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor,
    argmax: torch.Tensor,
    scale: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernels (no input checks: the op layer validates).

    Args:
        dout: (B, H, N, D) gradient of the attention output, any strides.
        grad_ent: (B, H, N) fp32 gradient of the per-head entropy, or ``None`` (entropy not
            differentiated).
        q, k, v, out: the forward's inputs and output.
        lse, ent, argmax: what the forward saved (see :func:`attention_entropy_fwd`).
        scale, alpha: as in the forward.

    Returns:
        ``(dq, dk, dv)`` in the input dtype, shaped (B, H, N, D) / (B, H, M, D), laid out as
        (B, N, H, D) in memory.
    """
    B, H, N, D = q.shape
    M = k.shape[2]

    def bnhd(n: int) -> torch.Tensor:
        return torch.empty((B, n, H, D), dtype=q.dtype, device=q.device).transpose(1, 2)

    dq, dk, dv = bnhd(N), bnhd(M), bnhd(M)
    if B * H * N == 0 or M == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()

    interpret = is_interpreting()
    mode = entropy_mode(alpha)
    consts = dict(MODE=mode, ENT_GRAD=grad_ent is not None, **launch_consts(q.dtype, D, interpret))
    delta = torch.empty((B, H, N), dtype=torch.float32, device=q.device)
    pre_block = 64
    _bwd_preprocess_kernel[(triton.cdiv(N, pre_block) * B * H,)](
        out, dout, delta, *out.stride(), *dout.stride(), H, N, D, BLOCK_M=pre_block, BLOCK_D=consts["BLOCK_D"]
    )
    g = grad_ent.contiguous() if grad_ent is not None else delta  # placeholder pointer when unused
    am = argmax if argmax.numel() else delta
    common = (
        q, k, v, dout, lse, delta, ent, g, am,
    )  # fmt: skip
    strides = (*q.stride(), *k.stride(), *v.stride(), *dout.stride())
    scalars = (H, N, M, D, scale, scale * LOG2E, *_alpha_beta(alpha), triton.next_power_of_2(max(N, M)))
    dkdv_args = (*common, dk, dv, *strides, *dk.stride(), *scalars)
    dq_args = (*common, dq, *strides, *dq.stride(), *scalars)
    if interpret:
        tiles = dict(BLOCK_M=INTERPRET_BLOCK_M, BLOCK_N=INTERPRET_BLOCK_N)
        _bwd_dkdv_kernel[(triton.cdiv(M, INTERPRET_BLOCK_N) * B * H,)](*dkdv_args, **tiles, **consts)
        _bwd_dq_kernel[(triton.cdiv(N, INTERPRET_BLOCK_M) * B * H,)](*dq_args, **tiles, **consts)
    else:
        _dkdv_autotuned[lambda meta: (triton.cdiv(M, meta["BLOCK_N"]) * B * H,)](*dkdv_args, **consts)
        _dq_autotuned[lambda meta: (triton.cdiv(N, meta["BLOCK_M"]) * B * H,)](*dq_args, **consts)
    return dq, dk, dv


def _alpha_beta(alpha: float) -> tuple[float, float]:
    a, _, b = alpha_args(alpha)
    return a, b
