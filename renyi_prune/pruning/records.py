"""What the last forward through a patched model did: a record per pruning block, kept per thread.

:func:`kept_token_indices` and :func:`token_scores` read them; a gradient checkpoint's recomputation
writes none (it reuses the forward's decision).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..adapters import BlockTokens
from .state import pruning_states


@dataclass
class Record:
    """What one pruning block did in one forward, in block-input positions."""

    keep_index: torch.Tensor  # (B, prefix + k) kept tokens
    score: torch.Tensor  # (B, n) criterion score of every token that entered
    fused: bool  # whether a fused token was appended after the kept ones


class ForwardLog:
    """The records of the last forward through a patched model, one per pruning block, per thread.

    The first pruning block of a forward starts a new record set, so a thread always reads the blocks
    of one forward; threads sharing the model do not see each other's forwards. A copy or a pickle
    of the log is empty (the records belong to the forwards of the original).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return ForwardLog, ()

    def write(self, block: int, record: Record, first: bool) -> None:
        if first or not hasattr(self._local, "records"):
            self._local.records = {}
        self._local.records[block] = record

    def read(self) -> dict[int, Record]:
        """This thread's records of its last forward, by block index (empty before any forward)."""
        return dict(sorted(getattr(self._local, "records", {}).items()))


def kept_token_indices(model: nn.Module) -> dict[int, torch.Tensor]:
    """Tokens kept by each pruning block in the last forward, in the model's original token positions.

    "The last forward" is this thread's: threads sharing a model each read their own. A gradient
    checkpoint's recomputation during backward does not count (it reuses the forward's decision).

    Returns:
        ``{block_index: (B, prefix + k) int64}`` for the pruning blocks the last forward ran (all of
        them unless it stopped early, e.g. ``forward_intermediates(..., stop_early=True)``):
        positions in the token sequence that entered the first block (prefix tokens first, then
        patch ``j`` at position ``prefix + j``), ascending after the prefix. A fused token
        (``fuse_pruned=True``) stands for several patches and has no position: it appears as −1, and
        the fused token a block creates is not listed (it follows the kept tokens).

    Raises:
        ValueError: the model is not patched, or no forward has run in this thread since it was
            patched (a copy or pickle of a patched model starts with none).

    Example:
        >>> import torch, renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> _ = renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), criterion="evit", fuse_pruned=True)
        >>> _ = vit(torch.randn(2, 3, 32, 32))
        >>> kept = renyi_prune.kept_token_indices(vit)
        >>> kept[1].shape, kept[2].shape  # (B, CLS + k): 8 of 16 patches, then 5 of 8 + the fused one
        (torch.Size([2, 9]), torch.Size([2, 6]))
        >>> bool((kept[2][:, 0] == 0).all()), bool((kept[2] >= -1).all())  # CLS first; −1 = the fused token
        (True, True)
    """
    return {i: kept for i, kept, _ in composed(last_records(model))}


def last_records(model: nn.Module) -> dict[int, Record]:
    """This thread's records of its last forward through ``model``, by block (ascending).

    Raises:
        ValueError: the model is not patched, or no forward has run in this thread since patching.
    """
    states = pruning_states(model)
    first = next(iter(states))
    records = states[first].log.read()
    if not records:
        raise ValueError(f"pruning block {first} has not run yet: call the model on a batch first")
    return records


def composed(records: dict[int, Record]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(block, original positions of the kept tokens (B, prefix + k), original positions of the tokens
    the block outputs (the kept ones, then −1 for a fused token)) for each recorded block in order."""
    origin = None  # original position of each current token (−1: a fused token)
    for i, record in records.items():
        kept = record.keep_index if origin is None else origin.gather(1, record.keep_index)
        origin = torch.cat([kept, torch.full_like(kept[:, :1], -1)], dim=1) if record.fused else kept
        yield i, kept, origin


def last_forward(model: nn.Module) -> dict[int, BlockTokens]:
    """``{pruning block: BlockTokens}`` of this thread's last forward (for the adapters' model methods).

    Raises:
        ValueError: the model is not patched, or no forward has run in this thread since patching.
    """
    records = last_records(model)
    return {i: BlockTokens(records[i].score.shape[1], origin) for i, _, origin in composed(records)}


def token_scores(model: nn.Module) -> dict[int, torch.Tensor]:
    """Criterion score of every token that entered each pruning block in the last forward.

    The last forward is this thread's, as in :func:`kept_token_indices`.

    Returns:
        ``{block_index: (B, n_block)}`` with ``n_block`` the tokens entering that block, in the
        order of :func:`kept_token_indices` of the previous pruning block (original order for the
        first). For ``renyi`` the unit is nats.

    Raises:
        ValueError: the model is not patched, or no forward has run in this thread since it was
            patched.

    Example:
        >>> import math, torch, renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> _ = renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), alpha=2.0)
        >>> _ = vit(torch.randn(1, 3, 32, 32))
        >>> scores = renyi_prune.token_scores(vit)
        >>> scores[1].shape, scores[2].shape  # 1 + 16 tokens enter block 1, 1 + 8 enter block 2
        (torch.Size([1, 17]), torch.Size([1, 9]))
        >>> bool(((0 <= scores[1]) & (scores[1] <= math.log(17))).all())  # H_α in [0, log n] nats
        True
    """
    return {i: record.score for i, record in last_records(model).items()}
