"""The options of ``renyi-prune train`` and ``renyi-prune eval``: one table per argument group (see
:func:`renyi_prune._argtypes.option`); :mod:`renyi_prune.train.cli` turns the parsed options into a
:class:`~renyi_prune.train.config.TrainConfig` / :class:`~renyi_prune.train.config.EvalConfig`.

Each option's ``dest`` is the config field of the same name, except the pruning options (``--keep-rate``,
``--criterion``, ``--alpha``, ``--prune-blocks``, ``--fuse-pruned``, ``--criterion-param``), which make one
:class:`renyi_prune.PruneConfig`. ``--criterion`` offers the registered criteria
(:func:`renyi_prune.available_criteria`).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._argtypes import (
    Option,
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
from .._argtypes import device as device_type
from ..criteria import available_criteria
from ..data import DATASETS
from .config import DEFAULT_MODEL

#: The pruning options (argparse dests) that make the run's :class:`renyi_prune.PruneConfig`.
PRUNE_DESTS = ("keep_rate", "criterion", "alpha", "prune_blocks", "fuse_pruned", "criterion_param")
_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "none")


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
            option(
                "--pretrained",
                "start from timm's pretrained weights (downloads from the Hugging Face hub)",
                action="store_true",
            ),
            option(
                "--checkpoint",
                "start from local weights (a timm/PyTorch state dict, .safetensors, or a "
                "checkpoint.pth of this command; a classifier of another size is re-initialized)",
                existing_file,
                metavar="PATH",
            ),
            option("--drop-path", "stochastic depth rate (default: %(default)s)", probability, 0.1, "P"),
            option(
                "--drop", "dropout rate before the classifier (default: %(default)s)", probability, 0.0, "P"
            ),
        ]
    else:
        weights = [
            option(
                "--checkpoint",
                "weights to evaluate: a checkpoint.pth of `renyi-prune train`, or a "
                "timm/PyTorch state dict / .safetensors with --model (none for a transformers --model "
                "FOLDER)",
                existing_file,
                metavar="PATH",
            ),
        ]
    return [
        option("--model", "timm model name" + (" (default: %(default)s)" if training else ", or a folder "
               "holding a transformers image classifier saved with save_pretrained (ViT, DeiT, DINOv2; its "
               "weights, offline) (default: the checkpoint's; needed for other checkpoints)"),
               default=DEFAULT_MODEL if training else None, metavar="NAME"),
        option("--model-kwargs", "extra timm.create_model arguments, e.g. patch_size=4 embed_dim=192 "
               "num_heads=3", _key_value, [], "KEY=VALUE", nargs="+"),
        *weights,
        option("--num-classes", "classifier size (default: the dataset's number of classes)", positive_int,
               metavar="N"),
    ]  # fmt: skip


def _pruning_options(training: bool) -> list[Option | None]:
    if training:
        schedule = [
            option(
                "--keep-rate-warmup-epochs",
                "lower the keep rate from 1 to --keep-rate along a half "
                "cosine over E epochs (EViT's schedule; updated every step; default: 0 = prune at the "
                "target from the start)",
                nonneg_float,
                0.0,
                "E",
            ),
            option(
                "--keep-rate-start-epoch",
                "epochs at keep rate 1 before the warm-up starts (default: %(default)s)",
                nonneg_float,
                0.0,
                "E",
            ),
        ]
    else:
        schedule = [
            option(
                "--no-prune",
                "evaluate without pruning, even if the checkpoint was trained with it",
                action="store_true",
            ),
        ]
    return [
        option("--keep-rate", "keep rate r in (0, 1] of every pruning block, or one per block", keep_rate,
               metavar="R", nargs="+"),
        option("--criterion", "token-importance criterion (default: renyi)", choices=available_criteria()),
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
            option(
                "--output",
                "folder for config.json, checkpoint.pth, metrics.jsonl (default: %(default)s)",
                output_dir,
                Path("renyi_prune_train"),
                "DIR",
            ),
            option(
                "--resume",
                "continue a run from its checkpoint.pth (pass the same options; without "
                "--data and --dataset it reads the data the run was trained on)",
                existing_file,
                metavar="PATH",
            ),
            option(
                "--stop-after-epoch",
                "end this run after epoch N; the schedule still spans --epochs (for "
                "time-limited jobs: continue with --resume)",
                positive_int,
                metavar="N",
            ),
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


def add_groups(parser: argparse.ArgumentParser, training: bool) -> None:
    """Declare the options of ``renyi-prune train`` (``training``) or ``eval`` on ``parser``, by group."""
    for title, description, options in _option_groups(training):
        add_options(parser.add_argument_group(title, description), options)
