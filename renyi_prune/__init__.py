"""renyi-prune: fused Triton attention + Rényi attention entropy, and patch pruning for ViTs.

Implements "Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803) with a
flash-attention-style kernel that returns each query row's Rényi attention entropy in the same pass
as softmax attention, and a reversible one-call patch of Vision Transformers (timm built in; other
model families through :func:`register_adapter`).
"""

from .adapters import ModelAdapter, adapter_for, available_adapters, register_adapter, unregister_adapter
from .column_norm import attention_column_norm
from .config import DEFAULT_PRUNE_BLOCKS, PruneConfig
from .criteria import (
    AttentionPass,
    BlockContext,
    Criterion,
    available_criteria,
    get_criterion,
    register_criterion,
    unregister_criterion,
)
from .flops import count_flops
from .ops import attention_with_entropy
from .pretrained import load_pretrained
from .pruning import (  # the module behind patch(): renyi_prune.pruning
    WithKeptTokens,
    is_patched,
    kept_patch_mask,
    kept_token_indices,
    num_kept,
    patch,
    preserved_rng,
    pruning_generators,
    select_tokens,
    set_keep_rate,
    token_scores,
    unpatch,
)
from .reference import attention_probs, attention_with_entropy_reference, renyi_entropy
from .schedule import keep_rate_warmup

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PRUNE_BLOCKS",
    "AttentionPass",
    "BlockContext",
    "Criterion",
    "ModelAdapter",
    "PruneConfig",
    "WithKeptTokens",
    "adapter_for",
    "attention_column_norm",
    "attention_probs",
    "attention_with_entropy",
    "attention_with_entropy_reference",
    "available_adapters",
    "available_criteria",
    "count_flops",
    "get_criterion",
    "is_patched",
    "keep_rate_warmup",
    "load_pretrained",
    "kept_patch_mask",
    "kept_token_indices",
    "num_kept",
    "patch",
    "preserved_rng",
    "pruning_generators",
    "register_adapter",
    "register_criterion",
    "renyi_entropy",
    "select_tokens",
    "set_keep_rate",
    "token_scores",
    "unpatch",
    "unregister_adapter",
    "unregister_criterion",
]
