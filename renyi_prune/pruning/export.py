"""A patched model as a module whose outputs include the tokens it kept, e.g. for ONNX or ``torch.export``.

:func:`renyi_prune.kept_token_indices` reads what the last forward recorded on the Python side, which
an exported program has no access to. :class:`WithKeptTokens` returns the same indices as outputs of
the forward, so that they are part of the exported graph. :func:`kept_patch_mask` turns kept token
indices into a mask over the image's patch grid (for pictures such as the demo's).
"""

from __future__ import annotations

import torch
from torch import nn

from .records import kept_token_indices
from .state import pruning_states

__all__ = ["WithKeptTokens", "kept_patch_mask"]


class WithKeptTokens(nn.Module):
    """``model``'s output followed by the kept token indices of each of its pruning blocks.

    Args:
        model: a model patched by :func:`renyi_prune.patch` (the wrapper holds it as ``.model``; it is
            not copied, so patching, ``set_keep_rate`` and :func:`renyi_prune.unpatch` act through it).

    ``forward(x)`` (x: the model's input, e.g. (B, 3, H, W) images) returns ``(output, kept_0, kept_1,
    ...)``: ``model(x)`` (its elements, if it returns a tuple or list) and one (B, prefix + k) int64
    tensor per pruning block in block order, as :func:`renyi_prune.kept_token_indices` returns them
    (original token positions, −1 for a fused token). A traced or exported program of the wrapper
    computes them in the graph.

    Raises:
        ValueError: ``model`` is not patched.

    Example:
        >>> import torch, renyi_prune
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)
        >>> _ = renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), criterion="evit")
        >>> logits, kept_1, kept_2 = renyi_prune.WithKeptTokens(vit)(torch.randn(2, 3, 32, 32))
        >>> logits.shape, kept_1.shape, kept_2.shape  # CLS + 8 of 16 patches, then CLS + 4 of 8
        (torch.Size([2, 1000]), torch.Size([2, 9]), torch.Size([2, 5]))

        ONNX (``pip install renyi-prune[export]``; see the README's "Export" section)::

            torch.onnx.export(renyi_prune.WithKeptTokens(vit).eval(), (x,), "vit.onnx", dynamo=True)
    """

    def __init__(self, model: nn.Module) -> None:
        pruning_states(model)  # raises ValueError naming the fix if the model is not patched
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(x)
        outputs = tuple(output) if isinstance(output, (tuple, list)) else (output,)
        return (*outputs, *kept_token_indices(self.model).values())


def kept_patch_mask(kept: torch.Tensor, num_prefix_tokens: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Which patches of the image a set of kept token indices covers, as a (B, gh, gw) bool mask.

    Args:
        kept: (B, prefix + k) int64 token positions of one pruning block, as
            :func:`renyi_prune.kept_token_indices` returns them (prefix tokens first; patch ``j`` of the
            row-major patch grid at position ``prefix + j``; −1 for a fused token, which stands for no
            single patch and is skipped). A (prefix + k,) tensor is taken as B = 1.
        num_prefix_tokens: the model's prefix tokens (CLS, distillation, registers).
        grid_size: (gh, gw) patches per column and row, e.g. ``model.patch_embed.grid_size`` in timm.

    Returns:
        (B, gh, gw) bool on ``kept``'s device: True where the patch was kept.

    Raises:
        ValueError: ``kept`` has a patch position outside the grid.

    Example:
        >>> import torch
        >>> from renyi_prune import kept_patch_mask
        >>> kept = torch.tensor([[0, 1, 4, -1]])  # CLS, patches 0 and 3 of a 2×2 grid, a fused token
        >>> kept_patch_mask(kept, num_prefix_tokens=1, grid_size=(2, 2))
        tensor([[[ True, False],
                 [False,  True]]])
    """
    kept = kept.unsqueeze(0) if kept.dim() == 1 else kept
    gh, gw = grid_size
    patches = kept[:, num_prefix_tokens:] - num_prefix_tokens
    valid = kept[:, num_prefix_tokens:] >= 0
    if bool((patches[valid] >= gh * gw).any()):
        raise ValueError(f"kept has patch positions beyond the {gh}×{gw} grid: max {int(kept.max())}")
    mask = torch.zeros(kept.shape[0], gh * gw + 1, dtype=torch.bool, device=kept.device)
    mask.scatter_(1, torch.where(valid, patches, gh * gw), True)  # invalid → the spare last column
    return mask[:, : gh * gw].reshape(-1, gh, gw)
