"""End-to-end demo on real photos: entropy maps, pruned-vs-unpruned fidelity, FLOPs and speed.

:func:`run_demo` (the ``renyi-prune demo`` command) runs offline on a CPU (about 45 s on 2 idle cores):

1. loads a pretrained ViT (default: the offline DINOv2 ViT-S/14 of :mod:`renyi_prune.pretrained`) and
   the bundled sample photos (or a folder of images), as one batch;
2. plots each block's Shannon attention entropy per patch over the images (``entropy_heatmaps.png``,
   cf. Fig. 3 of "Rényi Attention Entropy for Patch Pruning", Aizawa & Igaue, arXiv 2604.03803);
3. compares the unpruned model with every token criterion of :func:`renyi_prune.patch` (the
   :data:`DEMO_CRITERIA`): Rényi pruning for every α × keep rate, and for every keep rate EViT, EViT
   with token fusion (``fuse_pruned=True``), Col-Ln (order 2), head variance / head MAD (CLS source)
   and random pruning (seed 0), all pruning at blocks 4, 7, 10: cosine similarity of the final CLS
   embedding to the unpruned one, GFLOPs per image, images/s, and the patch tokens kept after each
   pruning block;
4. shows which patches each criterion keeps at each pruning block at the middle keep rate
   (``kept_patches.png``, cf. Fig. 4);
5. writes ``report.md`` and ``report.json``.

Units: GFLOPs in fvcore's convention (one multiply-add = one FLOP, per image), images/s of the whole
batch on this machine (wall clock), entropies in nats. Block numbers in figures and in ``report.md``
are 1-based as in the paper; the ``prune_blocks`` field of the JSON report holds the 0-based indices of
:func:`renyi_prune.patch`.

Every output file is written atomically (temporary file in ``out_dir`` + :func:`os.replace`), so an
interrupted run never leaves a truncated file behind; the output folder is locked while the demo runs
(:func:`renyi_prune._io.locked_folder`), and a run that fails before writing leaves no empty folder.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ._io import atomic_write_bytes, locked_folder
from .config import DEFAULT_PRUNE_BLOCKS
from .flops import count_flops
from .ops import eager_on_cpu
from .pruning import kept_token_indices, patch, token_scores, unpatch

__all__ = ["DEMO_CRITERIA", "DemoCriterion", "PruneConfig", "build_configs", "render_markdown", "run_demo"]

#: Images (rows) in ``entropy_heatmaps.png``.
HEATMAP_IMAGES = 4
#: Images in ``kept_patches.png`` (side by side; one row per criterion each).
KEPT_IMAGES = 2
ENTROPY_PNG = "entropy_heatmaps.png"
KEPT_PNG = "kept_patches.png"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"


# --------------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCriterion:
    """A criterion as the demo compares it: a registered criterion with fixed parameters.

    Attributes:
        name: the demo's name (``--criteria``), e.g. ``"evit+fusion"``.
        criterion: the registered criterion (:func:`renyi_prune.get_criterion`), e.g. ``"evit"``.
        fuse_pruned: EViT's token fusion (:func:`renyi_prune.patch` ``fuse_pruned=True``).
        params: the criterion's parameters, as ``(name, value)`` pairs (``**criterion_params``).

    Example:
        >>> from renyi_prune.demo import DEMO_CRITERIA, DemoCriterion
        >>> list(DEMO_CRITERIA)
        ['renyi', 'evit', 'evit+fusion', 'colln', 'headvar', 'headmad', 'random']
        >>> DEMO_CRITERIA["evit+fusion"]
        DemoCriterion(name='evit+fusion', criterion='evit', fuse_pruned=True, params=())
        >>> colln4 = DemoCriterion("colln4", "colln", params=(("order", 4.0),))
        >>> colln4.description.endswith("; order=4")
        True
    """

    name: str
    criterion: str
    fuse_pruned: bool = False
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def description(self) -> str:
        """One line: the criterion's own description, its parameters and the fusion, if any."""
        from .criteria import get_criterion

        text = get_criterion(self.criterion).description
        settings = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:g}" for k, v in self.params)
        if settings:
            text += f"; {settings}"
        if self.fuse_pruned:
            text += "; pruned patches fused into one extra token weighted by CLS attention (EViT fusion)"
        return text


#: The criteria the demo compares, by ``--criteria`` name, in report order (Rényi first).
DEMO_CRITERIA: dict[str, DemoCriterion] = {
    c.name: c
    for c in (
        DemoCriterion("renyi", "renyi"),
        DemoCriterion("evit", "evit"),
        DemoCriterion("evit+fusion", "evit", fuse_pruned=True),
        DemoCriterion("colln", "colln", params=(("order", 2.0),)),
        DemoCriterion("headvar", "headvar", params=(("source", "cls"),)),
        DemoCriterion("headmad", "headmad", params=(("source", "cls"),)),
        DemoCriterion("random", "random", params=(("seed", 0),)),
    )
}


@dataclass(frozen=True)
class PruneConfig:
    """One row of the comparison.

    Attributes:
        criterion: ``"none"`` (unpruned) or a key of :data:`DEMO_CRITERIA` (e.g. ``"evit+fusion"``).
        alpha: Rényi order (``None`` unless ``criterion == "renyi"``; ``math.inf`` allowed).
        keep_rate: fraction r of the current patch tokens each pruning block keeps (1.0 when unpruned).

    Example:
        >>> import math
        >>> from renyi_prune.demo import PruneConfig
        >>> PruneConfig("renyi", math.inf, 0.5).label, PruneConfig("none").label
        ('renyi α=∞ r=0.5', 'unpruned')
        >>> fused = PruneConfig("evit+fusion", keep_rate=0.7)
        >>> fused.pruned, fused.spec.criterion, fused.spec.fuse_pruned
        (True, 'evit', True)
    """

    criterion: str
    alpha: float | None = None
    keep_rate: float = 1.0

    @property
    def pruned(self) -> bool:
        return self.criterion != "none"

    @property
    def spec(self) -> DemoCriterion | None:
        """The :class:`DemoCriterion` (``None`` when unpruned)."""
        return DEMO_CRITERIA[self.criterion] if self.pruned else None

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``"renyi α=2 r=0.5"``."""
        if not self.pruned:
            return "unpruned"
        alpha = f" α={_fmt_alpha(self.alpha)}" if self.alpha is not None else ""
        return f"{self.criterion}{alpha} r={self.keep_rate:g}"


def check_criteria(criteria: Iterable[str]) -> list[str]:
    """The requested demo criteria, deduplicated, in :data:`DEMO_CRITERIA` order.

    Raises:
        ValueError: none given, or a name that is not a key of :data:`DEMO_CRITERIA`.
    """
    names = [criteria] if isinstance(criteria, str) else list(criteria)
    for name in names:
        if name not in DEMO_CRITERIA:
            raise ValueError(f"unknown criterion {name!r}; choose from {', '.join(DEMO_CRITERIA)}")
    if not names:
        raise ValueError(f"need at least one criterion (from {', '.join(DEMO_CRITERIA)})")
    return [name for name in DEMO_CRITERIA if name in names]


def build_configs(
    keep_rates: Sequence[float], alphas: Sequence[float], criteria: Iterable[str] = tuple(DEMO_CRITERIA)
) -> list[PruneConfig]:
    """Unpruned, then for each keep rate: Rényi with every α, then the other criteria (in
    :data:`DEMO_CRITERIA` order, only those in ``criteria``).

    Raises:
        ValueError: no keep rate, no α while ``renyi`` is requested, a keep rate outside (0, 1], an α
            that is negative or NaN, or an unknown / no criterion.

    Example:
        >>> import math
        >>> from renyi_prune.demo import build_configs
        >>> configs = build_configs([0.7, 0.5], [1.0, math.inf], criteria=["evit", "renyi"])
        >>> len(configs)  # unpruned + 2 keep rates x (2 alphas + evit)
        7
        >>> [c.label for c in configs[:4]]
        ['unpruned', 'renyi α=1 r=0.7', 'renyi α=∞ r=0.7', 'evit r=0.7']
        >>> build_configs([1.5], [1.0])
        Traceback (most recent call last):
            ...
        ValueError: keep rate must be in (0, 1], got 1.5
    """
    keep_rates, alphas = [float(r) for r in keep_rates], [float(a) for a in alphas]
    criteria = check_criteria(criteria)
    if not keep_rates:
        raise ValueError("need at least one keep rate")
    if "renyi" in criteria and not alphas:
        raise ValueError("need at least one alpha for the renyi criterion")
    for r in keep_rates:
        if not 0.0 < r <= 1.0:
            raise ValueError(f"keep rate must be in (0, 1], got {r:g}")
    for a in alphas:
        if math.isnan(a) or a < 0:
            raise ValueError(f"Rényi order alpha must be >= 0 (inf allowed), got {a:g}")
    configs = [PruneConfig("none")]
    for r in dict.fromkeys(keep_rates):
        for name in criteria:
            if name == "renyi":
                configs += [PruneConfig("renyi", a, r) for a in dict.fromkeys(alphas)]
            else:
                configs.append(PruneConfig(name, None, r))
    return configs


def _fmt_alpha(alpha: float | None) -> str:
    if alpha is None:
        return "–"
    return "∞" if math.isinf(alpha) else f"{alpha:g}"


def _json_alpha(alpha: float | None) -> float | str | None:
    """α for JSON, which has no infinity: ``math.inf`` becomes the string ``"inf"``."""
    return "inf" if alpha is not None and math.isinf(alpha) else alpha


# --------------------------------------------------------------------------------------------------------
# Model runs
# --------------------------------------------------------------------------------------------------------


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cls_embedding(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's final image embedding (B, D): ``forward_head(forward_features(x), pre_logits=True)``.

    For timm ViTs with token pooling, e.g. the default DINOv2 (``num_classes=0``), this is the CLS token
    after the final norm, i.e. exactly ``model(x)``.
    """
    return model.forward_head(model.forward_features(x), pre_logits=True)


@contextlib.contextmanager
def applied(model: nn.Module, config: PruneConfig, prune_blocks: Sequence[int]) -> Iterator[nn.Module]:
    """Context manager: ``model`` patched for ``config`` (left as is when unpruned), unpatched on exit."""
    spec = config.spec
    if spec is not None:
        patch(
            model,
            config.keep_rate,
            config.alpha,
            prune_blocks,
            spec.criterion,
            fuse_pruned=spec.fuse_pruned,
            **dict(spec.params),
        )
    try:
        yield model
    finally:
        unpatch(model)


def flops_model(model: nn.Module) -> nn.Module:
    """The model to count FLOPs on: ``model`` itself if it is on the CPU, else a CPU copy of it."""
    param = next(model.parameters(), None)
    if param is None or param.device.type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


def count_config_gflops(
    model: nn.Module, config: PruneConfig, img_size: int, prune_blocks: Sequence[int]
) -> float:
    """GFLOPs per image of ``config`` (fvcore convention), counted by fvcore on the eager CPU path.

    ``model`` must be on the CPU (:func:`flops_model`). On the eager path every attention statistic is
    plain PyTorch that fvcore's tracer can follow; the Triton column-norm pass of ``colln`` (and of
    ``headvar``/``headmad`` with ``source="column"``) cannot be traced by fvcore. The count is the same
    as on the Triton path wherever both can be counted (fvcore counts the matrix products; the fused
    Rényi op is counted as the two matmuls of attention), and for ``colln`` it includes the
    column pass's q·kᵀ (the eager pass materializes P; the Triton pass recomputes the same logits).
    """
    with eager_on_cpu(), applied(model, config, prune_blocks):
        return count_flops(model, img_size)


def forward_seconds(model: nn.Module, x: torch.Tensor) -> float:
    """Wall-clock seconds of one forward pass of the batch ``x`` (CUDA synchronized)."""
    _sync(x.device)
    start = time.perf_counter()
    model(x)
    _sync(x.device)
    return time.perf_counter() - start


def _cosine(feat: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image cosine similarity, computed in float64."""
    return F.cosine_similarity(feat.double(), ref.double(), dim=-1)


def _num_patches(model: nn.Module) -> int:
    gh, gw = model.patch_embed.grid_size
    return int(gh * gw)


def evaluate_config(
    model: nn.Module,
    x: torch.Tensor,
    config: PruneConfig,
    ref: torch.Tensor,
    img_size: int,
    prune_blocks: Sequence[int],
    gflops: float | None = None,
) -> tuple[dict[str, Any], dict[int, torch.Tensor] | None]:
    """Fidelity, GFLOPs and kept tokens of one configuration (its forward also warms it up for timing).

    ``gflops``, when given, is used instead of counting them again with :func:`count_config_gflops`
    (fvcore counts the matrix products, which depend on the criterion and keep rate, not on α).

    ``patch_tokens_kept`` are the patch tokens each pruning block keeps (``k``; with token fusion a
    fused token kept from an earlier block counts as one of them, and the new fused token the block
    appends is not counted: ``fused_token`` says that there is one).

    Returns:
        ``(row, kept)``: the report row (JSON-ready, without ``images_per_s``) and, for a pruned config,
        the :func:`kept_token_indices` of the batch on the CPU (``None`` when unpruned).
    """
    npt = model.num_prefix_tokens
    with applied(model, config, prune_blocks):
        feat = cls_embedding(model, x)
        kept = {b: idx.cpu() for b, idx in kept_token_indices(model).items()} if config.pruned else None
    if gflops is None:
        gflops = count_config_gflops(flops_model(model), config, img_size, prune_blocks)
    cos = _cosine(feat, ref)
    if kept is None:
        tokens = [_num_patches(model)] * len(prune_blocks)
    else:
        tokens = [kept[b].shape[1] - npt for b in sorted(kept)]
    spec = config.spec
    row = {
        "label": config.label,
        "criterion": config.criterion,
        "patch_criterion": spec.criterion if spec else None,
        "criterion_params": dict(spec.params) if spec else {},
        "fused_token": bool(spec and spec.fuse_pruned),
        "alpha": _json_alpha(config.alpha),
        "keep_rate": config.keep_rate,
        "gflops": gflops,
        "cls_cosine_mean": cos.mean().item(),
        "cls_cosine_min": cos.min().item(),
        "patch_tokens_kept": tokens,
    }
    return row, kept


def time_configs(
    model: nn.Module,
    x: torch.Tensor,
    configs: Sequence[PruneConfig],
    prune_blocks: Sequence[int],
    repeats: int,
    bar: Any = None,
) -> list[float]:
    """Throughput of each configuration in images/s: median over ``repeats`` timed forwards of ``x``.

    The configurations are timed round-robin (one pass of every configuration per round), so a change
    in machine load during the run affects all of them alike rather than a few. Each configuration
    should have run once before (warm-up; :func:`evaluate_config` does it). ``bar`` (a tqdm bar or
    ``None``) is advanced once per timed pass.
    """
    seconds: list[list[float]] = [[] for _ in configs]
    for _ in range(repeats):
        for times, config in zip(seconds, configs, strict=True):
            with applied(model, config, prune_blocks):
                times.append(forward_seconds(model, x))
            if bar is not None:
                bar.update()
    return [x.shape[0] / statistics.median(times) for times in seconds]


def entropy_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Shannon attention entropy (nats, mean over heads) of every patch token in every block.

    The model is patched with ``keep_rate=1.0`` at all blocks (nothing is pruned, the scores are
    recorded), run once, and unpatched.

    Returns:
        ``(depth, B, gh, gw)`` float32 CPU tensor.
    """
    npt = model.num_prefix_tokens
    gh, gw = model.patch_embed.grid_size
    patch(model, keep_rate=1.0, alpha=1.0, prune_blocks=range(len(model.blocks)))
    try:
        model(x)
        scores = token_scores(model)
    finally:
        unpatch(model)
    maps = [scores[b][:, npt:].float().reshape(-1, gh, gw) for b in sorted(scores)]
    return torch.stack(maps).cpu()


# --------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------


def _display_images(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
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


def _kept_mask(kept: torch.Tensor, npt: int, grid: tuple[int, int]) -> np.ndarray:
    """(gh, gw) bool: which patches of one image the token positions ``kept`` (prefix + k) include.

    Negative positions (a fused token, ``fuse_pruned=True``) stand for no single patch and are skipped.
    """
    mask = np.zeros(grid[0] * grid[1], dtype=bool)
    patches = kept[npt:].numpy()
    mask[patches[patches >= 0] - npt] = True
    return mask.reshape(grid)


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
                mask = _kept_mask(kept[label][b][i], npt, grid)
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


# --------------------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------------------


def _save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def _fmt_cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _gflops_note(report: dict[str, Any]) -> str:
    """What the GFLOPs of ``colln`` include (its column-norm pass)."""
    if not any(c["patch_criterion"] == "colln" for c in report["criteria"].values()):
        return ""
    return "; colln's include its column-norm pass, one more q·kᵀ per head in each pruning block"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md`` text for a report dict produced by :func:`run_demo`.

    Args:
        report: the dict :func:`run_demo` returns (or ``json.load`` of its ``report.json``).

    Returns:
        Markdown: model, device, versions, the comparison table (one row per configuration), the
        criteria, and the two figures by file name.

    Raises:
        KeyError: a field :func:`run_demo` writes is missing.

    Example (a hand-made report with the unpruned row only):
        >>> from renyi_prune.demo import render_markdown
        >>> row = dict(label="unpruned", criterion="none", alpha=None, keep_rate=1.0, gflops=4.61,
        ...            images_per_s=50.0, cls_cosine_mean=1.0, cls_cosine_min=1.0, fused_token=False,
        ...            patch_tokens_kept=[196, 196, 196])
        >>> report = dict(
        ...     created="2026-01-01T00:00:00+00:00", device="cpu (2 threads)", renyi_attention_path="eager",
        ...     model=dict(name="deit_small_patch16_224", source="random weights", img_size=224,
        ...                num_patches=196, num_prefix_tokens=1),
        ...     versions=dict(torch="2.11", timm="1.0", python="3.11", renyi_prune="0.1.0"),
        ...     images=["cat"], prune_blocks=[3, 6, 9], results=[row], criteria={}, wall_time_s=1.0,
        ...     timing=dict(batch_size=1, repeats=1, mode="CPU eager PyTorch"), entropy_blocks=[0, 11],
        ...     mean_entropy_per_block=[5.0, 4.0], kept_figure_configs=[],
        ...     figures=dict(entropy_heatmaps="entropy_heatmaps.png", kept_patches="kept_patches.png"))
        >>> lines = render_markdown(report).splitlines()
        >>> lines[0]
        '# renyi-prune demo'
        >>> [line for line in lines if line.startswith("| unpruned ")]
        ['| unpruned | none | – | 1 | 4.61 | 50.0 | 1.00× | 1.0000 | 1.0000 | 196/196/196 |']
    """
    blocks = "/".join(str(b + 1) for b in report["prune_blocks"])
    base, model = report["results"][0], report["model"]
    lines = [
        "# renyi-prune demo",
        "",
        f"Rényi attention-entropy patch pruning (arXiv 2604.03803) vs the other token criteria "
        f"({', '.join(c for c in report['criteria'] if c != 'renyi') or 'none'}) on "
        f"{len(report['images'])} real photos ({', '.join(report['images'])}).",
        "",
        f"- **Model**: {model['name']} ({model['source']}), {model['img_size']} px, "
        f"{model['num_patches']} patches + {model['num_prefix_tokens']} prefix token(s)",
        f"- **Device**: {report['device']}; Rényi attention and column-norm pass: "
        f"{report['renyi_attention_path']}",
        f"- **Versions**: torch {report['versions']['torch']}, timm {report['versions']['timm']}, "
        f"python {report['versions']['python']}, renyi_prune {report['versions']['renyi_prune']}",
        f"- **Date**: {report['created']}; demo wall time {report['wall_time_s']:.1f} s",
        f"- **Pruning blocks** (1-based): {blocks}",
        "",
        "## Comparison",
        "",
        "GFLOPs per image (fvcore convention: one multiply-add = one FLOP), counted once per criterion and "
        f"keep rate by fvcore on the eager CPU path{_gflops_note(report)}. Images/s: batch of "
        f"{report['timing']['batch_size']} on this machine, {report['timing']['mode']}, median of "
        f"{report['timing']['repeats']} timed passes after one warm-up (configurations timed round-robin, so "
        "load changes hit all alike). CLS cosine: cosine similarity of the "
        "final CLS embedding to the unpruned model's (mean and min over images). Tokens kept: patch tokens "
        f"left after blocks {blocks} (+1: and the fused token of EViT's token fusion). Criteria: see "
        "below the table.",
        "",
        "| config | criterion | α | keep rate | GFLOPs | images/s | speed-up | CLS cos (mean) "
        f"| CLS cos (min) | patch tokens after blocks {blocks} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        alpha = "∞" if row["alpha"] == "inf" else ("–" if row["alpha"] is None else f"{row['alpha']:g}")
        lines.append(
            f"| {row['label']} | {row['criterion']} | {alpha} | {row['keep_rate']:g} | "
            f"{_fmt_cell(row['gflops'], 2)} | {_fmt_cell(row['images_per_s'], 1)} | "
            f"{row['images_per_s'] / base['images_per_s']:.2f}× | {_fmt_cell(row['cls_cosine_mean'], 4)} | "
            f"{_fmt_cell(row['cls_cosine_min'], 4)} | "
            f"{'/'.join(f'{t}+1' if row['fused_token'] else str(t) for t in row['patch_tokens_kept'])} |"
        )
    lines += ["", "Criteria (`--criteria` names):", ""]
    lines += [f"- **{name}**: {c['description']}" for name, c in report["criteria"].items()]
    ent_blocks = ", ".join(str(b + 1) for b in report["entropy_blocks"])
    lines += [
        "",
        "## Attention entropy per patch",
        "",
        f"Shannon attention entropy (nats, mean over heads) of each patch token at blocks {ent_blocks}, "
        "computed with nothing pruned; dark = low entropy = focused attention (kept by Rényi pruning).",
        "Mean patch entropy per block (nats, all images): "
        + ", ".join(f"{i + 1}: {e:.2f}" for i, e in enumerate(report["mean_entropy_per_block"])),
        "",
        f"![entropy heatmaps]({report['figures']['entropy_heatmaps']})",
        "",
        "## Kept patches",
        "",
        f"Patches kept after each pruning block by {', '.join(report['kept_figure_configs'])} (pruned "
        "patches greyed out; with token fusion they live on in the fused token, which has no position).",
        "",
        f"![kept patches]({report['figures']['kept_patches']})",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------------------


def _model_info(
    model: nn.Module, model_name: str | None, checkpoint: str | os.PathLike[str] | None, img_size: int
) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if checkpoint is not None:
        source = f"checkpoint {Path(checkpoint).expanduser().resolve()}"
    else:
        source = cfg.get("source") or cfg.get("hf_hub_id") or "timm pretrained weights"
    return {
        "name": model_name or cfg.get("architecture", type(model).__name__),
        "source": source,
        "img_size": img_size,
        "grid": list(model.patch_embed.grid_size),
        "num_patches": _num_patches(model),
        "num_prefix_tokens": model.num_prefix_tokens,
        "depth": len(model.blocks),
    }


def _device_info(device: torch.device) -> tuple[str, str, str]:
    """(device description, timing mode, path of the Rényi attention) for the report."""
    from .ops import uses_triton

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})", "CUDA eager PyTorch", "fused Triton kernel"
    path = (
        "Triton kernel on the CPU interpreter (TRITON_INTERPRET=1)"
        if uses_triton(torch.empty(0, device=device))
        else "eager PyTorch reference (renyi_prune.reference, renyi_prune.column_norm)"
    )
    return f"{device.type} ({torch.get_num_threads()} threads)", "CPU eager PyTorch", path


def _versions() -> dict[str, str]:
    import timm

    from . import __version__

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "renyi_prune": __version__,
    }


def _kept_figure_configs(configs: Sequence[PruneConfig], alphas: Sequence[float]) -> list[PruneConfig]:
    """The rows of ``kept_patches.png``: at the middle keep rate (0.5 by default), Rényi with α = 1 (if
    requested, else the first α) first, then each other compared criterion once, in report order."""
    rates = list(dict.fromkeys(c.keep_rate for c in configs if c.pruned))
    rate = 0.5 if 0.5 in rates else rates[len(rates) // 2]
    alpha = 1.0 if 1.0 in alphas else (float(alphas[0]) if alphas else None)
    return [c for c in configs if c.pruned and c.keep_rate == rate and c.alpha in (None, alpha)]


def _figure_label(config: PruneConfig) -> str:
    """Row label in ``kept_patches.png``: the config label without the (shared) keep rate."""
    return config.label.rsplit(" r=", 1)[0]


def run_demo(
    out_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int = 224,
    keep_rates: Iterable[float] = (0.7, 0.5, 0.3),
    alphas: Iterable[float] = (1.0, 2.0, math.inf),
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    max_images: int | None = None,
    repeats: int = 3,
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS,
    criteria: Iterable[str] = tuple(DEMO_CRITERIA),
) -> dict[str, Any]:
    """Run the demo and write ``entropy_heatmaps.png``, ``kept_patches.png``, ``report.md``, ``report.json``.

    Args:
        out_dir: output folder, created if needed and locked while the demo runs (a second run into it is
            refused); removed again if the run fails and leaves it empty.
        images_dir: folder of images; ``None`` uses the bundled sample photos
            (:func:`renyi_prune.images.sample_images`).
        model_name, checkpoint, img_size: passed to :func:`renyi_prune.pretrained.load_model`
            (``None``, ``None``, 224: the offline DINOv2 ViT-S/14, 16 x 16 patches + CLS).
        keep_rates: keep rates r in (0, 1] to compare (each pruning block keeps ceil(r · patches)).
        alphas: Rényi orders α ≥ 0 to compare (``math.inf`` allowed); used by the ``renyi`` criterion.
        device: torch device; ``None`` = CUDA if available, else CPU.
        progress: show a tqdm progress bar over the configurations (on stderr).
        max_images: use only the first ``max_images`` images (quick runs, tests).
        repeats: timed forward passes per configuration (images/s is their median).
        prune_blocks: 0-based pruning blocks (default 3, 6, 9 = the paper's blocks 4, 7, 10).
        criteria: keys of :data:`DEMO_CRITERIA` to compare (default: all); the rows follow the
            order of :data:`DEMO_CRITERIA` whatever the order given here.

    Returns:
        The report dict, JSON-ready (``json.load`` of ``report.json`` gives the same dict; α = ∞ is
        stored as the string ``"inf"``). ``results`` holds one row per configuration with ``gflops``
        (GFLOPs per image, fvcore convention), ``images_per_s``, ``cls_cosine_mean`` / ``cls_cosine_min``
        and ``patch_tokens_kept`` (after each pruning block).

    Raises:
        ValueError: bad keep rate, α, criterion, ``max_images`` or ``repeats`` (or from model / image
            loading).
        FileNotFoundError: ``images_dir`` or ``checkpoint`` does not exist.
        OSError: an image cannot be decoded (the message names the file).
        renyi_prune._io.OutputFolderError: ``out_dir`` cannot be created or written, or another run uses it.
        renyi_prune._io.BadFileError: ``checkpoint`` is empty, truncated, or holds Python objects besides
            tensors.

    Example (arguments are checked before anything is loaded; a real run takes tens of seconds on a
    CPU, so it is skipped here; ``tests/test_demo.py`` runs it):
        >>> import os
        >>> from renyi_prune.demo import run_demo
        >>> run_demo("renyi_prune_out", repeats=0)
        Traceback (most recent call last):
            ...
        ValueError: repeats must be >= 1, got 0
        >>> report = run_demo("renyi_prune_out", keep_rates=[0.5], max_images=2)  # doctest: +SKIP
        >>> [row["label"] for row in report["results"]][:3]  # doctest: +SKIP
        ['unpruned', 'renyi α=1 r=0.5', 'renyi α=2 r=0.5']
        >>> sorted(os.listdir("renyi_prune_out"))  # doctest: +SKIP
        ['entropy_heatmaps.png', 'kept_patches.png', 'report.json', 'report.md']
    """
    t_start = time.perf_counter()
    alphas = tuple(alphas)
    criteria = check_criteria(criteria)
    configs = build_configs(tuple(keep_rates), alphas, criteria)
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out = Path(out_dir).expanduser()
    dev = torch.device(device) if device is not None else _default_device()

    with locked_folder(out, "renyi-prune demo"):  # removed again if the run fails before writing
        model, names, x, (mean, std) = _prepare(model_name, checkpoint, img_size, images_dir, max_images, dev)
        figure_configs = _kept_figure_configs(configs, alphas)
        with torch.inference_mode():
            ref = cls_embedding(model, x)
            maps = entropy_maps(model, x)
            rows, kept = compare(model, x, configs, ref, img_size, prune_blocks, repeats, progress)

        shown = _display_images(x, mean, std)
        npt, grid = model.num_prefix_tokens, tuple(model.patch_embed.grid_size)
        heat_blocks = sorted({0, *prune_blocks, len(model.blocks) - 1})  # paper's blocks 1, 4, 7, 10, 12
        kept_shown = {_figure_label(c): kept[c] for c in figure_configs}
        fused = [_figure_label(c) for c in figure_configs if c.spec.fuse_pruned]
        kept_title = (
            f"Patches kept by the pruning blocks at keep rate {figure_configs[0].keep_rate:g} (pruned "
            f"patches greyed out{'; +fused: and one fused token' if fused else ''})"
        )
        _save_figure(
            plot_entropy_heatmaps(shown, names[:HEATMAP_IMAGES], maps, heat_blocks), out / ENTROPY_PNG
        )
        _save_figure(
            plot_kept_patches(shown, names[:KEPT_IMAGES], kept_shown, npt, grid, fused, kept_title),
            out / KEPT_PNG,
        )

        device_desc, timing_mode, attention_path = _device_info(dev)
        report = {
            "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "model": _model_info(model, model_name, checkpoint, img_size),
            "device": device_desc,
            "renyi_attention_path": attention_path,
            "versions": _versions(),
            "images": names,
            "prune_blocks": list(prune_blocks),
            "timing": {
                "batch_size": len(names),
                "repeats": repeats,
                "warmup": 1,
                "order": "round-robin",
                "mode": timing_mode,
            },
            "gflops_counting": "fvcore (one multiply-add = one FLOP, per image) on the eager CPU path, once "
            "per criterion and keep rate (a CPU copy of the model when it runs elsewhere)",
            "results": rows,
            "entropy_blocks": heat_blocks,
            "mean_entropy_per_block": maps.mean(dim=(1, 2, 3)).tolist(),
            "criteria": {
                name: {
                    "patch_criterion": spec.criterion,
                    "criterion_params": dict(spec.params),
                    "fuse_pruned": spec.fuse_pruned,
                    "description": spec.description,
                }
                for name, spec in DEMO_CRITERIA.items()
                if name in criteria
            },
            "kept_figure_configs": [c.label for c in figure_configs],
            "figures": {"entropy_heatmaps": ENTROPY_PNG, "kept_patches": KEPT_PNG},
        }
        report["wall_time_s"] = time.perf_counter() - t_start
        report_json = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(out / REPORT_JSON, report_json.encode())
        atomic_write_bytes(out / REPORT_MD, render_markdown(report).encode())
        return report


def _prepare(
    model_name: str | None,
    checkpoint: str | os.PathLike[str] | None,
    img_size: int,
    images_dir: str | os.PathLike[str] | None,
    max_images: int | None,
    device: torch.device,
) -> tuple[nn.Module, list[str], torch.Tensor, tuple[Sequence[float], Sequence[float]]]:
    """Model (eval, on ``device``), image names, the preprocessed batch and its (mean, std)."""
    from .images import load_image_dir, preprocess, sample_images
    from .pretrained import load_model

    images = sample_images() if images_dir is None else load_image_dir(images_dir)
    images = images[:max_images] if max_images is not None else images
    model = load_model(model_name, checkpoint, img_size).eval().to(device)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean", IMAGENET_DEFAULT_MEAN), cfg.get("std", IMAGENET_DEFAULT_STD)
    x = preprocess(images, img_size, mean=mean, std=std).to(device)
    return model, [name for name, _ in images], x, (mean, std)


def compare(
    model: nn.Module,
    x: torch.Tensor,
    configs: Sequence[PruneConfig],
    ref: torch.Tensor,
    img_size: int,
    prune_blocks: Sequence[int],
    repeats: int,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[PruneConfig, dict[int, torch.Tensor] | None]]:
    """Evaluate every configuration (:func:`evaluate_config`), then time them all (:func:`time_configs`).

    Returns:
        ``(rows, kept)``: one report row per configuration (with ``images_per_s``) and the kept token
        indices of each configuration.
    """
    from tqdm.auto import tqdm

    rows, kept, gflops = [], {}, {}
    counting_model = flops_model(model)
    total = len(configs) * (1 + repeats)
    with tqdm(total=total, desc="renyi-prune demo", unit="run", disable=not progress, file=sys.stderr) as bar:
        for config in configs:
            key = (config.criterion, config.keep_rate)  # GFLOPs do not depend on α
            if key not in gflops:
                gflops[key] = count_config_gflops(counting_model, config, img_size, prune_blocks)
            row, kept[config] = evaluate_config(model, x, config, ref, img_size, prune_blocks, gflops[key])
            rows.append(row)
            bar.update()
        for row, ips in zip(rows, time_configs(model, x, configs, prune_blocks, repeats, bar), strict=True):
            row["images_per_s"] = ips
    return rows, kept
