"""What the studies' accuracy-vs-GFLOPs figures share: the unpruned model as a star, the axes' labels,
one distinct colour per line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["finish_axes", "line_colors"]


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


# tab10 without its blue (index 0): the Rényi lines take shades of blue-green-yellow (viridis).
_RIVAL_COLORS = ("C1", "C3", "C2", "C4", "C5", "C6", "C7", "C8", "C9")


def line_colors(names: Sequence[str]) -> dict[str, Any]:
    """One colour per line name, none repeated for up to 9 rival lines: names starting with ``renyi``
    get evenly spaced viridis shades (in the order given), the others tab10 colours other than blue.

    Raises:
        ValueError: more than 9 non-Rényi names (the palette would repeat).

    Example:
        >>> colors = line_colors(["renyi α=1", "renyi α=2", "evit", "random"])
        >>> colors["evit"], colors["random"]
        ('C1', 'C3')
    """
    from matplotlib import colormaps

    renyi = [n for n in names if str(n).startswith("renyi")]
    rivals = [n for n in names if not str(n).startswith("renyi")]
    if len(rivals) > len(_RIVAL_COLORS):
        raise ValueError(f"line_colors: {len(rivals)} non-Rényi lines, at most {len(_RIVAL_COLORS)}")
    shades = colormaps["viridis"]
    colors: dict[str, Any] = dict(zip(rivals, _RIVAL_COLORS[: len(rivals)], strict=True))
    for i, name in enumerate(renyi):
        colors[name] = shades(0.85 * i / max(len(renyi) - 1, 1))
    return colors
