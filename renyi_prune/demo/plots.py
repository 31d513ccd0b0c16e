"""Figures of the demo: per-patch entropy maps (cf. Fig. 3 of arXiv 2604.03803) and the patches each
criterion keeps (cf. Fig. 4), as matplotlib figures on an Agg canvas (no pyplot state).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes
from ..pruning.export import kept_patch_mask

#: Nothing here is in ``__all__`` (figures need real images; ``tests/test_demo.py`` draws them).
__all__: list[str] = []


def display_images(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalization: (B, 3, H, W) model input → (B, H, W, 3) floats in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * s + m).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def _hide_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_entropy_heatmaps(
    images: np.ndarray, names: Sequence[str], maps: torch.Tensor, blocks: Sequence[int]
) -> Any:
    """Figure: one row per image; the image, then the entropy map of each block in ``blocks`` overlaid.

    Args:
        images: (B, H, W, 3) in [0, 1].
        names: B image names.
        maps: (depth, B, gh, gw) entropies in nats (:func:`entropy_maps`).
        blocks: 0-based blocks to show (titled 1-based). Each block has its own colour scale, shared
            by all images (2nd–98th percentile) with a colorbar; dark = low entropy = focused attention.

    Returns:
        A ``matplotlib.figure.Figure`` (Agg canvas; no pyplot state).
    """
    from matplotlib.figure import Figure

    n, (h, w) = len(names), images.shape[1:3]
    fig = Figure(figsize=(2.3 * (1 + len(blocks)), 2.3 * n + 1.1), layout="constrained")
    axes = fig.subplots(n, 1 + len(blocks), squeeze=False)
    for i, name in enumerate(names):
        axes[i, 0].imshow(images[i])
        axes[i, 0].set_ylabel(name)
    axes[0, 0].set_title("image")
    for j, b in enumerate(blocks, start=1):
        vmin, vmax = np.percentile(maps[b, :n].numpy(), [2, 98])
        for i in range(n):
            axes[i, j].imshow(images[i])
            im = axes[i, j].imshow(
                maps[b, i].numpy(),
                cmap="viridis",
                vmin=vmin,
                vmax=vmax,
                alpha=0.65,
                extent=(0, w, h, 0),
                interpolation="nearest",
            )
        axes[0, j].set_title(f"block {b + 1}")
        cbar = fig.colorbar(im, ax=axes[:, j], orientation="horizontal", shrink=0.9, extend="both")
        cbar.set_label("entropy (nats)")
    for ax in axes.flat:
        _hide_ticks(ax)
    fig.suptitle(
        "Shannon attention entropy per patch (mean over heads); dark = low entropy (focused attention)"
    )
    return fig


def _grey_out(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) with the patches where ``mask`` (gh, gw) is False washed out to light grey.

    Light rather than dark grey, so that kept dark patches (black backgrounds, which low-entropy
    criteria often keep) stay distinguishable from pruned ones.
    """
    h, w = image.shape[:2]
    ph, pw = math.ceil(h / mask.shape[0]), math.ceil(w / mask.shape[1])
    px = np.repeat(np.repeat(mask, ph, axis=0), pw, axis=1)[:h, :w, None]
    return np.where(px, image, 0.25 * image.mean(axis=-1, keepdims=True) + 0.75 * 0.85)


def plot_kept_patches(
    images: np.ndarray,
    names: Sequence[str],
    kept: dict[str, dict[int, torch.Tensor]],
    npt: int,
    grid: tuple[int, int],
    fused: Iterable[str] = (),
    title: str = "Patches kept by the pruning blocks (pruned patches greyed out)",
) -> Any:
    """Figure: one panel per image, side by side; in each, the image on top, then one row per method
    with the patches kept after each pruning block (one column per block).

    Args:
        images: (B, H, W, 3) in [0, 1]; the first ``len(names)`` images are shown.
        names: image names.
        kept: ``{method label: kept_token_indices(model)}`` (original token positions, batch-first;
            −1 = a kept fused token, not drawn), in row order.
        npt: prefix tokens (``model.num_prefix_tokens``).
        grid: patch grid (gh, gw).
        fused: labels of methods with token fusion (their panels say that a fused token follows).
        title: the figure's title.

    Returns:
        A ``matplotlib.figure.Figure``; pruned patches are greyed out, each panel says how many of
        the patches are kept.
    """
    from matplotlib.figure import Figure

    blocks = sorted(next(iter(kept.values())))
    labels, fused = list(kept), set(fused)
    cell, total = 1.8, grid[0] * grid[1]
    fig = Figure(
        figsize=(cell * len(blocks) * len(names) + 0.6, cell * (1 + len(labels)) + 0.7), layout="constrained"
    )
    for i, sub in enumerate(fig.subfigures(1, len(names), squeeze=False, wspace=0.04)[0]):
        gs = sub.add_gridspec(1 + len(labels), len(blocks))
        top = sub.add_subplot(gs[0, :])
        top.imshow(images[i])
        top.set_title(names[i], fontsize=12, fontweight="bold")
        top.set_axis_off()
        for r, label in enumerate(labels, start=1):
            for j, b in enumerate(blocks):
                ax = sub.add_subplot(gs[r, j])
                mask = kept_patch_mask(kept[label][b][i], npt, grid)[0].cpu().numpy()
                ax.imshow(_grey_out(images[i], mask))
                note = f"{mask.sum()}/{total}" + (" +fused" if label in fused else "")
                box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}
                ax.text(0.03, 0.04, note, transform=ax.transAxes, fontsize=7.5, va="bottom", bbox=box)
                _hide_ticks(ax)
                if r == 1:
                    ax.set_title(f"after block {b + 1}", fontsize=10)
                if j == 0:
                    ax.set_ylabel(label, fontsize=10)
    fig.suptitle(title)
    return fig


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG (110 dpi) to ``path``, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
