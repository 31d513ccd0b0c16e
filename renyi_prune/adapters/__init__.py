"""Model adapters: what :func:`renyi_prune.patch` needs to know about a model family.

:class:`ModelAdapter` is the interface (blocks, prefix tokens, a block's q/k/v, attention residual and
MLP residual, installing the pruning forward, model-level methods); :func:`adapter_for` picks the
registered adapter for a model by its type, :func:`register_adapter` adds one. Built in: timm
``VisionTransformer`` (:mod:`renyi_prune.adapters.timm_vit`) and Hugging Face ``transformers`` ViT,
DeiT, DINOv2 and DINOv2 with registers (:mod:`renyi_prune.adapters.hf_vit`, the optional extra
``renyi-prune[hf]``). Every module of this package is imported here and registers its adapter, so
adding a family is adding one file; an adapter of an optional library imports it lazily (the
transformers adapters' ``handles`` answers False until the process has imported ``transformers``), so
that ``import renyi_prune`` works without it.
"""

import importlib
import pkgutil

from .base import (
    AttentionInputs,
    BlockTokens,
    ModelAdapter,
    Overrides,
    PatchView,
    adapter_for,
    available_adapters,
    register_adapter,
    unregister_adapter,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AttentionInputs",
    "BlockTokens",
    "ModelAdapter",
    "Overrides",
    "PatchView",
    "adapter_for",
    "available_adapters",
    "register_adapter",
    "unregister_adapter",
]
