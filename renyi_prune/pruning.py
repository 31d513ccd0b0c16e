"""Reversible one-call patch of timm Vision Transformers that prunes patch tokens.

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
block keeps timm's own code path. The model's ``forward_intermediates`` (and with it timm's
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._validate import check_int, check_keep_rate, check_schedule, per_block
from .config import PruneConfig
from .criteria import AttentionPass, Criterion, get_criterion, run_attention

__all__ = [
    "patch",
    "unpatch",
    "is_patched",
    "kept_token_indices",
    "token_scores",
    "num_kept",
    "select_tokens",
    "pruning_generators",
    "preserved_rng",
]

_STATE = "_renyi_prune"
_SIGNIFICANT_DIGITS = 9  # num_kept: r · (n − prefix) is rounded to these before the ceiling


@dataclass
class _Record:
    """What one pruning block did in one forward, in block-input positions."""

    keep_index: torch.Tensor  # (B, prefix + k) kept tokens
    score: torch.Tensor  # (B, n) criterion score of every token that entered
    fused: bool  # whether a fused token was appended after the kept ones


class _ForwardLog:
    """The records of the last forward through a patched model, one per pruning block, per thread.

    The first pruning block of a forward starts a new record set, so a thread always reads the blocks
    of one forward; threads sharing the model do not see each other's forwards. A copy or a pickle
    of the log is empty (the records belong to the forwards of the original).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return _ForwardLog, ()

    def write(self, block: int, record: _Record, first: bool) -> None:
        if first or not hasattr(self._local, "records"):
            self._local.records = {}
        self._local.records[block] = record

    def read(self) -> dict[int, _Record]:
        """This thread's records of its last forward, by block index (empty before any forward)."""
        return dict(sorted(getattr(self._local, "records", {}).items()))


@dataclass
class _Overrides:
    """Instance attributes a patch set on a module, and those they hid (set on the instance before)."""

    names: tuple[str, ...]
    hidden: dict[str, Any]

    @classmethod
    def install(cls, module: nn.Module, attributes: dict[str, Any]) -> _Overrides:
        hidden = {name: module.__dict__[name] for name in attributes if name in module.__dict__}
        module.__dict__.update(attributes)
        return cls(tuple(attributes), hidden)

    def remove(self, module: nn.Module) -> None:
        for name in self.names:
            module.__dict__.pop(name, None)
        module.__dict__.update(self.hidden)

    def original(self, module: nn.Module, name: str) -> Callable[..., Any]:
        """The method ``name`` of ``module`` as it was before the patch (bound)."""
        if name in self.hidden:
            return self.hidden[name]
        return getattr(type(module), name).__get__(module, type(module))


@dataclass
class _BlockState:
    index: int
    first: bool  # the first pruning block: starts the record of a forward
    criterion: Criterion
    keep_rate: float
    params: dict[str, Any]  # the criterion's parameters for this block (alpha, order, generator, ...)
    num_prefix_tokens: int
    fuse_pruned: bool
    needs: frozenset[str]
    log: _ForwardLog  # shared by the pruning blocks of one model
    overrides: _Overrides = field(repr=False)  # the block's ``forward``, and a user's it hides
    # (keep, pruned) decided by forwards whose input is still alive, for a checkpoint's recomputation
    decisions: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "decisions": {}}  # decisions belong to the original's live forwards
        generator = self.params.get("generator")
        if isinstance(generator, torch.Generator):  # as its device and state: older torch cannot pickle it
            state["params"] = {**self.params, "generator": (str(generator.device), generator.get_state())}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["params"].get("generator"), tuple):
            device, rng_state = state["params"]["generator"]
            generator = torch.Generator(device=device)
            generator.set_state(rng_state)
            state["params"] = {**state["params"], "generator": generator}
        self.__dict__.update(state)

    def fuses(self, pruned: torch.Tensor) -> bool:
        """Whether the block appends a fused token, given its (B, n_pruned) pruned tokens."""
        return self.fuse_pruned and pruned.shape[1] > 0  # nothing pruned → nothing to fuse


@dataclass
class _ModelState:
    overrides: _Overrides  # the model's ``forward_intermediates``, and a user's it hides


def num_kept(num_tokens: int, num_prefix_tokens: int, keep_rate: float) -> int:
    """Patch tokens kept by a pruning block: ceil(r · (n − prefix)).

    The product is rounded to 9 significant digits before the ceiling, so that e.g. r = 0.7,
    n − prefix = 140 keeps 98 tokens, not 99 through the binary representation of 0.7 (0.7 · 140 =
    98.00000000000001), while a tiny product stays positive (ceil(1e-10 · 1) = 1). Hence at least one
    patch survives whenever there is one (r > 0), also on models without prefix tokens.

    Raises:
        TypeError / ValueError: ``keep_rate`` outside (0, 1], counts that are not ints, or
            ``num_tokens < num_prefix_tokens``.

    Example:
        >>> from renyi_prune import num_kept
        >>> [num_kept(197, 1, r) for r in (1.0, 0.7, 0.5, 0.3)]  # DeiT at 224 px: CLS + 196 patches
        [196, 138, 98, 59]
        >>> num_kept(141, 1, 0.7), num_kept(1, 0, 1e-10), num_kept(1, 1, 0.5)  # 140, 1 and 0 patches
        (98, 1, 0)
    """
    keep_rate = check_keep_rate(keep_rate)
    if isinstance(num_tokens, (torch.SymInt, torch.Tensor)):  # traced by torch.compile / jit.trace
        num_tokens = int(num_tokens)
    check_int("num_tokens", num_tokens, 0)
    check_int("num_prefix_tokens", num_prefix_tokens, 0)
    if num_tokens < num_prefix_tokens:
        raise ValueError(f"num_tokens={num_tokens} is smaller than num_prefix_tokens={num_prefix_tokens}")
    product = keep_rate * (num_tokens - num_prefix_tokens)
    if product == 0:
        return 0
    return math.ceil(round(product, _SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(product))))


def select_tokens(
    score: torch.Tensor, num_prefix_tokens: int, k: int, keep: str, return_pruned: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Indices of the tokens a pruning block keeps (and, optionally, of the patches it prunes).

    Args:
        score: (B, n) criterion score per token (prefix tokens' scores are ignored).
        num_prefix_tokens: leading tokens that are always kept.
        k: patch tokens to keep (0 ≤ k ≤ n − prefix).
        keep: ``"lowest"`` or ``"highest"`` scores survive.
        return_pruned: also return the pruned patch positions.

    Returns:
        keep (B, prefix + k) int64: the prefix tokens 0..prefix−1, then the kept patch tokens in
        ascending position; with ``return_pruned`` also pruned (B, n − prefix − k), ascending. Ties
        are broken by position (a stable sort) and NaN scores rank last at either end, so a NaN
        never wins a place.

    Raises:
        TypeError / ValueError: ``score`` not a (B, n) tensor, ``num_prefix_tokens`` or ``k`` out of
            range, ``keep`` not ``"lowest"``/``"highest"``.

    Example:
        >>> import math, torch
        >>> from renyi_prune.pruning import select_tokens
        >>> score = torch.tensor([[9.0, 0.3, math.nan, 0.1, 0.2, 0.1]])  # token 0 = CLS
        >>> select_tokens(score, num_prefix_tokens=1, k=3, keep="lowest")  # NaN last, tie by position
        tensor([[0, 3, 4, 5]])
        >>> select_tokens(score, 1, 2, "highest", return_pruned=True)
        (tensor([[0, 1, 4]]), tensor([[2, 3, 5]]))
    """
    if not isinstance(score, torch.Tensor) or score.dim() != 2:
        got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
        raise TypeError(f"score must be a (B, n) tensor, got {got}")
    n = score.shape[1]
    if not 0 <= check_int("num_prefix_tokens", num_prefix_tokens, 0) <= n:
        raise ValueError(f"num_prefix_tokens={num_prefix_tokens} is out of range for n={n} tokens")
    if not 0 <= check_int("k", k, 0) <= n - num_prefix_tokens:
        limit = n - num_prefix_tokens
        raise ValueError(f"k={k} is out of range [0, {limit}] for n={n}, prefix={num_prefix_tokens}")
    if keep not in ("lowest", "highest"):
        raise ValueError(f"keep must be 'lowest' or 'highest', got {keep!r}")
    patch_score = score[:, num_prefix_tokens:].float()
    if keep == "highest":
        patch_score = -patch_score
    order = torch.argsort(patch_score, dim=1, stable=True)
    kept = torch.sort(order[:, :k], dim=1).values + num_prefix_tokens
    prefix = torch.arange(num_prefix_tokens, device=score.device).expand(score.shape[0], -1)
    keep_index = torch.cat([prefix, kept], dim=1)
    if not return_pruned:
        return keep_index
    return keep_index, torch.sort(order[:, k:], dim=1).values + num_prefix_tokens


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _pruning_block_forward(
    self: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
) -> torch.Tensor:
    """Forward of a timm ``Block`` that prunes tokens after its attention residual.

    Installed on the block instance as ``functools.partial(_pruning_block_forward, block)``, which,
    unlike a bound method of a function the class does not have, copies and pickles with the block.
    """
    if attn_mask is not None or is_causal:
        raise NotImplementedError("renyi_prune: pruning blocks do not support attn_mask or is_causal")
    state: _BlockState = self.__dict__[_STATE]
    attn = self.attn
    B, N, _ = x.shape
    qkv = attn.qkv(self.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    params = state.params
    attention = run_attention(
        q, k, v, attn.scale, state.needs, params.get("alpha", 1.0), params.get("backend", "auto")
    )
    out = attention.out.transpose(1, 2).reshape(B, N, attn.attn_dim)
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    h = x + self.drop_path1(self.ls1(out))

    keep, pruned = _decide(state, attention, x)
    if state.fuses(pruned):
        # EViT's inattentive-token fusion: Σ over pruned tokens of (head-mean CLS attention) · token
        weight = attention.cls_attn.mean(dim=1).gather(1, pruned).to(h.dtype)
        fused = (_gather_tokens(h, pruned) * weight.unsqueeze(-1)).sum(dim=1, keepdim=True)
        h = torch.cat([_gather_tokens(h, keep), fused], dim=1)
    elif keep.shape[1] < N:
        h = _gather_tokens(h, keep)
    return h + self.drop_path2(self.ls2(self.mlp(self.norm2(h))))


def _decide(
    state: _BlockState, attention: AttentionPass, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's kept (B, prefix + k) and pruned (B, n − prefix − k) token indices for input ``x``.

    A forward scores, selects, records (for :func:`kept_token_indices`) and remembers its decision
    while ``x`` lives. A checkpoint's recomputation of that forward (same input) reuses the decision
    instead: it records nothing and draws nothing, so backward runs through the forward's tokens.

    Raises:
        RuntimeError: a recomputation of a ``random`` block whose input the forward did not see (a
            checkpointed region that starts before the block), where the draw cannot be repeated.
    """
    recomputing = _recomputing()
    if recomputing:
        decision = state.decisions.get(_input_key(x))
        if decision is not None:
            return decision
        if "generator" in state.params:
            raise RuntimeError(
                f"renyi_prune: pruning block {state.index} (criterion={state.criterion.name!r}) is "
                "recomputed by a gradient checkpoint whose region starts before the block, so its random "
                "draw cannot be repeated; checkpoint each block on its own (timm's "
                "set_grad_checkpointing does) or use a deterministic criterion"
            )
    score = state.criterion.score(attention, state.params)
    k = num_kept(x.shape[1], state.num_prefix_tokens, state.keep_rate)
    keep, pruned = select_tokens(score, state.num_prefix_tokens, k, state.criterion.keep, return_pruned=True)
    if not recomputing:
        state.log.write(state.index, _Record(keep, score.detach(), state.fuses(pruned)), first=state.first)
        _remember(state.decisions, x, (keep, pruned))
    return keep, pruned


def _recomputing() -> bool:
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


def _remember(
    decisions: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    decision: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Keep ``decision`` for a recomputation from input ``x``, until ``x`` is freed."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or x.is_inference():
        return  # compiled graphs recompute by themselves; inference tensors have no backward
    key = _input_key(x)
    decisions[key] = decision
    weakref.finalize(x, decisions.pop, key, None)


def _check_supported(blocks: list[nn.Module], prune_blocks: list[int]) -> None:
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    for i in prune_blocks:
        blk = blocks[i]
        where = f"model.blocks[{i}]"
        if type(blk).forward is not Block.forward:
            raise TypeError(
                f"renyi_prune.patch: {where} is {type(blk).__name__}, not a timm vision_transformer.Block "
                "(pre-norm block); other block types (e.g. ResPostBlock, ParallelScalingBlock) are "
                "unsupported"
            )
        attn = getattr(blk, "attn", None)
        if attn is None or type(attn).forward is not Attention.forward:
            raise TypeError(
                f"renyi_prune.patch: {where}.attn is {type(attn).__name__}, not timm.layers.Attention; "
                "other attention types (RoPE, fused qkv variants, ...) are unsupported"
            )
        if getattr(attn, "gate", None) is not None:
            raise TypeError(
                f"renyi_prune.patch: {where}.attn is gated (gate={attn.gate}); gated attention is unsupported"
            )
        if attn.attn_drop.p > 0:
            raise ValueError(
                f"renyi_prune.patch: {where}.attn.attn_drop.p={attn.attn_drop.p}; attention-probability "
                "dropout is unsupported by the fused kernel (set attn_drop_rate=0)"
            )


def patch(model: nn.Module, config: PruneConfig | None = None, /, **settings: Any) -> nn.Module:
    """Make a timm Vision Transformer prune patch tokens at ``prune_blocks``, in place.

    Call it with a :class:`~renyi_prune.PruneConfig`, with the config's fields as keyword arguments
    (``criterion``, ``keep_rate``, ``alpha``, ``prune_blocks``, ``fuse_pruned``; any other keyword is a
    parameter of the criterion), or with both (the keywords replace the config's fields):
    ``patch(model, PruneConfig(keep_rate=0.5))``, ``patch(model, keep_rate=0.5, alpha=2.0)``,
    ``patch(model, config, keep_rate=0.9)``.

    Args:
        model: a timm ``VisionTransformer`` (or subclass, e.g. DeiT distilled) whose pruning blocks
            are timm ``Block`` with ``timm.layers.Attention``; LayerScale (``ls1/ls2``), ``q_norm/
            k_norm``, drop path and prefix tokens (``num_prefix_tokens``) are respected.
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
        TypeError: the model or a pruning block is not supported (named in the message), or a
            ``prune_blocks`` entry is not an int (e.g. the string ``"3,6"``).
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
    blocks = getattr(model, "blocks", None)
    npt = getattr(model, "num_prefix_tokens", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not isinstance(npt, int):
        raise TypeError(
            f"renyi_prune.patch: unsupported model {type(model).__name__}; expected a timm VisionTransformer "
            "with .blocks (nn.Sequential) and an int .num_prefix_tokens"
        )
    prune_blocks = list(config.prune_blocks)
    if prune_blocks[-1] >= len(blocks):
        raise ValueError(
            f"prune block index {prune_blocks[-1]} is out of range for a model with {len(blocks)} blocks"
        )
    keep_rates = config.keep_rates
    crit = get_criterion(config.criterion)
    params = dict(config.criterion_params)
    uses_alpha = "alpha" in params
    alphas = config.alphas
    fuse_pruned = config.fuse_pruned
    if uses_alpha and 0.0 in alphas:
        warnings.warn(
            "renyi_prune.patch: alpha=0 gives every token the same Rényi entropy (log N), so pruning "
            "keeps the first patches by position",
            stacklevel=2,
        )
    needs = crit.required(params) | ({"cls_attn"} if fuse_pruned else set())
    if "cls_attn" in needs and npt < 1:
        raise ValueError(
            f"criterion={crit.name!r}, fuse_pruned={fuse_pruned} need a CLS token, "
            "but model.num_prefix_tokens == 0"
        )
    blocks = list(blocks)
    _check_supported(blocks, prune_blocks)

    unpatch(model)
    device = next(model.parameters()).device
    log = _ForwardLog()
    for i, rate, a in zip(prune_blocks, keep_rates, alphas, strict=True):
        block_params = dict(params)
        if uses_alpha:
            block_params["alpha"] = a
        if "seed" in block_params:
            block_params["generator"] = torch.Generator(device=device).manual_seed(
                int(block_params["seed"]) + i
            )
        blk = blocks[i]
        overrides = _Overrides.install(blk, {"forward": functools.partial(_pruning_block_forward, blk)})
        blk.__dict__[_STATE] = _BlockState(
            index=i, first=i == prune_blocks[0], criterion=crit, keep_rate=rate, params=block_params,
            num_prefix_tokens=npt, fuse_pruned=fuse_pruned, needs=frozenset(needs), log=log,
            overrides=overrides,
        )  # fmt: skip
    model.__dict__[_STATE] = _ModelState(_Overrides.install(model, _model_methods(model)))
    return model


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


_INTERMEDIATES_ARGS = frozenset({"indices", "output_fmt", "intermediates_only"})


def _model_methods(model: nn.Module) -> dict[str, Callable[..., Any]]:
    """The instance methods :func:`patch` puts on the model: ``forward_intermediates`` on the patch grid
    (timm's ``get_intermediate_layers`` calls it), or one that refuses for a signature it does not know."""
    method = getattr(type(model), "forward_intermediates", None)
    if method is None:
        return {}
    if _INTERMEDIATES_ARGS <= set(inspect.signature(method).parameters):
        wrapper = functools.partial(_pruned_forward_intermediates, model)
    else:
        wrapper = functools.partial(_refuse_intermediates, type(model).__name__)
    return {"forward_intermediates": wrapper}


def _refuse_intermediates(model_name: str, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(
        f"renyi_prune: {model_name}.forward_intermediates is not timm VisionTransformer's, so a patched "
        "model cannot put its pruned intermediates back on the patch grid; renyi_prune.unpatch(model) first"
    )


def _pruned_forward_intermediates(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """timm's ``VisionTransformer.forward_intermediates`` on a patched model (same arguments, same output
    structure); see :func:`patch`.

    Patch-token intermediates of a block at or after a pruning block come back on the full grid in
    raster order: (B, C, H, W) for ``output_fmt="NCHW"``, (B, H·W, C) for ``"NLC"``, each kept token at
    its patch's cell, zeros at pruned patches, a fused token (``fuse_pruned``) left out. Prefix tokens
    are returned as timm returns them; the final features are the pruned sequence, as
    ``forward_features`` returns it.

    Raises:
        ValueError: ``output_fmt`` not ``"NCHW"``/``"NLC"``, or the tokens entering the first pruning
            block are not the image's patch grid (e.g. timm's patch dropout in training).
    """
    overrides: _Overrides = model.__dict__[_STATE].overrides
    original = overrides.original(model, "forward_intermediates")
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = bound.arguments
    output_fmt = arguments["output_fmt"]
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"forward_intermediates: output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
    arguments["output_fmt"] = "NLC"  # the grid is made here, from the tokens and the record
    result = original(*bound.args, **bound.kwargs)
    image = next(iter(arguments.values()))

    def to_grids(spatial: list[torch.Tensor]) -> list[torch.Tensor]:
        return _patch_grids(model, spatial, image, arguments["indices"], output_fmt)

    if arguments.get("output_dict", False):
        return {**result, "image_intermediates": to_grids(result["image_intermediates"])}
    items = result if arguments["intermediates_only"] else result[1]
    grids = to_grids([item[0] if isinstance(item, tuple) else item for item in items])
    items = [(g, item[1]) if isinstance(item, tuple) else g for item, g in zip(items, grids, strict=True)]
    return items if arguments["intermediates_only"] else (result[0], items)


def _patch_grids(
    model: nn.Module, spatial: list[torch.Tensor], image: torch.Tensor, indices: Any, output_fmt: str
) -> list[torch.Tensor]:
    """Patch tokens (B, L, C) after each intermediate block (ascending, as timm takes them) → the grid."""
    from timm.models._features import feature_take_indices

    blocks = sorted(set(feature_take_indices(len(model.blocks), indices)[0]))
    pe = model.patch_embed
    H, W = pe.dynamic_feat_size(tuple(image.shape[-2:])) if hasattr(pe, "dynamic_feat_size") else pe.grid_size
    first = next(iter(_pruning_states(model)))
    # this forward ran the pruning blocks up to the last intermediate: read its record only then
    cells = _patch_cells(model, H * W) if blocks and blocks[-1] >= first else {}
    grids = []
    for i, tokens in zip(blocks, spatial, strict=True):
        before = [p for p in cells if p <= i]
        if before:
            tokens = _scatter_patches(tokens, cells[before[-1]], H * W)
        if output_fmt == "NCHW":
            tokens = tokens.reshape(tokens.shape[0], H, W, -1).permute(0, 3, 1, 2).contiguous()
        grids.append(tokens)
    return grids


def _patch_cells(model: nn.Module, num_cells: int) -> dict[int, torch.Tensor]:
    """``{pruning block: (B, L) grid cell of each patch token it outputs (< 0: a fused token)}`` in this
    thread's last forward.

    Raises:
        ValueError: the first pruning block's input was not the prefix + ``num_cells`` patch tokens.
    """
    records = _last_records(model)
    npt = model.num_prefix_tokens
    first = next(iter(records))
    entered = records[first].score.shape[1] - npt
    if entered != num_cells:
        raise ValueError(
            f"forward_intermediates: {entered} patch tokens entered pruning block {first}, not the "
            f"{num_cells} of the image's patch grid (patch dropout?): the grid positions are unknown"
        )
    return {i: origin[:, npt:] - npt for i, _, origin in _composed(records)}


def _scatter_patches(tokens: torch.Tensor, cells: torch.Tensor, num_cells: int) -> torch.Tensor:
    """(B, L, C) tokens at their (B, L) cells of a zero (B, num_cells, C) grid; cells < 0 are dropped."""
    B, _, C = tokens.shape
    index = torch.where(cells >= 0, cells, num_cells).unsqueeze(-1).expand(-1, -1, C)
    return tokens.new_zeros(B, num_cells + 1, C).scatter(1, index, tokens)[:, :num_cells]


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
    states = _pruning_states(model)
    rates = check_schedule("keep_rate", keep_rate, len(states), check_keep_rate)
    for state, rate in zip(states.values(), per_block(rates, len(states)), strict=True):
        state.keep_rate = rate


def _blocks(model: nn.Module) -> Iterable[nn.Module]:
    """The blocks a patch may touch (none for a model without ``.blocks``); TypeError for a non-module."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch nn.Module (a timm VisionTransformer), got {type(model).__name__}")
    return getattr(model, "blocks", [])


def unpatch(model: nn.Module) -> nn.Module:
    """Undo :func:`patch`: every block gets timm's own ``forward`` back. Returns ``model``.

    The instance attributes :func:`patch` set (block ``forward``, the model's
    ``forward_intermediates``) are deleted, and any the user had set on the instance before patching
    (e.g. a wrapper assigned to ``model.blocks[3].forward``) is back. A model that was never patched
    is returned unchanged.

    Example:
        >>> import renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> before = vit.blocks[1].forward
        >>> _ = renyi_prune.unpatch(renyi_prune.patch(vit, prune_blocks=[1]))
        >>> renyi_prune.is_patched(vit), vit.blocks[1].forward == before
        (False, True)
    """
    for module in [*_blocks(model), model]:
        state = module.__dict__.pop(_STATE, None)
        if state is not None:
            state.overrides.remove(module)
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether any block of ``model`` carries a :func:`patch`.

    Example:
        >>> import renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
        >>> renyi_prune.is_patched(vit), renyi_prune.is_patched(renyi_prune.patch(vit, prune_blocks=[1]))
        (False, True)
    """
    return any(_STATE in blk.__dict__ for blk in _blocks(model))


def _pruning_states(model: nn.Module) -> dict[int, _BlockState]:
    states = {
        i: blk.__dict__[_STATE]
        for i, blk in enumerate(_blocks(model))
        if _STATE in blk.__dict__
    }
    if not states:
        raise ValueError("model is not patched: call renyi_prune.patch(model) first")
    return states


def pruning_generators(model: nn.Module) -> list[torch.Generator]:
    """The ``torch.Generator`` of each pruning block of a seeded criterion (``random``), in block order.

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
    states = [blk.__dict__[_STATE] for blk in _blocks(model) if _STATE in blk.__dict__]
    return [s.params["generator"] for s in states if isinstance(s.params.get("generator"), torch.Generator)]


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
    return {i: kept for i, kept, _ in _composed(_last_records(model))}


def _last_records(model: nn.Module) -> dict[int, _Record]:
    """This thread's records of its last forward through ``model``, by block (ascending).

    Raises:
        ValueError: the model is not patched, or no forward has run in this thread since patching.
    """
    states = _pruning_states(model)
    first = next(iter(states))
    records = states[first].log.read()
    if not records:
        raise ValueError(f"pruning block {first} has not run yet: call the model on a batch first")
    return records


def _composed(records: dict[int, _Record]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(block, original positions of the kept tokens (B, prefix + k), original positions of the tokens
    the block outputs (the kept ones, then −1 for a fused token)) for each recorded block in order."""
    origin = None  # original position of each current token (−1: a fused token)
    for i, record in records.items():
        kept = record.keep_index if origin is None else origin.gather(1, record.keep_index)
        origin = torch.cat([kept, torch.full_like(kept[:, :1], -1)], dim=1) if record.fused else kept
        yield i, kept, origin


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
    return {i: record.score for i, record in _last_records(model).items()}
