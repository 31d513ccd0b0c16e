"""Gradient checkpointing: a recomputed pruning block reuses the decision of its forward.

A forward remembers its (keep, pruned) decision while its input tensor lives, keyed by that tensor; a
checkpoint's recomputation (``torch.utils.checkpoint``, reentrant or not; timm's
``set_grad_checkpointing``) runs inside backward from the same tensor (or, when reentrant, a
detached alias sharing storage and version counter) and finds it, so backward runs through the
tokens the forward kept and a random criterion draws once.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

Decision = tuple[torch.Tensor, torch.Tensor]  # (keep, pruned) token indices


def recall(decisions: dict[tuple[Any, ...], Decision], x: torch.Tensor) -> Decision | None:
    """The decision a forward made for input ``x``, if it is remembered."""
    return decisions.get(_input_key(x))


def recomputing() -> bool:
    """Whether this forward runs inside a backward pass: a gradient checkpoint recomputing a forward
    (``torch.utils.checkpoint``, reentrant or not; timm's ``set_grad_checkpointing``)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return torch._C._current_graph_task_id() != -1


def _input_key(x: torch.Tensor) -> tuple[Any, ...]:
    """Identifies a block input while it lives; a checkpoint recomputes from the same tensor (or, when
    reentrant, a detached alias sharing storage and version counter)."""
    storage = x.untyped_storage().data_ptr()
    return (x.device, x.dtype, storage, x.storage_offset(), tuple(x.shape), x.stride(), x._version)


def remember(
    decisions: dict[tuple[Any, ...], Decision],
    x: torch.Tensor,
    decision: Decision,
) -> None:
    """Keep ``decision`` for a recomputation from input ``x``, until ``x`` is freed."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or x.is_inference():
        return  # compiled graphs recompute by themselves; inference tensors have no backward
    key = _input_key(x)
    decisions[key] = decision
    weakref.finalize(x, decisions.pop, key, None)
