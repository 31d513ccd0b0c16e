"""The criterion interface: one attention pass, then a score per token.

A pruning block runs :func:`run_attention`, which computes the block's attention output and only the
statistics the criterion declares in :attr:`Criterion.needs`; the criterion's ``score`` turns them
into one number per token, and :attr:`Criterion.keep` says which end survives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F

from ..ops import attention_with_entropy

__all__ = [
    "NEEDS",
    "AttentionPass",
    "Criterion",
    "available_criteria",
    "get_criterion",
    "register_criterion",
    "run_attention",
]

#: Statistics a criterion may ask of the attention pass.
NEEDS = frozenset({"entropy", "lse", "cls_attn"})


@dataclass(frozen=True)
class AttentionPass:
    """What a pruning block's attention pass produced; fields the criterion did not ask for are None.

    Attributes:
        q, k: queries and keys (B, H, N, D) after ``q_norm/k_norm``.
        scale: the logit scale.
        out: attention output (B, H, N, D).
        entropy: head-mean Rényi attention entropy (B, N), nats (``needs`` "entropy").
        lse: per-row log-sum-exp of the scaled logits (B, H, N) fp32 (``needs`` "lse").
        cls_attn: attention of the CLS token (token 0) to every token, per head, (B, H, N) fp32
            (``needs`` "cls_attn").
    """

    q: torch.Tensor
    k: torch.Tensor
    scale: float
    out: torch.Tensor
    entropy: torch.Tensor | None = None
    lse: torch.Tensor | None = None
    cls_attn: torch.Tensor | None = None


ScoreFn = Callable[[AttentionPass, Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    """A token-importance criterion.

    Attributes:
        name: registry name, e.g. ``"renyi"``.
        keep: ``"lowest"`` or ``"highest"``: which scores survive pruning.
        needs: statistics of the attention pass the score uses (a subset of :data:`NEEDS`), or a
            function of the criterion's params returning that subset; the pass computes nothing
            else (no entropy → the SDPA path, no N×N matrix ever). See :meth:`required`.
        score: ``score(attention_pass, params) -> (B, N)``, one value per token of the block.
        params: the criterion's parameters and their defaults (e.g. ``{"alpha": 1.0}``); a
            ``patch(..., **kwargs)`` may override them, and only these names are accepted.
        description: one line with the source (paper).
    """

    name: str
    keep: str
    needs: frozenset[str] | Callable[[Mapping[str, Any]], frozenset[str]]
    score: ScoreFn
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.keep not in ("lowest", "highest"):
            raise ValueError(f"Criterion.keep must be 'lowest' or 'highest', got {self.keep!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if not callable(self.needs):
            object.__setattr__(self, "needs", frozenset(self.needs))
        self.required(self.params)

    def required(self, params: Mapping[str, Any]) -> frozenset[str]:
        """The statistics the attention pass must compute for these params."""
        needs = frozenset(self.needs(params) if callable(self.needs) else self.needs)
        if not needs <= NEEDS:
            raise ValueError(
                f"criterion {self.name!r} needs {sorted(needs - NEEDS)}, not among {sorted(NEEDS)}"
            )
        return needs


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    """Add ``criterion`` to the registry under ``criterion.name`` (replacing any earlier one)."""
    _REGISTRY[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    """The registered criterion called ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown criterion {name!r}; available: {available_criteria()}") from None


def available_criteria() -> list[str]:
    """Names of the registered criteria."""
    return sorted(_REGISTRY)


def run_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    needs: frozenset[str],
    alpha: float = 1.0,
    backend: str = "auto",
) -> AttentionPass:
    """Attention output plus exactly the statistics in ``needs``.

    Entropy → the fused Triton kernel with Rényi order ``alpha`` (lse comes free with it); lse
    alone → the same kernel in its cheapest mode; otherwise ``scaled_dot_product_attention``.
    ``cls_attn`` forms only the CLS row of P, (B, H, 1, N).

    Args:
        q, k, v: (B, H, N, D).
        scale: logit scale.
        needs: subset of :data:`NEEDS`.
        alpha: Rényi order for the entropy.
        backend: for the fused op (``"auto"``, ``"triton"``, ``"eager"``; see
            :func:`renyi_prune.attention_with_entropy`).
    """
    entropy = lse = cls_attn = None
    if "entropy" in needs:
        out, entropy, lse = attention_with_entropy(
            q, k, v, alpha=alpha, scale=scale, return_lse=True, backend=backend
        )
    elif "lse" in needs:
        # α = 0 is the kernel's cheapest mode: H_0 = log N needs no running sum beyond the softmax's
        out, _, lse = attention_with_entropy(
            q, k, v, alpha=0.0, scale=scale, return_lse=True, backend=backend
        )
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    if "cls_attn" in needs:
        with torch.autocast(q.device.type, enabled=False):  # fp32 scores, also under AMP
            logits = (q[:, :, :1].float() @ k.float().transpose(-2, -1)) * scale
            cls_attn = torch.softmax(logits, dim=-1)[:, :, 0].detach()
    return AttentionPass(q=q, k=k, scale=scale, out=out, entropy=entropy, lse=lse, cls_attn=cls_attn)
