"""timm DINOv2 weights in a Hugging Face ``transformers`` ``Dinov2Model`` (the optional extra
``renyi-prune[hf]``).

:func:`timm_to_hf_dinov2_state_dict` renames (and splits) the keys of a timm ``VisionTransformer``
state dict in the DINOv2 layout (``vit_small_patch14_dinov2`` and friends: pre-norm blocks, fused
``qkv``, LayerScale ``ls1/ls2``, CLS token with a position embedding) into those of
``transformers.Dinov2Model``; :func:`dinov2_from_timm` builds the ``Dinov2Model`` of a timm model and
loads them. With the offline pretrained DINOv2 ViT-S/14 of :mod:`renyi_prune.pretrained` this gives a
real transformers model whose features match timm's (``tests/test_hf_dinov2_weights.py``).

===============================================  =======================================================
timm key                                         transformers ``Dinov2Model`` key
===============================================  =======================================================
``cls_token``                                    ``embeddings.cls_token``
``pos_embed`` ``[1, 1 + N, C]``                  ``embeddings.position_embeddings``
``patch_embed.proj.{weight,bias}``               ``embeddings.patch_embeddings.projection.{weight,bias}``
``blocks.{i}.norm{1,2}.{weight,bias}``           ``encoder.layer.{i}.norm{1,2}.{weight,bias}``
``blocks.{i}.attn.qkv.{weight,bias}`` (q, k, v)  ``encoder.layer.{i}.attention.{q,k,v}_proj.{weight,bias}``
``blocks.{i}.attn.proj.{weight,bias}``           ``encoder.layer.{i}.attention.o_proj.{weight,bias}``
``blocks.{i}.ls{1,2}.gamma`` (ones if absent)    ``encoder.layer.{i}.layer_scale{1,2}.lambda1``
``blocks.{i}.mlp.fc{1,2}.{weight,bias}``         ``encoder.layer.{i}.mlp.fc{1,2}.{weight,bias}``
``norm.{weight,bias}``                           ``layernorm.{weight,bias}``
===============================================  =======================================================

The position embedding is copied as it is: build the timm model at the image size you will run
(:func:`renyi_prune.pretrained.load_dinov2_small` resamples the native 37 x 37 grid once) and the
transformers model gets ``config.image_size`` = that size, so that neither model interpolates at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["dinov2_from_timm", "timm_to_hf_dinov2_state_dict"]

_RENAMES = (
    (r"cls_token", "embeddings.cls_token"),
    (r"pos_embed", "embeddings.position_embeddings"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm([12])\.(weight|bias)", r"encoder.layer.\1.norm\2.\3"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layer.\1.attention.o_proj.\2"),
    (r"blocks\.(\d+)\.ls([12])\.gamma", r"encoder.layer.\1.layer_scale\2.lambda1"),
    (r"blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"encoder.layer.\1.mlp.\2.\3"),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
)
_QKV = re.compile(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def timm_to_hf_dinov2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformers ``Dinov2Model`` state dict of a timm DINOv2-layout ``VisionTransformer``.

    Args:
        state_dict: timm keys (see the module docstring) to tensors of any dtype and device; the fused
            ``qkv`` (3C, C) weight and (3C,) bias are split into q, k, v (C, C) / (C,) views. A block
            without LayerScale (no ``ls1.gamma``) gets ``lambda1`` = ones (of the width and dtype of its
            ``norm1.weight``).

    Returns:
        ``{transformers key: tensor}`` (tensors shared with ``state_dict`` where not split), for a
        ``Dinov2Model`` built with ``use_mask_token=False``.

    Raises:
        TypeError: ``state_dict`` is not a mapping of str to tensors.
        ValueError: a key the mapping does not know (e.g. ``reg_token``, ``head.weight``; named), or a
            ``qkv`` entry whose first dimension is not divisible by 3.

    Example:
        >>> import timm
        >>> from renyi_prune.hf_weights import timm_to_hf_dinov2_state_dict
        >>> vit = timm.create_model("vit_small_patch14_dinov2", img_size=28, depth=1, num_classes=0)
        >>> hf = timm_to_hf_dinov2_state_dict(vit.state_dict())
        >>> hf["encoder.layer.0.attention.k_proj.weight"].shape, len(hf)
        (torch.Size([384, 384]), 24)
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of str to tensors, got {type(state_dict).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict must map str to tensors, got {key!r}: {type(value).__name__}")
        qkv = _QKV.fullmatch(key)
        if qkv is not None:
            out.update(_split_qkv(key, value, f"encoder.layer.{qkv[1]}.attention", qkv[2]))
            continue
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            raise ValueError(f"timm_to_hf_dinov2_state_dict: no transformers Dinov2Model key for {key!r}")
    for key in [k for k in out if k.endswith(".norm1.weight")]:
        for i in (1, 2):
            out.setdefault(key.replace("norm1.weight", f"layer_scale{i}.lambda1"), torch.ones_like(out[key]))
    return out


def _split_qkv(key: str, value: torch.Tensor, prefix: str, kind: str) -> dict[str, torch.Tensor]:
    if value.shape[0] % 3:
        raise ValueError(f"{key}: first dimension {value.shape[0]} is not divisible by 3 (q, k, v)")
    q, k, v = value.chunk(3, dim=0)
    return {f"{prefix}.q_proj.{kind}": q, f"{prefix}.k_proj.{kind}": k, f"{prefix}.v_proj.{kind}": v}


def dinov2_from_timm(model: nn.Module, **config_overrides: Any) -> nn.Module:
    """A transformers ``Dinov2Model`` with the weights of the timm DINOv2-layout ``model``.

    The config is read from ``model``: width, depth, heads, patch size, ``image_size`` = the timm
    model's (square) input size, MLP ratio, LayerNorm eps, qkv bias; ``use_mask_token=False``,
    ``drop_path_rate=0``. The result is in eval mode, float32, on the CPU (``.to`` it as needed).

    Args:
        model: a timm ``VisionTransformer`` with a CLS token, the position embedding over CLS and
            patches (``no_embed_class=False``), no register tokens, pre-norm ``Block`` with timm
            ``Attention`` (no q/k normalization), a GELU MLP, square patches and images.
        **config_overrides: further ``Dinov2Config`` fields, e.g. ``attn_implementation="eager"``.

    Returns:
        ``transformers.Dinov2Model``: ``model(pixel_values).last_hidden_state`` (B, 1 + N, C) matches
        timm's ``forward_features`` (same input, up to float rounding).

    Raises:
        ImportError: transformers is not installed (``pip install renyi-prune[hf]``).
        TypeError: ``model`` is not a timm ``VisionTransformer``.
        ValueError: a ``model`` this mapping cannot express (register tokens, no class position
            embedding, non-square patches or images, q/k norm; named in the message).

    Example:
        >>> import timm, torch
        >>> from renyi_prune.hf_weights import dinov2_from_timm
        >>> vit = timm.create_model("vit_small_patch14_dinov2", img_size=28, depth=2, num_classes=0).eval()
        >>> hf = dinov2_from_timm(vit)
        >>> x = torch.randn(1, 3, 28, 28)
        >>> with torch.no_grad():
        ...     err = (hf(x).last_hidden_state - vit.forward_features(x)).abs().max().item()
        >>> type(hf).__name__, hf.config.image_size, err < 1e-4
        ('Dinov2Model', 28, True)
    """
    from timm.models.vision_transformer import VisionTransformer

    try:
        from transformers import Dinov2Config, Dinov2Model
    except ImportError as e:  # pragma: no cover - the test environment has transformers
        raise ImportError("dinov2_from_timm needs transformers: pip install renyi-prune[hf]") from e
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"dinov2_from_timm takes a timm VisionTransformer, got {type(model).__name__}")
    _check_dinov2_layout(model)
    block = model.blocks[0]
    config = Dinov2Config(
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features // model.embed_dim,
        patch_size=model.patch_embed.patch_size[0],
        image_size=model.patch_embed.img_size[0],
        layer_norm_eps=block.norm1.eps,
        qkv_bias=block.attn.qkv.bias is not None,
        hidden_act="gelu",
        use_mask_token=False,
        drop_path_rate=0.0,
        **config_overrides,
    )
    hf = Dinov2Model(config)
    hf.load_state_dict(timm_to_hf_dinov2_state_dict(model.state_dict()), strict=True)
    return hf.eval()


def _check_dinov2_layout(model: nn.Module) -> None:
    """Raise ValueError naming what the transformers Dinov2Model cannot express."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    pe = model.patch_embed
    problems = {
        "register tokens (reg_token)": getattr(model, "reg_token", None) is not None,
        "no CLS token": getattr(model, "cls_token", None) is None,
        "no_embed_class=True": getattr(model, "no_embed_class", False),
        f"patch size {tuple(pe.patch_size)} (not square)": pe.patch_size[0] != pe.patch_size[1],
        f"image size {tuple(pe.img_size)} (not square)": pe.img_size[0] != pe.img_size[1],
        "a block that is not timm's pre-norm Block with Attention": any(
            type(b).forward is not Block.forward or type(b.attn).forward is not Attention.forward
            for b in model.blocks
        ),
        "an MLP width that is not a multiple of the embedding width": any(
            b.mlp.fc1.out_features % model.embed_dim for b in model.blocks
        ),
        "q/k normalization": any(not isinstance(b.attn.q_norm, nn.Identity) for b in model.blocks),
        "an MLP activation other than exact GELU": any(
            not isinstance(getattr(b.mlp, "act", None), nn.GELU) or b.mlp.act.approximate != "none"
            for b in model.blocks
        ),
    }
    found = [name for name, bad in problems.items() if bad]
    if found:
        raise ValueError(f"dinov2_from_timm: {type(model).__name__} has {', '.join(found)}")
