"""The patch itself: :func:`patch` installs the pruning forward on a model's pruning blocks through the
model's adapter, :func:`unpatch` takes it off, :func:`set_keep_rate` changes it in place."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._validate import check_keep_rate, check_schedule, per_block
from ..adapters import ModelAdapter, PatchView, adapter_for
from ..config import PruneConfig
from ..criteria import BlockContext, Criterion, get_criterion
from .forward import pruning_block_forward
from .records import ForwardLog, last_forward
from .state import STATE, BlockState, ModelState, model_state, original_method, pruning_states


def patch(model: nn.Module, config: PruneConfig | None = None, /, **settings: Any) -> nn.Module:
    """Make a Vision Transformer prune patch tokens at ``prune_blocks``, in place.

    Call it with a :class:`~renyi_prune.PruneConfig`, with the config's fields as keyword arguments
    (``criterion``, ``keep_rate``, ``alpha``, ``prune_blocks``, ``fuse_pruned``; any other keyword is a
    parameter of the criterion), or with both (the keywords replace the config's fields):
    ``patch(model, PruneConfig(keep_rate=0.5))``, ``patch(model, keep_rate=0.5, alpha=2.0)``,
    ``patch(model, config, keep_rate=0.9)``.

    Args:
        model: a model of a registered family (:func:`renyi_prune.adapters.adapter_for` picks its
            adapter by type): built in, a timm ``VisionTransformer`` (or subclass, e.g. DeiT
            distilled) whose pruning blocks are timm ``Block`` with ``timm.layers.Attention``;
            LayerScale (``ls1/ls2``), ``q_norm/k_norm``, drop path and prefix tokens
            (``num_prefix_tokens``: CLS, distillation and register tokens) are respected; with the
            extra ``renyi-prune[hf]``, Hugging Face ``transformers`` ViT, DeiT, DINOv2 (with
            registers) models (:mod:`renyi_prune.adapters.hf_vit`).
        config: how to prune (default ``PruneConfig()``: Rényi α = 1, keep rate 0.7, blocks 3, 6, 9).
        keep_rate: r in (0, 1]: fraction of the current patch tokens each pruning block keeps; one
            value, or one per pruning block (in the order of ``sorted(prune_blocks)``).
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed) for ``criterion="renyi"``; one value or one
            per pruning block; ``None`` = the criterion's default (1.0). α = 0 scores every token
            log N (softmax attention has full support), so all tokens tie and the first patches by
            position are kept; a warning says so.
        prune_blocks: 0-based indices of the pruning blocks (default 3, 6, 9 = the paper's blocks
            4, 7, 10): an iterable of ints (Python or NumPy integers).
        criterion: a registered criterion (:func:`renyi_prune.criteria.available_criteria`):
            ``renyi`` (default), ``shannon``, ``evit``, ``colln``, ``headvar``, ``headmad``, ``random``.
        fuse_pruned: merge the pruned patches of each pruning block into one extra token, weighted
            by CLS attention (EViT's token fusion); needs a CLS token.
        **criterion_params: the criterion's own parameters, e.g. ``order=3`` for ``colln``,
            ``source="column"`` for ``headvar``/``headmad``, ``seed=1`` for ``random``,
            ``backend="eager"`` for ``renyi``/``shannon`` (materialized attention, as in the paper).

    Returns:
        The same ``model`` object. Calling ``patch`` on a patched model first undoes the earlier
        patch. After a forward, :func:`kept_token_indices` and :func:`token_scores` give what each
        pruning block kept and why; :func:`set_keep_rate` changes the keep rate in place.

    The patched model in the rest of timm and PyTorch:

    * ``forward_features`` returns the pruned sequence (prefix, kept tokens, a fused token) and
      ``forward_head`` pools it, as ``model(x)`` does. ``forward_intermediates`` (and timm's
      ``get_intermediate_layers``) returns the patch tokens after a pruning block on the full grid:
      each kept token at its patch's cell, **zeros** at pruned patches, a fused token left out, in
      ``(B, C, H, W)`` for ``output_fmt="NCHW"`` and ``(B, H·W, C)`` for ``"NLC"``; prefix tokens and
      every intermediate before the first pruning block are timm's own.
    * Gradient checkpointing (timm's ``set_grad_checkpointing``, ``torch.utils.checkpoint`` reentrant
      or not): a recomputed pruning block reuses the kept set of its forward (found by its input
      tensor) instead of choosing again, so gradients are those of the forward's tokens and ``random``
      draws once per forward. With ``random`` a checkpointed region must begin at the pruning block
      (timm's regions are one block each); one that begins earlier makes backward raise
      ``RuntimeError`` rather than draw again. Deterministic criteria recompute the same choice.
    * ``copy.deepcopy``, ``pickle``, ``torch.save`` of the whole model, timm's ``ModelEmaV3``: the copy
      prunes like the original (``random`` generators continue from the same state) and records
      nothing until its own forward; pickles name the criterion, which must be registered on load.
    * Threads may share a patched model; each reads its own last forward.
    * A ``forward`` the user had set on a pruning block instance is set aside while patched and put
      back by :func:`unpatch`.

    Raises:
        TypeError: the model or a pruning block is not supported (named in the message; for a model
            no adapter handles, the message lists the supported families), ``config`` is not a
            :class:`~renyi_prune.PruneConfig`, or a ``prune_blocks`` entry is not an int (e.g. the
            string ``"3,6"``).
        ValueError: keep_rate outside (0, 1], α < 0 or NaN, a schedule whose length is not the
            number of pruning blocks, bad or repeated block index, unknown criterion or criterion
            parameter, fusion without a CLS token.

    Example:
        >>> import timm, torch, renyi_prune
        >>> model = timm.create_model("deit_tiny_patch16_224").eval()
        >>> renyi_prune.patch(model, keep_rate=0.7, alpha=2.0)  # doctest: +ELLIPSIS
        VisionTransformer(...)
        >>> with torch.no_grad():
        ...     logits = model(torch.randn(1, 3, 224, 224))
        >>> [idx.shape[1] for idx in renyi_prune.kept_token_indices(model).values()]
        [139, 98, 69]
        >>> renyi_prune.unpatch(model)  # doctest: +ELLIPSIS
        VisionTransformer(...)
    """

    config = _config(config, settings)
    adapter = adapter_for(model)
    blocks = adapter.blocks(model)
    npt = adapter.num_prefix_tokens(model)
    _check_blocks(adapter, blocks, config.prune_blocks)
    crit = get_criterion(config.criterion)
    needs = crit.required(config.criterion_params) | ({"cls_attn"} if config.fuse_pruned else set())
    if "cls_attn" in needs and npt < 1:
        raise ValueError(
            f"criterion={crit.name!r}, fuse_pruned={config.fuse_pruned} need a CLS token, "
            f"but model.num_prefix_tokens == {npt}"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    params = {
        i: crit.block_params(p, BlockContext(i, device))  # e.g. random's seeded generator
        for i, p in zip(config.prune_blocks, config.block_params, strict=True)
    }
    unpatch(model)
    states = _install_blocks(blocks, adapter, config, crit, frozenset(needs), npt, params)
    last, original = functools.partial(last_forward, model), functools.partial(original_method, model)
    view = PatchView(config.prune_blocks, npt, last, original)
    overrides = adapter.install_model(model, view)  # undone by overrides.remove(model)
    model.__dict__[STATE] = ModelState(adapter, overrides, states)
    return model


def _check_blocks(adapter: ModelAdapter, blocks: Sequence[nn.Module], prune_blocks: tuple[int, ...]) -> None:
    """Block indices within the model's depth, and each pruning block of a kind the adapter supports.

    Raises:
        ValueError: an index out of range. TypeError / ValueError (from the adapter): a block it
            cannot prune, named in the message.
    """
    if prune_blocks[-1] >= len(blocks):
        raise ValueError(
            f"prune block index {prune_blocks[-1]} is out of range for a model with {len(blocks)} blocks"
        )
    for i in prune_blocks:
        adapter.check_block(blocks[i], adapter.block_path(i))


def _install_blocks(
    blocks: Sequence[nn.Module], adapter: ModelAdapter, config: PruneConfig, crit: Criterion,
    needs: frozenset[str], npt: int, params: dict[int, dict[str, Any]],
) -> dict[int, BlockState]:  # fmt: skip
    """Put the pruning forward and its state on each pruning block; returns the states by index."""
    log = ForwardLog()  # one per model, shared by its pruning blocks
    states = {}
    for i, rate in zip(config.prune_blocks, config.keep_rates, strict=True):
        blk = blocks[i]
        overrides = adapter.install_forward(blk, functools.partial(pruning_block_forward, blk))
        states[i] = blk.__dict__[STATE] = BlockState(
            index=i, first=i == config.prune_blocks[0], criterion=crit, keep_rate=rate, params=params[i],
            attention_kwargs=crit.attention_kwargs(params[i]), num_prefix_tokens=npt,
            fuse_pruned=config.fuse_pruned, needs=needs, log=log, adapter=adapter, overrides=overrides,
        )  # fmt: skip
    return states


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(PruneConfig)) - {"params"}


def _config(config: PruneConfig | None, settings: dict[str, Any]) -> PruneConfig:
    """``config`` (default ``PruneConfig()``) with ``settings`` applied: config fields by name, any
    other keyword a criterion parameter (merged into ``params``)."""
    if config is None:
        config = PruneConfig()
    elif not isinstance(config, PruneConfig):
        raise TypeError(
            f"renyi_prune.patch: the second argument must be a PruneConfig, got {config!r}; "
            f"pass a keep rate as keep_rate={config!r}"
        )
    if not settings:
        return config
    fields = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    if "criterion" in fields and fields["criterion"] != config.criterion:
        fields.setdefault("params", {})  # another criterion: the config's parameters do not carry over
    params = {k: v for k, v in settings.items() if k not in _CONFIG_FIELDS}
    if params:
        fields["params"] = {**fields.get("params", config.params), **params}
    return config.replace(**fields)


def set_keep_rate(model: nn.Module, keep_rate: float | Sequence[float]) -> None:
    """Change the keep rate of a patched model in place (e.g. each step of a keep-rate warm-up).

    Args:
        model: a model patched with :func:`patch`.
        keep_rate: one value in (0, 1], or one per pruning block.

    Raises:
        TypeError / ValueError: the model is not patched, or a bad keep rate / schedule length.

    Example:
        >>> import torch, renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> _ = renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2))
        >>> renyi_prune.set_keep_rate(vit, [1.0, 0.25])  # one value, or one per pruning block
        >>> _ = vit(torch.randn(1, 3, 32, 32))
        >>> {i: idx.shape[1] for i, idx in renyi_prune.kept_token_indices(vit).items()}  # CLS + patches
        {1: 17, 2: 5}
    """
    states = pruning_states(model)
    rates = check_schedule("keep_rate", keep_rate, len(states), check_keep_rate)
    for state, rate in zip(states.values(), per_block(rates, len(states)), strict=True):
        state.keep_rate = rate


def unpatch(model: nn.Module) -> nn.Module:
    """Undo :func:`patch`: every block gets its own ``forward`` back. Returns ``model``.

    The instance attributes :func:`patch` set (block ``forward``, the model's
    ``forward_intermediates``) are deleted, and any the user had set on the instance before patching
    (e.g. a wrapper assigned to ``model.blocks[3].forward``) is back. A model that was never patched
    is returned unchanged.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> import renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> before = vit.blocks[1].forward
        >>> _ = renyi_prune.unpatch(renyi_prune.patch(vit, prune_blocks=[1]))
        >>> renyi_prune.is_patched(vit), vit.blocks[1].forward == before
        (False, True)
    """
    state = model_state(model)
    if state is None:
        return model
    del model.__dict__[STATE]
    state.overrides.remove(model)
    blocks = state.adapter.blocks(model)
    for i, block_state in state.blocks.items():
        blocks[i].__dict__.pop(STATE, None)
        state.adapter.remove_forward(blocks[i], block_state.overrides)
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether ``model`` carries a :func:`patch`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> import renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> renyi_prune.is_patched(vit), renyi_prune.is_patched(renyi_prune.patch(vit, prune_blocks=[1]))
        (False, True)
    """
    return model_state(model) is not None
