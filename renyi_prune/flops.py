"""FLOP counting with fvcore, including the attention ops fvcore does not know.

fvcore counts one fused multiply-add as one FLOP (its convention, used by DeiT, EViT and
"Rényi Attention Entropy for Patch Pruning", arXiv 2604.03803, Table 3). It has no handle for
``aten::scaled_dot_product_attention`` (timm's default attention path) nor for this package's fused
op, and would silently count them as zero; the handles here count both as the two matmuls of
attention, q·kᵀ and p·v: B·H·N·M·D + B·H·N·M·Dv.

Importing this module also registers the fused ops with PyTorch's ``FlopCounterMode``
(``torch.utils.flop_counter``, 2 FLOPs per multiply-add), with the formulas PyTorch uses for SDPA:
forward 2 matmuls, backward 4 (dq, dk, dv, dP; the recomputation of P is not counted).
"""

from __future__ import annotations

import math
import warnings
from numbers import Number
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import register_flop_formula

from .column_norm import COLUMN_OP_NAME, column_pass_flop_handle
from .ops import FUSED_OP_NAME
from .pruning import preserved_rng

__all__ = ["count_flops", "attention_flop_handle", "model_input_size"]


def _attention_macs(q_shape, k_shape, v_shape) -> int:
    *batch, n, d = q_shape
    prod = 1
    for s in batch:
        prod *= s
    return prod * n * k_shape[-2] * (d + v_shape[-1])


@register_flop_formula(torch.ops.renyi_prune.attention_with_entropy_fwd)
def _fused_fwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_macs(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.renyi_prune.attention_with_entropy_bwd)
def _fused_bwd_flops(
    dout_shape, grad_ent_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs
) -> int:
    return 4 * _attention_macs(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.renyi_prune.attention_column_power_sum)
def _column_pass_flops(q_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
    *batch, n, d = q_shape
    return 2 * math.prod(batch) * n * k_shape[-2] * d  # the recomputed q·kᵀ, 2 FLOPs per multiply-add


def attention_flop_handle(inputs: list[Any], outputs: list[Any]) -> Number:
    """fvcore op handle: FLOPs of softmax attention from the shapes of its (q, k, v) inputs.

    B·H·N·M·(D + Dv) multiply-adds (q·kᵀ and p·v), fvcore's FLOP unit; the softmax is not counted.
    :func:`count_flops` installs it for ``aten::scaled_dot_product_attention`` and the fused op.

    Example:
        >>> import torch
        >>> from fvcore.nn import FlopCountAnalysis
        >>> from renyi_prune.flops import attention_flop_handle
        >>> class SDPA(torch.nn.Module):
        ...     def forward(self, q, k, v):
        ...         return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        >>> q = torch.randn(1, 2, 10, 16)  # (B, H, N, D)
        >>> analysis = FlopCountAnalysis(SDPA(), (q, q, q))
        >>> analysis.set_op_handle("aten::scaled_dot_product_attention", attention_flop_handle).total()
        6400
    """
    from fvcore.nn.jit_handles import get_shape

    return _attention_macs(*(get_shape(t) for t in inputs[:3]))


def count_flops(
    model: nn.Module, img_size: int | tuple[int, int] | None = None, batch_size: int = 1
) -> float:
    """GFLOPs of one forward pass of ``model`` per batch, counted by fvcore.

    Unit: GFLOPs in fvcore's convention (one multiply-add = one FLOP), the convention of the paper's
    Table 3 (DeiT-S at 224 px: 4.61 unpruned, 3.00 / 2.29 / 1.80 pruned with r = 0.7 / 0.5 / 0.3).
    Pruned models are counted as they run: the token counts of later blocks are the kept ones.

    Args:
        model: any ``nn.Module`` taking (B, 3, H, W) images, e.g. a (patched) timm ViT. It is run
            once on a random batch in eval mode under ``torch.no_grad()`` on its own device; its
            training flag is restored afterwards, and no random number generator is advanced (the
            global ones, and those of a ``random`` criterion). On a patched model this forward replaces what
            :func:`renyi_prune.kept_token_indices` and :func:`renyi_prune.token_scores` report:
            read those before counting.
        img_size: input side (or (H, W)) in pixels; ``None``: the model's own input size (timm:
            ``model.patch_embed.img_size``; transformers: ``model.config.image_size``), e.g. 518 for
            timm's native DINOv2.
        batch_size: images per forward; the result is for the whole batch.

    Returns:
        GFLOPs (float).

    Raises:
        ImportError: fvcore is not installed.
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``img_size`` or ``batch_size`` is not a positive int, ``img_size`` is None and the
            model does not say its input size, or the model's forward
            rejects the input (an ``AssertionError``, e.g. timm's for a size other than a fixed
            input size, or a side that is not a multiple of the patch size).

    Example:
        >>> import timm, renyi_prune
        >>> round(renyi_prune.count_flops(timm.create_model("deit_small_patch16_224")), 2)
        4.61
    """
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError as e:  # pragma: no cover - fvcore is a declared dependency
        raise ImportError("count_flops needs fvcore: pip install fvcore") from e
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_flops takes an nn.Module, got {type(model).__name__}")
    img_size = model_input_size(model) if img_size is None else img_size
    sizes = (img_size, img_size) if isinstance(img_size, (int, float)) else tuple(img_size)
    if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"img_size must be a positive int or (H, W), got {img_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with preserved_rng(model), torch.no_grad(), warnings.catch_warnings():
            x = torch.randn(batch_size, 3, *sizes, device=device, dtype=dtype)
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model, x)
            analysis.set_op_handle("aten::scaled_dot_product_attention", attention_flop_handle)
            analysis.set_op_handle(FUSED_OP_NAME, attention_flop_handle)
            analysis.set_op_handle(COLUMN_OP_NAME, column_pass_flop_handle)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analysis.total()
    except AssertionError as e:  # the model's input check, e.g. timm's patch embedding on the size
        raise ValueError(
            f"count_flops: the model rejects img_size={img_size!r} (a {(batch_size, 3, *sizes)} batch): {e}"
        ) from e
    finally:
        model.train(was_training)
    return total / 1e9


def model_input_size(model: nn.Module) -> tuple[int, int]:
    """The (H, W) input size in pixels a timm or transformers model was built for: timm's
    ``model.patch_embed.img_size``, else transformers' ``model.config.image_size``.

    Raises:
        ValueError: the model says neither (the message names its class).

    Example:
        >>> import timm
        >>> model_input_size(timm.create_model("vit_tiny_patch16_224", img_size=96))
        (96, 96)
    """
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)  # timm
    if size is None:
        size = getattr(getattr(model, "config", None), "image_size", None)  # transformers
    if size is None:
        raise ValueError(f"{type(model).__name__} does not say its input size: pass img_size")
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
