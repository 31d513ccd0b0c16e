"""Hugging Face ``transformers`` adapters: ViT, DeiT (with and without teacher), DINOv2 and DINOv2 with
registers (the optional extra ``renyi-prune[hf]``; written against ``transformers`` 5.23).

Supported models (and subclasses): ``ViTModel``, ``ViTForImageClassification``, ``DeiTModel``,
``DeiTForImageClassification``, ``DeiTForImageClassificationWithTeacher`` (family
``"transformers ViT/DeiT"``); ``Dinov2Model``, ``Dinov2ForImageClassification``,
``Dinov2WithRegistersModel``, ``Dinov2WithRegistersForImageClassification`` (family
``"transformers DINOv2"``). Other heads that put the patch tokens back on a grid
(``ViTForMaskedImageModeling``, ``Dinov2Backbone``, ...) are unsupported.

The pruning blocks are the base model's layers (``model.base_model.layers[i]`` for ViT/DeiT,
``model.base_model.encoder.layer[i]`` for DINOv2). Prefix tokens, never pruned: the CLS token (ViT,
DINOv2), CLS and distillation tokens (DeiT: 2), CLS and the ``config.num_register_tokens`` register
tokens (DINOv2 with registers). Layers that do not prune keep the model's own attention
(``config._attn_implementation``).

The heads see the pruned sequence: ViT and DINOv2 classify from the CLS token, DeiT with teacher averages
its CLS and distillation heads, and ``Dinov2ForImageClassification`` (and its registers variant)
concatenates the CLS token with the **mean of the kept patch tokens** of the last layer (with
``fuse_pruned``, the fused token is among the tokens averaged). ``output_hidden_states=True`` returns
each layer's actual tokens: after a pruning layer, the prefix, kept patches (and the fused token).

What a pruning layer cannot honour raises ``NotImplementedError`` naming it when the model runs: an
``attention_mask`` that hides tokens (pruning changes the sequence it was made for; a mask that hides
nothing is fine), ``output_attentions=True`` (as an argument or ``config.output_attentions``: the fused
attention never forms the attention probabilities), ``is_causal=True``, an ``_attn_implementation`` other
than ``"eager"`` / ``"sdpa"`` (``ValueError`` when patching), attention-probability dropout
(``attention_probs_dropout_prob > 0``) in training, and any other keyword argument reaching the layer.

``torch.compile`` (``fullgraph=True`` too): while dynamo traces, transformers 5.23 passes every layer an
all-visible (B, 1, N, N) mask even when none is given (``torch.compiler.is_exporting()`` is true then);
the first pruning layer asserts that it hides nothing (``torch._assert_async``) and the non-pruning
layers after it get a forward that cuts it to their tokens (:meth:`HFViTAdapter.install_model`).
``model.activation_checkpointing_enable()`` (or the older ``gradient_checkpointing_enable()``) is honoured
by the pruning layers (a recomputation reuses the forward's kept tokens, see :func:`renyi_prune.patch`).

The module imports ``transformers`` only once the process has imported it (a model of these classes
cannot exist before), so ``import renyi_prune`` works without it.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._validate import type_path
from .base import AttentionInputs, ModelAdapter, Overrides, PatchView, register_adapter

__all__ = ["SUPPORTED_ATTN_IMPLEMENTATIONS", "HFDinov2Adapter", "HFViTAdapter"]

#: ``config._attn_implementation`` values under which a transformers model can be pruned: without an
#: ``attention_mask`` the model passes its layers ``None`` (or, while dynamo traces, an all-visible
#: tensor mask), and the non-pruning layers run on any number of tokens.
SUPPORTED_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")

#: Keyword arguments a pruning layer accepts (``transformers`` passes the model's ``**kwargs`` on):
#: ``output_hidden_states`` (captured by hooks outside the layer), ``num_items_in_batch`` (the loss's),
#: ``output_attentions`` and ``is_causal`` when false.
_ACCEPTED_KWARGS = frozenset({"output_hidden_states", "num_items_in_batch", "output_attentions", "is_causal"})


def _classes(spec: dict[str, tuple[str, ...]]) -> tuple[type, ...]:
    """The classes named in ``spec`` (``{module: class names}``), imported from ``transformers``."""
    found = []
    for module_name, names in spec.items():
        module = importlib.import_module(f"transformers.models.{module_name}")
        found.extend(getattr(module, name) for name in names)
    return tuple(found)


class _HFAdapter(ModelAdapter):
    """What the transformers ViT-like families share: attention with ``q_proj``/``k_proj``/``v_proj``/
    ``o_proj``, layers called as ``layer(hidden_states, attention_mask, **kwargs)`` returning the tokens,
    and the model's checks on masks, attention outputs and attention implementations."""

    #: ``{transformers.models submodule: model class names}`` this adapter handles.
    _models: dict[str, tuple[str, ...]] = {}
    #: ``{submodule: (layer class name, attention class name)}`` of the supported pruning layers.
    _layers: dict[str, tuple[str, str]] = {}
    #: The layers' attribute path under ``model.base_model``.
    _path: tuple[str, ...] = ()

    def handles(self, model: nn.Module) -> bool:
        if "transformers" not in sys.modules:  # no transformers model can exist yet: do not import it
            return False
        return isinstance(model, self._model_classes())

    @functools.cache  # noqa: B019 - one instance per class, registered once: no leak
    def _model_classes(self) -> tuple[type, ...]:
        return _classes(self._models)

    @functools.cache  # noqa: B019
    def _layer_forwards(self) -> dict[Callable[..., Any], Callable[..., Any]]:
        """``{layer class forward: its attention class forward}``."""
        forwards = {}
        for module_name, (layer, attention) in self._layers.items():
            module = importlib.import_module(f"transformers.models.{module_name}")
            forwards[getattr(module, layer).forward] = getattr(module, attention).forward
        return forwards

    def blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        layers = model.base_model
        for name in self._path:
            layers = getattr(layers, name, None)
        if not isinstance(layers, nn.ModuleList):
            where = ".".join(("model.base_model", *self._path))
            raise TypeError(
                f"renyi_prune: {where} of {type(model).__name__} is {type_path(layers)}, "
                "not an nn.ModuleList of transformer layers"
            )
        return list(layers)

    def block_path(self, index: int) -> str:
        return ".".join(("model.base_model", *self._path)) + f"[{index}]"

    def check_block(self, block: nn.Module, where: str) -> None:
        forwards = self._layer_forwards()
        names = sorted(layer for layer, _ in self._layers.values())
        if type(block).forward not in forwards:
            raise TypeError(
                f"renyi_prune.patch: {where} is {type_path(block)}, not one of {names} "
                "with its class's forward"
            )
        attn = getattr(block, "attention", None)
        if type(attn).forward is not forwards[type(block).forward]:
            raise TypeError(
                f"renyi_prune.patch: {where}.attention is {type_path(attn)}, not the attention of "
                f"{type(block).__name__}; other attention modules are unsupported"
            )
        _check_attn_implementation(attn, where)

    def block_input(
        self, block: nn.Module, hidden_states: torch.Tensor, attention_mask: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        """``hidden_states``, once the call is one a pruning layer honours (see the module docstring).

        Raises:
            NotImplementedError: an attention mask that hides tokens (or is not a (B, 1, N, N) tensor),
                ``output_attentions``, ``is_causal``, an unsupported attention implementation, an
                unknown keyword argument, attention dropout in training.
        """
        name = type(block).__name__
        attn = block.attention
        _check_attn_implementation(attn, name, NotImplementedError)  # first: it decides the mask's type
        if attention_mask is not None:
            _check_all_visible(attention_mask, hidden_states.shape[1], name)
        unknown = sorted(set(kwargs) - _ACCEPTED_KWARGS)
        if unknown:
            raise NotImplementedError(f"renyi_prune: a pruning {name} cannot honour the arguments {unknown}")
        if kwargs.get("output_attentions", attn.config.output_attentions):
            raise NotImplementedError(
                f"renyi_prune: output_attentions=True through a pruning {name}: the fused attention never "
                "forms the attention probabilities (use renyi_prune.token_scores, or unpatch the model)"
            )
        if kwargs.get("is_causal"):
            raise NotImplementedError(f"renyi_prune: a pruning {name} cannot run is_causal=True attention")
        if attn.training and attn.attention_dropout > 0:
            raise NotImplementedError(
                f"renyi_prune: {name}.attention.attention_dropout={attn.attention_dropout} in training; "
                "attention-probability dropout is unsupported by the fused kernel (set "
                "config.attention_probs_dropout_prob=0 before building the model)"
            )
        return hidden_states

    def attention_inputs(self, block: nn.Module, x: torch.Tensor) -> AttentionInputs:
        attn = block.attention
        h = self._norm_before(block)(x)
        shape = (*x.shape[:-1], attn.num_attention_heads, attn.head_dim)  # no -1: B = 0 works
        q, k, v = (proj(h).view(shape).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        return AttentionInputs(q, k, v, attn.scaling)

    def _norm_before(self, block: nn.Module) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def _merge_heads(block: nn.Module, out: torch.Tensor) -> torch.Tensor:
        """(B, H, N, D) attention output → (B, N, C) after the output projection ``o_proj``."""
        B, H, N, D = out.shape
        return block.attention.o_proj(out.transpose(1, 2).reshape(B, N, H * D))

    def install_model(self, model: nn.Module, view: PatchView) -> Overrides:
        """The non-pruning layers after the first pruning layer get a forward that cuts the model's
        attention mask to their (pruned) sequence: under ``torch.compile`` transformers passes every
        layer an all-visible (B, 1, N, N) mask even when none was given, which the first pruning layer
        checks (so any n x n corner of it is the mask of n kept tokens)."""
        layers = self.blocks(model)
        followers = {
            i: Overrides.install(layers[i], {"forward": functools.partial(_follower_forward, layers[i])})
            for i in range(view.prune_blocks[0] + 1, len(layers))
            if i not in view.prune_blocks
        }
        own = Overrides.install(model, self.model_methods(model, view))
        return _ModelOverrides(own.names, own.hidden, followers, self)

    def install_forward(self, block: nn.Module, forward: Callable[..., Any]) -> Overrides:
        """An instance ``forward`` that also honours ``activation_checkpointing_enable()`` (transformers
        checkpoints in the class's ``forward``, which the instance attribute hides)."""
        return Overrides.install(block, {"forward": functools.partial(_checkpointed, block, forward)})


@dataclass
class _ModelOverrides(Overrides):
    """The model's overrides and those of its non-pruning layers after the first pruning layer."""

    layers: dict[int, Overrides] = field(default_factory=dict)
    adapter: ModelAdapter | None = None

    def remove(self, module: nn.Module) -> None:
        super().remove(module)
        layers = self.adapter.blocks(module)
        for i, overrides in self.layers.items():
            overrides.remove(layers[i])


def _follower_forward(
    block: nn.Module, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any
) -> Any:
    """The layer's own forward (checkpointing included), the mask cut to the tokens that reach it."""
    n = hidden_states.shape[1]
    if isinstance(attention_mask, torch.Tensor) and attention_mask.shape[-1] != n:
        attention_mask = attention_mask[..., :n, :n]  # all visible: checked by the first pruning layer
    return type(block).forward(block, hidden_states, attention_mask, *args, **kwargs)


def _check_all_visible(mask: Any, n: int, name: str) -> None:
    """Raise NotImplementedError unless ``mask`` is a (B, 1, N, N) mask (N ≥ n tokens) that hides nothing
    (bool True / additive 0); under ``torch.compile`` the value check is an asynchronous assert
    (RuntimeError with the same message)."""
    # a later pruning layer sees the mask made for the whole sequence (n ≤ its side)
    if (
        not isinstance(mask, torch.Tensor)
        or mask.dim() != 4
        or mask.shape[-1] != mask.shape[-2]
        or mask.shape[-1] < n
    ):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise NotImplementedError(
            f"renyi_prune: a pruning {name} got an attention_mask {shape} for {n} tokens; it takes none, "
            "or the all-visible (B, 1, N, N) mask transformers makes when none is given"
        )
    visible = mask.all() if mask.dtype == torch.bool else (mask == 0).all()
    message = (
        f"renyi_prune: a pruning {name} got an attention_mask that hides tokens; pruning changes the "
        "sequence the mask was made for: call the model without attention_mask"
    )
    if torch.compiler.is_compiling():
        torch._assert_async(visible, message)
    elif not visible:
        raise NotImplementedError(message)


def _check_attn_implementation(attn: nn.Module, where: str, error: type[Exception] = ValueError) -> None:
    implementation = attn.config._attn_implementation
    if implementation not in SUPPORTED_ATTN_IMPLEMENTATIONS:
        raise error(
            f"renyi_prune: {where} runs attn_implementation={implementation!r}; pruning supports "
            f"{list(SUPPORTED_ATTN_IMPLEMENTATIONS)} (model.set_attn_implementation('sdpa'))"
        )


def _checkpointed(block: nn.Module, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``forward(*args, **kwargs)``, through the layer's checkpoint function when transformers' gradient
    checkpointing is on and the layer trains (as ``GradientCheckpointingLayer`` does)."""
    if getattr(block, "gradient_checkpointing", False) and block.training:
        return block._gradient_checkpointing_func(functools.partial(forward, **kwargs), *args)
    return forward(*args, **kwargs)


class HFViTAdapter(_HFAdapter):
    """transformers ViT and DeiT: post-attention ``dropout`` and residual, ``layernorm_before`` /
    ``layernorm_after``; 1 prefix token (CLS), 2 for DeiT (CLS, distillation).

    Example:
        >>> import torch, renyi_prune
        >>> from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher
        >>> cfg = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        ...                  intermediate_size=64, image_size=32, patch_size=8, num_labels=3)
        >>> deit = DeiTForImageClassificationWithTeacher(cfg).eval()
        >>> adapter = renyi_prune.adapter_for(deit)
        >>> adapter.family, adapter.num_prefix_tokens(deit), adapter.block_path(1)
        ('transformers ViT/DeiT', 2, 'model.base_model.layers[1]')
        >>> _ = renyi_prune.patch(deit, keep_rate=0.5, prune_blocks=[1])
        >>> with torch.no_grad():
        ...     logits = deit(torch.randn(1, 3, 32, 32)).logits  # mean of CLS and distillation heads
        >>> renyi_prune.kept_token_indices(deit)[1].tolist()[0][:2]  # CLS, distillation: always kept
        [0, 1]
    """

    family = "transformers ViT/DeiT"
    _models = {
        "vit.modeling_vit": ("ViTModel", "ViTForImageClassification"),
        "deit.modeling_deit": (
            "DeiTModel",
            "DeiTForImageClassification",
            "DeiTForImageClassificationWithTeacher",
        ),
    }
    _layers = {
        "vit.modeling_vit": ("ViTLayer", "ViTAttention"),
        "deit.modeling_deit": ("DeiTLayer", "DeiTAttention"),
    }
    _path = ("layers",)

    def num_prefix_tokens(self, model: nn.Module) -> int:
        from transformers.models.deit.modeling_deit import DeiTModel

        return 2 if isinstance(model.base_model, DeiTModel) else 1

    def _norm_before(self, block: nn.Module) -> nn.Module:
        return block.layernorm_before

    def attention_residual(self, block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return x + block.dropout(self._merge_heads(block, out))

    def mlp_residual(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return h + block.dropout(block.mlp(block.layernorm_after(h)))


class HFDinov2Adapter(_HFAdapter):
    """transformers DINOv2 (and with registers): ``norm1`` / ``norm2``, LayerScale (``layer_scale1/2``),
    drop path, MLP or SwiGLU; prefix tokens CLS + ``config.num_register_tokens`` registers.

    Example:
        >>> import torch, renyi_prune
        >>> from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel
        >>> cfg = Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        ...                                 image_size=28, patch_size=7, num_register_tokens=4)
        >>> model = Dinov2WithRegistersModel(cfg).eval()
        >>> adapter = renyi_prune.adapter_for(model)
        >>> adapter.family, adapter.num_prefix_tokens(model), adapter.block_path(0)  # CLS + 4 registers
        ('transformers DINOv2', 5, 'model.base_model.encoder.layer[0]')
        >>> _ = renyi_prune.patch(model, keep_rate=0.5, prune_blocks=[0])
        >>> with torch.no_grad():
        ...     model(torch.randn(1, 3, 28, 28)).last_hidden_state.shape  # 5 prefix + 8 of 16 patches
        torch.Size([1, 13, 32])
    """

    family = "transformers DINOv2"
    _models = {
        "dinov2.modeling_dinov2": ("Dinov2Model", "Dinov2ForImageClassification"),
        "dinov2_with_registers.modeling_dinov2_with_registers": (
            "Dinov2WithRegistersModel",
            "Dinov2WithRegistersForImageClassification",
        ),
    }
    _layers = {
        "dinov2.modeling_dinov2": ("Dinov2Layer", "Dinov2Attention"),
        "dinov2_with_registers.modeling_dinov2_with_registers": (
            "Dinov2WithRegistersLayer",
            "Dinov2WithRegistersAttention",
        ),
    }
    _path = ("encoder", "layer")

    def num_prefix_tokens(self, model: nn.Module) -> int:
        registers = getattr(model.base_model.embeddings, "register_tokens", None)
        return 1 + (registers.shape[1] if registers is not None else 0)

    def _norm_before(self, block: nn.Module) -> nn.Module:
        return block.norm1

    def attention_residual(self, block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return x + block.drop_path(block.layer_scale1(self._merge_heads(block, out)))

    def mlp_residual(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return h + block.drop_path(block.layer_scale2(block.mlp(block.norm2(h))))


register_adapter(HFViTAdapter())
register_adapter(HFDinov2Adapter())
