"""What a patch leaves on a model: a :class:`BlockState` on each pruning block, a :class:`ModelState`
on the model (the adapter, the model-level overrides, the block states), both under one attribute."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..adapters import ModelAdapter, Overrides
from ..adapters.base import require_module
from ..criteria import Criterion

if TYPE_CHECKING:  # records reads the states: no import at run time
    from .records import ForwardLog

STATE = "_renyi_prune"  # the instance attribute holding the patch's state


@dataclass
class BlockState:
    """One pruning block's settings, its overrides, and its decisions while their inputs live."""

    index: int
    first: bool  # the first pruning block: starts the record of a forward
    criterion: Criterion
    keep_rate: float
    params: dict[str, Any]  # what the criterion's score receives for this block (Criterion.block_params)
    attention_kwargs: dict[str, Any]  # run_attention's options (Criterion.attention_kwargs)
    num_prefix_tokens: int
    fuse_pruned: bool
    needs: frozenset[str]
    log: ForwardLog  # shared by the pruning blocks of one model
    adapter: ModelAdapter
    overrides: Overrides = field(repr=False)  # the block's ``forward``, and a user's it hides
    # (keep, pruned) decided by forwards whose input is still alive, for a checkpoint's recomputation
    decisions: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "decisions": {}}  # decisions belong to the original's live forwards
        # generators as their device and state: older torch cannot pickle a torch.Generator
        state["params"] = {
            k: _GeneratorState(str(v.device), v.get_state()) if isinstance(v, torch.Generator) else v
            for k, v in self.params.items()
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["params"] = {
            k: v.generator() if isinstance(v, _GeneratorState) else v for k, v in state["params"].items()
        }
        self.__dict__.update(state)

    def fuses(self, pruned: torch.Tensor) -> bool:
        """Whether the block appends a fused token, given its (B, n_pruned) pruned tokens."""
        return self.fuse_pruned and pruned.shape[1] > 0  # nothing pruned → nothing to fuse

    def generators(self) -> list[torch.Generator]:
        """The ``torch.Generator`` objects among the block's criterion parameters."""
        return [v for v in self.params.values() if isinstance(v, torch.Generator)]


@dataclass(frozen=True)
class _GeneratorState:
    device: str
    rng_state: torch.Tensor

    def generator(self) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.set_state(self.rng_state)
        return generator


@dataclass
class ModelState:
    """The patch of a model: its adapter, the model-level overrides, the pruning blocks' states."""

    adapter: ModelAdapter
    overrides: Overrides  # e.g. timm's ``forward_intermediates``, and a user's it hides
    blocks: dict[int, BlockState]  # by block index, ascending (the same objects the blocks carry)


def model_state(model: nn.Module) -> ModelState | None:
    """The patch state of ``model`` (None when it is not patched).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    return require_module(model).__dict__.get(STATE)


def pruning_states(model: nn.Module) -> dict[int, BlockState]:
    """The pruning blocks' states by block index, ascending.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` is not patched.
    """
    state = model_state(model)
    if state is None:
        raise ValueError("model is not patched: call renyi_prune.patch(model) first")
    return state.blocks


def original_method(model: nn.Module, name: str) -> Any:
    """The method ``name`` of a patched ``model`` as it was before the patch (bound)."""
    return model.__dict__[STATE].overrides.original(model, name)
