"""The timm ``VisionTransformer`` adapter: DeiT (and distilled DeiT), ViT, DINOv2 with LayerScale,
register-token ViTs (``vit_*_reg4_*``), q/k normalization.

Pruning blocks must be timm's pre-norm ``vision_transformer.Block`` with ``timm.layers.Attention``
(not gated, no attention dropout). Prefix tokens are ``model.num_prefix_tokens``: the CLS token, the
distillation token and the register tokens, all of which precede the patches and are never pruned.

The model's ``forward_intermediates`` (and with it timm's ``get_intermediate_layers``) is replaced
on the instance so that intermediates after a pruning block come back on the full patch grid (see
:func:`renyi_prune.patch`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._validate import type_path
from .base import AttentionInputs, ModelAdapter, PatchView, register_adapter

_INTERMEDIATES_ARGS = frozenset({"indices", "output_fmt", "intermediates_only"})


class TimmViTAdapter(ModelAdapter):
    """timm ``VisionTransformer`` and its subclasses (e.g. ``VisionTransformerDistilled``)."""

    family = "timm VisionTransformer"

    def handles(self, model: nn.Module) -> bool:
        from timm.models.vision_transformer import VisionTransformer

        return isinstance(model, VisionTransformer)

    def blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        blocks = getattr(model, "blocks", None)
        if not isinstance(blocks, (nn.Sequential, nn.ModuleList)):
            raise TypeError(
                f"renyi_prune: {type(model).__name__}.blocks is {type_path(blocks)}, not an "
                "nn.Sequential of timm Blocks"
            )
        return list(blocks)

    def block_path(self, index: int) -> str:
        return f"model.blocks[{index}]"

    def num_prefix_tokens(self, model: nn.Module) -> int:
        npt = getattr(model, "num_prefix_tokens", None)
        if isinstance(npt, bool) or not isinstance(npt, int):
            raise TypeError(f"renyi_prune: {type(model).__name__}.num_prefix_tokens is {npt!r}, not an int")
        return npt

    def check_block(self, block: nn.Module, where: str) -> None:
        from timm.layers import Attention
        from timm.models.vision_transformer import Block

        if type(block).forward is not Block.forward:
            raise TypeError(
                f"renyi_prune.patch: {where} is {type_path(block)}, not timm.models.vision_transformer.Block "
                "(pre-norm block); other block types (e.g. ResPostBlock, ParallelScalingBlock) are "
                "unsupported"
            )
        attn = getattr(block, "attn", None)
        if attn is None or type(attn).forward is not Attention.forward:
            raise TypeError(
                f"renyi_prune.patch: {where}.attn is {type_path(attn)}, not timm.layers.Attention; "
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

    def block_input(
        self,
        block: nn.Module,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("renyi_prune: pruning blocks do not support attn_mask or is_causal")
        return x

    def attention_inputs(self, block: nn.Module, x: torch.Tensor) -> AttentionInputs:
        attn = block.attn
        B, N, _ = x.shape
        qkv = attn.qkv(block.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return AttentionInputs(attn.q_norm(q), attn.k_norm(k), v, attn.scale)

    def attention_residual(self, block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        B, _, N, _ = out.shape
        out = out.transpose(1, 2).reshape(B, N, attn.attn_dim)
        out = attn.proj_drop(attn.proj(attn.norm(out)))
        return x + block.drop_path1(block.ls1(out))

    def mlp_residual(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return h + block.drop_path2(block.ls2(block.mlp(block.norm2(h))))

    def model_methods(self, model: nn.Module, view: PatchView) -> dict[str, Callable[..., Any]]:
        """``forward_intermediates`` on the patch grid (timm's ``get_intermediate_layers`` calls it), or
        one that refuses for a signature it does not know."""
        method = getattr(type(model), "forward_intermediates", None)
        if method is None:
            return {}
        if _INTERMEDIATES_ARGS <= set(inspect.signature(method).parameters):
            wrapper = functools.partial(_pruned_forward_intermediates, model, view)
        else:
            wrapper = functools.partial(_refuse_intermediates, type(model).__name__)
        return {"forward_intermediates": wrapper}


def _refuse_intermediates(model_name: str, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(
        f"renyi_prune: {model_name}.forward_intermediates is not timm VisionTransformer's, so a patched "
        "model cannot put its pruned intermediates back on the patch grid; renyi_prune.unpatch(model) first"
    )


def _pruned_forward_intermediates(model: nn.Module, view: PatchView, *args: Any, **kwargs: Any) -> Any:
    """timm's ``VisionTransformer.forward_intermediates`` on a patched model (same arguments, same output
    structure); see :func:`renyi_prune.patch`.

    Patch-token intermediates of a block at or after a pruning block come back on the full grid in
    raster order: (B, C, H, W) for ``output_fmt="NCHW"``, (B, H·W, C) for ``"NLC"``, each kept token at
    its patch's cell, zeros at pruned patches, a fused token (``fuse_pruned``) left out. Prefix tokens
    are returned as timm returns them; the final features are the pruned sequence, as
    ``forward_features`` returns it.

    Raises:
        ValueError: ``output_fmt`` not ``"NCHW"``/``"NLC"``, or the tokens entering the first pruning
            block are not the image's patch grid (e.g. timm's patch dropout in training).
    """
    original = view.original("forward_intermediates")
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
        return _patch_grids(model, view, spatial, image, arguments["indices"], output_fmt)

    if arguments.get("output_dict", False):
        return {**result, "image_intermediates": to_grids(result["image_intermediates"])}
    items = result if arguments["intermediates_only"] else result[1]
    grids = to_grids([item[0] if isinstance(item, tuple) else item for item in items])
    items = [(g, item[1]) if isinstance(item, tuple) else g for item, g in zip(items, grids, strict=True)]
    return items if arguments["intermediates_only"] else (result[0], items)


def _patch_grids(
    model: nn.Module, view: PatchView, spatial: list[torch.Tensor], image: torch.Tensor, indices: Any,
    output_fmt: str,
) -> list[torch.Tensor]:  # fmt: skip
    """Patch tokens (B, L, C) after each intermediate block (ascending, as timm takes them) → the grid."""
    from timm.models._features import feature_take_indices

    blocks = sorted(set(feature_take_indices(len(model.blocks), indices)[0]))
    pe = model.patch_embed
    H, W = pe.dynamic_feat_size(tuple(image.shape[-2:])) if hasattr(pe, "dynamic_feat_size") else pe.grid_size
    # this forward ran the pruning blocks up to the last intermediate: read its record only then
    cells = _patch_cells(view, H * W) if blocks and blocks[-1] >= view.prune_blocks[0] else {}
    grids = []
    for i, tokens in zip(blocks, spatial, strict=True):
        before = [p for p in cells if p <= i]
        if before:
            tokens = _scatter_patches(tokens, cells[before[-1]], H * W)
        if output_fmt == "NCHW":
            tokens = tokens.reshape(tokens.shape[0], H, W, -1).permute(0, 3, 1, 2).contiguous()
        grids.append(tokens)
    return grids


def _patch_cells(view: PatchView, num_cells: int) -> dict[int, torch.Tensor]:
    """``{pruning block: (B, L) grid cell of each patch token it outputs (< 0: a fused token)}`` in this
    thread's last forward.

    Raises:
        ValueError: the first pruning block's input was not the prefix + ``num_cells`` patch tokens.
    """
    blocks = view.last_forward()
    npt = view.num_prefix_tokens
    first = next(iter(blocks))
    entered = blocks[first].num_entered - npt
    if entered != num_cells:
        raise ValueError(
            f"forward_intermediates: {entered} patch tokens entered pruning block {first}, not the "
            f"{num_cells} of the image's patch grid (patch dropout?): the grid positions are unknown"
        )
    return {i: block.origins[:, npt:] - npt for i, block in blocks.items()}


def _scatter_patches(tokens: torch.Tensor, cells: torch.Tensor, num_cells: int) -> torch.Tensor:
    """(B, L, C) tokens at their (B, L) cells of a zero (B, num_cells, C) grid; cells < 0 are dropped."""
    B, _, C = tokens.shape
    index = torch.where(cells >= 0, cells, num_cells).unsqueeze(-1).expand(-1, -1, C)
    return tokens.new_zeros(B, num_cells + 1, C).scatter(1, index, tokens)[:, :num_cells]


register_adapter(TimmViTAdapter())
