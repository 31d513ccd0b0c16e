"""CPU path of :func:`renyi_prune.attention_with_entropy`: Rényi entropy from the softmax the output needs.

The eager reference (:mod:`renyi_prune.reference`) is the simple ground truth: it forms log P and
evaluates every order in the log domain, several passes over the (B, H, N, M) logits. Here, on CPU
without the Triton interpreter, the entropy reuses what the attention output computes anyway — the
logits s (scaled), P = softmax(s), its row max p_max = 1 / Σ_j e^{s_j − m} and the logit row max m, so
lse = m − log p_max — and adds at most one cheap pass per row ("Rényi Attention Entropy for Patch
Pruning", Aizawa & Igaue, arXiv 2604.03803, Defs. 2–3, H_α = log(Σ_j p_j^α) / (1 − α)):

* α = 1 (Shannon): H = lse − Σ_j p_j s_j (no logarithm per entry);
* α = ∞ (min-entropy), or α so large that H_α = H_∞ at working precision: H = −log p_max;
* α = 0: H = log M (every logit is finite on this path, so the support is every key);
* integer α ≥ 2 with p_max^α safely above underflow: H = log(Σ_j p_j^α) / (1 − α), p^α by
  multiplication;
* other α ≥ 1/2 with |α − 1| ≥ 1/4: the powers relative to the row max, r_j = p_j / p_max ∈ [0, 1],
  H = (α log p_max + log Σ_j r_j^α) / (1 − α) (Σ_j r_j^α ∈ [1, M]: no underflow or overflow);
* α < 1/2 or |α − 1| < 1/4 (rare orders: α → 0 counts keys whose p underflowed, α → 1 cancels):
  the reference's :func:`~renyi_prune.reference.renyi_entropy_from_log_probs` on log p = s − lse.

The work goes in chunks of (batch·head) slices, or of query rows when one slice's logits are larger,
of at most :data:`CHUNK_ELEMENTS` logits, so that the softmax, the entropy's passes and P V read the
logits from cache rather than memory, and k, v are copied to dense (B·H, M, D) once (timm's strided
views slow the batched matmuls down).

This fast path runs only when every logit is provably finite (finite q and k and
scale · D · max|q| · max|k| below the compute dtype's overflow). Otherwise (NaN/Inf inputs, empty
tensors, or under ``torch.compile``, where the check would break the graph) the call goes to the
reference itself (:func:`~renyi_prune.reference.attention_with_entropy_reference`), so non-finite
rows behave exactly as the reference's. Everything is
plain PyTorch, so autograd differentiates ``out`` and the entropy.
"""

from __future__ import annotations

import math

import torch

from .reference import attention_with_entropy_reference, renyi_entropy_from_log_probs

__all__ = ["attention_with_entropy_cpu", "attention_with_entropy_cpu_backward"]

# |α − 1| below which log Σ p^α / (1 − α) cancels: the reference's log1p series form takes over
_NEAR_ONE = 0.25
# α below which p^α of keys whose p underflowed would still count: the reference takes over
_SMALL_ALPHA = 0.5
# largest −log of a power sum (p_max^α ≥ M^−α) formed directly, per compute dtype (e^−80 ≫ fp32 tiny)
_MAX_LOG_POWER = {torch.float32: 80.0, torch.float64: 700.0}
#: Logits per chunk (2^18 fp32 = 1 MiB, about one core's L2 cache): the softmax, the entropy's passes
#: and P V of a chunk read its logits from cache (measured on 2 cores: DeiT-S's N = 197, batch 32, 6
#: heads, 23 ms per call in chunks against 40 ms unchunked; SDPA alone: 17 ms)
CHUNK_ELEMENTS = 1 << 18


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64 (tests); fp16, bf16 and fp32 are computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _logits_are_finite(q: torch.Tensor, k: torch.Tensor, scale: float) -> bool:
    """Whether every entry of (q kᵀ) · scale is certainly finite: finite, non-empty q and k and
    scale · D · max|q| · max|k| at most 1e-3 of the dtype's largest value (|q·k| ≤ D max|q| max|k|).
    Under ``torch.compile`` False without looking (a data-dependent branch would break the graph)."""
    if q.numel() == 0 or k.numel() == 0 or torch.compiler.is_compiling():
        return False
    bound = (_max_abs(q) * _max_abs(k)).item() * q.shape[-1] * abs(scale)
    return math.isfinite(bound) and bound <= 1e-3 * torch.finfo(q.dtype).max


def _max_abs(x: torch.Tensor) -> torch.Tensor:
    """max |x| from the two extremes (no |x| temporary: ~2x faster on strided q, k); NaN if x has a NaN."""
    return torch.maximum(x.amax().abs(), x.amin().abs())


def _shannon(p: torch.Tensor, s: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """H_1 = lse − Σ_j p_j s_j (= −Σ_j p_j log p_j since log p_j = s_j − lse and Σ_j p_j = 1)."""
    return lse - torch.linalg.vecdot(p, s)


def _power_sum_direct(p: torch.Tensor, alpha: int) -> torch.Tensor:
    """Σ_j p_j^α for an integer α ≥ 2, by multiplication."""
    if alpha == 2:
        return torch.linalg.vecdot(p, p)
    return p.pow(alpha).sum(-1)


def _renyi_relative_to_max(p: torch.Tensor, log_pmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """H_α = (α log p_max + log Σ_j (p_j / p_max)^α) / (1 − α); each ratio ∈ [0, 1], the sum ∈ [1, M]."""
    ratio = p * torch.exp(-log_pmax).unsqueeze(-1)
    return (alpha * log_pmax + torch.log(ratio.pow(alpha).sum(-1))) / (1.0 - alpha)


def _entropy_fast(
    p: torch.Tensor, s: torch.Tensor, lse: torch.Tensor, log_pmax: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Per-head H_α (B, H, N) from finite logits s, P = softmax(s), lse and log p_max (module docstring)."""
    M = s.shape[-1]
    beta = alpha - 1.0
    if alpha == 0.0:
        return torch.full_like(lse, math.log(M))
    if alpha == 1.0:
        return _shannon(p, s, lse)
    if math.isinf(alpha) or beta * torch.finfo(s.dtype).eps >= 1.0:
        return -log_pmax
    if alpha < _SMALL_ALPHA or abs(beta) < _NEAR_ONE:
        return renyi_entropy_from_log_probs(s - lse.unsqueeze(-1), alpha)
    if alpha == int(alpha) and alpha * math.log(M) <= _MAX_LOG_POWER[s.dtype]:
        return torch.log(_power_sum_direct(p, int(alpha))) / (1.0 - alpha)
    return _renyi_relative_to_max(p, log_pmax, alpha)


def _fast(qs: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, alpha: float):
    """out = P V, per-head H_α and lse of one chunk from finite scaled logits s = qs · kt: one softmax,
    two row maxima."""
    s = qs @ kt
    p = torch.softmax(s, dim=-1)
    log_pmax = torch.log(p.amax(dim=-1))  # = −log Σ_j e^{s_j − m}
    lse = s.amax(dim=-1) - log_pmax
    return p @ v, _entropy_fast(p, s, lse, log_pmax, alpha), lse


def _chunk_sizes(N: int, M: int) -> tuple[int, int]:
    """(slices, queries) per chunk: as many (batch·head) slices, or query rows of one slice, as keep a
    chunk's logits at :data:`CHUNK_ELEMENTS` (at least one row)."""
    per_slice = N * M
    if per_slice <= CHUNK_ELEMENTS:
        return max(1, CHUNK_ELEMENTS // max(per_slice, 1)), N
    return 1, max(1, CHUNK_ELEMENTS // max(M, 1))


def _cat(results: list[tuple[torch.Tensor, ...]], dim: int) -> list[torch.Tensor]:
    """(out, ent, lse) of consecutive chunks joined along ``dim`` (no copy for a single chunk)."""
    return [torch.cat(x, dim=dim) if len(x) > 1 else x[0] for x in zip(*results, strict=True)]


def _chunked(qs: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, alpha: float) -> list[torch.Tensor]:
    """:func:`_fast` over chunks of (B·H, N) that keep the logits in cache; (out, ent, lse) as (B·H, N, …)."""
    BH, N, M = qs.shape[0], qs.shape[1], kt.shape[-1]
    per_chunk, rows = _chunk_sizes(N, M)
    slices = []
    for i in range(0, BH, per_chunk):
        ki, vi = kt[i : i + per_chunk], v[i : i + per_chunk]
        slices.append(
            _cat([_fast(qs[i : i + per_chunk, j : j + rows], ki, vi, alpha) for j in range(0, N, rows)], 1)
        )
    return _cat(slices, 0)


def attention_with_entropy_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: float,
    scale: float,
    head_reduce: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention output, Rényi attention entropy (nats) and log-sum-exp on CPU, without log P.

    Same results as :func:`renyi_prune.reference.attention_with_entropy_reference` (to rounding),
    computed as the module docstring describes; arguments are assumed validated (the public op,
    :func:`renyi_prune.attention_with_entropy`, checks them).

    Args:
        q: queries (B, H, N, D); fp16, bf16, fp32 (computed in fp32) or fp64 (computed in fp64); any
            strides (e.g. timm's q, k, v views of one qkv tensor).
        k, v: keys and values (B, H, M, D), same dtype and device as ``q``; M ≥ 1 when N ≥ 1.
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed), already validated.
        scale: logit scale (finite), already validated.
        head_reduce: ``"mean"`` → entropy (B, N) averaged over heads; ``"none"`` → (B, H, N).

    Returns:
        ``(out, entropy, lse)``: out (B, H, N, D) in the dtype of ``q``; entropy in nats and
        lse = log Σ_j exp(q_i·k_j·scale) (B, H, N), in the compute dtype (fp32, or fp64 for fp64).
        Non-finite rows as the reference: a row with no attendable key gets out = 0 and lse = −inf,
        NaN/Inf propagate, the entropy is NaN exactly where lse is not finite. All differentiable
        by autograd (lse included; the public op detaches it).

    Raises:
        Nothing beyond what ``torch.matmul`` raises for shapes the public op would have rejected.

    Example:
        >>> import math, torch
        >>> from renyi_prune.cpu_attention import attention_with_entropy_cpu
        >>> from renyi_prune.reference import attention_with_entropy_reference
        >>> q, k, v = torch.randn(3, 1, 2, 9, 16).unbind(0)
        >>> out, ent, lse = attention_with_entropy_cpu(q, k, v, math.inf, 0.25, "none")
        >>> ref = attention_with_entropy_reference(q.double(), k.double(), v.double(), math.inf, 0.25, "none")
        >>> bool((ent.double() - ref[1]).abs().max() < 1e-5), out.shape, ent.dtype
        (True, torch.Size([1, 2, 9, 16]), torch.float32)
    """
    with torch.autocast(q.device.type, enabled=False):  # fp32 (fp64) as documented, also under AMP
        dtype = _compute_dtype(q.dtype)
        qc, kc, vc = (t.to(dtype) for t in (q, k, v))
        if not _logits_are_finite(qc, kc, scale):  # non-finite or empty inputs: the reference's own rules
            return attention_with_entropy_reference(q, k, v, alpha, scale, head_reduce)
        B, H, N, D = qc.shape
        M = kc.shape[2]
        qs = (qc * scale).reshape(B * H, N, D)
        kt = kc.reshape(B * H, M, D).transpose(-2, -1)
        out, ent, lse = _chunked(qs, kt, vc.reshape(B * H, M, -1), alpha)
        out, ent, lse = out.view(B, H, N, -1).to(q.dtype), ent.view(B, H, N), lse.view(B, H, N)
        if head_reduce == "mean":
            ent = ent.mean(dim=1)
        return out, ent, lse


def attention_with_entropy_cpu_backward(
    dout: torch.Tensor,
    grad_ent: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    ent: torch.Tensor,
    argmax: torch.Tensor,
    scale: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv of the fused op on CPU, what the Triton backward computes, from a materialized P.

    The CPU implementation of the backward custom op (a program traced where the Triton path ran, run
    on a CPU machine). Standard attention gradients (dv = Pᵀ dout, ds = P ∘ (dP − rowsum(dout ∘ out)))
    plus, with ``grad_ent`` (B, H, N), the entropy term grad_ent · ∂H/∂s_j: −p_j (log p_j + H)
    (Shannon), α/(1−α)·(p_j^α/Σ_k p_k^α − p_j) (Rényi; p^α/Σ p^α = softmax(α s)), p_j − 1[j = argmax]
    (min-entropy, ``argmax`` (B, H, N) from the forward), 0 (α = 0); s the scaled logits.

    Args: as the backward op: dout, out (B, H, N, D); q (B, H, N, D); k, v (B, H, M, D); ent (B, H, N)
    per-head entropy of the forward. Computed in fp32 with (B, H, N, M) temporaries; returned in the
    dtypes of q, k, v.

    Example:
        >>> import torch
        >>> from renyi_prune.cpu_attention import attention_with_entropy_cpu as forward
        >>> from renyi_prune.cpu_attention import attention_with_entropy_cpu_backward as backward
        >>> q, k, v = (torch.randn(1, 2, 5, 16, requires_grad=True) for _ in range(3))
        >>> out, ent, lse = forward(q, k, v, 2.0, 0.25, "none")
        >>> dout, dent = torch.ones_like(out), torch.ones_like(ent)
        >>> grads = backward(dout, dent, q, k, v, out, ent, torch.empty(0), 0.25, 2.0)
        >>> expected = torch.autograd.grad((out * dout).sum() + (ent * dent).sum(), (q, k, v))
        >>> all(torch.allclose(g, e, atol=1e-5) for g, e in zip(grads, expected))
        True
    """
    with torch.autocast(q.device.type, enabled=False):  # fp32, also under AMP
        f32 = torch.float32
        qf, kf, vf, do = (t.to(f32) for t in (q, k, v, dout))
        s = (qf @ kf.transpose(-2, -1)) * scale
        p = torch.softmax(s, dim=-1)
        ds = p * (do @ vf.transpose(-2, -1) - (do * out.to(f32)).sum(dim=-1, keepdim=True))
        if grad_ent is not None and alpha != 0.0:
            ds = ds + grad_ent.to(f32).unsqueeze(-1) * _entropy_logit_grad(p, s, ent.to(f32), argmax, alpha)
        dq, dk = (ds @ kf) * scale, (ds.transpose(-2, -1) @ qf) * scale
        return dq.to(q.dtype), dk.to(k.dtype), (p.transpose(-2, -1) @ do).to(v.dtype)


def _entropy_logit_grad(
    p: torch.Tensor, s: torch.Tensor, ent: torch.Tensor, argmax: torch.Tensor, alpha: float
) -> torch.Tensor:
    """∂H_α/∂s_j for every row (α > 0), (B, H, N, M), as in :func:`attention_with_entropy_cpu_backward`."""
    if alpha == 1.0:
        return -(torch.xlogy(p, p) + p * ent.unsqueeze(-1))
    if math.isinf(alpha):
        index = argmax.long() if argmax.numel() else s.argmax(dim=-1)
        return p - torch.zeros_like(p).scatter_(-1, index.unsqueeze(-1), 1.0)
    return alpha / (1.0 - alpha) * (torch.softmax(alpha * s, dim=-1) - p)
