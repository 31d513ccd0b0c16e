"""The probe's figure: test top-1 (%) vs GFLOPs per image (fvcore), linear probe and k-NN side by side,
one line per criterion (renyi: one per α, and the α chosen on validation), the unpruned model a star."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ...bench import _common
from .._plots import finish_axes, line_colors
from .config import fmt_alpha

__all__ = ["plot"]


def _line_name(row: pd.Series) -> str:
    alpha = fmt_alpha(row["alpha"])
    return f"{row['criterion']} α={alpha}" if alpha and not row["alpha_chosen_on_val"] else row["criterion"]


def plot(path: Path, results: pd.DataFrame, meta: dict[str, Any]) -> bool:
    """Write the PNG (Agg, no pyplot state) at ``path``; False (nothing written) without matplotlib.

    Error bars are the 95 % bootstrap intervals of :mod:`.classifiers`.

    Example:
        >>> plot(Path("out/accuracy_vs_gflops.png"), results, meta)  # doctest: +SKIP
        True
    """
    fig = _common.new_figure(figsize=(12, 4.8))
    if fig is None:
        return False
    axes = fig.subplots(1, 2)
    ref = results[results["criterion"] == "unpruned"]
    pruned = results[results["criterion"] != "unpruned"].assign(line=lambda d: d.apply(_line_name, axis=1))
    colors = line_colors(list(pruned["line"].unique()))
    for ax, key, title in ((axes[0], "top1_linear", "linear probe"), (axes[1], "top1_knn", "k-NN (k = 20)")):
        for name, pts in pruned.groupby("line", sort=False):
            pts = pts.sort_values("gflops")
            yerr = [pts[key] - pts[key + "_lo"], pts[key + "_hi"] - pts[key]]
            style = "-" if str(name).startswith("renyi") else "--"
            ax.errorbar(
                pts["gflops"],
                pts[key],
                yerr=yerr,
                label=name,
                color=colors[name],
                marker="o",
                linestyle=style,
                capsize=2,
                linewidth=2.2 if "chosen" in str(name) else 1.2,
            )
        finish_axes(ax, list(ref["gflops"]), list(ref[key]), title, "test top-1 (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    bb, sizes = meta["backbone"], meta["sizes"]
    fig.suptitle(
        f"{meta['data']['name']}, {bb['img_size']} px, {sizes['test']} test images: top-1 vs GFLOPs "
        "(training-free pruning, 95 % bootstrap intervals)",
        fontsize=10,
    )
    _common.save_figure(fig, path, dpi=110)
    return True
