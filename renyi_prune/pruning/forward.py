"""The pruning block forward, written once for every model family against :class:`ModelAdapter`.

The attention runs on all current tokens and computes what the criterion needs; after the attention
residual the block keeps the prefix tokens plus the k = ceil(r · (n − prefix)) best patches (optionally
fusing the pruned ones into one token), and runs the MLP on the kept tokens only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..criteria import AttentionPass, run_attention
from .checkpoint import Decision, recall, recomputing, remember
from .records import Record
from .selection import gather_tokens, num_kept, select_tokens
from .state import STATE, BlockState


def pruning_block_forward(block: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Forward of a pruning block: called as the block is (``args``, ``kwargs``), returns what it returns.

    Installed on the block by its adapter as ``functools.partial(pruning_block_forward, block)``, which,
    unlike a bound method of a function the class does not have, copies and pickles with the block.

    Raises:
        NotImplementedError: call arguments the adapter cannot honour (e.g. timm's ``attn_mask``).
    """
    state: BlockState = block.__dict__[STATE]
    adapter = state.adapter
    x = adapter.block_input(block, *args, **kwargs)
    inputs = adapter.attention_inputs(block, x)
    attention = run_attention(
        inputs.q, inputs.k, inputs.v, inputs.scale, state.needs, **state.attention_kwargs
    )
    h = adapter.attention_residual(block, x, attention.out)
    keep, pruned = decide(state, attention, x)
    fused = state.fuses(pruned)
    h = _kept_tokens(h, keep, pruned, attention, fused)
    adapter.gather_token_state(block, keep, fused)
    return adapter.block_output(block, adapter.mlp_residual(block, h), *args, **kwargs)


def _kept_tokens(
    h: torch.Tensor, keep: torch.Tensor, pruned: torch.Tensor, attention: AttentionPass, fused: bool
) -> torch.Tensor:
    """The kept tokens of ``h`` (B, n, C), then the fused token when ``fused``."""
    if fused:
        # EViT's inattentive-token fusion: Σ over pruned tokens of (head-mean CLS attention) · token
        weight = attention.cls_attn.mean(dim=1).gather(1, pruned).to(h.dtype)
        fused_token = (gather_tokens(h, pruned) * weight.unsqueeze(-1)).sum(dim=1, keepdim=True)
        return torch.cat([gather_tokens(h, keep), fused_token], dim=1)
    if keep.shape[1] < h.shape[1]:
        return gather_tokens(h, keep)
    return h


def decide(state: BlockState, attention: AttentionPass, x: torch.Tensor) -> Decision:
    """The block's kept (B, prefix + k) and pruned (B, n − prefix − k) token indices for input ``x``.

    A forward scores, selects, records (for :func:`kept_token_indices`) and remembers its decision
    while ``x`` lives. A checkpoint's recomputation of that forward (same input) reuses the decision
    instead: it records nothing and draws nothing, so backward runs through the forward's tokens.

    Raises:
        RuntimeError: a recomputation of a non-deterministic criterion's block (``random``) whose input
            the forward did not see (a checkpointed region that starts before the block), where the
            draw cannot be repeated.
    """
    again = recomputing()
    if again:
        decision = recall(state.decisions, x)
        if decision is not None:
            return decision
        if not state.criterion.deterministic:
            raise RuntimeError(
                f"renyi_prune: pruning block {state.index} (criterion={state.criterion.name!r}) is "
                "recomputed by a gradient checkpoint whose region starts before the block, so its random "
                "draw cannot be repeated; checkpoint each block on its own (timm's "
                "set_grad_checkpointing does) or use a deterministic criterion"
            )
    score = state.criterion.score(attention, state.params)
    k = num_kept(x.shape[1], state.num_prefix_tokens, state.keep_rate)
    keep, pruned = select_tokens(score, state.num_prefix_tokens, k, state.criterion.keep, return_pruned=True)
    if not again:
        state.log.write(state.index, Record(keep, score.detach(), state.fuses(pruned)), first=state.first)
        remember(state.decisions, x, (keep, pruned))
    return keep, pruned
