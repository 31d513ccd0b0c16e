"""Fine-tuning and evaluation with patch pruning: ``renyi-prune train`` and ``renyi-prune eval``.

The protocol of "Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803, Sec. 4):
fine-tune an (ImageNet-pretrained) DeiT for 100 epochs with AdamW and batch 256, RandomCrop,
RandomHorizontalFlip, Mixup, CutMix and RandomErasing, with the pruning blocks 4, 7, 10 (indices 3, 6, 9)
active during training and test, α chosen per keep rate. Built from timm's standard pieces:

* model: :func:`timm.create_model` (``--model``, ``--pretrained`` from the hub, ``--checkpoint`` local
  weights, ``--img-size``, ``--model-kwargs``), the classifier sized for the dataset;
* data: :mod:`renyi_prune.data` (Fashion-MNIST offline or an ImageFolder; timm transforms with
  RandomErasing) and :class:`timm.data.Mixup` (Mixup + CutMix + label smoothing);
* optimization: :func:`timm.optim.create_optimizer_v2` (AdamW default), :func:`timm.scheduler.
  create_scheduler_v2` (cosine with linear warm-up, stepped every update), :class:`timm.loss.
  SoftTargetCrossEntropy` with mixing, else :class:`timm.loss.LabelSmoothingCrossEntropy` / cross
  entropy; ``torch.autocast`` (bf16 / fp16 + :class:`timm.utils.NativeScaler`), gradient clipping;
* pruning: :func:`renyi_prune.patch` on the model before training, :func:`renyi_prune.keep_rate_warmup`
  + :func:`renyi_prune.set_keep_rate` every step when a keep-rate warm-up is asked for;
* distribution: ``torchrun`` → :class:`torch.nn.parallel.DistributedDataParallel` and
  :class:`torch.utils.data.DistributedSampler`; rank 0 logs and writes. A plain ``python`` run (no
  ``WORLD_SIZE`` > 1) never touches ``torch.distributed``.

Outputs of ``train`` in ``--output DIR`` (rank 0, each file written atomically, so a crash never leaves a
file that looks complete): ``config.json`` (resolved options, environment), ``checkpoint.pth`` after
every epoch (model, optimizer, scheduler, scaler, epoch, RNG states, metrics history; ``--resume`` it to
continue exactly where it stopped) and ``metrics.jsonl`` (one JSON object per epoch, see
:data:`METRIC_FIELDS`). A run refuses a folder that holds another run's checkpoint (unless it resumes from
that checkpoint), so the files of two runs never mix, and while a run uses its folder it holds the folder's
lock file (``.renyi-prune.lock``: pid, host, start time), so that a second run into the same folder is
refused; a run that fails or is interrupted says which epoch did not complete and which epoch the
checkpoint holds. The checkpoint stores the absolute path of the data, so ``--resume`` and ``eval`` find it
from any folder.

Units: images/s; GFLOPs in fvcore's convention (one multiply-add = one FLOP, as in the paper's Table 3)
for one image at the evaluation keep rate; top-1 / top-5 in percent; lr as set in the optimizer.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._argtypes import (
    Option,
    Parser,
    UsageError,
    add_options,
    alpha,
    existing_dir,
    existing_file,
    fraction,
    keep_rate,
    nonneg_float,
    nonneg_int,
    number,
    option,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    probability,
)
from ._argtypes import device as device_type
from ._io import (
    BadFileError,
    atomic_open,
    check_weights_file,
    check_writable,
    jsonable,
    locked_folder,
    read_state_dict,
    write_json,
)
from .config import DEFAULT_PRUNE_BLOCKS
from .data import (
    DATASETS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataConfig,
    DatasetNotFoundError,
    build_datasets,
    build_transform,
    subset,
)
from .pretrained import filter_state_dict
from .pruning import patch, preserved_rng, pruning_generators, set_keep_rate
from .schedule import keep_rate_warmup

__all__ = [
    "CHECKPOINT_FORMAT",
    "CRITERIA",
    "METRIC_FIELDS",
    "Pruning",
    "add_eval_arguments",
    "add_train_arguments",
    "evaluate",
    "evaluate_checkpoint",
    "parse_eval_args",
    "parse_train_args",
    "run_eval",
    "run_train",
    "train",
]

#: ``--criterion`` names: the registered criteria of :mod:`renyi_prune.criteria`, repeated here so that
#: building the parser imports no criterion module (a test checks they agree).
CRITERIA = ("renyi", "shannon", "evit", "colln", "headvar", "headmad", "random")
#: Marker of the checkpoints written by :func:`train`.
CHECKPOINT_FORMAT = "renyi-prune-train/1"
#: Keys of every ``metrics.jsonl`` line.
METRIC_FIELDS = (
    "epoch",  # epochs completed (1-based)
    "num_updates",  # optimizer steps so far
    "train_loss",  # mean training loss of the epoch (soft-target CE with mixing)
    "lr",  # learning rate of the epoch's last step (first param group)
    "top1",  # validation top-1 accuracy, percent, at the evaluation keep rate
    "top5",  # validation top-5 accuracy, percent (top-k with k = min(5, classes))
    "eval_loss",  # validation cross entropy
    "keep_rate",  # evaluation keep rate (the target; a list if per block; null: no pruning)
    "train_keep_rate",  # keep rate of the epoch's last training step (differs during the warm-up)
    "train_images_per_s",  # training throughput, all processes, loader included
    "eval_images_per_s",  # validation throughput, all processes, forward passes only
    "gflops",  # GFLOPs (fvcore, 1 multiply-add = 1 FLOP) of one image at the evaluation keep rate
    "epoch_time_s",  # wall time of the epoch (training + validation), seconds
)
DEFAULT_MODEL = "deit_small_patch16_224"
_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "none")


# --------------------------------------------------------------------------------------------------------
# Argument parsing: the options of each group as a table (see renyi_prune._argtypes.option)
# --------------------------------------------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, VALUE read as a Python literal (number, bool, None, tuple, string) or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _data_options(training: bool) -> list[Option | None]:
    train_only = (lambda opt: opt) if training else (lambda opt: None)
    return [
        option("--dataset", "fashion-mnist (offline, from the Debian package dataset-fashion-mnist or "
               "$RENYI_PRUNE_FASHION_MNIST) or imagefolder (--data DIR with DIR/train and DIR/val); default: "
               "imagefolder when --data is given, else fashion-mnist"
               + ("" if training else " (or what the checkpoint was trained on)"), choices=DATASETS),
        option("--data", "ImageFolder root (DIR/train/<class>/..., DIR/val/<class>/...), or with --dataset "
               "fashion-mnist the folder of its IDX files", existing_dir, metavar="DIR"),
        train_only(option("--max-train-images", "train on a fixed random subset of N images (default: all)",
                          positive_int, metavar="N")),
        option("--max-val-images", "validate on a fixed random subset of N images (default: all)",
               positive_int, metavar="N"),
        option("--img-size", "input resolution, a multiple of the patch size (default: the model's"
               + (")" if training else ", or the checkpoint's)"), positive_int, metavar="PX"),
        option("--mean", "normalization mean (default: the dataset's for fashion-mnist, else the model's)",
               number, metavar="M", nargs=3),
        option("--std", "normalization std (default: as --mean)", positive_float, metavar="S", nargs=3),
        option("--interpolation", "resize interpolation (default: bicubic)",
               choices=("bicubic", "bilinear", "nearest")),
        option("--crop-pct", "eval center-crop fraction in (0, 1] (default: 1.0 for fashion-mnist, else the "
               "model's)", fraction, metavar="F"),
        option("--batch-size", "images per step and process (default: %(default)s; the paper's total batch "
               "is 256)", positive_int, 256, "B"),
        option("--workers", "data-loading processes per training process (default: 0 on CPU, where the "
               "model uses every core, else min(8, cores per process))", nonneg_int, metavar="N"),
    ]  # fmt: skip


_AUGMENT_OPTIONS = (
    option("--train-crop-mode", "rrc: RandomResizedCrop (DeiT); rkrr: random-scale resize + RandomCrop "
           "(default: %(default)s)", default="rrc", choices=("rrc", "rkrc", "rkrr")),
    option("--scale", "crop area range (default: 0.08 1.0)", number, (0.08, 1.0), ("MIN", "MAX"), nargs=2),
    option("--ratio", "crop aspect ratio range (default: 3/4 4/3)", positive_float, (3 / 4, 4 / 3),
           ("MIN", "MAX"), nargs=2),
    option("--hflip", "horizontal flip probability (default: %(default)s)", probability, 0.5, "P"),
    option("--color-jitter", "color jitter strength, 0 = off (default: %(default)s)", nonneg_float, 0.0, "F"),
    option("--aa", "timm RandAugment/AutoAugment policy, e.g. rand-m9-mstd0.5-inc1 (default: none)",
           metavar="POLICY"),
    option("--reprob", "RandomErasing probability (default: %(default)s)", probability, 0.25, "P"),
    option("--remode", "RandomErasing fill (default: %(default)s)", default="pixel",
           choices=("pixel", "rand", "const")),
    option("--recount", "RandomErasing regions (default: %(default)s)", positive_int, 1, "N"),
    option("--mixup", "Mixup alpha, 0 = off (default: %(default)s)", nonneg_float, 0.8, "ALPHA"),
    option("--cutmix", "CutMix alpha, 0 = off (default: %(default)s)", nonneg_float, 1.0, "ALPHA"),
    option("--mixup-prob", "probability of mixing a batch (default: %(default)s)", probability, 1.0, "P"),
    option("--mixup-switch-prob", "probability of CutMix instead of Mixup when both are on (default: "
           "%(default)s)", probability, 0.5, "P"),
    option("--mixup-mode", "mix per batch, pair or element (default: %(default)s)", default="batch",
           choices=("batch", "pair", "elem")),
    option("--smoothing", "label smoothing (default: %(default)s)", probability, 0.1, "EPS"),
)  # fmt: skip


def _model_options(training: bool) -> list[Option | None]:
    if training:
        weights = [
            option("--pretrained", "start from timm's pretrained weights (downloads from the Hugging Face "
                   "hub)", action="store_true"),
            option("--checkpoint", "start from local weights (a timm/PyTorch state dict, .safetensors, or a "
                   "checkpoint.pth of this command; a classifier of another size is re-initialized)",
                   existing_file, metavar="PATH"),
            option("--drop-path", "stochastic depth rate (default: %(default)s)", probability, 0.1, "P"),
            option("--drop", "dropout rate before the classifier (default: %(default)s)", probability, 0.0,
                   "P"),
        ]
    else:
        weights = [
            option("--checkpoint", "weights to evaluate: a checkpoint.pth of `renyi-prune train`, or a "
                   "timm/PyTorch state dict / .safetensors with --model", existing_file, metavar="PATH",
                   required=True),
        ]
    return [
        option("--model", "timm model name" + (" (default: %(default)s)" if training else " (default: the "
               "checkpoint's; needed for other checkpoints)"), default=DEFAULT_MODEL if training else None,
               metavar="NAME"),
        option("--model-kwargs", "extra timm.create_model arguments, e.g. patch_size=4 embed_dim=192 "
               "num_heads=3", _key_value, [], "KEY=VALUE", nargs="+"),
        *weights,
        option("--num-classes", "classifier size (default: the dataset's number of classes)", positive_int,
               metavar="N"),
    ]  # fmt: skip


def _pruning_options(training: bool) -> list[Option | None]:
    if training:
        schedule = [
            option("--keep-rate-warmup-epochs", "lower the keep rate from 1 to --keep-rate along a half "
                   "cosine over E epochs (EViT's schedule; updated every step; default: 0 = prune at the "
                   "target from the start)", nonneg_float, 0.0, "E"),
            option("--keep-rate-start-epoch", "epochs at keep rate 1 before the warm-up starts (default: "
                   "%(default)s)", nonneg_float, 0.0, "E"),
        ]
    else:
        schedule = [
            option("--no-prune", "evaluate without pruning, even if the checkpoint was trained with it",
                   action="store_true"),
        ]
    return [
        option("--keep-rate", "keep rate r in (0, 1] of every pruning block, or one per block", keep_rate,
               metavar="R", nargs="+"),
        option("--criterion", "token-importance criterion (default: renyi)", choices=CRITERIA),
        option("--alpha", "Rényi order(s) for --criterion renyi, 'inf' allowed, one or one per block "
               "(default: 1)", alpha, metavar="A", nargs="+"),
        option("--prune-blocks", "0-based pruning block indices (default: 3 6 9 = the paper's blocks 4, 7, "
               "10)", nonneg_int, metavar="I", nargs="+"),
        option("--fuse-pruned", "merge the pruned patches into one token (EViT's inattentive-token fusion)",
               action="store_true"),
        option("--criterion-param", "criterion parameters, e.g. order=3 (colln), source=column (headvar), "
               "seed=1 (random)", _key_value, [], "KEY=VALUE", nargs="+"),
        *schedule,
    ]  # fmt: skip


_OPTIMIZATION_OPTIONS = (
    option("--epochs", "epochs (default: %(default)s, the paper's)", positive_int, 100, "N"),
    option("--opt", "timm optimizer name (default: %(default)s)", default="adamw", metavar="NAME"),
    option("--lr", "peak learning rate (default: DeiT's rule 5e-4 x total batch / 512)", nonneg_float,
           metavar="LR"),
    option("--weight-decay", "weight decay, not applied to biases and norms (default: %(default)s)",
           nonneg_float, 0.05, "WD"),
    option("--opt-eps", "optimizer epsilon (default: timm's)", positive_float, metavar="EPS"),
    option("--opt-betas", "Adam betas (default: timm's)", probability, metavar="B", nargs=2),
    option("--momentum", "SGD momentum (default: %(default)s)", nonneg_float, 0.9, "M"),
    option("--clip-grad", "clip gradients to this norm (or value, see --clip-mode; default: no clipping)",
           nonneg_float, metavar="NORM"),
    option("--clip-mode", "gradient clipping mode (default: %(default)s)", default="norm",
           choices=("norm", "value", "agc")),
    option("--sched", "lr schedule (default: %(default)s)", default="cosine", choices=_SCHEDULERS),
    option("--warmup-epochs", "linear lr warm-up, epochs (default: %(default)s)", nonneg_float, 5.0, "E"),
    option("--warmup-lr", "lr at the start of the warm-up (default: %(default)s)", nonneg_float, 1e-6, "LR"),
    option("--min-lr", "lr at the end of the cosine (default: %(default)s)", nonneg_float, 1e-5, "LR"),
    option("--decay-epochs", "step schedule interval", nonneg_float, metavar="E"),
    option("--decay-rate", "step decay factor (default: 0.1)", nonneg_float, 0.1, "F"),
)  # fmt: skip


def _runtime_options(training: bool) -> list[Option | None]:
    if training:
        run = [
            option("--seed", "random seed (default: %(default)s)", nonneg_int, 0, "N"),
            option("--output", "folder for config.json, checkpoint.pth, metrics.jsonl (default: %(default)s)",
                   output_dir, Path("renyi_prune_train"), "DIR"),
            option("--resume", "continue a run from its checkpoint.pth (pass the same options; without "
                   "--data and --dataset it reads the data the run was trained on)", existing_file,
                   metavar="PATH"),
            option("--stop-after-epoch", "end this run after epoch N; the schedule still spans --epochs (for "
                   "time-limited jobs: continue with --resume)", positive_int, metavar="N"),
        ]
    else:
        run = [option("--output", "also write the result as JSON to FILE", output_file, metavar="FILE")]
    return [
        option("--device", "torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu; under "
               "torchrun: cuda:$LOCAL_RANK)", device_type),
        option("--amp", "mixed precision: torch.autocast in bf16, or fp16 with a gradient scaler (default: "
               "auto = bf16 on a CUDA device that supports it, else none)", default="auto",
               choices=("auto", "bf16", "fp16", "none")),
        option("--no-progress", "no progress bars", dest="progress", action="store_false"),
        *run,
    ]  # fmt: skip


def _option_groups(training: bool) -> list[tuple[str, str | None, Sequence[Option | None]]]:
    """(title, description, options) of each argument group, in the order ``--help`` lists them."""
    pruning = (
        "pruning",
        "Without --keep-rate the model is not pruned"
        + (" (plain fine-tuning)." if training else "; eval then uses the checkpoint's pruning, if any."),
        _pruning_options(training),
    )
    if not training:
        return [
            ("model", None, _model_options(False)),
            ("data", None, _data_options(False)),
            pruning,
            ("runtime", None, _runtime_options(False)),
        ]
    return [
        ("data", None, _data_options(True)),
        ("augmentation (DeiT's defaults, no RandAugment)", None, _AUGMENT_OPTIONS),
        ("model", None, _model_options(True)),
        pruning,
        ("optimization (timm create_optimizer_v2 / create_scheduler_v2)", None, _OPTIMIZATION_OPTIONS),
        ("runtime", None, _runtime_options(True)),
    ]


def _add_groups(parser: argparse.ArgumentParser, training: bool) -> None:
    for title, description, options in _option_groups(training):
        add_options(parser.add_argument_group(title, description), options)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``renyi-prune train`` on ``parser`` (see :func:`run_train`).

    Groups: data, augmentation, model, pruning, optimization, runtime (``renyi-prune train --help``).
    Every value is checked as it is parsed (keep rates in (0, 1], α ≥ 0, counts ≥ 1, probabilities in
    [0, 1], existing ``--data`` / ``--checkpoint`` / ``--resume``, a usable ``--device``).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_train_arguments(parser)
        >>> args = parser.parse_args(["--keep-rate", "0.7", "--epochs", "10"])
        >>> args.keep_rate, args.epochs, args.batch_size, args.model
        ([0.7], 10, 256, 'deit_small_patch16_224')
    """
    _add_groups(parser, training=True)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``renyi-prune eval`` on ``parser`` (see :func:`run_eval`).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_eval_arguments(parser)
        >>> args = parser.parse_args(["--checkpoint", __file__, "--keep-rate", "0.5", "0.4", "0.3"])
        >>> args.keep_rate, args.no_prune, args.output
        ([0.5, 0.4, 0.3], False, None)
    """
    _add_groups(parser, training=False)


def parse_train_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``renyi-prune train`` options (for scripts and tests; the CLI uses the same options).

    Raises:
        SystemExit: a bad value (code 2, after one line ``renyi-prune train: error: ...`` on stderr).

    Example:
        >>> args = parse_train_args(["--keep-rate", "0.5", "--alpha", "inf", "--criterion", "renyi"])
        >>> args.keep_rate, args.alpha, args.criterion, args.prune_blocks
        ([0.5], [inf], 'renyi', None)
        >>> parse_train_args(["--keep-rate", "0"])  # stderr: ... keep rate must be in (0, 1], got 0
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """
    parser = Parser(prog="renyi-prune train")
    add_train_arguments(parser)
    return parser.parse_args(argv)


def parse_eval_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``renyi-prune eval`` options (for scripts and tests; the CLI uses the same options).

    Raises:
        SystemExit: a bad value (code 2, after one line ``renyi-prune eval: error: ...`` on stderr).

    Example:
        >>> args = parse_eval_args(["--checkpoint", __file__, "--no-prune", "--batch-size", "64"])
        >>> args.no_prune, args.batch_size, args.keep_rate
        (True, 64, None)
    """
    parser = Parser(prog="renyi-prune eval")
    add_eval_arguments(parser)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------------
# Pruning configuration
# --------------------------------------------------------------------------------------------------------


@dataclass
class Pruning:
    """How a model is patched (:func:`renyi_prune.patch`) and its keep-rate warm-up.

    Attributes:
        keep_rate: target keep rate, one or one per pruning block (also the evaluation keep rate).
        criterion, alpha, prune_blocks, fuse_pruned, params: as in :func:`renyi_prune.patch`.
        warmup_epochs, start_epoch: keep rate 1 for ``start_epoch`` epochs, then a half cosine down to
            ``keep_rate`` over ``warmup_epochs`` (:func:`renyi_prune.keep_rate_warmup`, per step).

    Example:
        >>> p = Pruning(keep_rate=0.5, alpha=2.0, warmup_epochs=1.0)
        >>> p.label(), p.prune_blocks
        ('renyi α=2 r=0.5', [3, 6, 9])
        >>> [p.keep_rate_at(step, updates_per_epoch=4) for step in (0, 2, 4, 8)]  # half cosine over 4 steps
        [1.0, 0.75, 0.5, 0.5]
        >>> Pruning(keep_rate=[0.7, 0.5, 0.3], criterion="evit", fuse_pruned=True).label()
        'evit+fusion r=0.7/0.5/0.3'
    """

    keep_rate: float | list[float]
    criterion: str = "renyi"
    alpha: float | list[float] | None = None
    prune_blocks: list[int] = field(default_factory=lambda: list(DEFAULT_PRUNE_BLOCKS))
    fuse_pruned: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    warmup_epochs: float = 0.0
    start_epoch: float = 0.0

    def apply(self, model: nn.Module) -> nn.Module:
        """Patch ``model`` at the target keep rate."""
        return patch(
            model,
            keep_rate=self.keep_rate,
            alpha=self.alpha,
            prune_blocks=self.prune_blocks,
            criterion=self.criterion,
            fuse_pruned=self.fuse_pruned,
            **self.params,
        )

    @property
    def has_warmup(self) -> bool:
        """Whether the training keep rate changes over the run (a warm-up or a delayed start)."""
        return self.warmup_epochs > 0 or self.start_epoch > 0

    def keep_rate_at(self, step: int, updates_per_epoch: int) -> float | list[float]:
        """Training keep rate after ``step`` optimizer updates."""
        if not self.has_warmup:
            return self.keep_rate
        ramp = max(1, round(self.warmup_epochs * updates_per_epoch))
        start = round(self.start_epoch * updates_per_epoch)
        return keep_rate_warmup(step, self.keep_rate, ramp, start_step=start)

    def label(self) -> str:
        """Short description for logs: criterion (``+fusion``), α for renyi, parameters, keep rate(s)."""
        name = self.criterion + ("+fusion" if self.fuse_pruned else "")
        if self.criterion == "renyi":
            name += f" α={_fmt_seq(1.0 if self.alpha is None else self.alpha)}"
        extra = "".join(f" {k}={v}" for k, v in self.params.items())
        return f"{name}{extra} r={_fmt_seq(self.keep_rate)}"


def _fmt_seq(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_fmt_seq(v) for v in value)
    return "inf" if value == math.inf else f"{value:g}"


def _one_or_list(values: Sequence[Any] | None) -> Any:
    if values is None:
        return None
    values = list(values)
    return values[0] if len(values) == 1 else values


def _pruning_from_args(args: argparse.Namespace, training: bool) -> Pruning | None:
    """The :class:`Pruning` the options ask for, or None (no --keep-rate); patch() checks it further."""
    others = {
        "--criterion": args.criterion is not None,
        "--alpha": args.alpha is not None,
        "--prune-blocks": args.prune_blocks is not None,
        "--fuse-pruned": args.fuse_pruned,
        "--criterion-param": bool(args.criterion_param),
    }
    if training:
        others["--keep-rate-warmup-epochs"] = args.keep_rate_warmup_epochs > 0
        others["--keep-rate-start-epoch"] = args.keep_rate_start_epoch > 0
    if args.keep_rate is None:
        given = [k for k, v in others.items() if v]
        if given:
            raise UsageError(f"{', '.join(given)} need(s) --keep-rate (without it the model is not pruned)")
        return None
    criterion = args.criterion or "renyi"
    if args.alpha is not None and criterion != "renyi":
        raise UsageError(f"--alpha is for --criterion renyi, not {criterion!r}")
    pruning = Pruning(
        keep_rate=_one_or_list(args.keep_rate),
        criterion=criterion,
        alpha=_one_or_list(args.alpha),
        prune_blocks=list(args.prune_blocks) if args.prune_blocks is not None else list(DEFAULT_PRUNE_BLOCKS),
        fuse_pruned=args.fuse_pruned,
        params=dict(args.criterion_param),
        warmup_epochs=args.keep_rate_warmup_epochs if training else 0.0,
        start_epoch=args.keep_rate_start_epoch if training else 0.0,
    )
    return pruning


# --------------------------------------------------------------------------------------------------------
# Devices, precision, distribution, RNG
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_device(device_arg: str | None) -> _Dist:
    """Device and process group; ``torch.distributed`` is initialized only when ``WORLD_SIZE`` > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device_arg is not None:
        try:
            device = torch.device(device_arg)
        except RuntimeError as err:
            raise UsageError(f"argument --device: {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"argument --device: {device_arg!r} but CUDA is not available")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return _Dist(device=device)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)) or world_size)
    return _Dist(dist.get_rank(), dist.get_world_size(), local_world, device)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the data order and loader workers of one epoch: depends only on (seed, epoch, rank)."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 17) % 2**63


def _rng_state(model: nn.Module, device: torch.device) -> dict[str, Any]:
    """Every RNG the training loop draws from (Python, NumPy for Mixup, torch, CUDA, pruning criteria)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "pruning": [g.get_state() for g in pruning_generators(model)],
    }


def _set_rng_state(state: dict[str, Any], model: nn.Module, device: torch.device) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    generators = pruning_generators(model)
    if len(generators) == len(state.get("pruning", [])):
        for g, s in zip(generators, state["pruning"], strict=True):
            g.set_state(s)


def _environment(device: torch.device, dist: _Dist | None = None) -> dict[str, Any]:
    import timm

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return {
        "device": name,
        "world_size": dist.world_size if dist else 1,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
    }


# --------------------------------------------------------------------------------------------------------
# Model and weights
# --------------------------------------------------------------------------------------------------------


def _check_model_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise UsageError(f"argument --model: unknown timm model {name!r} (see timm.list_models())")


def _create_model(
    name: str,
    num_classes: int,
    img_size: int | None,
    model_kwargs: dict[str, Any],
    pretrained: bool = False,
    drop_path: float = 0.0,
    drop: float = 0.0,
) -> nn.Module:
    import timm

    _check_model_name(name)
    kwargs = dict(model_kwargs)
    kwargs["num_classes"] = num_classes
    if img_size is not None:
        kwargs["img_size"] = img_size
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if drop:
        kwargs["drop_rate"] = drop
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise UsageError(
            f"--model {name} does not accept these arguments {sorted(kwargs)}: {err}"
        ) from None
    except Exception as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load the pretrained weights of {name!r} ({type(err).__name__}: {err}); this needs "
            "internet access to the Hugging Face hub. Offline, pass local weights with --checkpoint instead "
            "of --pretrained."
        ) from err


def _model_img_size(model: nn.Module) -> int:
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None:
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))[-2:]
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size[0] != size[1]:
        raise UsageError(f"non-square model input {size}; pass --img-size")
    return int(size[0])


def _read_checkpoint(path: str | os.PathLike[str], option: str) -> dict[str, Any] | None:
    """A checkpoint written by :func:`train`, or None for any other weights file.

    Raises:
        UsageError: the file (given as ``option``) is empty, or truncated (:func:`check_weights_file`).
    """
    try:
        check_weights_file(path)
    except BadFileError as err:
        raise UsageError(f"argument {option}: {err}") from None
    if str(path).endswith(".safetensors"):
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # another format, or Python objects besides tensors: read_state_dict says what
        return None
    return ckpt if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT else None


def _load_weights(model: nn.Module, path: str | os.PathLike[str], reset_head: bool) -> list[str]:
    """Load a state dict into ``model`` (timm's checkpoint filter resamples position embeddings).

    With ``reset_head`` a classifier whose shape differs is left at its fresh initialization (fine-tuning on
    another label set); any other mismatch, or a file that holds no weights, raises :class:`UsageError`
    (``--checkpoint`` does not fit ``--model``) naming the keys. Returns notes for the log.
    """
    ours = _read_checkpoint(path, "--checkpoint")
    if ours is not None:
        state = dict(ours["model"])
    else:
        try:
            state = read_state_dict(path)
        except BadFileError as err:
            raise UsageError(f"argument --checkpoint: {err}") from None
    state = filter_state_dict(state, model)
    own = model.state_dict()
    heads = model.pretrained_cfg.get("classifier", "head")
    heads = [heads] if isinstance(heads, str) else list(heads)
    mismatched = {
        k: (tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    }
    is_head = lambda k: any(k == h or k.startswith(h + ".") for h in heads)  # noqa: E731
    notes = []
    head_keys = [k for k in mismatched if is_head(k)]
    if head_keys and reset_head:
        for k in head_keys:
            del state[k]
        notes.append(
            f"classifier {', '.join(head_keys)} re-initialized: checkpoint {mismatched[head_keys[0]][0]}, "
            f"model {mismatched[head_keys[0]][1]}"
        )
    elif head_keys:
        k = head_keys[0]
        raise UsageError(
            f"argument --checkpoint {path}: classifier {k} has shape {list(mismatched[k][0])}, the model "
            "needs "
            f"{list(mismatched[k][1])}"
            " (pass --num-classes to match the checkpoint, or evaluate on the dataset it was trained on)"
        )
    other = {k: v for k, v in mismatched.items() if not is_head(k)}
    if other:
        raise UsageError(
            f"argument --checkpoint: {path} does not fit the model: (checkpoint, model) shapes "
            f"{dict(list(other.items())[:4])}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (reset_head and is_head(k))]
    if missing or unexpected:
        raise UsageError(
            f"argument --checkpoint: {path} does not fit the model: missing keys {missing[:6]}, unexpected "
            f"keys {unexpected[:6]}"
        )
    return notes


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------


def _dataset_name(args: argparse.Namespace, default: str | None = None) -> str:
    if args.dataset is not None:
        return args.dataset
    if args.data is not None:
        return "imagefolder"
    return default or "fashion-mnist"


def _build_datasets(
    args: argparse.Namespace, dataset: str, root: Any, splits: Sequence[str] = ("train", "val")
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """:func:`renyi_prune.data.build_datasets`; a dataset missing from the ``--data`` folder given on the
    command line is a usage error (exit code 2), one missing from its default place a failure (1)."""
    if dataset == "imagefolder" and root is None:
        raise UsageError("--dataset imagefolder needs --data DIR (with DIR/train and DIR/val)")
    try:
        return build_datasets(dataset, root, splits=splits)
    except DatasetNotFoundError as err:
        if args.data is None:
            raise
        raise UsageError(f"argument --data {args.data}: {err}") from None


def _data_config(
    args: argparse.Namespace,
    dataset: str,
    model: nn.Module,
    img_size: int,
    base: dict[str, Any] | None = None,
) -> DataConfig:
    """Normalization/resizing: options > ``base`` (a checkpoint's) > the dataset's > the model's."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if base is not None:
        mean, std = tuple(base["mean"]), tuple(base["std"])
        interpolation, crop_pct = base["interpolation"], base["crop_pct"]
    elif dataset == "fashion-mnist":
        mean, std, interpolation, crop_pct = FASHION_MNIST_MEAN, FASHION_MNIST_STD, "bicubic", 1.0
    else:
        mean, std = (
            tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        )
        interpolation, crop_pct = cfg.get("interpolation", "bicubic") or "bicubic", cfg.get("crop_pct", 0.875)
    return DataConfig(
        img_size=img_size,
        mean=tuple(args.mean) if args.mean is not None else mean,
        std=tuple(args.std) if args.std is not None else std,
        interpolation=args.interpolation or interpolation,
        crop_pct=args.crop_pct if args.crop_pct is not None else crop_pct,
    )


def _default_workers(device: torch.device, dist: _Dist) -> int:
    if device.type != "cuda":
        return 0
    return min(8, max(1, (os.cpu_count() or 1) // dist.local_world_size))


def _val_loader(dataset, batch_size: int, workers: int, device: torch.device, dist: _Dist):
    from torch.utils.data import DataLoader, Subset

    if dist.enabled:  # exact sharding: rank r takes items r, r + W, ...; no padding duplicates
        dataset = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )


# --------------------------------------------------------------------------------------------------------
# Training and evaluation loops
# --------------------------------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "eval",
    distributed: bool = False,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy, cross entropy and throughput of ``model`` on ``loader``.

    Args:
        model: a classifier (patched or not) giving logits (B, classes); put in eval mode.
        loader: a sized iterable of ``(images (B, 3, S, S) float, labels (B,) int64)``, e.g. a DataLoader.
        device, amp_dtype: where and in which autocast dtype (None: fp32) to run.
        progress, desc: a tqdm bar on stderr and its label.
        distributed: sum the counts over the process group (each rank evaluated its own shard).

    Returns:
        ``{"top1", "top5"}`` in percent (top-k with k = min(5, classes), :func:`timm.utils.accuracy`),
        ``"loss"`` (mean cross entropy, nats), ``"images"`` (count), ``"images_per_s"`` (images / seconds
        spent in the forward passes, device-synchronized, data loading excluded; summed over processes).

    Example:
        A model that always answers class 0, on two batches of labels 0, 1 and 0, 2:

        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
        >>> _ = nn.init.zeros_(model[1].weight), model[1].bias.data.copy_(torch.tensor([1.0, 0.0, 0.0]))
        >>> loader = [(torch.rand(2, 3, 4, 4), torch.tensor(labels)) for labels in ([0, 1], [0, 2])]
        >>> r = evaluate(model, loader, torch.device("cpu"))
        >>> r["top1"], r["top5"], r["images"], round(r["loss"], 4), r["images_per_s"] > 0
        (50.0, 100.0, 4, 1.0514, True)
    """
    from timm.utils import accuracy

    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, images
    forward_s = 0.0
    with _progress(len(loader), desc, progress) as bar:
        for images, target in loader:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            _sync(device)
            start = time.perf_counter()
            with _autocast(device, amp_dtype):
                logits = model(images)
            _sync(device)
            forward_s += time.perf_counter() - start
            logits = logits.float()
            n = len(target)
            acc1, acc5 = accuracy(logits, target, topk=(1, min(5, logits.shape[1])))
            loss = F.cross_entropy(logits, target, reduction="sum")
            sums += torch.tensor(
                [acc1.item() * n / 100, acc5.item() * n / 100, loss.item(), n], dtype=torch.float64
            )
            bar.update()
    rate = torch.tensor([sums[3].item() / forward_s if forward_s > 0 else 0.0], dtype=torch.float64)
    if distributed:
        import torch.distributed as dist

        packed = torch.cat([sums, rate]).to(device)
        dist.all_reduce(packed)
        sums, rate = packed[:4].cpu(), packed[4:].cpu()
    n = max(sums[3].item(), 1.0)
    return {
        "top1": 100.0 * round(sums[0].item()) / n,
        "top5": 100.0 * round(sums[1].item()) / n,
        "loss": sums[2].item() / n,
        "images": int(sums[3].item()),
        "images_per_s": rate.item(),
    }


@contextlib.contextmanager
def _preserve_rng(model: nn.Module):
    """Run a side computation (validation) without consuming any RNG the training uses: torch's and
    the pruning criteria's (:func:`renyi_prune.patch.preserved_rng`), Python's and NumPy's."""
    with preserved_rng(model):
        py, npy = random.getstate(), np.random.get_state()
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _count_gflops(model: nn.Module, img_size: int) -> float:
    from .flops import count_flops

    return count_flops(model, img_size)  # advances no RNG the training uses (torch's, the criteria's)


def _train_one_epoch(
    model: nn.Module,
    unwrapped: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epoch: int,
    epochs: int,
    num_updates: int,
    mixup_fn: Any,
    pruning: Pruning | None,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    scaler: Any,
    clip_grad: float | None,
    clip_mode: str,
    progress: bool,
    dist: _Dist,
) -> dict[str, Any]:
    from timm.utils import dispatch_clip_grad

    model.train()
    updates_per_epoch = len(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    keep = None
    start = time.perf_counter()
    with _progress(updates_per_epoch, f"epoch {epoch + 1}/{epochs}", progress) as bar:
        for step, (images, target) in enumerate(loader):
            if pruning is not None and pruning.has_warmup:
                keep = pruning.keep_rate_at(num_updates, updates_per_epoch)
                set_keep_rate(unwrapped, keep)
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            if mixup_fn is not None:
                images, target = mixup_fn(images, target)
            with _autocast(device, amp_dtype):
                loss = loss_fn(model(images), target)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler(
                    loss, optimizer, clip_grad=clip_grad, clip_mode=clip_mode, parameters=model.parameters()
                )
            else:
                loss.backward()
                if clip_grad is not None:
                    dispatch_clip_grad(model.parameters(), clip_grad, mode=clip_mode)
                optimizer.step()
            num_updates += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=num_updates)
            loss_sum += loss.detach().double() * len(images)
            seen += len(images)
            if step % 10 == 0 or step == updates_per_epoch - 1:
                value = loss_sum.item() / seen
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"training loss is {value} at epoch {epoch + 1}, step {step + 1}: lower --lr, or use "
                        "--clip-grad, or --amp bf16 instead of fp16"
                    )
                bar.set_postfix(
                    loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False
                )
            bar.update()
    _sync(device)
    elapsed = time.perf_counter() - start
    totals = torch.tensor([loss_sum.item(), float(seen)], dtype=torch.float64)
    if dist.enabled:
        import torch.distributed as tdist

        totals = totals.to(device)
        tdist.all_reduce(totals)
        totals = totals.cpu()
    if pruning is not None and keep is None:
        keep = pruning.keep_rate
    return {
        "train_loss": totals[0].item() / max(totals[1].item(), 1.0),
        "lr": optimizer.param_groups[0]["lr"],
        "train_images_per_s": totals[1].item() / elapsed if elapsed > 0 else 0.0,
        "train_keep_rate": keep,
        "num_updates": num_updates,
    }


_NOT_OPTIONS = frozenset({"command", "command_parser", "traceback"})  # set by the CLI, not by this command


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The command's options as JSON-safe values (the CLI's own entries and non-data values dropped; paths
    absolute, so that they mean the same from any working directory)."""
    plain = (str, int, float, bool, type(None), list, tuple, dict, Path)
    return {
        k: _absolute(v) if isinstance(v, Path) else jsonable(v)
        for k, v in vars(args).items()
        if k not in _NOT_OPTIONS and isinstance(v, plain)
    }


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for record in history:
            fh.write(json.dumps(jsonable(record), allow_nan=False) + "\n")


def _apply_pruning(pruning: Pruning, model: nn.Module) -> None:
    """Patch ``model``; a setting :func:`renyi_prune.patch` rejects for this model (a prune block beyond its
    depth, an α list of the wrong length, an unsupported model) is a usage error."""
    try:
        pruning.apply(model)
    except (TypeError, ValueError) as err:
        raise UsageError(f"cannot prune {type(model).__name__} as asked ({pruning.label()}): {err}") from None


def _is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a plain run: the process that writes and prints."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _check_output_folder(output: Path, resuming: bool) -> None:
    """A run must not mix its files with another run's checkpoint and metrics: only a run resuming from
    ``output``'s own checkpoint (``resuming``) may use a folder that holds them."""
    if resuming:
        return
    found = [name for name in ("checkpoint.pth", "metrics.jsonl") if (output / name).exists()]
    if found:
        raise UsageError(
            f"argument --output: {output} already holds a run ({', '.join(found)}); continue it with "
            f"--resume {output / 'checkpoint.pth'}, or choose another --output"
        )


def _add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (Python 3.11+), also on 3.10; :func:`renyi_prune.cli.main` prints the notes."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:
        err.__notes__ = [*getattr(err, "__notes__", []), note]


def _failed_epoch_note(output: Path, epoch: int, epochs: int, done: int) -> str:
    where = (
        f"{output / 'checkpoint.pth'} holds epoch {done} (continue with --resume {output / 'checkpoint.pth'})"
        if done
        else "no checkpoint was written"
    )
    return f"epoch {epoch}/{epochs} did not complete; {where}"


#: Keyword arguments of timm's pieces ← the ``renyi-prune train`` options (argparse dests) that set them.
_TRANSFORM_OPTIONS = {  # renyi_prune.data.build_transform
    "scale": "scale", "ratio": "ratio", "train_crop_mode": "train_crop_mode", "hflip": "hflip",
    "color_jitter": "color_jitter", "auto_augment": "aa", "re_prob": "reprob", "re_mode": "remode",
    "re_count": "recount",
}  # fmt: skip
_SCHEDULER_OPTIONS = {  # timm.scheduler.create_scheduler_v2
    "sched": "sched", "num_epochs": "epochs", "warmup_epochs": "warmup_epochs", "warmup_lr": "warmup_lr",
    "min_lr": "min_lr", "decay_rate": "decay_rate",
}  # fmt: skip
_MIXUP_OPTIONS = {  # timm.data.Mixup
    "mixup_alpha": "mixup", "cutmix_alpha": "cutmix", "prob": "mixup_prob",
    "switch_prob": "mixup_switch_prob", "mode": "mixup_mode", "label_smoothing": "smoothing",
}  # fmt: skip


def _pick(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{keyword: args.<dest>}`` for each ``keyword: dest`` of ``names``."""
    return {keyword: getattr(args, dest) for keyword, dest in names.items()}


def _model_config(args: argparse.Namespace, num_classes: int, img_size: int) -> dict[str, Any]:
    return {
        "model": args.model,
        "model_kwargs": dict(args.model_kwargs),
        "num_classes": num_classes,
        "img_size": img_size,
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``renyi-prune train`` with parsed options (see :func:`add_train_arguments`).

    Holds the lock of the output folder (rank 0, :func:`renyi_prune._io.locked_folder`) from before any data
    is read to the end, writes (rank 0, each file atomically) ``config.json`` before the first epoch, then
    after every epoch ``checkpoint.pth`` and ``metrics.jsonl`` (one line per epoch so far,
    :data:`METRIC_FIELDS`), and prints one line per epoch. An exception or Ctrl-C during an epoch carries a
    note (``add_note``) saying which epoch did not complete and which epoch ``checkpoint.pth`` holds. A
    ``--resume`` of a run that already reached ``--epochs`` (or ``--stop-after-epoch``) trains and writes
    nothing. Without ``--data`` / ``--dataset``, ``--resume`` reads the data of the checkpoint's run.

    Returns:
        ``{"output": DIR, "history": [per-epoch records (METRIC_FIELDS)], "last": the last record,
        "config": the resolved configuration (None when nothing was trained), "epochs_trained": epochs this
        call trained}`` (on every rank; only rank 0 writes files).

    Raises:
        UsageError: options that do not fit (message names them), e.g. --alpha without renyi, an odd batch
            with Mixup/CutMix, a training set smaller than one batch, a --resume checkpoint of another model,
            an unknown --model, a --data folder without the dataset, a pruning setting
            :func:`renyi_prune.patch` rejects for the model (a prune block beyond its depth), --checkpoint
            weights that do not fit, a --checkpoint / --resume file that is empty, truncated or holds Python
            objects besides tensors, an --output folder holding another run's checkpoint (unless resuming
            from that checkpoint).
        OutputFolderError: --output cannot be created or written, or another run holds it.
        DatasetNotFoundError: the default dataset is missing (message: how to install it).
        FloatingPointError: the training loss became NaN/inf.
        RuntimeError: --pretrained weights could not be downloaded.

    Example:
        One epoch of a tiny ViT (2 blocks of width 16, 16 patches of 7 px) on 16 random 28 px images:

        >>> import tempfile
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> work = Path(tempfile.mkdtemp())
        >>> data = write_fake_fashion_mnist(work / "data", train_images=16, val_images=8)
        >>> args = parse_train_args(["--dataset", "fashion-mnist", "--data", str(data), "--output",
        ...     str(work / "run"), "--model-kwargs", "patch_size=7", "embed_dim=16", "depth=2", "num_heads=2",
        ...     "--img-size", "28", "--batch-size", "8", "--epochs", "1", "--no-progress"])
        >>> result = train(args)  # doctest: +ELLIPSIS
        epoch 1/1  loss ... GFLOPs ...
        >>> result["last"]["num_updates"], sorted(p.name for p in result["output"].iterdir())
        (2, ['checkpoint.pth', 'config.json', 'metrics.jsonl'])
    """
    pruning = _check_train_options(args)
    resume = _read_resume(args)
    output = Path(args.output)
    stop_epoch = min(args.stop_after_epoch or args.epochs, args.epochs)
    if resume is not None and resume["epoch"] >= stop_epoch:  # a finished run: nothing to train or write
        history = list(resume["history"])
        return {"output": output, "history": history, "last": history[-1], "config": None,
                "epochs_trained": 0}  # fmt: skip
    own_checkpoint = (output / "checkpoint.pth").resolve()
    resuming_here = resume is not None and Path(args.resume).resolve() == own_checkpoint
    claim = locked_folder(output, "renyi-prune train") if _is_main_process() else contextlib.nullcontext()
    with claim:  # before any data is read: a folder that cannot be used fails the run at once
        _check_output_folder(output, resuming=resuming_here)
        return _train(args, pruning, resume, output, stop_epoch, resuming_here)


def _check_train_options(args: argparse.Namespace) -> Pruning | None:
    """The usage errors found from the options alone; returns the pruning they ask for."""
    if args.pretrained and args.checkpoint is not None:
        raise UsageError("give either --pretrained or --checkpoint, not both")
    pruning = _pruning_from_args(args, training=True)
    if (args.mixup > 0 or args.cutmix > 0) and args.batch_size % 2:
        raise UsageError(
            f"--batch-size {args.batch_size}: Mixup/CutMix need an even batch (or --mixup 0 --cutmix 0)"
        )
    if args.scale[0] > args.scale[1] or not 0 < args.scale[0] <= 1:
        raise UsageError(f"argument --scale: need 0 < MIN <= MAX, got {args.scale}")
    if args.ratio[0] > args.ratio[1]:
        raise UsageError(f"argument --ratio: need MIN <= MAX, got {args.ratio}")
    if args.stop_after_epoch is not None and args.stop_after_epoch > args.epochs:
        raise UsageError(f"--stop-after-epoch {args.stop_after_epoch} is beyond --epochs {args.epochs}")
    _check_model_name(args.model)
    return pruning


def _read_resume(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--resume`` checkpoint (None without it). Without --data / --dataset the run reads the data of the
    checkpoint's run (its folder is stored absolute, so this works from any working directory)."""
    if args.resume is None:
        return None
    resume = _read_checkpoint(args.resume, "--resume")
    if resume is None:
        raise UsageError(f"--resume {args.resume}: not a checkpoint written by renyi-prune train")
    saved = resume["dataset"]
    if args.data is None and args.dataset is None and saved.get("data") is not None:
        args.dataset, args.data = resume.get("args", {}).get("dataset"), Path(saved["data"])
    return resume


def _train(
    args: argparse.Namespace,
    pruning: Pruning | None,
    resume: dict[str, Any] | None,
    output: Path,
    stop_epoch: int,
    resuming_here: bool,
) -> dict[str, Any]:
    """:func:`train` once the options are checked and the output folder is this run's."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import NativeScaler
    from torch.utils.data import DataLoader, DistributedSampler

    dist = _setup_device(args.device)
    device = dist.device
    amp_dtype = _amp_dtype(args.amp, device)
    _seed_everything(args.seed + dist.rank)
    dataset = _dataset_name(args)

    # classes first (the classifier size), then the model (its input size), then the transforms
    splits, classes = _build_datasets(args, dataset, args.data)
    num_classes = args.num_classes or len(classes)
    if num_classes < len(classes):
        raise UsageError(f"--num-classes {num_classes} is less than the dataset's {len(classes)} classes")
    model = _create_model(
        args.model,
        num_classes,
        args.img_size,
        dict(args.model_kwargs),
        pretrained=args.pretrained,
        drop_path=args.drop_path,
        drop=args.drop,
    )
    img_size = _model_img_size(model)
    notes = []
    if args.checkpoint is not None and resume is None:
        notes = _load_weights(model, args.checkpoint, reset_head=True)
    data_cfg = _data_config(args, dataset, model, img_size)
    splits["train"].transform = build_transform(data_cfg, True, **_pick(args, _TRANSFORM_OPTIONS))
    splits["val"].transform = build_transform(data_cfg, False)
    train_set = subset(splits["train"], args.max_train_images)
    val_set = subset(splits["val"], args.max_val_images)

    model.to(device)
    if pruning is not None:  # after .to(): seeded criteria (random) create their generator on the device
        _apply_pruning(pruning, model)
    unwrapped = model
    workers = args.workers if args.workers is not None else _default_workers(device, dist)
    sampler = None
    if dist.enabled:
        sampler = DistributedSampler(
            train_set,
            num_replicas=dist.world_size,
            rank=dist.rank,
            shuffle=True,
            seed=args.seed,
            drop_last=True,
        )
    loader_gen = torch.Generator()
    train_loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        generator=loader_gen,
    )
    if len(train_loader) == 0:
        raise UsageError(
            f"the training set has {len(train_set)} images "
            f"({len(train_set) // dist.world_size} per process), "
            f"fewer than --batch-size {args.batch_size}"
        )
    val_loader = _val_loader(val_set, args.batch_size, workers, device, dist)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    total_batch = args.batch_size * dist.world_size
    lr = args.lr if args.lr is not None else 5e-4 * total_batch / 512
    opt_kwargs: dict[str, Any] = {}
    if args.opt_eps is not None:
        opt_kwargs["eps"] = args.opt_eps
    if args.opt_betas is not None:
        opt_kwargs["betas"] = tuple(args.opt_betas)
    try:
        optimizer = create_optimizer_v2(
            unwrapped,
            opt=args.opt,
            lr=lr,
            weight_decay=args.weight_decay,
            momentum=args.momentum,
            **opt_kwargs,
        )
    except (AssertionError, ValueError, KeyError) as err:
        raise UsageError(f"argument --opt {args.opt!r}: {err}") from None
    sched_kwargs = {"decay_epochs": args.decay_epochs} if args.decay_epochs is not None else {}
    scheduler, _ = create_scheduler_v2(
        optimizer,
        step_on_epochs=False,
        updates_per_epoch=len(train_loader),
        **_pick(args, _SCHEDULER_OPTIONS),
        **sched_kwargs,
    )
    scaler = NativeScaler(device=device.type) if amp_dtype == torch.float16 else None
    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(num_classes=num_classes, **_pick(args, _MIXUP_OPTIONS))
        loss_fn: nn.Module = SoftTargetCrossEntropy()
    elif args.smoothing > 0:
        loss_fn = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()

    model_config = _model_config(args, num_classes, img_size)
    start_epoch, num_updates, history = 0, 0, []
    if resume is not None:
        if resume["model_config"] != model_config:
            raise UsageError(
                f"--resume {args.resume} holds {resume['model_config']}, but the options build {model_config}"
            )
        unwrapped.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler") is not None:
            scaler.load_state_dict(resume["scaler"])
        start_epoch, num_updates, history = resume["epoch"], resume["num_updates"], list(resume["history"])
        _warn_changed_options(resume.get("args", {}), args)
    config = {
        "args": _options(args),
        "lr": lr,
        "total_batch_size": total_batch,
        "dataset": dataset,
        "classes": list(classes),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "data_config": data_cfg.as_dict(),
        "model_config": model_config,
        "pruning": asdict(pruning) if pruning is not None else None,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "none",
        "workers": workers,
        "environment": _environment(device, dist),
    }
    if dist.is_main:
        write_json(output / "config.json", config)
        for note in notes:
            print(f"renyi-prune train: {note}", file=sys.stderr)

    gflops = None
    if dist.is_main:
        gflops = _count_gflops(unwrapped, img_size)
    if resume is not None:
        states = resume["rng"]
        state = states[dist.rank] if len(states) == dist.world_size else None
        if state is None:
            warnings.warn(
                f"--resume: checkpoint has RNG states for {len(states)} processes, this run has "
                f"{dist.world_size}; the random streams restart from --seed",
                stacklevel=2,
            )
        else:
            _set_rng_state(state, unwrapped, device)

    done = start_epoch if resuming_here else 0  # epochs in output/checkpoint.pth
    try:
        for epoch in range(start_epoch, stop_epoch):
            epoch_start = time.perf_counter()
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader_gen.manual_seed(_epoch_seed(args.seed, epoch, dist.rank))
            stats = _train_one_epoch(
                model,
                unwrapped,
                train_loader,
                optimizer,
                scheduler,
                loss_fn,
                epoch=epoch,
                epochs=args.epochs,
                num_updates=num_updates,
                mixup_fn=mixup_fn,
                pruning=pruning,
                device=device,
                amp_dtype=amp_dtype,
                scaler=scaler,
                clip_grad=args.clip_grad,
                clip_mode=args.clip_mode,
                progress=args.progress,
                dist=dist,
            )
            num_updates = stats["num_updates"]
            if scheduler is not None:
                scheduler.step(epoch + 1)
            if pruning is not None and pruning.has_warmup:
                set_keep_rate(unwrapped, pruning.keep_rate)  # evaluate at the target keep rate
            with _preserve_rng(unwrapped):  # validation must not change the training's RNG streams
                ev = evaluate(
                    model,
                    val_loader,
                    device,
                    amp_dtype,
                    progress=args.progress and dist.is_main,
                    desc=f"val {epoch + 1}/{args.epochs}",
                    distributed=dist.enabled,
                )
            record = {
                "epoch": epoch + 1,
                "num_updates": num_updates,
                "train_loss": stats["train_loss"],
                "lr": stats["lr"],
                "top1": ev["top1"],
                "top5": ev["top5"],
                "eval_loss": ev["loss"],
                "keep_rate": pruning.keep_rate if pruning is not None else None,
                "train_keep_rate": stats["train_keep_rate"],
                "train_images_per_s": stats["train_images_per_s"],
                "eval_images_per_s": ev["images_per_s"],
                "gflops": gflops,
                "epoch_time_s": time.perf_counter() - epoch_start,
            }
            history.append(record)
            rng = [_rng_state(unwrapped, device)]
            if dist.enabled:
                import torch.distributed as tdist

                gathered: list[Any] = [None] * dist.world_size
                tdist.all_gather_object(gathered, rng[0])
                rng = gathered
            if dist.is_main:
                checkpoint = {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "num_updates": num_updates,
                    "model": unwrapped.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng,
                    "history": history,
                    "model_config": model_config,
                    "data_config": data_cfg.as_dict(),
                    "dataset": {"name": dataset, "data": _absolute(args.data)},
                    "pruning": asdict(pruning) if pruning is not None else None,
                    "args": _options(args),
                }
                with atomic_open(output / "checkpoint.pth") as fh:
                    torch.save(checkpoint, fh)
                _write_metrics(output / "metrics.jsonl", history)
                print(_format_record(record, args.epochs), flush=True)
            done = epoch + 1
    except (Exception, KeyboardInterrupt) as err:  # say what the output folder holds (the CLI prints it)
        if dist.is_main:
            _add_note(err, _failed_epoch_note(output, done + 1, args.epochs, done))
        raise
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()
    return {"output": output, "history": history, "last": history[-1] if history else None, "config": config,
            "epochs_trained": stop_epoch - start_epoch}  # fmt: skip


def _warn_changed_options(saved: dict[str, Any], args: argparse.Namespace) -> None:
    ignore = {"resume", "stop_after_epoch", "progress", "output", "workers", "device"}
    now = _options(args)
    changed = sorted(k for k in now if k not in ignore and k in saved and saved[k] != now[k])
    if changed:
        warnings.warn(
            "--resume: options differ from the checkpoint's run, so it does not continue identically: "
            + ", ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed),
            stacklevel=3,
        )


def _format_record(r: dict[str, Any], epochs: int) -> str:
    keep = "-" if r["keep_rate"] is None else _fmt_seq(r["keep_rate"])
    gflops = "-" if r["gflops"] is None else f"{r['gflops']:.3f}"
    return (
        f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  lr {r['lr']:.2e}  top1 {r['top1']:.2f}  "
        f"top5 {r['top5']:.2f}  keep {keep}  train {r['train_images_per_s']:.0f} img/s  "
        f"eval {r['eval_images_per_s']:.0f} img/s  {gflops} GFLOPs  {r['epoch_time_s']:.1f} s"
    )


def run_train(args: argparse.Namespace) -> int:
    """``renyi-prune train``: fine-tune (or train) a timm ViT with patch pruning; returns the exit code 0.

    Runs :func:`train`, then prints what it wrote (or, resuming a finished run, that there was nothing to
    train). Errors are raised (see :func:`train`); the CLI turns them into exit codes 1 (a failure) / 2
    (:class:`UsageError` and the other start-up problems).

    Example:
        The first of two epochs of a 2-block ViT of width 8 on 8 random images, stopped after epoch 1:

        >>> import tempfile
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> data = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=8, val_images=4)
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> tiny = "--model-kwargs patch_size=14 embed_dim=8 depth=2 num_heads=1 --img-size 28 --batch-size 4"
        >>> argv = [*tiny.split(), "--data", str(data), "--dataset", "fashion-mnist", "--output", str(out)]
        >>> run_train(parse_train_args([*argv, "--epochs", "2", "--stop-after-epoch", "1", "--no-progress"]))
        ... # doctest: +ELLIPSIS
        epoch 1/2 ...
        wrote .../run/checkpoint.pth, metrics.jsonl, config.json (epoch 1: top1 ...%)
        0
    """
    result = train(args)
    last = result["last"]
    if not _is_main_process():
        return 0
    if result["epochs_trained"] == 0:
        stop = f" (--stop-after-epoch {args.stop_after_epoch})" if args.stop_after_epoch else ""
        print(
            f"nothing to train: {args.resume} already holds epoch {last['epoch']} of --epochs {args.epochs}"
            f"{stop}; no file was written"
        )
    elif last is not None:
        print(
            f"wrote {result['output']}/checkpoint.pth, metrics.jsonl, config.json "
            f"(epoch {last['epoch']}: top1 {last['top1']:.2f}%)"
        )
    return 0


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``renyi-prune eval`` with parsed options (see :func:`add_eval_arguments`).

    The model, input size, normalization, dataset and pruning default to what the checkpoint was trained
    with (for a checkpoint of :func:`train`); options override them.

    Returns:
        ``{"top1", "top5"}`` (percent), ``"loss"`` (mean cross entropy), ``"images"``, ``"images_per_s"``
        (forward passes only, all processes), ``"gflops"`` (GFLOPs of one image at the keep rate used,
        fvcore's convention: one multiply-add = one FLOP), ``"pruning"`` (the configuration used, or None),
        ``"label"``, ``"model"``, ``"model_kwargs"``, ``"img_size"``, ``"dataset"``, ``"checkpoint"``,
        ``"environment"``. With ``--output FILE`` the same is written to FILE as JSON (atomically).

    Raises:
        UsageError: a foreign checkpoint without --model, --model disagreeing with the checkpoint, an
            unknown --model, weights that do not fit the model, a --data folder without the dataset, a
            pruning setting the model does not allow.
        DatasetNotFoundError: the dataset the checkpoint was trained on is missing.

    Example:
        A timm state dict (random weights) on 8 random images, unpruned:

        >>> import tempfile, timm
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> work = Path(tempfile.mkdtemp())
        >>> data = write_fake_fashion_mnist(work, train_images=1, val_images=8)
        >>> vit = timm.create_model("vit_tiny_patch16_224", patch_size=7, embed_dim=16, depth=4, num_heads=2,
        ...                         img_size=28, num_classes=10)
        >>> torch.save(vit.state_dict(), work / "vit.pth")
        >>> r = evaluate_checkpoint(parse_eval_args([
        ...     "--checkpoint", str(work / "vit.pth"), "--model", "vit_tiny_patch16_224", "--model-kwargs",
        ...     "patch_size=7", "embed_dim=16", "depth=4", "num_heads=2", "--img-size", "28",
        ...     "--data", str(data), "--dataset", "fashion-mnist", "--no-progress"]))
        >>> r["images"], r["label"], r["img_size"], 0 <= r["top1"] <= 100, r["gflops"] > 0
        (8, 'unpruned', 28, True, True)
    """
    if args.output is not None:  # before anything is loaded, so that a result is never computed in vain
        check_writable(Path(args.output).parent)
    pruning = _pruning_from_args(args, training=False)
    if args.no_prune and pruning is not None:
        raise UsageError("--no-prune contradicts --keep-rate")
    ckpt = _read_checkpoint(args.checkpoint, "--checkpoint")
    if pruning is None and not args.no_prune and ckpt is not None and ckpt.get("pruning"):
        pruning = Pruning(**{**ckpt["pruning"], "warmup_epochs": 0.0, "start_epoch": 0.0})
    if ckpt is None and args.model is None:
        raise UsageError(f"--checkpoint {args.checkpoint} is not from renyi-prune train: name its --model")
    if ckpt is not None:
        cfg = ckpt["model_config"]
        if args.model is not None and args.model != cfg["model"]:
            raise UsageError(f"--model {args.model} but the checkpoint holds {cfg['model']}")
        name, model_kwargs = cfg["model"], {**cfg["model_kwargs"], **dict(args.model_kwargs)}
        img_size = args.img_size or cfg["img_size"]
        dataset = _dataset_name(args, ckpt["dataset"]["name"])
        data_dir = args.data if args.data is not None or args.dataset is not None else ckpt["dataset"]["data"]
        base_data = ckpt["data_config"]
    else:
        name, model_kwargs, img_size = args.model, dict(args.model_kwargs), args.img_size
        dataset, data_dir, base_data = _dataset_name(args), args.data, None
    _check_model_name(name)

    dist = _setup_device(args.device)
    device = dist.device
    amp_dtype = _amp_dtype(args.amp, device)
    splits, classes = _build_datasets(args, dataset, data_dir, splits=("val",))
    num_classes = args.num_classes or (ckpt["model_config"]["num_classes"] if ckpt else len(classes))
    if num_classes < len(classes):
        raise UsageError(f"the model has {num_classes} classes, the {dataset} dataset {len(classes)}")
    model = _create_model(name, num_classes, img_size, model_kwargs)
    img_size = _model_img_size(model)
    _load_weights(model, args.checkpoint, reset_head=False)
    if base_data is not None and args.img_size is not None:
        base_data = {**base_data, "img_size": img_size}
    data_cfg = _data_config(args, dataset, model, img_size, base=base_data)
    splits["val"].transform = build_transform(data_cfg, False)
    val_set = subset(splits["val"], args.max_val_images)

    model.to(device)
    if pruning is not None:
        _apply_pruning(pruning, model)
    workers = args.workers if args.workers is not None else _default_workers(device, dist)
    loader = _val_loader(val_set, args.batch_size, workers, device, dist)
    result = evaluate(
        model,
        loader,
        device,
        amp_dtype,
        progress=args.progress and dist.is_main,
        desc="eval",
        distributed=dist.enabled,
    )
    result["gflops"] = _count_gflops(model, img_size)
    result.update(
        pruning=asdict(pruning) if pruning is not None else None,
        label=pruning.label() if pruning is not None else "unpruned",
        model=name,
        model_kwargs=model_kwargs,
        img_size=img_size,
        dataset=dataset,
        checkpoint=str(args.checkpoint),
        environment=_environment(device, dist),
    )
    if args.output is not None and dist.is_main:
        write_json(Path(args.output), result)
    return result


def run_eval(args: argparse.Namespace) -> int:
    """``renyi-prune eval``: top-1/top-5, GFLOPs and images/s of a checkpoint, pruned or not; returns 0.

    Prints one line; with ``--output FILE`` also writes the full result (see :func:`evaluate_checkpoint`)
    as JSON. Errors are raised; the CLI turns them into exit codes 1 (a failure) / 2 (:class:`UsageError`).

    Example:
        A 2-block ViT of width 8 (random weights) on 4 random images, with a JSON copy of the result:

        >>> import json, tempfile, timm
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> root = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=1, val_images=4)
        >>> kwargs = {"patch_size": 14, "embed_dim": 8, "depth": 2, "num_heads": 1}
        >>> torch.save(timm.create_model("vit_tiny_patch16_224", img_size=28, **kwargs).state_dict(),
        ...            root / "weights.pth")
        >>> argv = ["--checkpoint", str(root / "weights.pth"), "--model", "vit_tiny_patch16_224",
        ...         "--img-size", "28", "--num-classes", "1000", "--data", str(root), "--dataset",
        ...         "fashion-mnist", "--output", str(root / "eval.json"), "--no-progress", "--model-kwargs"]
        >>> run_eval(parse_eval_args(argv + [f"{k}={v}" for k, v in kwargs.items()]))  # doctest: +ELLIPSIS
        unpruned: top1 ...%  top5 ...%  loss ...  ... GFLOPs  ... img/s  (4 images)
        0
        >>> sorted(json.loads((root / "eval.json").read_text()))[:4]
        ['checkpoint', 'dataset', 'environment', 'gflops']
    """
    r = evaluate_checkpoint(args)
    if _is_main_process():
        print(
            f"{r['label']}: top1 {r['top1']:.2f}%  top5 {r['top5']:.2f}%  loss {r['loss']:.4f}  "
            f"{r['gflops']:.3f} GFLOPs  {r['images_per_s']:.0f} img/s  ({r['images']} images)"
        )
    return 0
