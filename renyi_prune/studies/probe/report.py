"""The probe's tables and files: ``results.csv`` (one row per configuration), ``val_alpha.csv`` (the
validation top-1 behind the α choice), ``results.md``, ``accuracy_vs_gflops.png`` and ``config.json``
(configuration, backbone, data, probes, timing machine, versions), each written atomically.

Units: top-1 and its interval in %, GFLOPs per image (fvcore: one multiply-add = one FLOP), images/s of
the forward passes on the machine named in ``config.json`` (``timing``).
"""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from ..._io import atomic_write_bytes, write_json
from .config import fmt_alpha
from .plots import plot

__all__ = ["COLUMNS", "markdown", "versions", "write_outputs"]

#: Columns of ``results.csv``.
COLUMNS = [
    "label",
    "criterion",
    "alpha",
    "keep_rate",
    "alpha_chosen_on_val",
    "top1_linear",
    "top1_linear_lo",
    "top1_linear_hi",
    "top1_knn",
    "top1_knn_lo",
    "top1_knn_hi",
    "gflops",
    "images_per_s",
    "kept_tokens",
    "test_images",
]
RESULTS_CSV, VAL_CSV, RESULTS_MD, PLOT_PNG, CONFIG_JSON = (
    "results.csv",
    "val_alpha.csv",
    "results.md",
    "accuracy_vs_gflops.png",
    "config.json",
)


def versions() -> dict[str, str]:
    """Versions of python, torch, timm, scikit-learn, numpy and this package.

    Example:
        >>> sorted(versions())
        ['numpy', 'python', 'renyi_prune', 'scikit-learn', 'timm', 'torch']
    """
    import numpy
    import sklearn
    import timm
    import torch

    from ... import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "renyi_prune": __version__,
    }


def _ci(row: pd.Series, name: str) -> str:
    return f"{row[name]:.2f} [{row[name + '_lo']:.2f}, {row[name + '_hi']:.2f}]"


def _table(results: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "criterion": results["criterion"],
            "α": [fmt_alpha(a) for a in results["alpha"]],
            "keep rate": [f"{r:g}" for r in results["keep_rate"]],
            "linear top-1 % [95% CI]": [_ci(r, "top1_linear") for _, r in results.iterrows()],
            "k-NN top-1 % [95% CI]": [_ci(r, "top1_knn") for _, r in results.iterrows()],
            "GFLOPs": [f"{g:.3f}" for g in results["gflops"]],
            "images/s": [f"{v:.1f}" if not math.isnan(v) else "–" for v in results["images_per_s"]],
            "patch tokens kept": results["kept_tokens"],
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True)


def _val_table(val: pd.DataFrame, chosen: dict[float, float]) -> str:
    shown = pd.DataFrame(
        {
            "keep rate": [f"{r:g}" for r in val["keep_rate"]],
            "α": [fmt_alpha(a) for a in val["alpha"]],
            "val linear top-1 %": [f"{v:.2f}" for v in val["val_top1_linear"]],
            "val k-NN top-1 %": [f"{v:.2f}" for v in val["val_top1_knn"]],
            "chosen": [
                "✓" if chosen.get(r) == a else "" for r, a in zip(val["keep_rate"], val["alpha"], strict=True)
            ],
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True)


def markdown(
    results: pd.DataFrame, val: pd.DataFrame | None, chosen: dict[float, float], meta: dict[str, Any]
) -> str:
    """``results.md``: what was run, the results table, and the validation table of the α choice.

    Example:
        >>> results = pd.DataFrame([{"label": "unpruned", "criterion": "unpruned", "alpha": None,
        ...     "keep_rate": 1.0, "top1_linear": 80.0, "top1_linear_lo": 78.0, "top1_linear_hi": 82.0,
        ...     "top1_knn": 75.0, "top1_knn_lo": 73.0, "top1_knn_hi": 77.0, "gflops": 1.2,
        ...     "images_per_s": 60.0, "kept_tokens": "64/64/64"}])
        >>> meta = {"backbone": {"name": "m", "img_size": 112}, "data": {"name": "fashion-mnist"},
        ...         "sizes": {"fit": 10, "test": 5}, "timing": {"device": "cpu", "threads": 2, "cpu": "x"},
        ...         "probes": {"C": 0.01, "cv_folds": 5, "k": 20}, "bootstrap": 2000, "wall_time_s": 1.0}
        >>> "| unpruned" in markdown(results, None, {}, meta)
        True
    """
    bb, data, sizes, timing, probes = (meta[k] for k in ("backbone", "data", "sizes", "timing", "probes"))
    lines = [
        "# Linear probe and k-NN of a pruned pretrained ViT",
        "",
        f"Backbone {bb['name']} at {bb['img_size']} px; {data['name']}: probes fitted on {sizes['fit']} "
        f"unpruned train images, tested on {sizes['test']} test images (unpruned and pruned).",
        f"Linear probe: standardized CLS features, logistic regression, C = {probes['C']:g} "
        f"({probes['cv_folds']}-fold cross-validation on the train features). "
        f"k-NN: cosine, k = {probes['k']}, "
        "votes exp(similarity / 0.07) (DINOv2's evaluation).",
        f"95 % intervals: percentile bootstrap over the test images, {meta['bootstrap']} resamples "
        "(numpy, seed fixed). GFLOPs per image: fvcore. images/s: forward passes only (no data loading), "
        f"device {timing['device']}, {timing['threads']} torch threads, CPU {timing['cpu']}.",
        "",
        _table(results),
        "",
    ]
    if val is not None:
        lines += [
            f"## α chosen on validation ({sizes.get('val', 0)} train images held out; probes fitted on "
            f"the other {sizes.get('val_fit', 0)}); the test images played no part",
            "",
            _val_table(val, chosen),
            "",
        ]
    lines.append(f"Wall time {meta['wall_time_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def write_outputs(
    out: Path,
    results: pd.DataFrame,
    val: pd.DataFrame | None,
    chosen: dict[float, float],
    meta: dict[str, Any],
) -> list[str]:
    """Write the result files to ``out`` (an existing folder); returns their names.

    Raises:
        OSError: a file cannot be written.

    Example:
        >>> write_outputs(Path("probe-results"), results, val, {0.7: 2.0}, meta)  # doctest: +SKIP
        ['results.csv', 'val_alpha.csv', 'results.md', 'config.json', 'accuracy_vs_gflops.png']
    """
    atomic_write_bytes(out / RESULTS_CSV, results[COLUMNS].to_csv(index=False).encode())
    names = [RESULTS_CSV]
    if val is not None:
        atomic_write_bytes(out / VAL_CSV, val.to_csv(index=False).encode())
        names.append(VAL_CSV)
    atomic_write_bytes(out / RESULTS_MD, markdown(results, val, chosen, meta).encode())
    write_json(
        out / CONFIG_JSON, {**meta, "alpha_chosen_on_val": {f"{r:g}": a for r, a in chosen.items()}}, nan=None
    )
    names += [RESULTS_MD, CONFIG_JSON]
    if plot(out / PLOT_PNG, results, meta):
        names.append(PLOT_PNG)
    return names
