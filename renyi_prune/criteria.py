"""Token-importance criteria: the attention pass of a pruning block plus a score per token.

A criterion is a small registered object: a function that runs the block's attention and returns a
score for every token alongside the attention output, and which end of the score is kept. The
pruning code (:mod:`renyi_prune.patch`) only sees this interface, so adding a criterion is one
:func:`register_criterion` call.

Registered here:

* ``renyi`` (default): mean over heads of the Rényi attention entropy H_α of each token's attention
  row, from the fused kernel; keep the **lowest** ("Rényi Attention Entropy for Patch Pruning",
  Aizawa & Igaue, arXiv 2604.03803, Defs. 2–3). ``alpha`` is the Rényi order.
* ``evit``: attention from the CLS token (token 0) to each token, mean over heads; keep the
  **highest** (EViT, Liang et al., "Not All Patches are What You Need", ICLR 2022). Only the CLS row
  of the attention matrix is formed, (B, H, 1, N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ops import attention_with_entropy

__all__ = ["Criterion", "register_criterion", "get_criterion", "available_criteria"]

# attend(q, k, v, scale, alpha) -> (out (B, H, N, D), score (B, N))
AttendFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, float, float], tuple[torch.Tensor, torch.Tensor]
]


@dataclass(frozen=True)
class Criterion:
    """A token-importance criterion.

    Attributes:
        name: registry name, e.g. ``"renyi"``.
        keep: ``"lowest"`` or ``"highest"``: which scores survive pruning.
        attend: ``attend(q, k, v, scale, alpha) -> (out, score)`` with q, k, v (B, H, N, D), out
            (B, H, N, D) the block's attention output and score (B, N) one value per token.
        uses_alpha: whether the Rényi order ``alpha`` affects the score.
        description: one line with the source.
    """

    name: str
    keep: str
    attend: AttendFn
    uses_alpha: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.keep not in ("lowest", "highest"):
            raise ValueError(f"Criterion.keep must be 'lowest' or 'highest', got {self.keep!r}")


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


def _renyi_attend(q, k, v, scale, alpha):
    return attention_with_entropy(q, k, v, alpha=alpha, scale=scale, head_reduce="mean")


def _evit_attend(q, k, v, scale, alpha):
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    cls_attn = torch.softmax((q[:, :, :1].float() @ k.float().transpose(-2, -1)) * scale, dim=-1)
    return out, cls_attn.mean(dim=1)[:, 0]


register_criterion(
    Criterion(
        "renyi",
        keep="lowest",
        attend=_renyi_attend,
        uses_alpha=True,
        description="mean over heads of the Rényi attention entropy H_α (arXiv 2604.03803)",
    )
)
register_criterion(
    Criterion(
        "evit",
        keep="highest",
        attend=_evit_attend,
        description="CLS attention averaged over heads (EViT, Liang et al., ICLR 2022)",
    )
)
