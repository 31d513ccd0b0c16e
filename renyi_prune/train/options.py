"""The options of ``renyi-prune train`` (:func:`add_train_arguments`) and ``renyi-prune eval``
(:func:`add_eval_arguments`), declared on argparse argument groups; :mod:`renyi_prune.train.cli` turns the
parsed options into a :class:`~renyi_prune.train.config.TrainConfig` /
:class:`~renyi_prune.train.config.EvalConfig`.

Each option's ``dest`` is the config field of the same name, except the pruning options (``--keep-rate``,
``--criterion``, ``--alpha``, ``--prune-blocks``, ``--fuse-pruned``, ``--criterion-param``), which make one
:class:`renyi_prune.PruneConfig`. ``--criterion`` offers the registered criteria
(:func:`renyi_prune.available_criteria`).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

from .._argtypes import (
    alpha,
    existing_dir,
    existing_file,
    fraction,
    keep_rate,
    nonneg_float,
    nonneg_int,
    number,
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
from .presets import PRESETS

__all__ = ["PRUNE_DESTS", "add_eval_arguments", "add_train_arguments", "record_given_options"]

#: The pruning options (argparse dests) that make the run's :class:`renyi_prune.PruneConfig`.
PRUNE_DESTS = ("keep_rate", "criterion", "alpha", "prune_blocks", "fuse_pruned", "criterion_param")
_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "none")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``renyi-prune train`` on ``parser`` (see :func:`renyi_prune.train.run_train`).

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
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="start from a named configuration; options given override its values. "
                        "cpu-quick: a small ViT trained from scratch with Rényi pruning (keep rate 0.7) "
                        "on Fashion-MNIST in a few minutes on a 2-core CPU")  # fmt: skip
    _add_data_arguments(parser.add_argument_group("data"), training=True)
    _add_augmentation_arguments(parser.add_argument_group("augmentation (DeiT's defaults, no RandAugment)"))
    _add_model_arguments(parser.add_argument_group("model"), training=True)
    pruning = "Without --keep-rate the model is not pruned (plain fine-tuning)."
    _add_pruning_arguments(parser.add_argument_group("pruning", pruning), training=True)
    optimization = "optimization (timm create_optimizer_v2 / create_scheduler_v2)"
    _add_optimization_arguments(parser.add_argument_group(optimization))
    _add_runtime_arguments(parser.add_argument_group("runtime"), training=True)
    record_given_options(parser)


def record_given_options(parser: argparse.ArgumentParser) -> None:
    """Make every option of ``parser`` add its dest to the set ``given_options`` of the parsed namespace
    when it is given on the command line (what :func:`renyi_prune.train.presets.apply_preset` leaves
    alone).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--epochs", type=int, default=100)
        >>> record_given_options(parser)
        >>> sorted(parser.parse_args(["--epochs", "3"]).given_options), parser.parse_args([]).given_options
        (['epochs'], None)
    """
    parser.set_defaults(given_options=None)
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            action.__class__ = _recording(type(action))


def _recording(cls: type) -> type:
    """``cls`` (an argparse action class) that also records its dest in ``namespace.given_options``."""
    if getattr(cls, "records_given", False):
        return cls

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
        given = getattr(namespace, "given_options", None) or set()
        namespace.given_options = given | {self.dest}
        cls.__call__(self, parser, namespace, values, option_string)

    return type(cls.__name__, (cls,), {"__call__": __call__, "records_given": True})


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``renyi-prune eval`` on ``parser`` (see :func:`renyi_prune.train.run_eval`).

    Groups: model, data, pruning, runtime (``renyi-prune eval --help``).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_eval_arguments(parser)
        >>> args = parser.parse_args(["--checkpoint", __file__, "--keep-rate", "0.5", "0.4", "0.3"])
        >>> args.keep_rate, args.no_prune, args.output
        ([0.5, 0.4, 0.3], False, None)
    """
    _add_model_arguments(parser.add_argument_group("model"), training=False)
    _add_data_arguments(parser.add_argument_group("data"), training=False)
    pruning = "Without --keep-rate the model is not pruned; eval then uses the checkpoint's pruning, if any."
    _add_pruning_arguments(parser.add_argument_group("pruning", pruning), training=False)
    _add_runtime_arguments(parser.add_argument_group("runtime"), training=False)


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, VALUE read as a Python literal (number, bool, None, tuple, string) or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


# fmt: off
def _add_data_arguments(group: argparse._ArgumentGroup, training: bool) -> None:
    group.add_argument("--dataset", choices=DATASETS,
                       help="fashion-mnist (offline, from the Debian package dataset-fashion-mnist or "
                       "$RENYI_PRUNE_FASHION_MNIST) or imagefolder (--data DIR with DIR/train and DIR/val); "
                       "default: imagefolder when --data is given, else fashion-mnist"
                       + ("" if training else " (or what the checkpoint was trained on)"))
    group.add_argument("--data", type=existing_dir, metavar="DIR",
                       help="ImageFolder root (DIR/train/<class>/..., DIR/val/<class>/...), or with "
                       "--dataset fashion-mnist the folder of its IDX files")
    if training:
        group.add_argument("--max-train-images", type=positive_int, metavar="N",
                           help="train on a fixed random subset of N images (default: all)")
    group.add_argument("--max-val-images", type=positive_int, metavar="N",
                       help="validate on a fixed random subset of N images (default: all)")
    group.add_argument("--img-size", type=positive_int, metavar="PX",
                       help="input resolution, a multiple of the patch size (default: the model's"
                       + (")" if training else ", or the checkpoint's)"))
    group.add_argument("--mean", type=number, nargs=3, metavar="M",
                       help="normalization mean (default: the dataset's for fashion-mnist, else the model's)")
    group.add_argument("--std", type=positive_float, nargs=3, metavar="S",
                       help="normalization std (default: as --mean)")
    group.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest"),
                       help="resize interpolation (default: bicubic)")
    group.add_argument("--crop-pct", type=fraction, metavar="F",
                       help="eval center-crop fraction in (0, 1] (default: 1.0 for fashion-mnist, else the "
                       "model's)")
    group.add_argument("--batch-size", type=positive_int, default=256, metavar="B",
                       help="images per step and process (default: %(default)s; the paper's total batch is "
                       "256)")
    group.add_argument("--workers", type=nonneg_int, metavar="N",
                       help="data-loading processes per training process (default: 0 on CPU, where the "
                       "model uses every core, else min(8, cores per process))")


def _add_augmentation_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--train-crop-mode", default="rrc", choices=("rrc", "rkrc", "rkrr"),
                       help="rrc: RandomResizedCrop (DeiT); rkrr: random-scale resize + RandomCrop (default: "
                       "%(default)s)")
    group.add_argument("--scale", type=number, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                       help="crop area range (default: 0.08 1.0)")
    group.add_argument("--ratio", type=positive_float, nargs=2, default=(3 / 4, 4 / 3),
                       metavar=("MIN", "MAX"), help="crop aspect ratio range (default: 3/4 4/3)")
    group.add_argument("--hflip", type=probability, default=0.5, metavar="P",
                       help="horizontal flip probability (default: %(default)s)")
    group.add_argument("--color-jitter", type=nonneg_float, default=0.0, metavar="F",
                       help="color jitter strength, 0 = off (default: %(default)s)")
    group.add_argument("--aa", metavar="POLICY",
                       help="timm RandAugment/AutoAugment policy, e.g. rand-m9-mstd0.5-inc1 (default: none)")
    group.add_argument("--reprob", type=probability, default=0.25, metavar="P",
                       help="RandomErasing probability (default: %(default)s)")
    group.add_argument("--remode", default="pixel", choices=("pixel", "rand", "const"),
                       help="RandomErasing fill (default: %(default)s)")
    group.add_argument("--recount", type=positive_int, default=1, metavar="N",
                       help="RandomErasing regions (default: %(default)s)")
    group.add_argument("--mixup", type=nonneg_float, default=0.8, metavar="ALPHA",
                       help="Mixup alpha, 0 = off (default: %(default)s)")
    group.add_argument("--cutmix", type=nonneg_float, default=1.0, metavar="ALPHA",
                       help="CutMix alpha, 0 = off (default: %(default)s)")
    group.add_argument("--mixup-prob", type=probability, default=1.0, metavar="P",
                       help="probability of mixing a batch (default: %(default)s)")
    group.add_argument("--mixup-switch-prob", type=probability, default=0.5, metavar="P",
                       help="probability of CutMix instead of Mixup when both are on (default: %(default)s)")
    group.add_argument("--mixup-mode", default="batch", choices=("batch", "pair", "elem"),
                       help="mix per batch, pair or element (default: %(default)s)")
    group.add_argument("--smoothing", type=probability, default=0.1, metavar="EPS",
                       help="label smoothing (default: %(default)s)")


def _add_model_arguments(group: argparse._ArgumentGroup, training: bool) -> None:
    if training:
        group.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME",
                           help="timm model name (default: %(default)s)")
    else:
        group.add_argument("--model", metavar="NAME",
                           help="timm model name, or a folder holding a transformers image classifier saved "
                           "with save_pretrained (ViT, DeiT, DINOv2; its weights, offline) (default: the "
                           "checkpoint's; needed for other checkpoints)")
    group.add_argument("--model-kwargs", type=_key_value, nargs="+", default=[], metavar="KEY=VALUE",
                       help="extra timm.create_model arguments, e.g. patch_size=4 embed_dim=192 num_heads=3")
    if training:
        group.add_argument("--pretrained", action="store_true",
                           help="start from timm's pretrained weights (downloads from the Hugging Face hub)")
        group.add_argument("--checkpoint", type=existing_file, metavar="PATH",
                           help="start from local weights (a timm/PyTorch state dict, .safetensors, or a "
                           "checkpoint.pth of this command; a classifier of another size is re-initialized)")
        group.add_argument("--drop-path", type=probability, default=0.1, metavar="P",
                           help="stochastic depth rate (default: %(default)s)")
        group.add_argument("--drop", type=probability, default=0.0, metavar="P",
                           help="dropout rate before the classifier (default: %(default)s)")
    else:
        group.add_argument("--checkpoint", type=existing_file, metavar="PATH",
                           help="weights to evaluate: a checkpoint.pth of `renyi-prune train`, or a "
                           "timm/PyTorch state dict / .safetensors with --model (none for a transformers "
                           "--model FOLDER)")
    group.add_argument("--num-classes", type=positive_int, metavar="N",
                       help="classifier size (default: the dataset's number of classes)")


def _add_pruning_arguments(group: argparse._ArgumentGroup, training: bool) -> None:
    group.add_argument("--keep-rate", type=keep_rate, nargs="+", metavar="R",
                       help="keep rate r in (0, 1] of every pruning block, or one per block")
    group.add_argument("--criterion", choices=available_criteria(),
                       help="token-importance criterion (default: renyi)")
    group.add_argument("--alpha", type=alpha, nargs="+", metavar="A",
                       help="Rényi order(s) for --criterion renyi, 'inf' allowed, one or one per block "
                       "(default: 1)")
    group.add_argument("--prune-blocks", type=nonneg_int, nargs="+", metavar="I",
                       help="0-based pruning block indices (default: 3 6 9 = the paper's blocks 4, 7, 10)")
    group.add_argument("--fuse-pruned", action="store_true",
                       help="merge the pruned patches into one token (EViT's inattentive-token fusion)")
    group.add_argument("--criterion-param", type=_key_value, nargs="+", default=[], metavar="KEY=VALUE",
                       help="criterion parameters, e.g. order=3 (colln), source=column (headvar), seed=1 "
                       "(random)")
    if training:
        group.add_argument("--keep-rate-warmup-epochs", type=nonneg_float, default=0.0, metavar="E",
                           help="lower the keep rate from 1 to --keep-rate along a half cosine over E epochs "
                           "(EViT's schedule; updated every step; default: 0 = prune at the target from the "
                           "start)")
        group.add_argument("--keep-rate-start-epoch", type=nonneg_float, default=0.0, metavar="E",
                           help="epochs at keep rate 1 before the warm-up starts (default: %(default)s)")
    else:
        group.add_argument("--no-prune", action="store_true",
                           help="evaluate without pruning, even if the checkpoint was trained with it")


def _add_optimization_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--epochs", type=positive_int, default=100, metavar="N",
                       help="epochs (default: %(default)s, the paper's)")
    group.add_argument("--opt", default="adamw", metavar="NAME",
                       help="timm optimizer name (default: %(default)s)")
    group.add_argument("--lr", type=nonneg_float, metavar="LR",
                       help="peak learning rate (default: DeiT's rule 5e-4 x total batch / 512)")
    group.add_argument("--weight-decay", type=nonneg_float, default=0.05, metavar="WD",
                       help="weight decay, not applied to biases and norms (default: %(default)s)")
    group.add_argument("--opt-eps", type=positive_float, metavar="EPS",
                       help="optimizer epsilon (default: timm's)")
    group.add_argument("--opt-betas", type=probability, nargs=2, metavar="B",
                       help="Adam betas (default: timm's)")
    group.add_argument("--momentum", type=nonneg_float, default=0.9, metavar="M",
                       help="SGD momentum (default: %(default)s)")
    group.add_argument("--clip-grad", type=nonneg_float, metavar="NORM",
                       help="clip gradients to this norm (or value, see --clip-mode; default: no clipping)")
    group.add_argument("--clip-mode", default="norm", choices=("norm", "value", "agc"),
                       help="gradient clipping mode (default: %(default)s)")
    group.add_argument("--sched", default="cosine", choices=_SCHEDULERS,
                       help="lr schedule (default: %(default)s)")
    group.add_argument("--warmup-epochs", type=nonneg_float, default=5.0, metavar="E",
                       help="linear lr warm-up, epochs (default: %(default)s)")
    group.add_argument("--warmup-lr", type=nonneg_float, default=1e-6, metavar="LR",
                       help="lr at the start of the warm-up (default: %(default)s)")
    group.add_argument("--min-lr", type=nonneg_float, default=1e-5, metavar="LR",
                       help="lr at the end of the cosine (default: %(default)s)")
    group.add_argument("--decay-epochs", type=nonneg_float, metavar="E", help="step schedule interval")
    group.add_argument("--decay-rate", type=nonneg_float, default=0.1, metavar="F",
                       help="step decay factor (default: 0.1)")


def _add_runtime_arguments(group: argparse._ArgumentGroup, training: bool) -> None:
    group.add_argument("--device", type=device_type,
                       help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu; under "
                       "torchrun: cuda:$LOCAL_RANK)")
    group.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "none"),
                       help="mixed precision: torch.autocast in bf16, or fp16 with a gradient scaler "
                       "(default: auto = bf16 on a CUDA device that supports it, else none)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    if not training:
        group.add_argument("--output", type=output_file, metavar="FILE",
                           help="also write the result as JSON to FILE")
        return
    group.add_argument("--seed", type=nonneg_int, default=0, metavar="N",
                       help="random seed (default: %(default)s)")
    group.add_argument("--output", type=output_dir, default=Path("renyi_prune_train"), metavar="DIR",
                       help="folder for config.json, checkpoint.pth, metrics.jsonl (default: %(default)s)")
    group.add_argument("--resume", type=existing_file, metavar="PATH",
                       help="continue a run from its checkpoint.pth (pass the same options; without --data "
                       "and --dataset it reads the data the run was trained on)")
    group.add_argument("--stop-after-epoch", type=positive_int, metavar="N",
                       help="end this run after epoch N; the schedule still spans --epochs (for time-limited "
                       "jobs: continue with --resume)")
# fmt: on
