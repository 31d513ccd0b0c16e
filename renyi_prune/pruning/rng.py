"""Random streams of a patched model: the criteria's generators, and a context that restores them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .state import model_state


def pruning_generators(model: nn.Module) -> list[torch.Generator]:
    """The ``torch.Generator`` objects among the pruning blocks' criterion parameters (``random``: one
    per block, made by the criterion's ``setup``), in block order.

    Save and restore their states (``get_state``/``set_state``) to checkpoint a run exactly, or to
    run a side forward (e.g. :func:`renyi_prune.count_flops`) without advancing them. Empty for an
    unpatched model or a criterion without randomness.

    Example:
        >>> import renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> _ = renyi_prune.patch(vit, prune_blocks=(1, 2), criterion="random", seed=3)
        >>> [g.initial_seed() for g in renyi_prune.pruning_generators(vit)]  # seed + block index
        [4, 5]
    """
    state = model_state(model)
    return [] if state is None else [g for block in state.blocks.values() for g in block.generators()]


@contextlib.contextmanager
def preserved_rng(model: nn.Module) -> Iterator[None]:
    """Within: draw random numbers freely; on exit torch's global generator (and CUDA's, for a model on
    a GPU) and every :func:`pruning_generators` generator of ``model`` are back where they were.

    For a side forward (FLOP counting, validation) that must not shift the random streams a training
    run or a ``random`` criterion depends on.

    Example:
        >>> import torch, renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> _ = renyi_prune.patch(vit, prune_blocks=(1,), criterion="random")
        >>> before = [g.get_state() for g in renyi_prune.pruning_generators(vit)] + [torch.get_rng_state()]
        >>> from renyi_prune.pruning import preserved_rng
        >>> with preserved_rng(vit), torch.no_grad():
        ...     _ = vit(torch.randn(2, 3, 32, 32))
        >>> after = [g.get_state() for g in renyi_prune.pruning_generators(vit)] + [torch.get_rng_state()]
        >>> all(torch.equal(a, b) for a, b in zip(before, after))
        True
    """
    generators = pruning_generators(model)
    saved = [g.get_state() for g in generators]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda, device_type=device.type):
            yield
    finally:
        for g, state in zip(generators, saved, strict=True):
            g.set_state(state)
