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
  Full key tiles add e_j x_j unguarded; a −inf logit there (infinite inputs only) makes t NaN, and
  such rows (NaN t, finite lse) get t again from a guarded second pass at the end of the row.
* min-entropy (α = ∞): H_∞ = −ln max_j p_j = ln l: no running sum beyond l; the row argmax (what its
  gradient needs) only with NEED_ARGMAX.
* α = 0: every key has p_j > 0 in exact arithmetic, so H_0 = ln N_kv.
* Rényi, α = 1 + β near 1 (|β| < 1/4): u = Σ (e_j^α − e_j) ← c^α·u + (c^α − c)·l_old + Σ(e_j^α − e_j),
  each e^{αx} − e^{x} formed as e^x·expm1(βx) when |βx| is small, so nothing cancels; then
  Σ p^α = (l + u)/l^α and H_α = ln l − log1p(u/l)/β, exact in the limit β → 0. β comes from the host
  in double precision (α − 1 loses all digits of a small β once α is rounded to fp32).
* Rényi, |β| ≥ 1/4 (0 < α ≤ 0.75 or α ≥ 1.25): a = Σ e_j^α ← c^α·a + Σ e_j^α ∈ [1, N];
  H_α = (ln a − α ln l)/(1 − α), formed as ln l + (ln l − ln a)/β so that α·ln l never overflows
  (orders with β ≥ 2^23 run as α = ∞). α = 2, 3, 4 (POW) form e^α and c^α by multiplication, no
  second exp2 per element; α = 1/2, 1/3, 1/4 take 2^{αx} as their one exp2 and form e = (2^{αx})^n.

Cost (issue 12): full key tiles run unmasked, only the last, partial one is masked; the logit scale
and the max shift are one FMA, x = (q·k)·scale − m (the max of the raw products, scaled: scale ≥ 0,
the host moves a negative scale's sign into q), so x may exceed 0 by an ulp of m.

The running max starts at a finite −1e30 instead of −inf, so a key tile that is fully masked or
the first rescale never evaluates 0·(−inf) or (−inf) − (−inf). Non-finite inputs follow SDPA: a
row with no attendable key (all logits −inf, so l = 0) gets out = 0 and lse = −inf; NaN propagates;
the entropy is NaN exactly where the lse is not finite.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    _LN2,
    AUTOTUNE_KEY,
    ENT_MIN,
    ENT_RENYI_DIRECT,
    LOG2E,
    MODE_MIN,
    MODE_RENYI_DIRECT,
    MODE_RENYI_LOG1P,
    MODE_SHANNON,
    MODE_SUPPORT,
    TiledKernel,
    _exp_alpha_minus_exp,
    _load_tile,
    _log1p,
    _program_tile,
    _span,
    _store_tile,
    alpha_args,
    empty_bnhd,
    entropy_mode,
)

__all__ = ["attention_entropy_fwd"]

_FLT_MAX = tl.constexpr(3.4028234663852886e38)  # Shannon guard: p·max(x, −FLT_MAX) is 0 at x = −inf


@triton.jit
def _fwd_tile(
    acc, m_i, l_i, r_i, a_i, q, K, V, stride_k, stride_v, b, h, start_n,
    N_KV, HEAD_DIM, qk_scale_log2, alpha, beta_ln2,
    MODE: tl.constexpr, POW: tl.constexpr, NEED_ARGMAX: tl.constexpr, MASKED: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """One key tile of the online softmax and the entropy's running sums (see the module doc).

    Full tiles (MASKED false) take no key mask; only the last, partial tile does. The logit scale is
    folded into the shift, x = dot·scale − m (one FMA; the host passes scale ≥ 0, so the row max of
    the raw products scales to the max of the logits); x may then exceed 0 by an ulp of m."""
    offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,) int32
    if MASKED:
        mask_n = offs_n < N_KV
    else:
        mask_n = tl.full([BLOCK_N], 1, tl.int1)
    # kᵀ (BLOCK_D, BLOCK_N) and later v (BLOCK_N, BLOCK_D): the input dtype, fp32 if UPCAST
    kt = _load_tile(K, stride_k, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS=True)
    qk = tl.dot(q, kt, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_N) fp32 raw q·k
    if MODE == MODE_MIN and NEED_ARGMAX:  # first index of the row max, on the scaled logits
        s = tl.where(mask_n[None, :], qk * qk_scale_log2, float("-inf"))
        tile_max = tl.max(s, 1)  # = max(qk)·scale, bit for bit (scale ≥ 0, rounding is monotone)
        a_i = tl.where(tile_max > m_i, tl.argmax(s, 1).to(tl.int32) + start_n, a_i)
    elif MASKED:
        tile_max = tl.max(tl.where(mask_n[None, :], qk, float("-inf")), 1) * qk_scale_log2
    else:
        tile_max = tl.max(qk, 1) * qk_scale_log2
    m_new = tl.maximum(m_i, tile_max)  # (BLOCK_M,) fp32, as l_i, r_i and delta
    delta = m_i - m_new
    # α = 1/n: e = 2^{αx} is the one exp2, p = e^n by multiplication
    if MODE == MODE_RENYI_DIRECT and POW < -1:
        xa = qk * (qk_scale_log2 * alpha) - (m_new * alpha)[:, None]  # (BLOCK_M, BLOCK_N) fp32
        if MASKED:
            xa = tl.where(mask_n[None, :], xa, float("-inf"))
        e = tl.exp2(xa)
        ca = tl.exp2(delta * alpha)
        if POW == -2:
            p = e * e
            c = ca * ca
        elif POW == -3:
            p = e * e * e
            c = ca * ca * ca
        else:
            p = (e * e) * (e * e)
            c = (ca * ca) * (ca * ca)
        r_i = ca * r_i + tl.sum(e, 1)
        x = xa  # unused
    else:
        # (BLOCK_M, BLOCK_N) fp32, one FMA; the same bits with or without the argmax
        x = qk * qk_scale_log2 - m_new[:, None]
        if MASKED:
            x = tl.where(mask_n[None, :], x, float("-inf"))
        c = tl.exp2(delta)
        p = tl.exp2(x)
    if MODE == MODE_SHANNON:
        if MASKED:  # p·x with p = 0 where x = −inf (masked keys): max(x, −FLT_MAX) makes it 0, not NaN
            px = p * tl.maximum(x, -_FLT_MAX)
        else:  # unguarded: a −inf logit (only from infinite inputs) makes the row's t NaN, and the
            # kernel's epilogue recomputes t for exactly those rows (_shannon_t_guarded)
            px = p * x
        r_i = c * (r_i + delta * l_i) + tl.sum(px, 1)
    elif MODE == MODE_RENYI_LOG1P:  # Rényi near α = 1
        r_i = (
            tl.exp2(delta * alpha) * r_i
            + _exp_alpha_minus_exp(delta, alpha, beta_ln2) * l_i
            + tl.sum(_exp_alpha_minus_exp(x, alpha, beta_ln2), 1)
        )
    elif MODE == MODE_RENYI_DIRECT:  # direct power sum
        if POW == 2:  # integer orders: p^α and c^α by multiplication, no second exp
            r_i = (c * c) * r_i + tl.sum(p * p, 1)
        elif POW == 3:
            r_i = (c * c * c) * r_i + tl.sum(p * p * p, 1)
        elif POW == 4:
            c2 = c * c
            r_i = (c2 * c2) * r_i + tl.sum((p * p) * (p * p), 1)
        elif POW < -1:  # α = 1/n: summed above
            r_i = r_i
        elif POW == -1:  # 0 < α < 1: α·x ≤ x, nothing to clamp
            r_i = tl.exp2(delta * alpha) * r_i + tl.sum(tl.exp2(x * alpha), 1)
        else:  # α > 1: x ≤ 0 clamped, α·(an ulp-sized positive x) must not overflow at α up to 2^23
            r_i = tl.exp2(delta * alpha) * r_i + tl.sum(tl.exp2(tl.minimum(x, 0.0) * alpha), 1)
    l_i = c * l_i + tl.sum(p, 1)

    v = _load_tile(V, stride_v, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)
    acc = acc * c[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION)
    return acc, m_new, l_i, r_i, a_i


@triton.jit
def _shannon_t_guarded(q, K, stride_k, b, h, m_i, N_KV, HEAD_DIM, qk_scale_log2,
                       UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """t = Σ_j e_j x_j of the Shannon mode, x_j = s_j − m with the row's final max ``m_i``, every
    term guarded (0 where x = −inf): a second pass over the keys, for rows whose −inf logits made the
    unguarded running t NaN."""
    t = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start_n in range(0, N_KV, BLOCK_N):
        offs_n, mask_n = _span(start_n, N_KV, BLOCK_N)
        kt = _load_tile(K, stride_k, b, h, offs_n, mask_n, HEAD_DIM, BLOCK_D, UPCAST, TRANS=True)
        # (BLOCK_M, BLOCK_N) fp32, log2 units
        x = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale_log2 - m_i[:, None]
        x = tl.where(mask_n[None, :], x, float("-inf"))
        t += tl.sum(tl.exp2(x) * tl.maximum(x, -_FLT_MAX), 1)
    return t


@triton.jit
def _attn_entropy_fwd_kernel(
    Q, K, V, Out, Lse, Ent, Argmax,
    stride_q, stride_k, stride_v, stride_o,  # (b, h, n, d) element strides of Q, K, V and Out
    H, N_Q, N_KV, HEAD_DIM, qk_scale_log2, alpha, beta_ln2, beta,
    N_BUCKET,  # autotune key: next power of two of N_KV
    MODE: tl.constexpr, POW: tl.constexpr, NEED_ARGMAX: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    offs_m, mask_m, b, h = _program_tile(N_Q, BLOCK_M, H)
    q = _load_tile(Q, stride_q, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, UPCAST, TRANS=False)  # (BM, BD)

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    r_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # entropy running sum (t, u or a; see module doc)
    a_i = tl.zeros([BLOCK_M], dtype=tl.int32)  # row argmax (min-entropy mode, for its gradient)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # Σ_j p_ij v_j, unnormalized

    n_full = (N_KV // BLOCK_N) * BLOCK_N  # full key tiles: no mask
    for start_n in range(0, n_full, BLOCK_N):
        acc, m_i, l_i, r_i, a_i = _fwd_tile(
            acc, m_i, l_i, r_i, a_i, q, K, V, stride_k, stride_v, b, h, start_n,
            N_KV, HEAD_DIM, qk_scale_log2, alpha, beta_ln2,
            MODE, POW, NEED_ARGMAX, False, UPCAST, INPUT_PRECISION, BLOCK_N, BLOCK_D,
        )  # fmt: skip
    if n_full < N_KV:  # the last, partial key tile
        acc, m_i, l_i, r_i, a_i = _fwd_tile(
            acc, m_i, l_i, r_i, a_i, q, K, V, stride_k, stride_v, b, h, n_full,
            N_KV, HEAD_DIM, qk_scale_log2, alpha, beta_ln2,
            MODE, POW, NEED_ARGMAX, True, UPCAST, INPUT_PRECISION, BLOCK_N, BLOCK_D,
        )  # fmt: skip

    log2_l = tl.log2(l_i)
    # l = 0 only for a row with no attendable key (all logits −inf): out = 0 there, as in SDPA
    inv_l = 1.0 / l_i
    out = tl.where(l_i[:, None] == 0.0, 0.0, acc * inv_l[:, None])
    _store_tile(Out, stride_o, b, h, offs_m, mask_m, HEAD_DIM, BLOCK_D, out)

    row = (b * H + h) * N_Q + offs_m  # Lse and Ent are contiguous (B, H, N_Q)
    lse2 = m_i + log2_l
    finite = (lse2 == lse2) & (tl.abs(lse2) < float("inf"))
    # Shannon: rows with a −inf logit in a full key tile (infinite inputs only): t once more, guarded
    if MODE == MODE_SHANNON:
        redo = (r_i != r_i) & finite
        if tl.max(redo.to(tl.int32), 0) > 0:
            t = _shannon_t_guarded(q, K, stride_k, b, h, m_i, N_KV, HEAD_DIM, qk_scale_log2,
                                   UPCAST, INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_D)  # fmt: skip
            r_i = tl.where(redo, t, r_i)
    tl.store(Lse + row, lse2 * _LN2, mask=mask_m)
    if MODE == MODE_SHANNON:
        ent = (log2_l - r_i * inv_l) * _LN2
    elif MODE == MODE_MIN:
        ent = log2_l * _LN2
        if NEED_ARGMAX:
            tl.store(Argmax + row, a_i, mask=mask_m)
    elif MODE == MODE_SUPPORT:
        ent = tl.log(tl.zeros([BLOCK_M], dtype=tl.float32) + N_KV)
    elif MODE == MODE_RENYI_LOG1P:
        ent = log2_l * _LN2 - _log1p(r_i * inv_l) / beta
    else:  # MODE_RENYI_DIRECT (MODE_NONE, the report's baseline, finishes the same way)
        ent = (log2_l + (log2_l - tl.log2(r_i)) / beta) * _LN2
    # no distribution (NaN or +inf logits, or no attendable key) → no entropy: NaN iff lse not finite
    tl.store(Ent + row, tl.where(finite, ent, float("nan")), mask=mask_m)


# (BLOCK_M, BLOCK_N, warps, stages)
_FWD_TILES = [(64, 128, 4, 2), (128, 64, 8, 3), (64, 64, 4, 3),
              (128, 128, 8, 2), (64, 32, 4, 4), (128, 32, 4, 4)]  # fmt: skip
_fwd_launch = TiledKernel(
    _attn_entropy_fwd_kernel, _FWD_TILES, grid_block="BLOCK_M", key=(*AUTOTUNE_KEY, "POW", "NEED_ARGMAX")
)
_INT_POWERS = (2.0, 3.0, 4.0)  # orders summed as p·p·… (no second exp per element)
_ROOTS = (1 / 2, 1 / 3, 1 / 4)  # orders 1/n: e = 2^{αx} the one exp2 per element, p = e^n


def alloc_fwd_outputs(
    q: torch.Tensor, alpha: float, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The uninitialized ``(out, lse, entropy, argmax)`` the forward kernel writes (shapes, dtypes and
    layout as :func:`attention_entropy_fwd` returns them); also the custom op's fake implementation."""
    B, H, N, _ = q.shape
    stats = dict(dtype=torch.float32, device=q.device)
    argmax_shape = (B, H, N) if entropy_grad and entropy_mode(alpha) == ENT_MIN else (0,)
    return (
        empty_bnhd(q),
        torch.empty((B, H, N), **stats),
        torch.empty((B, H, N), **stats),
        torch.empty(argmax_shape, dtype=torch.int32, device=q.device),
    )


def attention_entropy_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, alpha: float, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the fused forward kernel (no input checks: the op layer validates).

    Args:
        q: (B, H, N, D) queries, any strides, fp32/fp16/bf16, 16 ≤ D ≤ 128; CUDA, or CPU under the
            interpreter (:func:`is_interpreting`).
        k, v: (B, H, M, D) keys and values, same dtype and device as ``q``, any strides, M ≥ 1.
        scale: logit scale (usually D ** -0.5).
        alpha: Rényi order α ≥ 0 or ``math.inf`` (validated by the caller); it picks the kernel's
            entropy mode (:func:`entropy_mode`).
        entropy_grad: whether the entropy's gradient will be needed; only the min-entropy mode's
            (its argmax) costs the forward anything, so only then is the argmax computed.

    Returns:
        ``(out, lse, entropy, argmax)``: out (B, H, N, D) in the input dtype, laid out as
        (B, N, H, D) in memory so that ``out.transpose(1, 2).reshape(B, N, H * D)`` is free; lse
        (B, H, N) fp32 natural log-sum-exp of the scaled logits, in nats; entropy (B, H, N) fp32
        H_α of every attention row, in nats; argmax (B, H, N) int32, the first key of each row's
        largest logit, for ``ENT_MIN`` with ``entropy_grad`` (its gradient needs it), else an empty
        int32 tensor.

    Example:
        >>> import torch
        >>> from renyi_prune.kernels import attention_entropy_fwd
        >>> from renyi_prune.reference import attention_with_entropy_reference
        >>> device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = torch.randn(3, 1, 2, 17, 16, generator=g).to(device).unbind(0)
        >>> out, lse, ent, argmax = attention_entropy_fwd(q, k, v, scale=16**-0.5, alpha=2.0)
        >>> out.shape, out.dtype, lse.shape, ent.dtype, argmax.numel()
        (torch.Size([1, 2, 17, 16]), torch.float32, torch.Size([1, 2, 17]), torch.float32, 0)
        >>> qd, kd, vd = (t.double() for t in (q, k, v))
        >>> ref = attention_with_entropy_reference(qd, kd, vd, alpha=2.0, head_reduce="none")
        >>> [torch.allclose(x.double(), r, atol=1e-5) for x, r in zip((out, ent, lse), ref)]
        [True, True, True]
    """
    B, H, N, D = q.shape
    M = k.shape[2]
    mode = entropy_mode(alpha)
    out, lse, ent, argmax = alloc_fwd_outputs(q, alpha, entropy_grad)
    if B * H * N == 0:
        return out, lse, ent, argmax
    if scale < 0:  # the kernel scales the row max of q·kᵀ: flip the sign into q (exact) instead
        q, scale = -q, -scale

    args = (
        q, k, v, out, lse, ent, argmax,
        q.stride(), k.stride(), v.stride(), out.stride(),
        H, N, M, D, scale * LOG2E, *alpha_args(alpha),
        triton.next_power_of_2(M),
    )  # fmt: skip
    # POW: α = 2, 3, 4 (p^α = p·p·…); −n for α = 1/n, n = 2, 3, 4 (e = 2^{αx} the one exp2, p = e^n);
    # −1 any other 0 < α < 1; 0 any other α > 1
    pow_ = 0
    if mode == ENT_RENYI_DIRECT:
        if alpha in _INT_POWERS:
            pow_ = int(alpha)
        elif alpha in _ROOTS:
            pow_ = -_ROOTS.index(alpha) - 2
        elif alpha < 1.0:
            pow_ = -1
    _fwd_launch(q, N, args, MODE=mode, POW=pow_, NEED_ARGMAX=bool(entropy_grad and mode == ENT_MIN))
    return out, lse, ent, argmax
