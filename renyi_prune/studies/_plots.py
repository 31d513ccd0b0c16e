"""What the studies' accuracy-vs-GFLOPs figures share: the unpruned model as a star, the axes' labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["finish_axes"]


def finish_axes(
    ax: Any, ref_gflops: Sequence[float], ref_top1: Sequence[float], title: str, ylabel: str
) -> None:
    """Draw the unpruned model (a black star at ``ref_gflops``, ``ref_top1``; none if empty) on a
    matplotlib ``ax`` of top-1 (%) vs GFLOPs per image, then label, title and grid it."""
    if len(ref_gflops):
        ax.plot(
            ref_gflops, ref_top1, marker="*", markersize=14, color="black", linestyle="none", label="unpruned"
        )
    ax.set_xlabel("GFLOPs per image (fvcore)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
