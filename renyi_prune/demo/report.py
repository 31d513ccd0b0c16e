"""The demo's report: the JSON-ready dict (:func:`build_report`) and its Markdown (:func:`render_markdown`,
tables by :meth:`pandas.DataFrame.to_markdown`).

Units: GFLOPs per image in fvcore's convention (one multiply-add = one FLOP), images/s of the whole
batch on this machine, entropies in nats. Block numbers in ``report.md`` are 1-based as in the paper;
the JSON's ``prune_blocks`` are the 0-based indices of :func:`renyi_prune.patch`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..config import format_alpha
from .config import describe

__all__ = ["render_markdown"]

ENTROPY_PNG = "entropy_heatmaps.png"
KEPT_PNG = "kept_patches.png"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"


def model_info(
    model: nn.Module, model_name: str | None, checkpoint: str | os.PathLike[str] | None, img_size: int
) -> dict[str, Any]:
    """Name, weights source, input size, patch grid, prefix tokens and depth of ``model`` (JSON-ready).

    For a ``transformers`` folder (``model_name`` an existing directory) the name is the model's class
    and the source ``transformers folder <absolute path>``; ``run_demo`` adds ``normalization`` (mean,
    std and where they come from).
    """
    from .compare import num_blocks, num_prefix_tokens, patch_grid

    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if checkpoint is not None:
        source = f"checkpoint {Path(checkpoint).expanduser().resolve()}"
    elif model_name is not None and Path(model_name).expanduser().is_dir():
        source = f"transformers folder {Path(model_name).expanduser().resolve()}"
        model_name = type(model).__name__
    else:
        source = cfg.get("source") or cfg.get("hf_hub_id") or "timm pretrained weights"
    gh, gw = patch_grid(model)
    return {
        "name": model_name or cfg.get("architecture", type(model).__name__),
        "source": source,
        "img_size": img_size,
        "grid": [gh, gw],
        "num_patches": int(gh * gw),
        "num_prefix_tokens": num_prefix_tokens(model),
        "depth": num_blocks(model),
    }


def device_info(device: torch.device) -> tuple[str, str, str]:
    """(device description, timing mode, path of the Rényi attention) for the report."""
    from ..ops import uses_triton

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})", "CUDA eager PyTorch", "fused Triton kernel"
    path = (
        "Triton kernel on the CPU interpreter (TRITON_INTERPRET=1)"
        if uses_triton(torch.empty(0, device=device))
        else "eager PyTorch reference (renyi_prune.reference, renyi_prune.column_norm)"
    )
    return f"{device.type} ({torch.get_num_threads()} threads)", "CPU eager PyTorch", path


def versions() -> dict[str, str]:
    """torch, timm, Python and renyi_prune versions."""
    import timm

    from .. import __version__

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "renyi_prune": __version__,
    }


def build_report(
    *,
    model: dict[str, Any],
    device: torch.device,
    images: Sequence[str],
    prune_blocks: Sequence[int],
    repeats: int,
    rows: list[dict[str, Any]],
    criteria: Sequence[str],
    entropy: tuple[Sequence[int], Sequence[float]],
    kept_figure_configs: Sequence[str],
) -> dict[str, Any]:
    """The report dict of :func:`renyi_prune.demo.run_demo` (JSON-ready, without ``wall_time_s``).

    ``model`` is :func:`model_info`'s dict, ``rows`` :func:`renyi_prune.demo.compare`'s, ``entropy``
    the blocks of the entropy figure and the mean patch entropy (nats) of every block.
    """
    device_desc, timing_mode, attention_path = device_info(device)
    return {
        "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "model": model,
        "device": device_desc,
        "renyi_attention_path": attention_path,
        "versions": versions(),
        "images": list(images),
        "prune_blocks": list(prune_blocks),
        "timing": {
            "batch_size": len(images),
            "repeats": repeats,
            "warmup": 1,
            "order": "round-robin",
            "statistics": "images_per_s: median pass; images_per_s_iqr, _min, _max: spread of the passes; "
            "speed_up: median over rounds of the unpruned pass time / this pass time",
            "mode": timing_mode,
        },
        "gflops_counting": "fvcore (one multiply-add = one FLOP, per image) on the eager CPU path, once "
        "per criterion and keep rate (a CPU copy of the model when it runs elsewhere)",
        "results": rows,
        "entropy_blocks": list(entropy[0]),
        "mean_entropy_per_block": list(entropy[1]),
        "criteria": {name: _criterion_entry(name, rows) for name in criteria},
        "kept_figure_configs": list(kept_figure_configs),
        "figures": {"entropy_heatmaps": ENTROPY_PNG, "kept_patches": KEPT_PNG},
    }


def _criterion_entry(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``criteria`` entry of one demo criterion (its parameters as its rows used them)."""
    row = next(r for r in rows if r["criterion"] == name)
    return {
        "patch_criterion": row["patch_criterion"],
        "criterion_params": row["criterion_params"],
        "fuse_pruned": row["fused_token"],
        "description": describe(name),
    }


def comparison_table(report: dict[str, Any]) -> pd.DataFrame:
    """The comparison as a table of display strings, one row per configuration (``report["results"]``)."""
    blocks = "/".join(str(b + 1) for b in report["prune_blocks"])
    rows = pd.DataFrame(report["results"])
    alpha = rows["alpha"].map(lambda a: format_alpha(None if a is None or pd.isna(a) else float(a)))
    tokens = [
        "/".join(f"{t}+1" if fused else str(t) for t in kept)
        for kept, fused in zip(rows["patch_tokens_kept"], rows["fused_token"], strict=True)
    ]
    return pd.DataFrame(
        {
            "config": rows["label"],
            "criterion": rows["criterion"],
            "α": alpha,
            "keep rate": rows["keep_rate"].map("{:g}".format),
            "GFLOPs": rows["gflops"].map("{:.2f}".format),
            "images/s": _images_per_s(rows),
            "speed-up": _speed_up(rows).map("{:.2f}×".format),
            "CLS cos (mean)": rows["cls_cosine_mean"].map("{:.4f}".format),
            "CLS cos (min)": rows["cls_cosine_min"].map("{:.4f}".format),
            f"patch tokens after blocks {blocks}": tokens,
        }
    )


def _images_per_s(rows: pd.DataFrame) -> list[str]:
    """``median ± IQR/2`` of each row's timed passes (the median alone for a report without the IQR)."""
    iqr = rows["images_per_s_iqr"] if "images_per_s_iqr" in rows else [None] * len(rows)
    return [
        f"{ips:.1f}" if spread is None or pd.isna(spread) else f"{ips:.1f} ± {spread / 2:.1f}"
        for ips, spread in zip(rows["images_per_s"], iqr, strict=True)
    ]


def _speed_up(rows: pd.DataFrame) -> pd.Series:
    """Each row's ``speed_up`` (median of the per-round ratios to the unpruned pass); for a report
    without it, images/s over the first row's."""
    if "speed_up" in rows:
        return rows["speed_up"]
    return rows["images_per_s"] / rows["images_per_s"].iloc[0]


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub Markdown table, cells exactly as given (no number parsing)."""
    return table.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def _header(report: dict[str, Any]) -> list[str]:
    model, v = report["model"], report["versions"]
    others = ", ".join(c for c in report["criteria"] if c != "renyi") or "none"
    return [
        "# renyi-prune demo",
        "",
        f"Rényi attention-entropy patch pruning (arXiv 2604.03803) vs the other token criteria ({others}) "
        f"on {len(report['images'])} real photos ({', '.join(report['images'])}).",
        "",
        f"- **Model**: {model['name']} ({model['source']}), {model['img_size']} px, "
        f"{model['num_patches']} patches + {model['num_prefix_tokens']} prefix token(s)",
        f"- **Device**: {report['device']}; Rényi attention and column-norm pass: "
        f"{report['renyi_attention_path']}",
        f"- **Versions**: torch {v['torch']}, timm {v['timm']}, python {v['python']}, "
        f"renyi_prune {v['renyi_prune']}",
        f"- **Date**: {report['created']}; demo wall time {report['wall_time_s']:.1f} s",
        f"- **Pruning blocks** (1-based): {'/'.join(str(b + 1) for b in report['prune_blocks'])}",
    ]


def _comparison(report: dict[str, Any]) -> list[str]:
    blocks, timing = "/".join(str(b + 1) for b in report["prune_blocks"]), report["timing"]
    colln = any(c["patch_criterion"] == "colln" for c in report["criteria"].values())
    note = (
        "; colln's include its column-norm pass, one more q·kᵀ per head in each pruning block"
        if colln
        else ""
    )
    return [
        "## Comparison",
        "",
        "GFLOPs per image (fvcore convention: one multiply-add = one FLOP), counted once per criterion and "
        f"keep rate by fvcore on the eager CPU path{note}. Images/s: batch of {timing['batch_size']} on "
        f"this machine, {timing['mode']}, median ± half the interquartile range of {timing['repeats']} "
        "timed passes after one warm-up (configurations timed round-robin, so load changes hit all alike; "
        "speed-up: the median over rounds of the unpruned pass time / this pass time; differences within "
        "the spread are noise). CLS cosine: cosine similarity of the final CLS embedding to the unpruned "
        "model's (mean and min over images). Tokens kept: "
        f"patch tokens left after blocks {blocks} (1-based; the API's prune_blocks and the keys of "
        "kept_token_indices count from 0) (+1: and the fused token of EViT's token fusion). "
        "Criteria: see below the table.",
        "",
        markdown_table(comparison_table(report)),
        "",
        "Criteria (`--criteria` names):",
        "",
        *(f"- **{name}**: {c['description']}" for name, c in report["criteria"].items()),
    ]


def _figures(report: dict[str, Any]) -> list[str]:
    ent_blocks = ", ".join(str(b + 1) for b in report["entropy_blocks"])
    means = ", ".join(f"{i + 1}: {e:.2f}" for i, e in enumerate(report["mean_entropy_per_block"]))
    return [
        "## Attention entropy per patch",
        "",
        f"Shannon attention entropy (nats, mean over heads) of each patch token at blocks {ent_blocks} "
        "(1-based), "
        "computed with nothing pruned; dark = low entropy = focused attention (kept by Rényi pruning).",
        f"Mean patch entropy per block (nats, all images): {means}",
        "",
        f"![entropy heatmaps]({report['figures']['entropy_heatmaps']})",
        "",
        "## Kept patches",
        "",
        f"Patches kept after each pruning block by {', '.join(report['kept_figure_configs'])} (pruned "
        "patches greyed out; with token fusion they live on in the fused token, which has no position).",
        "",
        f"![kept patches]({report['figures']['kept_patches']})",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md`` text for a report dict produced by :func:`renyi_prune.demo.run_demo`.

    Args:
        report: the dict :func:`renyi_prune.demo.run_demo` returns (or ``json.load`` of ``report.json``).

    Returns:
        Markdown: model, device, versions, the comparison table (one row per configuration), the
        criteria, and the two figures by file name.

    Raises:
        KeyError: a field :func:`renyi_prune.demo.run_demo` writes is missing.

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
        >>> [" ".join(line.split()) for line in lines if line.startswith("| unpruned ")]
        ['| unpruned | none | – | 1 | 4.61 | 50.0 | 1.00× | 1.0000 | 1.0000 | 196/196/196 |']
    """
    return "\n".join([*_header(report), "", *_comparison(report), "", *_figures(report), ""])
