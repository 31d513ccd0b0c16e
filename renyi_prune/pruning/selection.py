"""Which tokens a pruning block keeps: how many (:func:`num_kept`) and which (:func:`select_tokens`)."""

from __future__ import annotations

import math

import torch

from .._validate import check_int, check_keep_rate

_SIGNIFICANT_DIGITS = 9  # num_kept: r · (n − prefix) is rounded to these before the ceiling


def num_kept(num_tokens: int, num_prefix_tokens: int, keep_rate: float) -> int:
    """Patch tokens kept by a pruning block: ceil(r · (n − prefix)).

    The product is rounded to 9 significant digits before the ceiling, so that e.g. r = 0.7,
    n − prefix = 140 keeps 98 tokens, not 99 through the binary representation of 0.7 (0.7 · 140 =
    98.00000000000001), while a tiny product stays positive (ceil(1e-10 · 1) = 1). Hence at least one
    patch survives whenever there is one (r > 0), also on models without prefix tokens.

    Raises:
        TypeError / ValueError: ``keep_rate`` outside (0, 1], counts that are not ints, or
            ``num_tokens < num_prefix_tokens``.

    Example:
        >>> from renyi_prune import num_kept
        >>> [num_kept(197, 1, r) for r in (1.0, 0.7, 0.5, 0.3)]  # DeiT at 224 px: CLS + 196 patches
        [196, 138, 98, 59]
        >>> num_kept(141, 1, 0.7), num_kept(1, 0, 1e-10), num_kept(1, 1, 0.5)  # 140, 1 and 0 patches
        (98, 1, 0)
    """
    keep_rate = check_keep_rate(keep_rate)
    if isinstance(num_tokens, (torch.SymInt, torch.Tensor)):  # traced by torch.compile / jit.trace
        num_tokens = int(num_tokens)
    check_int("num_tokens", num_tokens, 0)
    check_int("num_prefix_tokens", num_prefix_tokens, 0)
    if num_tokens < num_prefix_tokens:
        raise ValueError(f"num_tokens={num_tokens} is smaller than num_prefix_tokens={num_prefix_tokens}")
    product = keep_rate * (num_tokens - num_prefix_tokens)
    if product == 0:
        return 0
    return math.ceil(round(product, _SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(product))))


def select_tokens(
    score: torch.Tensor, num_prefix_tokens: int, k: int, keep: str, return_pruned: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Indices of the tokens a pruning block keeps (and, optionally, of the patches it prunes).

    Args:
        score: (B, n) criterion score per token (prefix tokens' scores are ignored).
        num_prefix_tokens: leading tokens that are always kept.
        k: patch tokens to keep (0 ≤ k ≤ n − prefix).
        keep: ``"lowest"`` or ``"highest"`` scores survive.
        return_pruned: also return the pruned patch positions.

    Returns:
        keep (B, prefix + k) int64: the prefix tokens 0..prefix−1, then the kept patch tokens in
        ascending position; with ``return_pruned`` also pruned (B, n − prefix − k), ascending. Ties
        are broken by position (a stable sort) and NaN scores rank last at either end, so a NaN
        never wins a place.

    Raises:
        TypeError / ValueError: ``score`` not a (B, n) tensor, ``num_prefix_tokens`` or ``k`` out of
            range, ``keep`` not ``"lowest"``/``"highest"``.

    Example:
        >>> import math, torch
        >>> from renyi_prune.pruning import select_tokens
        >>> score = torch.tensor([[9.0, 0.3, math.nan, 0.1, 0.2, 0.1]])  # token 0 = CLS
        >>> select_tokens(score, num_prefix_tokens=1, k=3, keep="lowest")  # NaN last, tie by position
        tensor([[0, 3, 4, 5]])
        >>> select_tokens(score, 1, 2, "highest", return_pruned=True)
        (tensor([[0, 1, 4]]), tensor([[2, 3, 5]]))
    """
    if not isinstance(score, torch.Tensor) or score.dim() != 2:
        got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
        raise TypeError(f"score must be a (B, n) tensor, got {got}")
    n = score.shape[1]
    if not 0 <= check_int("num_prefix_tokens", num_prefix_tokens, 0) <= n:
        raise ValueError(f"num_prefix_tokens={num_prefix_tokens} is out of range for n={n} tokens")
    if not 0 <= check_int("k", k, 0) <= n - num_prefix_tokens:
        limit = n - num_prefix_tokens
        raise ValueError(f"k={k} is out of range [0, {limit}] for n={n}, prefix={num_prefix_tokens}")
    if keep not in ("lowest", "highest"):
        raise ValueError(f"keep must be 'lowest' or 'highest', got {keep!r}")
    patch_score = score[:, num_prefix_tokens:].float()
    if keep == "highest":
        patch_score = -patch_score
    order = _argsort(patch_score)
    kept = _ascending(order[:, :k]) + num_prefix_tokens
    prefix = torch.arange(num_prefix_tokens, device=score.device).expand(score.shape[0], -1)
    keep_index = torch.cat([prefix, kept], dim=1)
    if not return_pruned:
        return keep_index
    return keep_index, _ascending(order[:, k:]) + num_prefix_tokens


def _argsort(score: torch.Tensor) -> torch.Tensor:
    """Positions of each row of ``score`` (B, n) from lowest to highest, ties by position, NaN last.

    In an ONNX export, which has no stable sort, ONNX's TopK gives the same order: it breaks ties by
    the lower index (NaN is mapped to +inf first, so there it ties with +inf scores by position).
    """
    if torch.onnx.is_in_onnx_export():
        return torch.topk(score.nan_to_num(nan=math.inf), score.shape[1], dim=1, largest=False).indices
    return torch.argsort(score, dim=1, stable=True)


def _ascending(index: torch.Tensor) -> torch.Tensor:
    """Each row of ``index`` (B, m), distinct integers, sorted ascending (a TopK in an ONNX export)."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(index, index.shape[1], dim=1, largest=False).values
    return torch.sort(index, dim=1).values


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tokens of ``x`` (B, n, C) at ``index`` (B, m) int64: (B, m, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
