"""Eager reference for attention + Rényi attention entropy (ground truth, CPU fallback).

Everything here materializes the attention matrix P of shape (B, H, N, N) and follows the
definitions of "Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803)
literally, so it is slow and memory-hungry on purpose: it is what the fused Triton kernel in
:mod:`renyi_prune.kernels` is tested and benchmarked against. Pass ``torch.float64`` inputs (or
``compute_dtype=torch.float64``) for an fp64 ground truth.
"""

from __future__ import annotations

import math

import torch

__all__ = ["attention_probs", "renyi_entropy", "attention_with_entropy_reference"]


def attention_probs(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Softmax attention probabilities, Def. 1 of arXiv 2604.03803.

    Args:
        q: queries, (B, H, N, D).
        k: keys, (B, H, M, D).
        scale: logit scale; ``None`` means ``D ** -0.5``.

    Returns:
        P = softmax(q k^T * scale) over the last dim, (B, H, N, M), dtype of ``q``.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)


def renyi_entropy(p: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Rényi entropy of order ``alpha`` of each row of a probability matrix, in nats.

    H_α(p) = log(Σ_j p_j^α) / (1 − α) (Def. 3 of arXiv 2604.03803), with its limits:
    α = 1 is Shannon entropy −Σ_j p_j log p_j (Def. 2), α = ∞ is min-entropy −log max_j p_j,
    α = 0 is the log of the support size, counted here as the entries with p_j > 0 (entries that
    underflowed to 0 are not counted; :func:`attention_with_entropy_reference` counts finite logits
    instead, the exact support of a softmax row).

    Args:
        p: probabilities, (..., M), rows summing to 1, any float dtype.
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed).

    Returns:
        (...,) entropies in nats, dtype of ``p``.

    Raises:
        ValueError: if ``alpha`` is negative or NaN.
    """
    alpha = _check_alpha(alpha)
    if alpha == 1.0:
        return -torch.special.xlogy(p, p).sum(-1)
    if math.isinf(alpha):
        return -torch.log(p.amax(-1))
    if alpha == 0.0:
        return torch.log((p > 0).sum(-1).to(p.dtype))
    return torch.log((p**alpha).sum(-1)) / (1.0 - alpha)


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

    Raises:
        ValueError: bad ``alpha`` or ``head_reduce``.
    """
    alpha = _check_alpha(alpha)
    if head_reduce not in ("mean", "none"):
        raise ValueError(f"head_reduce must be 'mean' or 'none', got {head_reduce!r}")
    if compute_dtype is None:
        compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    if scale is None:
        scale = q.shape[-1] ** -0.5
    qc, kc, vc = (t.to(compute_dtype) for t in (q, k, v))
    logits = (qc @ kc.transpose(-2, -1)) * scale
    lse = torch.logsumexp(logits, dim=-1)
    p = torch.exp(logits - lse.unsqueeze(-1))
    if alpha == 0.0:
        # exact support of a softmax row: every key with a finite logit
        ent = torch.log(torch.isfinite(logits).sum(-1).to(compute_dtype))
    else:
        ent = renyi_entropy(p, alpha)
    out = (p @ vc).to(q.dtype)
    if head_reduce == "mean":
        ent = ent.mean(dim=1)
    return out, ent, lse


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a real number, got {alpha!r} of type {type(alpha).__name__}")
    alpha = float(alpha)
    if math.isnan(alpha) or alpha < 0:
        raise ValueError(f"Rényi order alpha must be >= 0 (math.inf allowed), got {alpha!r}")
    return alpha
