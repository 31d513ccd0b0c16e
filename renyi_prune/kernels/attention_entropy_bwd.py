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
    AUTOTUNE_KEY,
    INTERPRET_BLOCK_M,
    LOG2E,
    MODE_MIN,
    TiledKernel,
    _entropy_dlogits,
    _load_lse2,
    _load_tile,
    _log2_probs,
    _program_tile,
    _span,
    _store_tile,
    alpha_args,
    block_d,
    empty_bnhd,
    entropy_mode,
)

__all__ = ["attention_entropy_bwd"]


@triton.jit
def _bwd_preprocess_kernel(Out, DOut, Lse, Delta, Lse2, stride_o, stride_do, H, N, N_PAD, HEAD_DIM,
                           BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """δ_i = Σ_d dO_id · O_id and lse_i in log2 units (:func:`_load_lse2`), fp32 (B, H, N_PAD)
    contiguous each; rows N … N_PAD − 1 hold δ = 0 and lse2 = +inf (p = 0 there), so that the
    backward kernels load both unmasked."""
    offs_m, _, b, h = _program_tile(N_PAD, BLOCK_M, H)
    mask_m = offs_m < N
    o = _load_tile(Out, stride_o, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST=True, TRANS=False)
    do = _load_tile(DOut, stride_do, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST=True, TRANS=False)
    tl.store(Delta + (b * H + h) * N_PAD + offs_m, tl.sum(o * do, 1))
    lse2 = _load_lse2(Lse, (b * H + h) * N + offs_m, mask_m)
    tl.store(Lse2 + (b * H + h) * N_PAD + offs_m, tl.where(mask_m, lse2, float("inf")))


@triton.jit
def _row_stats(Lse2, Delta, Ent, GEnt, Argmax, b, h, H, N, N_PAD, offs_m, mask, BLOCK_M: tl.constexpr,
               MODE: tl.constexpr, ENT_GRAD: tl.constexpr):  # fmt: skip
    """Per-row inputs of dS of query rows ``offs_m`` of head (b, h): lse (log2 units) and δ (from the
    preprocess, padded: loaded unmasked), and for the entropy gradient H, its gradient, argmax."""
    lse2 = tl.load(Lse2 + (b * H + h) * N_PAD + offs_m)
    delta = tl.load(Delta + (b * H + h) * N_PAD + offs_m)
    rows = (b * H + h) * N + offs_m
    ent = tl.zeros([BLOCK_M], dtype=tl.float32)
    gent = tl.zeros([BLOCK_M], dtype=tl.float32)
    amax = tl.zeros([BLOCK_M], dtype=tl.int32)
    if ENT_GRAD:
        ent = tl.load(Ent + rows, mask=mask, other=0.0)
        gent = tl.load(GEnt + rows, mask=mask, other=0.0)
        if MODE == MODE_MIN:
            amax = tl.load(Argmax + rows, mask=mask, other=-1)
    return lse2, delta, ent, gent, amax


@triton.jit
def _dscores_from(x, dp, delta, ent, gent, is_max, mask, alpha, beta, MODE: tl.constexpr,
                  ENT_GRAD: tl.constexpr):  # fmt: skip
    """P and dS of one tile from x = log2 p and dp = dO·v, in either layout: ``delta``, ``ent``,
    ``gent`` the query rows' stats and ``is_max`` (1 at the row's argmax) broadcast to the tile's
    layout, ``mask`` the tile's mask."""
    p = tl.where(mask, tl.exp2(x), 0.0)  # fp32, the tile's layout
    ds = p * (dp - delta)
    if ENT_GRAD:
        lp = tl.where(mask, x * _LN2, 0.0)  # log p in nats
        dh = _entropy_dlogits(p, lp, ent, is_max, alpha, beta, MODE)
        ds += tl.where(mask, gent * dh, 0.0)
    return p, ds


@triton.jit
def _dscores(q, kt, vt, do, stats, offs_n, mask_mn, qk_scale_log2, alpha, beta,
             MODE: tl.constexpr, ENT_GRAD: tl.constexpr, INPUT_PRECISION: tl.constexpr):  # fmt: skip
    """P and dS (BM, BN) for one (query tile, key tile) pair; q, do (BM, D); kt, vt (D, BN) transposed;
    ``stats`` the query rows' :func:`_row_stats`."""
    lse2, delta, ent, gent, amax = stats
    x = _log2_probs(q, kt, lse2, qk_scale_log2, INPUT_PRECISION)  # (BLOCK_M, BLOCK_N) fp32 log2 p
    dp = tl.dot(do, vt, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_N) fp32 dO·v
    is_max = (offs_n[None, :] == amax[:, None]).to(tl.float32)  # (BLOCK_M, BLOCK_N) 0/1
    return _dscores_from(x, dp, delta[:, None], ent[:, None], gent[:, None], is_max, mask_mn, alpha,
                         beta, MODE, ENT_GRAD)  # fmt: skip


@triton.jit
def _dscores_t(k, v, qt, do, stats, offs_n, mask_nm, qk_scale_log2, alpha, beta,
               MODE: tl.constexpr, ENT_GRAD: tl.constexpr, INPUT_PRECISION: tl.constexpr):  # fmt: skip
    """Pᵀ and dSᵀ (BN, BM), :func:`_dscores` transposed (as the Triton tutorial's backward): Sᵀ = k·qᵀ
    and dPᵀ = v·dOᵀ, so that dv += Pᵀ·dO and dk += dSᵀ·q need no transpose of a tile in registers;
    k, v (BN, D); qt (D, BM) transposed; do (BM, D)."""
    lse2, delta, ent, gent, amax = stats
    x = tl.dot(k, qt, input_precision=INPUT_PRECISION) * qk_scale_log2 - lse2[None, :]  # (BN, BM) fp32
    dpt = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION)  # (BLOCK_N, BLOCK_M) fp32
    is_max = (offs_n[:, None] == amax[None, :]).to(tl.float32)  # (BLOCK_N, BLOCK_M) 0/1
    return _dscores_from(x, dpt, delta[None, :], ent[None, :], gent[None, :], is_max, mask_nm, alpha,
                         beta, MODE, ENT_GRAD)  # fmt: skip


@triton.jit
def _load_kv(K, V, stride_k, stride_v, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D: tl.constexpr,
             UPCAST: tl.constexpr, TRANS: tl.constexpr):  # fmt: skip
    """k and v of keys ``offs_n``: (BN, D) tiles, (D, BN) if TRANS (so that s = q·kᵀ and dp = dO·vᵀ
    are plain dots)."""
    k = _load_tile(K, stride_k, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS)
    v = _load_tile(V, stride_v, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS)
    return k, v


# dk and dv of one key tile, looping over all query tiles; in the transposed layout (key rows)
@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DOut, Lse, Delta, Ent, GEnt, Argmax, DK, DV,
    stride_q, stride_k, stride_v, stride_do, stride_dk,  # (b, h, n, d) element strides; DV has DK's
    H, N_Q, N_KV, HEAD_DIM, scale, qk_scale_log2, alpha, beta, N_BUCKET, N_PAD,
    MODE: tl.constexpr, ENT_GRAD: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    offs_n, mask_n, b, h = _program_tile(N_KV, BLOCK_N, H)
    k, v = _load_kv(K, V, stride_k, stride_v, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, False)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)  # k and v: (BLOCK_N, BLOCK_D) tiles
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    for start_m in range(0, N_Q, BLOCK_M):
        offs_m, mask_m = _span(start_m, N_Q, BLOCK_M)
        # qᵀ (BLOCK_D, BLOCK_M), dO (BLOCK_M, BLOCK_D); Pᵀ and dSᵀ (BLOCK_N, BLOCK_M) fp32
        qt = _load_tile(Q, stride_q, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=True)
        do = _load_tile(DOut, stride_do, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)
        stats = _row_stats(Lse, Delta, Ent, GEnt, Argmax, b, h, H, N_Q, N_PAD, offs_m, mask_m, BLOCK_M, MODE,
                           ENT_GRAD)  # fmt: skip
        pt, dst = _dscores_t(k, v, qt, do, stats, offs_n, mask_m[None, :],
                             qk_scale_log2, alpha, beta, MODE, ENT_GRAD, INPUT_PRECISION)  # fmt: skip
        dv += tl.dot(pt.to(do.dtype), do, input_precision=INPUT_PRECISION)
        dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=INPUT_PRECISION)

    _store_tile(DK, stride_dk, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, dk * scale)
    _store_tile(DV, stride_dk, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, dv)


# dq of one query tile, looping over all key tiles
@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DOut, Lse, Delta, Ent, GEnt, Argmax, DQ,
    stride_q, stride_k, stride_v, stride_do, stride_dq,  # (b, h, n, d) element strides
    H, N_Q, N_KV, HEAD_DIM, scale, qk_scale_log2, alpha, beta, N_BUCKET, N_PAD,
    MODE: tl.constexpr, ENT_GRAD: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    offs_m, mask_m, b, h = _program_tile(N_Q, BLOCK_M, H)
    q = _load_tile(Q, stride_q, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)
    do = _load_tile(DOut, stride_do, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)
    stats = _row_stats(Lse, Delta, Ent, GEnt, Argmax, b, h, H, N_Q, N_PAD, offs_m, mask_m, BLOCK_M, MODE,
                       ENT_GRAD)  # fmt: skip
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # q and dO: (BLOCK_M, BLOCK_D) tiles

    for start_n in range(0, N_KV, BLOCK_N):
        offs_n, mask_n = _span(start_n, N_KV, BLOCK_N)
        # kᵀ, vᵀ (BLOCK_D, BLOCK_N); P and dS (BLOCK_M, BLOCK_N) fp32
        kt, vt = _load_kv(K, V, stride_k, stride_v, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, True)
        p, ds = _dscores(q, kt, vt, do, stats, offs_n, mask_m[:, None] & mask_n[None, :],
                         qk_scale_log2, alpha, beta, MODE, ENT_GRAD, INPUT_PRECISION)  # fmt: skip
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=INPUT_PRECISION)

    _store_tile(DQ, stride_dq, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, dq * scale)


# Tiles (BLOCK_M queries, BLOCK_N keys, num_warps, num_stages) per kernel: sm_90's own lists, and one for
# every other GPU (mma.sync: sm_80, sm_86, sm_89, ...), each without a config that spills registers in
# any entropy mode on its architecture (bf16, head dim 64; ``renyi-prune bench static``). On sm_80/sm_86
# 64 × 64 tiles spill in both kernels; on sm_90, dk/dv at 128 × 64 with 8 warps (its 64-key Sᵀ rows
# split 8 warps along 64 rows: every warpgroup computes Sᵀ and dPᵀ) and 4 warps with 64 × 128 spill.
_DKDV_TILES_SM90 = [(64, 64, 4, 2), (64, 128, 8, 2), (64, 128, 8, 3), (32, 64, 4, 3), (32, 128, 8, 2)]
_DKDV_TILES = [(64, 32, 4, 2), (128, 32, 8, 2), (64, 32, 4, 3), (16, 64, 4, 2)]
_DQ_TILES_SM90 = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (64, 128, 8, 2), (32, 64, 4, 3)]
_DQ_TILES = [(128, 32, 8, 2), (64, 32, 4, 2), (32, 64, 4, 2), (32, 64, 4, 3)]
_KEY = (*AUTOTUNE_KEY, "ENT_GRAD")
_ALL_TILES = (*_DKDV_TILES_SM90, *_DKDV_TILES, *_DQ_TILES_SM90, *_DQ_TILES)
_MAX_BLOCK_M = max(INTERPRET_BLOCK_M, *(t[0] for t in _ALL_TILES))  # δ and lse2 are padded to it
_dkdv_launch = TiledKernel(_bwd_dkdv_kernel, _DKDV_TILES, "BLOCK_N", _KEY, arch_tiles={90: _DKDV_TILES_SM90})
_dq_launch = TiledKernel(_bwd_dq_kernel, _DQ_TILES, "BLOCK_M", _KEY, arch_tiles={90: _DQ_TILES_SM90})


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
        dout: (B, H, N, D) gradient of the attention output, dtype and device of ``q``, any strides.
        grad_ent: (B, H, N) fp32 gradient of the loss with respect to the per-head entropy (which
            is in nats), or ``None`` (entropy not differentiated).
        q, k, v, out: the forward's inputs, (B, H, N, D) and (B, H, M, D), and its output
            (B, H, N, D), as for :func:`attention_entropy_fwd`.
        lse, ent, argmax: what the forward saved (see :func:`attention_entropy_fwd`): fp32 lse and
            entropy in nats, int32 argmax (empty unless α = ∞).
        scale, alpha: as in the forward.

    Returns:
        ``(dq, dk, dv)`` in the input dtype, shaped (B, H, N, D) / (B, H, M, D), laid out as
        (B, N, H, D) in memory: the gradients of ⟨dout, out⟩ + ⟨grad_ent, entropy⟩.

    Example:
        >>> import torch
        >>> from renyi_prune.kernels import attention_entropy_bwd, attention_entropy_fwd
        >>> from renyi_prune.reference import attention_with_entropy_reference
        >>> device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v, dout = torch.randn(4, 1, 2, 17, 16, generator=g).to(device).unbind(0)
        >>> grad_ent = torch.randn(1, 2, 17, generator=g).to(device)
        >>> out, lse, ent, argmax = attention_entropy_fwd(q, k, v, 0.25, 1.0)
        >>> dq, dk, dv = attention_entropy_bwd(dout, grad_ent, q, k, v, out, lse, ent, argmax, 0.25, 1.0)
        >>> dq.shape, dk.dtype
        (torch.Size([1, 2, 17, 16]), torch.float32)
        >>> qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
        >>> ref_out, ref_ent, _ = attention_with_entropy_reference(qd, kd, vd, alpha=1.0, head_reduce="none")
        >>> torch.autograd.backward((ref_out, ref_ent), (dout.double(), grad_ent.double()))
        >>> [torch.allclose(x.double(), r.grad, atol=1e-4) for x, r in ((dq, qd), (dk, kd), (dv, vd))]
        [True, True, True]
    """
    B, H, N, D = q.shape
    M = k.shape[2]
    dq, dk, dv = empty_bnhd(q), empty_bnhd(q, M), empty_bnhd(q, M)
    if B * H * N == 0 or M == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()

    n_pad = triton.cdiv(N, _MAX_BLOCK_M) * _MAX_BLOCK_M  # every BLOCK_M divides it
    delta, lse2 = torch.empty((2, B, H, n_pad), dtype=torch.float32, device=q.device).unbind(0)
    pre_block = 64
    _bwd_preprocess_kernel[(n_pad // pre_block * B * H,)](
        out, dout, lse, delta, lse2, out.stride(), dout.stride(), H, N, n_pad, D, BLOCK_M=pre_block,
        BLOCK_D=block_d(D),
    )  # fmt: skip
    g = grad_ent.contiguous() if grad_ent is not None else delta  # placeholder pointer when unused
    am = argmax if argmax.numel() else delta
    inputs = (q, k, v, dout, lse2, delta, ent, g, am)
    strides = (q.stride(), k.stride(), v.stride(), dout.stride())
    n_bucket = triton.next_power_of_2(max(N, M))
    scalars = (H, N, M, D, scale, scale * LOG2E, *_alpha_beta(alpha), n_bucket, n_pad)
    consts = dict(MODE=entropy_mode(alpha), ENT_GRAD=grad_ent is not None)
    _dkdv_launch(q, M, (*inputs, dk, dv, *strides, dk.stride(), *scalars), **consts)
    _dq_launch(q, N, (*inputs, dq, *strides, dq.stride(), *scalars), **consts)
    return dq, dk, dv


def _alpha_beta(alpha: float) -> tuple[float, float]:
    a, _, b = alpha_args(alpha)
    return a, b
