"""The seam between the pruning engine and a model family: :class:`ModelAdapter` and its registry.

:func:`renyi_prune.patch` writes the pruning block forward once (attention with the criterion's
statistics, attention residual, choice of tokens, gather or fusion, MLP residual) and asks the model's
adapter for everything that depends on how the family writes its blocks: where the blocks are, how
many prefix tokens (CLS, distillation, register tokens) lead the sequence, q/k/v of a block's
attention, its output projection and residual, its MLP residual, how a block is called and what it
returns, how the pruning forward is put on a block (and taken off), and which model-level methods
must change (timm's ``forward_intermediates``). :func:`adapter_for` picks the adapter by the model's
type; :func:`register_adapter` adds a family (the timm ``VisionTransformer`` adapter is built in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

# the public names are re-exported (and listed in __all__) by renyi_prune.adapters


@dataclass
class Overrides:
    """Instance attributes a patch set on a module, and those they hid (set on the instance before).

    Example:
        >>> from torch import nn
        >>> from renyi_prune.adapters import Overrides
        >>> lin = nn.Linear(2, 2)
        >>> o = Overrides.install(lin, {"forward": lambda x: x})
        >>> lin(5)
        5
        >>> o.remove(lin); "forward" in lin.__dict__
        False
    """

    names: tuple[str, ...]
    hidden: dict[str, Any]

    @classmethod
    def install(cls, module: nn.Module, attributes: dict[str, Any]) -> Overrides:
        """Set ``attributes`` on the instance ``module``, remembering those they hide."""
        hidden = {name: module.__dict__[name] for name in attributes if name in module.__dict__}
        module.__dict__.update(attributes)
        return cls(tuple(attributes), hidden)

    def remove(self, module: nn.Module) -> None:
        """Delete what :meth:`install` set and put back what it hid."""
        for name in self.names:
            module.__dict__.pop(name, None)
        module.__dict__.update(self.hidden)

    def original(self, module: nn.Module, name: str) -> Callable[..., Any]:
        """The method ``name`` of ``module`` as it was before the patch (bound)."""
        if name in self.hidden:
            return self.hidden[name]
        return getattr(type(module), name).__get__(module, type(module))


@dataclass(frozen=True)
class AttentionInputs:
    """A block's attention inputs, as :meth:`ModelAdapter.attention_inputs` returns them.

    Attributes:
        q, k, v: (B, H, N, D) queries, keys and values (after any q/k normalization), the input's dtype.
        scale: the logit scale (usually D ** -0.5).

    Example:
        >>> import timm, torch
        >>> from renyi_prune import adapter_for
        >>> vit = timm.create_model("deit_tiny_patch16_224", img_size=32)
        >>> a = adapter_for(vit).attention_inputs(vit.blocks[0], torch.randn(2, 5, 192))
        >>> a.q.shape, a.scale == 64 ** -0.5  # (B, H, N, D): 3 heads of 64
        (torch.Size([2, 3, 5, 64]), True)
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float


class BlockTokens(NamedTuple):
    """The tokens of one pruning block in one forward (:attr:`PatchView.last_forward`).

    Attributes:
        num_entered: tokens that entered the block (prefix included).
        origins: (B, L) int64 original position of each token the block outputs (prefix tokens
            first, patch ``j`` at ``prefix + j``; −1 for a fused token).

    Example:
        >>> import torch
        >>> from renyi_prune.adapters import BlockTokens
        >>> BlockTokens(num_entered=5, origins=torch.tensor([[0, 2, 3, -1]])).num_entered
        5
    """

    num_entered: int
    origins: torch.Tensor


@dataclass(frozen=True)
class PatchView:
    """What a wrapped model-level method (:meth:`ModelAdapter.model_methods`) may read of the patch.

    Attributes:
        prune_blocks: the pruning blocks' indices, ascending.
        num_prefix_tokens: leading tokens never pruned.
        last_forward: ``last_forward()`` → ``{pruning block: BlockTokens}`` of this thread's last
            forward, for the blocks it ran (ascending); raises ValueError before any forward.
        original: ``original(name)`` → the model's method ``name`` as it was before the patch.

    Example:
        >>> import timm, torch, renyi_prune
        >>> vit = renyi_prune.patch(timm.create_model("deit_tiny_patch16_224", img_size=32), prune_blocks=[1])
        >>> view = vit.forward_intermediates.args[1]  # what timm's wrapped forward_intermediates reads
        >>> view.prune_blocks, view.num_prefix_tokens
        ((1,), 1)
        >>> with torch.no_grad():
        ...     _ = vit(torch.randn(1, 3, 32, 32))
        >>> view.last_forward()[1].num_entered, view.last_forward()[1].origins.shape  # CLS + 4 → CLS + 3
        (5, torch.Size([1, 4]))
    """

    prune_blocks: tuple[int, ...]
    num_prefix_tokens: int
    last_forward: Callable[[], dict[int, BlockTokens]]
    original: Callable[[str], Callable[..., Any]]


class ModelAdapter:
    """How the pruning engine reads and changes the models of one family (subclass it per family).

    Required: :attr:`family`, :meth:`handles`, :meth:`blocks`, :meth:`num_prefix_tokens`,
    :meth:`check_block`, :meth:`attention_inputs`, :meth:`attention_residual`, :meth:`mlp_residual`.
    The others have defaults for a block called as ``block(x)`` that returns the new tokens.

    An adapter holds no per-model state (patched models refer to it, and copies and pickles of them
    carry it), so its subclass must be importable where a pickled model is loaded. A model family
    whose layers take ``hidden_states`` and return tuples (Hugging Face ``transformers``) overrides
    :meth:`block_input` and :meth:`block_output`; per-token state outside the token tensor is
    gathered in :meth:`gather_token_state`.

    Example:
        >>> import timm
        >>> from renyi_prune import adapter_for
        >>> vit = timm.create_model("vit_small_patch14_reg4_dinov2", img_size=28, depth=2)
        >>> adapter = adapter_for(vit)
        >>> adapter.family, adapter.num_prefix_tokens(vit), len(adapter.blocks(vit))  # CLS + 4 registers
        ('timm VisionTransformer', 5, 2)
        >>> adapter.check_block(vit.blocks[1], adapter.block_path(1))  # supported: no error
    """

    #: Shown in errors and by :func:`available_adapters`, e.g. ``"timm VisionTransformer"``.
    family: str = ""

    def handles(self, model: nn.Module) -> bool:
        """Whether ``model`` belongs to this family (normally an ``isinstance`` test)."""
        raise NotImplementedError

    def blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        """The model's transformer blocks, in order. Raises TypeError for a malformed model."""
        raise NotImplementedError

    def block_path(self, index: int) -> str:
        """How errors name block ``index``, e.g. ``"model.blocks[3]"``."""
        return f"block {index}"

    def num_prefix_tokens(self, model: nn.Module) -> int:
        """Leading tokens never pruned (CLS, distillation and register tokens)."""
        raise NotImplementedError

    def check_block(self, block: nn.Module, where: str) -> None:
        """Raise TypeError (or ValueError) naming ``where`` when ``block`` cannot be a pruning block."""
        raise NotImplementedError

    def block_input(self, block: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The (B, N, C) tokens from a call ``block(*args, **kwargs)``; raise NotImplementedError for
        arguments the pruning forward cannot honour (attention masks, head masks, ...)."""
        if len(args) != 1 or kwargs:
            raise NotImplementedError(
                f"renyi_prune: a pruning {type(block).__name__} takes only the tokens, got "
                f"{len(args)} positional and keyword arguments {sorted(kwargs)}"
            )
        return args[0]

    def attention_inputs(self, block: nn.Module, x: torch.Tensor) -> AttentionInputs:
        """q, k, v (B, H, N, D) and the logit scale of ``block``'s attention for tokens ``x`` (B, N, C)."""
        raise NotImplementedError

    def attention_residual(self, block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, C) after the attention residual, from the block input ``x`` and the attention
        output ``out`` (B, H, N, D): merge heads, output projection, layer scale, residual."""
        raise NotImplementedError

    def mlp_residual(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """Tokens (B, n, C) after the MLP residual of ``block`` (run on the kept tokens only)."""
        raise NotImplementedError

    def block_output(self, block: nn.Module, h: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """What the block's caller expects back, given the new tokens ``h`` (default: ``h`` itself;
        e.g. a one-tuple for Hugging Face layers). ``args``, ``kwargs``: the block's call."""
        return h

    def gather_token_state(self, block: nn.Module, keep: torch.Tensor, fused: bool) -> None:
        """Gather any per-token state kept outside the token tensor (none by default) along with the
        kept tokens: ``keep`` (B, prefix + k) int64 block-input positions; ``fused``: a fused token
        follows them."""

    def install_forward(self, block: nn.Module, forward: Callable[..., Any]) -> Overrides:
        """Make ``block(...)`` run ``forward(...)``, reversibly (default: an instance ``forward``)."""
        return Overrides.install(block, {"forward": forward})

    def remove_forward(self, block: nn.Module, overrides: Overrides) -> None:
        """Undo :meth:`install_forward`."""
        overrides.remove(block)

    def install_model(self, model: nn.Module, view: PatchView) -> Overrides:
        """Change the model for the patch (after the pruning blocks got their forward), reversibly:
        by default the :meth:`model_methods` on the instance. An adapter that must also change other
        modules (the transformers adapters: the non-pruning layers after a pruning one) overrides it
        and returns an :class:`Overrides` whose ``remove(model)`` undoes all of it."""
        return Overrides.install(model, self.model_methods(model, view))

    def model_methods(self, model: nn.Module, view: PatchView) -> dict[str, Callable[..., Any]]:
        """Model methods the patch replaces on the instance (default none), e.g. timm's
        ``forward_intermediates`` that puts pruned intermediates back on the patch grid."""
        return {}


_REGISTRY: dict[str, ModelAdapter] = {}


def register_adapter(adapter: ModelAdapter) -> ModelAdapter:
    """Add ``adapter`` under ``adapter.family`` (replacing an earlier one of that family); later
    registrations are tried first by :func:`adapter_for`. Returns ``adapter``.

    Raises:
        TypeError: ``adapter`` is not a :class:`ModelAdapter` instance, or its ``family`` is not a
            non-empty str.

    Example:
        >>> from torch import nn
        >>> from renyi_prune import ModelAdapter, adapter_for, register_adapter, unregister_adapter
        >>> class MLPAdapter(ModelAdapter):
        ...     family = "toy MLP"
        ...     def handles(self, model):
        ...         return isinstance(model, nn.Sequential)
        >>> _ = register_adapter(MLPAdapter())
        >>> adapter_for(nn.Sequential()).family
        'toy MLP'
        >>> _ = unregister_adapter("toy MLP")
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"register_adapter takes a ModelAdapter instance, got {adapter!r}")
    if not isinstance(adapter.family, str) or not adapter.family:
        raise TypeError(f"{type(adapter).__name__}.family must be a non-empty str, got {adapter.family!r}")
    _REGISTRY.pop(adapter.family, None)
    _REGISTRY[adapter.family] = adapter
    return adapter


def unregister_adapter(family: str) -> ModelAdapter:
    """Remove the adapter of ``family`` and return it (patched models keep theirs).

    Raises:
        ValueError: no adapter of that family (the message lists the registered ones).

    Example:
        >>> from renyi_prune import available_adapters, register_adapter, unregister_adapter
        >>> a = unregister_adapter("timm VisionTransformer")
        >>> "timm VisionTransformer" in available_adapters()
        False
        >>> _ = register_adapter(a)
    """
    if family not in _REGISTRY:
        raise ValueError(f"no model adapter for family {family!r}; registered: {available_adapters()}")
    return _REGISTRY.pop(family)


def available_adapters() -> list[str]:
    """The registered model families, most recently registered first.

    Example:
        >>> from renyi_prune import available_adapters
        >>> "timm VisionTransformer" in available_adapters()
        True
    """
    return list(reversed(_REGISTRY))


def require_module(model: Any) -> nn.Module:
    """``model``, if it is an ``nn.Module``; else TypeError naming its type."""
    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        raise TypeError(f"expected a torch nn.Module (e.g. a timm VisionTransformer), got {kind}")
    return model


def adapter_for(model: Any) -> ModelAdapter:
    """The registered adapter whose :meth:`ModelAdapter.handles` accepts ``model`` (latest first).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or no adapter handles it (the message names
            the model's type and lists the supported families).

    Example:
        >>> import timm
        >>> from renyi_prune import adapter_for
        >>> adapter_for(timm.create_model("deit_tiny_patch16_224")).family
        'timm VisionTransformer'
        >>> adapter_for(timm.create_model("resnet18"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: renyi_prune: unsupported model ResNet; supported families: ['timm VisionTransformer', ...]
    """
    require_module(model)
    for adapter in reversed(_REGISTRY.values()):
        if adapter.handles(model):
            return adapter
    raise TypeError(
        f"renyi_prune: unsupported model {type(model).__name__}; supported families: {available_adapters()}"
    )
