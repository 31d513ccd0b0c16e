"""Eager reference for attention + Rényi attention entropy (ground truth, CPU fallback).

Everything here materializes the attention matrix P of shape (B, H, N, N), as the paper's code
does ("Rényi Attention Entropy for Patch Pruning", Aizawa & Igaue, arXiv 2604.03803), so it is slow
and memory-hungry on purpose: it is what the fused Triton kernel in :mod:`renyi_prune.kernels` is
tested and benchmarked against. The entropy of Defs. 2–3 is evaluated in the log domain from the
logits (:func:`renyi_entropy_from_log_probs`), exact to working precision for every order α
(α → 1, α in the thousands, α = 1e300): p^α is never formed. Pass ``torch.float64`` inputs (or
``compute_dtype=torch.float64``) for an fp64 ground truth.
"""

from __future__ import annotations

import math

import torch

from ._validate import FLOAT_DTYPES, check_alpha, check_head_reduce, check_qkv, check_scale

__all__ = [
    "attention_probs",
    "renyi_entropy",
    "renyi_entropy_from_log_probs",
    "attention_with_entropy_reference",
    "probs_from_logits",
]


def attention_probs(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Softmax attention probabilities, Def. 1 of arXiv 2604.03803.

    Args:
        q: queries, (B, H, N, D).
        k: keys, (B, H, M, D).
        scale: logit scale; ``None`` means ``D ** -0.5``.

    Returns:
        P = softmax(q k^T * scale) over the last dim, (B, H, N, M), dtype of ``q``.

    Raises:
        TypeError / ValueError: as :func:`renyi_prune.attention_with_entropy` for q, k and scale.

    Example:
        >>> import torch
        >>> from renyi_prune import attention_probs
        >>> q, k = torch.randn(2, 1, 2, 5, 16).unbind(0)
        >>> p = attention_probs(q, k)
        >>> p.shape, torch.allclose(p.sum(-1), torch.ones(1, 2, 5))
        (torch.Size([1, 2, 5, 5]), True)
    """
    check_qkv(q, k, k)
    scale = check_scale(scale, q.shape[-1])
    with torch.autocast(q.device.type, enabled=False):  # the dtype of q, also under AMP
        return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)


def renyi_entropy(p: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Rényi entropy of order ``alpha`` of each row of a probability matrix, in nats.

    H_α(p) = log(Σ_j p_j^α) / (1 − α) (Def. 3 of arXiv 2604.03803), with its limits:
    α = 1 is Shannon entropy −Σ_j p_j log p_j (Def. 2), α = ∞ is min-entropy −log max_j p_j,
    α = 0 is the log of the support size, counted here as the entries with p_j > 0 (entries that
    underflowed to 0 are not counted; :func:`attention_with_entropy_reference` counts finite logits
    instead, the exact support of a softmax row). Evaluated in the log domain
    (:func:`renyi_entropy_from_log_probs`), so every order is exact to working precision:
    α → 1 does not cancel and p^α never underflows or overflows.

    Args:
        p: probabilities, (..., M), any float dtype; each row is normalized (divided by its sum)
            before the entropy is taken, so rows need only be proportional to a distribution.
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed).

    Returns:
        (...,) entropies in nats, dtype of ``p``.

    Raises:
        TypeError: ``p`` is not a floating-point tensor, or ``alpha`` is not a number.
        ValueError: ``alpha`` is negative or NaN.

    Example:
        >>> import math, torch
        >>> from renyi_prune import renyi_entropy
        >>> uniform = torch.full((4,), 0.25, dtype=torch.float64)
        >>> [round(renyi_entropy(uniform, a).item() / math.log(4), 6) for a in (0.0, 0.5, 1.0, 2.0, math.inf)]
        [1.0, 1.0, 1.0, 1.0, 1.0]
        >>> p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
        >>> round(renyi_entropy(p, math.inf).item(), 6) == round(math.log(2), 6)  # −log max_j p_j
        True
    """
    if not isinstance(p, torch.Tensor) or p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"p must be a floating-point tensor, got {getattr(p, 'dtype', type(p).__name__)}")
    alpha = check_alpha(alpha)
    if alpha == 0.0:
        return torch.log((p > 0).sum(-1).to(p.dtype))
    log_p = torch.log(p)
    return renyi_entropy_from_log_probs(log_p - torch.logsumexp(log_p, dim=-1, keepdim=True), alpha)


# |β·x| below which e^{αx} − e^{x} is formed as e^{x}·expm1(βx), and β = α − 1 below which
# log Σ p^α is taken through log1p (the forms the fused kernel uses; see attention_entropy_fwd.py)
_SERIES_MAX = 0.1
_LOG1P_MAX_BETA = 0.25


def renyi_entropy_from_log_probs(log_p: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Rényi entropy H_α (nats) of each row of log-probabilities, stable for every order α ≥ 0.

    With m = max_j log p_j (so H_∞ = −m), x_j = log p_j − m ≤ 0, l = Σ_j e^{x_j} and β = α − 1:

    * α = 1: −Σ_j p_j log p_j (Def. 2 of arXiv 2604.03803), never forming 0 · (−∞);
    * 0 < α, β < 1/4: H_α = −m − log1p(u / l) / β with u = Σ_j (e^{α x_j} − e^{x_j}), each term
      e^{x_j}·expm1(β x_j) when |β x_j| is small, so H_α → H_1 smoothly as β → 0 (no cancellation);
    * β ≥ 1/4: H_α = −m − (log Σ_j e^{α x_j} − log l) / β: every power is taken relative to the
      row max, so α·log p never overflows and Σ_j e^{α x_j} ∈ [1, M];
    * α = ∞, or β so large that H_∞ ≤ H_α ≤ (1 + 1/β)·H_∞ pins H_α to H_∞ at working precision
      (β ≥ 1/ε of the dtype): H_∞ = −m; α = 0: log #{j : log p_j > −∞}.

    All are Def. 3, H_α = log(Σ_j p_j^α) / (1 − α), rewritten; rows are assumed normalized
    (log Σ_j p_j = 0). Differentiable (no NaN gradients from masked entries).

    Args:
        log_p: (..., M) log-probabilities, −inf allowed, any float dtype.
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed), already validated.

    Returns:
        (...,) entropies in nats, dtype of ``log_p``.

    Example:
        >>> import math, torch
        >>> from renyi_prune.reference import renyi_entropy_from_log_probs
        >>> log_p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64).log()
        >>> h1 = renyi_entropy_from_log_probs(log_p, 1.0).item()
        >>> abs(renyi_entropy_from_log_probs(log_p, 1 - 1e-12).item() - h1) < 1e-11  # → H_1 as α → 1
        True
        >>> renyi_entropy_from_log_probs(log_p, 1e300).item() == math.log(2)  # = H_∞, no overflow
        True
    """
    if alpha == 0.0:
        return torch.log((log_p > -math.inf).sum(-1).to(log_p.dtype))
    if alpha == 1.0:
        p = torch.exp(log_p)
        return -(p * log_p.masked_fill(p == 0, 0.0)).sum(-1)
    m = log_p.amax(dim=-1, keepdim=True)
    h_inf = -m.squeeze(-1)
    beta = alpha - 1.0
    if math.isinf(alpha) or beta * torch.finfo(log_p.dtype).eps >= 1.0:
        return h_inf
    x = log_p - m.masked_fill(~torch.isfinite(m), 0.0)  # ≤ 0; a row of NaN / −inf stays so
    log_l = torch.logsumexp(x, dim=-1)
    if beta >= _LOG1P_MAX_BETA:
        return h_inf - (torch.logsumexp(alpha * x, dim=-1) - log_l) / beta
    bx = beta * x
    small = bx.abs() < _SERIES_MAX
    e = torch.exp(x)
    series = e * torch.expm1(torch.where(small, bx, 0.0))
    u = torch.where(small, series, torch.exp(alpha * x) - e).sum(-1)
    return h_inf - torch.log1p(u / torch.exp(log_l)) / beta


def probs_from_logits(
    logits: torch.Tensor, lse: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """P = exp(logits − lse) row-wise, and the lse, with SDPA's rule for a row with no attendable key.

    Args:
        logits: (..., M) scaled logits.
        lse: optional (...) log Σ_j exp(logits) (e.g. saved by the kernel); computed here if None.

    Returns:
        ``(p, lse)``: p (..., M), lse (...), dtype of ``logits``. A row whose logits are all −inf
        (lse = −inf) attends to nothing: P = 0 there (its logits are replaced by 0 before the
        softmax, so no NaN reaches the gradients), lse = −inf.

    Example:
        >>> import math, torch
        >>> from renyi_prune.reference import probs_from_logits
        >>> p, lse = probs_from_logits(torch.tensor([[0.0, 0.0], [-math.inf, -math.inf]]))
        >>> p.tolist(), [round(x, 4) for x in lse.tolist()]  # lse of row 0 = log 2
        ([[0.5, 0.5], [0.0, 0.0]], [0.6931, -inf])
    """
    if lse is not None:
        return torch.exp(logits - lse.unsqueeze(-1)).masked_fill(torch.isneginf(lse).unsqueeze(-1), 0.0), lse
    no_key = torch.isneginf(logits).all(dim=-1, keepdim=True)
    safe = logits.masked_fill(no_key, 0.0)
    lse = torch.logsumexp(safe, dim=-1, keepdim=True)
    p = torch.exp(safe - lse).masked_fill(no_key, 0.0)
    return p, lse.masked_fill(no_key, -math.inf).squeeze(-1)


def attention_with_entropy_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: float = 1.0,
    scale: float | None = None,
    head_reduce: str = "mean",
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention output, Rényi attention entropy and log-sum-exp, by materializing P.

    Args:
        q, k, v: (B, H, N, D) tensors (k and v may have another token count M).
        alpha: Rényi order α ≥ 0; 1 = Shannon, ``math.inf`` = min-entropy, 0 = log support.
        scale: logit scale; ``None`` means ``D ** -0.5``.
        head_reduce: ``"mean"`` → entropy (B, N) averaged over heads; ``"none"`` → (B, H, N).
        compute_dtype: dtype of the arithmetic (default: fp32 for half inputs, else the input
            dtype); pass ``torch.float64`` for a ground truth.

    Returns:
        ``(out, entropy, lse)``: out (B, H, N, D) in the dtype of ``q``; entropy in nats and
        lse = log Σ_j exp(q_i·k_j·scale) (B, H, N), both in ``compute_dtype``.

    Non-finite inputs (the rule the Triton path follows too): a row whose logits are all −inf (no
    key to attend to) gets out = 0 and lse = −inf, as ``scaled_dot_product_attention`` gives; NaN
    and Inf propagate to the rows they touch as in SDPA's math backend; the entropy of a row is NaN
    exactly when its lse is not finite (NaN or +inf logits, or nothing to attend to).

    Raises:
        TypeError / ValueError: as :func:`renyi_prune.attention_with_entropy` (bad q, k, v, alpha,
            scale or head_reduce), and ValueError for a ``compute_dtype`` that is not a float dtype.

    Example:
        >>> import torch
        >>> from renyi_prune import attention_with_entropy_reference
        >>> q, k, v = torch.randn(3, 1, 2, 6, 16, dtype=torch.float64).unbind(0)
        >>> out, ent, lse = attention_with_entropy_reference(q, k, v, alpha=2.0, head_reduce="none")
        >>> out.shape, ent.shape, lse.dtype
        (torch.Size([1, 2, 6, 16]), torch.Size([1, 2, 6]), torch.float64)
        >>> bool(((0 <= ent) & (ent <= torch.log(torch.tensor(6.0)))).all())  # 0 ≤ H_α ≤ log M
        True
    """
    check_qkv(q, k, v)
    alpha = check_alpha(alpha)
    check_head_reduce(head_reduce)
    scale = check_scale(scale, q.shape[-1])
    if compute_dtype is None:
        compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    elif compute_dtype not in FLOAT_DTYPES:
        raise ValueError(f"compute_dtype must be a float dtype, got {compute_dtype!r}")
    with torch.autocast(q.device.type, enabled=False):  # the compute dtype, also under AMP
        qc, kc, vc = (t.to(compute_dtype) for t in (q, k, v))
        logits = (qc @ kc.transpose(-2, -1)) * scale
        p, lse = probs_from_logits(logits)
        # log p from the logits (exact support: every key with a logit above −inf; no log of a rounded p)
        log_p = logits - lse.masked_fill(~torch.isfinite(lse), 0.0).unsqueeze(-1)
        ent = renyi_entropy_from_log_probs(log_p, alpha)
        # no distribution (NaN / +inf logits, or nothing to attend to) → no entropy
        ent = ent.masked_fill(~torch.isfinite(lse), math.nan)
        out = (p @ vc).to(q.dtype)
        if head_reduce == "mean":
            ent = ent.mean(dim=1)
        return out, ent, lse
