""":func:`run_demo`, the ``renyi-prune demo`` command: load, compare, plot, report."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from .._io import atomic_write_bytes, locked_folder
from ..config import DEFAULT_PRUNE_BLOCKS, PruneConfig
from .compare import cls_embedding, compare, entropy_maps, num_blocks, num_prefix_tokens, patch_grid
from .config import DEFAULT_REPEATS, build_configs, check_criteria, criterion_names, label
from .plots import display_images, plot_entropy_heatmaps, plot_kept_patches, save_figure
from .report import ENTROPY_PNG, KEPT_PNG, REPORT_JSON, REPORT_MD, build_report, model_info, render_markdown

__all__ = ["HEATMAP_IMAGES", "KEPT_IMAGES", "run_demo"]

#: Images (rows) in ``entropy_heatmaps.png``.
HEATMAP_IMAGES = 4
#: Images in ``kept_patches.png`` (side by side; one row per criterion each).
KEPT_IMAGES = 2


def run_demo(
    out_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    keep_rates: Iterable[float] = (0.7, 0.5, 0.3),
    alphas: Iterable[float] = (1.0, 2.0, math.inf),
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    max_images: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS,
    criteria: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run the demo and write ``entropy_heatmaps.png``, ``kept_patches.png``, ``report.md``, ``report.json``.

    Args:
        out_dir: output folder, created if needed and locked while the demo runs (a second run into it is
            refused); removed again if the run fails and leaves it empty.
        images_dir: folder of images; ``None`` uses the bundled sample photos
            (:func:`renyi_prune.images.sample_images`).
        model_name, checkpoint, img_size: passed to :func:`renyi_prune.pretrained.load_model`
            (``None``, ``None``, ``None``: the offline DINOv2 ViT-S/14 at 224 px, 16 x 16 patches + CLS;
            ``img_size`` ``None`` = 224 for timm models). A ``model_name`` that is an existing folder
            holding a ``config.json`` is a ``transformers`` image model saved with ``save_pretrained``
            (ViT, DeiT, DINOv2), loaded offline by
            :func:`renyi_prune.train.model.load_transformers_model` (no ``checkpoint``): it runs at its
            ``config.image_size`` (an ``img_size`` other than ``None`` must match it), normalized with
            the folder's ``preprocessor_config.json`` mean/std, else ImageNet's.
        keep_rates: keep rates r in (0, 1] to compare (each pruning block keeps ceil(r · patches)).
        alphas: Rényi orders α ≥ 0 to compare (``math.inf`` allowed); used by the ``renyi`` criterion.
        device: torch device; ``None`` = CUDA if available, else CPU.
        progress: show a tqdm progress bar over the configurations (on stderr).
        max_images: use only the first ``max_images`` images (quick runs, tests).
        repeats: timed forward passes per configuration (images/s: their median and interquartile range;
            default :data:`renyi_prune.demo.config.DEFAULT_REPEATS`).
        prune_blocks: 0-based pruning blocks (default 3, 6, 9 = the paper's blocks 4, 7, 10).
        criteria: names among :func:`renyi_prune.demo.criterion_names` (default: all); the rows follow
            that order whatever the order given here.

    Returns:
        The report dict, JSON-ready (``json.load`` of ``report.json`` gives the same dict; α = ∞ is
        stored as the string ``"inf"``). ``results`` holds one row per configuration with ``gflops``
        (GFLOPs per image, fvcore convention), ``images_per_s``, ``cls_cosine_mean`` / ``cls_cosine_min``,
        ``patch_tokens_kept`` (after each pruning block) and ``prune_config``
        (:meth:`renyi_prune.PruneConfig.to_dict`; ``None`` for the unpruned row).

    Raises:
        ValueError: bad keep rate, α, criterion, pruning block, ``max_images`` or ``repeats`` (or from
            model / image loading: e.g. a model folder without ``config.json``).
        TypeError: a ``transformers`` model that no pruning adapter supports (the message lists the
            supported families).
        ImportError: a ``transformers`` folder while ``transformers`` is not installed (``pip install
            renyi-prune[hf]``).
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
    criteria, configs = _checked_configs(keep_rates, alphas, criteria, prune_blocks, max_images, repeats)
    out = Path(out_dir).expanduser()
    dev = torch.device(device) if device is not None else _default_device()

    with locked_folder(out, "renyi-prune demo"):  # removed again if the run fails before writing
        model, names, x, norm = _prepare(model_name, checkpoint, img_size, images_dir, max_images, dev)
        img_size = x.shape[-1]  # a transformers model's own size
        with torch.inference_mode():
            ref = cls_embedding(model, x)
            maps = entropy_maps(model, x)
            rows, kept = compare(model, x, configs, ref, img_size, repeats, progress)
        figure_configs = _kept_figure_configs(configs, alphas)
        heat_blocks = sorted({0, *prune_blocks, num_blocks(model) - 1})  # paper's blocks 1, 4, 7, 10, 12
        shown = display_images(x, norm["mean"], norm["std"])
        save_figure(
            plot_entropy_heatmaps(shown, names[:HEATMAP_IMAGES], maps, heat_blocks), out / ENTROPY_PNG
        )
        _save_kept_figure(model, shown, names, dict(zip(configs, kept, strict=True)), figure_configs, out)
        report = build_report(
            model=model_info(model, model_name, checkpoint, img_size),
            device=dev,
            images=names,
            prune_blocks=prune_blocks,
            repeats=repeats,
            rows=rows,
            criteria=criteria,
            entropy=(heat_blocks, maps.mean(dim=(1, 2, 3)).tolist()),
            kept_figure_configs=[label(c) for c in figure_configs],
        )
        report["model"]["normalization"] = {"mean": list(norm["mean"]), "std": list(norm["std"]),
                                            "source": norm["source"]}  # fmt: skip
        report["wall_time_s"] = time.perf_counter() - t_start
        _write_report(report, out)
        return report


def _checked_configs(
    keep_rates: Iterable[float],
    alphas: Sequence[float],
    criteria: Iterable[str] | None,
    prune_blocks: Sequence[int],
    max_images: int | None,
    repeats: int,
) -> tuple[list[str], list[PruneConfig | None]]:
    """The demo's criteria and configurations; ``ValueError`` for a bad argument, before anything loads."""
    criteria = check_criteria(criterion_names() if criteria is None else criteria)
    configs = build_configs(tuple(keep_rates), alphas, criteria, prune_blocks)
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return criteria, configs


def _write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json`` (strict JSON, UTF-8) and ``report.md``, each written atomically."""
    atomic_write_bytes(out / REPORT_JSON, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(out / REPORT_MD, render_markdown(report).encode())


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _prepare(
    model_name: str | None,
    checkpoint: str | os.PathLike[str] | None,
    img_size: int | None,
    images_dir: str | os.PathLike[str] | None,
    max_images: int | None,
    device: torch.device,
) -> tuple[nn.Module, list[str], torch.Tensor, dict[str, Any]]:
    """Model (eval, on ``device``), image names, the preprocessed batch and its normalization
    (``{"mean", "std", "source"}``)."""
    from ..images import load_image_dir, preprocess, sample_images
    from ..pretrained import load_model
    from ..train.model import load_transformers_model, transformers_folder

    folder = transformers_folder(model_name)
    if folder is not None and checkpoint is not None:
        raise ValueError(f"checkpoint {checkpoint}: the transformers model {folder} brings its own weights")
    if folder is not None:
        model, size, norm = load_transformers_model(folder)
        if img_size not in (None, size):
            raise ValueError(f"img_size {img_size} but the transformers model {folder} takes {size} px")
        img_size = size
    else:
        img_size = 224 if img_size is None else img_size
        model = load_model(model_name, checkpoint, img_size)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        norm = {
            "mean": cfg.get("mean", IMAGENET_DEFAULT_MEAN),
            "std": cfg.get("std", IMAGENET_DEFAULT_STD),
            "source": "timm pretrained_cfg" if "mean" in cfg else "ImageNet defaults",
        }
    model = model.eval().to(device)
    images = sample_images() if images_dir is None else load_image_dir(images_dir)
    images = images[:max_images] if max_images is not None else images
    x = preprocess(images, img_size, mean=norm["mean"], std=norm["std"]).to(device)
    return model, [name for name, _ in images], x, norm


def _kept_figure_configs(configs: Sequence[PruneConfig | None], alphas: Sequence[float]) -> list[PruneConfig]:
    """The rows of ``kept_patches.png``: at the middle keep rate (0.5 by default), Rényi with α = 1 (if
    requested, else the first α) first, then each other compared criterion once, in report order."""
    pruned = [c for c in configs if c is not None]
    rates = list(dict.fromkeys(c.keep_rate for c in pruned))
    rate = 0.5 if 0.5 in rates else rates[len(rates) // 2]
    alpha = 1.0 if 1.0 in alphas else (float(alphas[0]) if alphas else None)
    return [c for c in pruned if c.keep_rate == rate and c.alpha in (None, alpha)]


def _save_kept_figure(
    model: nn.Module,
    shown: Any,
    names: Sequence[str],
    kept: dict[PruneConfig | None, Any],
    figure_configs: Sequence[PruneConfig],
    out: Path,
) -> None:
    """Write ``kept_patches.png``: one row per configuration of ``figure_configs`` (labelled without the
    shared keep rate), for the first :data:`KEPT_IMAGES` images."""
    rows = {c.label.rsplit(" r=", 1)[0]: kept[c] for c in figure_configs}
    fused = [c.label.rsplit(" r=", 1)[0] for c in figure_configs if c.fuse_pruned]
    title = (
        f"Patches kept by the pruning blocks at keep rate {figure_configs[0].keep_rate:g} (pruned "
        f"patches greyed out{'; +fused: and one fused token' if fused else ''})"
    )
    grid = patch_grid(model)
    fig = plot_kept_patches(shown, names[:KEPT_IMAGES], rows, num_prefix_tokens(model), grid, fused, title)
    save_figure(fig, out / KEPT_PNG)
