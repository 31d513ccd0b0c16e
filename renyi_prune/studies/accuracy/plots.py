"""The figure of an accuracy study: top-1 (%) vs GFLOPs per image (fvcore), fine-tuned and not."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...bench import _common
from .._plots import finish_axes, line_colors
from .config import StudyConfig, fmt

__all__ = ["plot"]


def plot(path: Path, cfg: StudyConfig, summary: list[dict[str, Any]]) -> bool:
    """Top-1 (%) vs GFLOPs per image, fine-tuned and no fine-tune side by side, as a PNG at ``path``;
    False (and nothing written) if matplotlib is missing.

    Raises:
        StopIteration: ``summary`` has no unpruned row.

    Example:
        >>> plot(Path("out/accuracy_vs_gflops.png"), cfg, summary)  # doctest: +SKIP
        True
    """
    fig = _common.new_figure(figsize=(12, 4.8))
    if fig is None:
        return False
    axes = fig.subplots(1, 2, sharey=False)
    ref = next(s for s in summary if s["variant"] == "unpruned")
    colors = line_colors([v.label for v in cfg.variants])
    renyi, rival = dict(marker="o", linestyle="-"), dict(marker="s", linestyle="--")
    styles = {v.label: {**(renyi if v.criterion == "renyi" else rival), "color": colors[v.label]}
              for v in cfg.variants}  # fmt: skip
    for ax, key, title in (
        (axes[0], "top1_mean", "fine-tuned with pruning (mean ± std over seeds)"),
        (axes[1], "top1_no_finetune", "base model pruned at test time only"),
    ):
        for v in cfg.variants:
            pts = sorted((s for s in summary if s["variant"] == v.label), key=lambda s: s["gflops"])
            if not pts:
                continue
            xs, ys = [p["gflops"] for p in pts], [p[key] for p in pts]
            if key == "top1_mean" and all(not math.isnan(p["top1_std"]) for p in pts):
                ax.errorbar(
                    xs, ys, yerr=[p["top1_std"] for p in pts], label=v.label, capsize=2, **styles[v.label]
                )
            else:
                ax.plot(xs, ys, label=v.label, **styles[v.label])
        finish_axes(ax, [ref["gflops"]], [ref[key]], title, "top-1 (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{cfg.name}: Fashion-MNIST test top-1 vs GFLOPs, keep rates {', '.join(map(fmt, cfg.keep_rates))}",
        fontsize=11,
    )
    _common.save_figure(fig, path, dpi=110)
    return True
