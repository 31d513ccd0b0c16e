"""``renyi-prune probe``: its options (plain ``argparse`` with the types of :mod:`renyi_prune._argtypes`)
and :func:`run` (exit code 0; bad combinations raise :class:`~renyi_prune._argtypes.UsageError`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._argtypes import (
    UsageError,
    alpha,
    device,
    existing_dir,
    existing_file,
    keep_rate,
    nonneg_int,
    output_dir,
    positive_int,
)
from ...demo.config import check_criteria, criterion_names
from ...train.model import transformers_folder
from .config import PRESETS, from_preset

__all__ = ["add_arguments", "run"]

HELP = (
    "linear probe and k-NN of a pretrained ViT (default: offline DINOv2 ViT-S/14 on Fashion-MNIST), "
    "unpruned vs pruned by each criterion, training-free: top-1 with 95% intervals, GFLOPs, images/s"
)


def probe_criterion(text: str) -> str:
    """A ``--criteria`` name (one of :func:`renyi_prune.demo.criterion_names`, from the registry).

    Example:
        >>> probe_criterion("evit+fusion")
        'evit+fusion'
    """
    try:
        return check_criteria([text])[0]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def val_fraction(text: str) -> float:
    """A validation fraction in (0, 1).

    Example:
        >>> val_fraction("0.2")
        0.2
    """
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return x


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the options of ``renyi-prune probe`` on ``p`` (defaults ``None``: the preset's value).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> args = parser.parse_args(["--keep-rates", "0.5", "--alphas", "inf"])
        >>> args.keep_rates, args.alphas, args.preset
        ([0.5], [inf], 'default')
    """
    _add_input_arguments(p.add_argument)
    _add_pruning_arguments(p.add_argument)
    a = p.add_argument
    # fmt: off
    a("--device", type=device, help="torch device, e.g. cpu or cuda (default: cuda if available, else cpu)")
    a("--cache-dir", type=output_dir, metavar="DIR",
      help="feature cache (default: $RENYI_PRUNE_PROBE_CACHE, else probe/ in the renyi-prune cache folder)")
    a("--no-cache", dest="use_cache", action="store_false", default=None,
      help="neither read nor write the cache")
    a("--seed", type=nonneg_int, help="subsets, validation split, CV folds, bootstrap (default: 0)")
    a("--bootstrap", type=positive_int, metavar="N", help="bootstrap resamples (default: 2000)")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")
    a("--dry-run", action="store_true", help="print the plan and its time estimate, run nothing")
    # fmt: on


def _add_input_arguments(a: Callable[..., Any]) -> None:
    """Preset, output, model, data and sizes."""
    d = PRESETS["default"]
    # fmt: off
    a("--preset", choices=list(PRESETS), default="default",
      help=f"settings to start from; the options below override them. default: {d['img_size']} px, "
      f"{d['train_images']} train / {d['test_images']} test images; study: DINOv2 at 224 px in bf16 "
      "autocast, 10000 train / 5000 test images, all criteria, renyi α 0.5 1 2 3 inf, keep rates 0.9 0.7 0.5 "
      "0.3; study-112: the same at 112 px in fp32")
    a("--out", type=output_dir, default=Path("probe-results"), metavar="DIR",
      help="output folder: results.csv, results.md, accuracy_vs_gflops.png, config.json (default: "
      "%(default)s)")
    a("--model", metavar="NAME", help="timm model name (with --checkpoint), or a folder of a transformers "
      "model saved with save_pretrained (default: the offline pretrained DINOv2 ViT-S/14)")
    a("--checkpoint", type=existing_file, metavar="FILE", help="local weights for a timm --model")
    a("--dataset", choices=["fashion-mnist", "imagefolder"],
      help="dataset (default: imagefolder with --data, else fashion-mnist from /usr/share/datasets)")
    a("--data", type=existing_dir, metavar="DIR", help="ImageFolder with DIR/train/<class>/ and "
      "DIR/val/<class>/ (or the Fashion-MNIST IDX folder with --dataset fashion-mnist)")
    a("--img-size", type=positive_int, metavar="PX", help="input side, a multiple of the patch size "
      f"(default: {d['img_size']}; a transformers folder: its own)")
    a("--train-images", type=positive_int, metavar="N", help="stratified subset of the train split")
    a("--test-images", type=positive_int, metavar="N", help="stratified subset of the val (test) split")
    a("--batch-size", type=positive_int, metavar="N", help="images per forward (default: 64)")
    a("--threads", type=positive_int, metavar="N", help="torch intra-op threads (default: torch's)")
    a("--dtype", choices=["fp32", "bf16"], help="fp32, or bf16: the forwards under torch.autocast in "
      "bfloat16, faster on CPUs with AVX512-BF16/AMX and on GPUs (default: fp32)")
    # fmt: on


def _add_pruning_arguments(a: Callable[..., Any]) -> None:
    """Criteria, keep rates, α, pruning blocks and the α choice."""
    d = PRESETS["default"]
    # fmt: off
    a("--criteria", type=probe_criterion, nargs="+", metavar="NAME",
      help=f"criteria among {', '.join(criterion_names())} (default: {' '.join(d['criteria'])})")
    a("--keep-rates", type=keep_rate, nargs="+", metavar="R", help="keep rates in (0, 1] (default: 0.7 0.5)")
    a("--alphas", type=alpha, nargs="+", metavar="A", help="Rényi orders for renyi (default: 1 2 inf)")
    a("--prune-blocks", type=nonneg_int, nargs="+", metavar="I",
      help="0-based pruning blocks (default: 3 6 9)")
    a("--choose-alpha", action=argparse.BooleanOptionalAction, default=None,
      help="choose α per keep rate on a validation split of the train images and report its test top-1 "
      "(default: on when renyi has several α)")
    a("--val-fraction", type=val_fraction, metavar="F",
      help="train images held out to choose α (default: 0.2)")
    # fmt: on


_FIELDS = (
    "model",
    "checkpoint",
    "dataset",
    "data",
    "img_size",
    "train_images",
    "test_images",
    "batch_size",
    "threads",
    "dtype",
    "criteria",
    "keep_rates",
    "alphas",
    "prune_blocks",
    "choose_alpha",
    "val_fraction",
    "device",
    "cache_dir",
    "use_cache",
    "seed",
    "bootstrap",
    "progress",
)


def run(args: argparse.Namespace) -> int:
    """Run ``renyi-prune probe`` as parsed; returns 0.

    Raises:
        UsageError: options that do not fit together or the model/data (exit code 2).

    Example:
        >>> from renyi_prune.cli import main
        >>> main(["probe", "--dry-run"])  # doctest: +SKIP
        probe plan: 13 configurations (unpruned, renyi α=1 r=0.7, ...)
        0
    """
    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model (the timm architecture the weights belong to)")
    overrides = {k: getattr(args, k) for k in _FIELDS}
    for name in ("criteria", "keep_rates", "alphas", "prune_blocks"):
        if overrides[name] is not None:
            overrides[name] = tuple(overrides[name])
    try:
        cfg = from_preset(args.preset, overrides)
        if args.img_size is None and transformers_folder(args.model) is not None:
            cfg = cfg.replace(img_size=None)  # a transformers model runs at its config's image_size
    except ValueError as err:
        raise UsageError(str(err)) from None
    from .run import estimate, prepare, run_probe

    if args.dry_run:
        estimate(prepare(cfg))
        return 0
    result = run_probe(cfg, args.out)
    shown = result["results"][["label", "top1_linear", "top1_knn", "gflops", "images_per_s"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}" if not math.isnan(v) else "-"))
    print(
        f"wrote {', '.join(f'{args.out}/{n}' for n in result['files'])} ({result['wall_time_s']:.0f} s, "
        f"{result['forward_images']} image forwards)"
    )
    return 0
