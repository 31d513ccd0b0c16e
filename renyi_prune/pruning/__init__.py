"""Reversible one-call patch of Vision Transformers that prunes patch tokens (timm built in; other
families through :mod:`renyi_prune.adapters`).

In each pruning block the attention runs on all current tokens; after the attention residual the
block keeps the prefix tokens (CLS, distillation and register tokens: ``model.num_prefix_tokens``)
plus the k = ceil(r · (n − prefix)) best patch tokens by the chosen criterion (r = keep rate,
n = current token count), gathers them, and runs the MLP on the kept tokens only. Later blocks see
only the kept tokens. This is the placement of "Rényi Attention Entropy for Patch Pruning"
(Aizawa & Igaue, arXiv 2604.03803, Sec. 3; blocks 4, 7, 10 = indices 3, 6, 9), and of EViT.

With ``fuse_pruned=True`` the pruned patch tokens are not dropped but merged into one extra token
appended at the end, their sum weighted by the CLS attention they received (head mean), as in EViT's
inattentive-token fusion (Liang et al., ICLR 2022); that fused token takes part in later blocks like
any token (it can be pruned and fused again). A block that prunes nothing (keep rate 1) adds no
fused token, so ``keep_rate=1.0`` gives the unpatched model with or without fusion.

Only the pruning blocks are touched (their ``forward`` is replaced on the instance); every other
block keeps its own code path. The pruning forward is written once (:mod:`.forward`) against the
model's :class:`~renyi_prune.adapters.ModelAdapter`, which knows the family's blocks, prefix tokens and
model-level methods: for timm, the model's ``forward_intermediates`` (and with it timm's
``get_intermediate_layers``) is wrapped on the instance so that intermediates after a pruning block
come back on the full patch grid (see :func:`patch`). :func:`unpatch` deletes what :func:`patch`
added and puts back any instance attribute it hid (e.g. a ``forward`` the user had set on a block),
so the model is exactly the original again (same modules, parameters, buffers and methods).

A patched model can be deep-copied, pickled and ``torch.save``-d whole (e.g. by timm's
``ModelEmaV3``); the copy prunes like the original (the generators of ``random`` continue from the
same state) and starts with no record of a forward. What :func:`kept_token_indices` and
:func:`token_scores` report is recorded per thread, so threads sharing one model each read their own
last forward. Under gradient checkpointing (``torch.utils.checkpoint``, timm's
``set_grad_checkpointing``) a recomputed pruning block reuses the decision of its forward, so
backward runs through the tokens the forward kept (see :func:`patch`).

Modules: :mod:`.selection` (how many and which tokens), :mod:`.engine` (patch, unpatch,
set_keep_rate), :mod:`.forward` (the pruning block forward), :mod:`.records` (what the last forward
kept), :mod:`.export` (kept tokens as outputs, for exported programs; patch masks),
:mod:`.checkpoint` (decision reuse under gradient checkpointing), :mod:`.rng` (the criteria's
generators), :mod:`.state` (what a patch leaves on a model).
"""

from .engine import is_patched, patch, set_keep_rate, unpatch
from .export import WithKeptTokens, kept_patch_mask
from .records import kept_token_indices, token_scores
from .rng import preserved_rng, pruning_generators
from .selection import num_kept, select_tokens  # the pruning forward looks num_kept up here, per call

__all__ = [
    "patch",
    "unpatch",
    "is_patched",
    "set_keep_rate",
    "kept_token_indices",
    "kept_patch_mask",
    "WithKeptTokens",
    "token_scores",
    "num_kept",
    "select_tokens",
    "pruning_generators",
    "preserved_rng",
]
