"""End-to-end demo on real photos: entropy maps, pruned-vs-unpruned fidelity, FLOPs and speed.

:func:`run_demo` (the ``renyi-prune demo`` command) runs offline on a CPU (about 45 s on 2 idle cores):

1. loads a pretrained ViT (default: the offline DINOv2 ViT-S/14 of :mod:`renyi_prune.pretrained`) and
   the bundled sample photos (or a folder of images), as one batch;
2. plots each block's Shannon attention entropy per patch over the images (``entropy_heatmaps.png``,
   cf. Fig. 3 of "Rényi Attention Entropy for Patch Pruning", Aizawa & Igaue, arXiv 2604.03803);
3. compares the unpruned model with every registered token criterion (:func:`criterion_names`: Rényi
   for every α × keep rate, and for every keep rate each other criterion with its registered defaults,
   plus EViT with token fusion), each row one :class:`renyi_prune.PruneConfig` pruning at blocks
   4, 7, 10: cosine similarity of the final CLS embedding to the unpruned one, GFLOPs per image,
   images/s (median and interquartile range of the timed passes, by the shared timer of
   :mod:`renyi_prune._timing`), and the patch tokens kept after each pruning block;
4. shows which patches each criterion keeps at each pruning block at the middle keep rate
   (``kept_patches.png``, cf. Fig. 4);
5. writes ``report.md`` and ``report.json``.

Modules: :mod:`.config` (the rows), :mod:`.compare` (model runs), :mod:`.plots` (figures),
:mod:`.report` (JSON dict and Markdown via pandas), :mod:`.run` (:func:`run_demo`).

Units: GFLOPs in fvcore's convention (one multiply-add = one FLOP, per image), images/s of the whole
batch on this machine (wall clock), entropies in nats. Block numbers in figures and in ``report.md``
are 1-based as in the paper; the ``prune_blocks`` field of the JSON report holds the 0-based indices of
:func:`renyi_prune.patch`.

Every output file is written atomically (temporary file in ``out_dir`` + :func:`os.replace`), so an
interrupted run never leaves a truncated file behind; the output folder is locked while the demo runs
(:func:`renyi_prune._io.locked_folder`), and a run that fails before writing leaves no empty folder.
"""

import importlib
from typing import Any

#: Public names → their module; imported on first use, so that ``renyi-prune``'s argument parsing
#: (which reads :func:`criterion_names`) does not load timm and matplotlib.
_EXPORTS = {
    **dict.fromkeys(
        ["applied", "cls_embedding", "compare", "count_config_gflops", "entropy_maps", "evaluate_config",
         "speed_columns", "time_configs"],
        "compare",
    ),
    **dict.fromkeys(
        ["DEFAULT_REPEATS", "build_configs", "check_criteria", "criterion_names", "describe", "label"],
        "config",
    ),
    **dict.fromkeys(["plot_entropy_heatmaps", "plot_kept_patches"], "plots"),
    "render_markdown": "report",
    "run_demo": "run",
}  # fmt: skip

#: The documented API (each with a runnable example); the model runs and figures are importable too.
__all__ = [
    "build_configs",
    "check_criteria",
    "criterion_names",
    "describe",
    "label",
    "render_markdown",
    "run_demo",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
