"""Model adapters: what :func:`renyi_prune.patch` needs to know about a model family.

:class:`ModelAdapter` is the interface (blocks, prefix tokens, a block's q/k/v, attention residual and
MLP residual, installing the pruning forward, model-level methods); :func:`adapter_for` picks the
registered adapter for a model by its type, :func:`register_adapter` adds one. Built in: timm
``VisionTransformer`` (:mod:`renyi_prune.adapters.timm_vit`). Every module of this package is
imported here and registers its adapter, so adding a family is adding one file.
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
