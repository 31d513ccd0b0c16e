"""Named settings of ``renyi-prune train --preset NAME`` (:data:`PRESETS`): each is a dict of
:class:`~renyi_prune.train.TrainConfig` field values; options given on the command line override them
(:func:`apply_preset`), and :meth:`TrainConfig.from_preset` builds the same configuration from Python.

``cpu-quick``: a small ViT trained from scratch with Rényi pruning on Fashion-MNIST in a few minutes on a
2-core CPU (the numbers measured with it are in the docstring of :data:`CPU_QUICK` and in the README).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..config import PruneConfig

__all__ = ["CPU_QUICK", "PRESETS", "apply_preset", "preset_fields"]

#: ``--preset cpu-quick``: the accuracy study's CPU model (``vit_tiny_patch16_224`` with depth 12, width
#: 64, 4 heads of 16, MLP ratio 2, 28 px images in patches of 4 px: 49 patches + CLS) trained from scratch
#: on 15,000 Fashion-MNIST training images for 3 epochs (batch 128, lr 2e-3 after a 0.5-epoch warm-up,
#: cosine; light augmentation: crop area 0.8-1, flips, label smoothing 0.1; no Mixup, CutMix, RandomErasing
#: or drop path), pruned by Rényi entropy (α = 2, keep rate 0.7 at blocks 3, 6, 9 0-based) from the first
#: step, validated on 2,000 test images after each epoch. Measured on a 2-core CPU (torch threads 2):
#: 1 min 20 s wall on an idle machine (load average 0.60 at the start), 4 min 34 s and 7 min 14 s with
#: other jobs on the cores; top-1 67.05 % after 3 epochs (49.6 %, 62.4 % after epochs 1, 2).
CPU_QUICK: Mapping[str, Any] = MappingProxyType({
    "model": "vit_tiny_patch16_224",
    "model_kwargs": {"patch_size": 4, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 2.0},
    "img_size": 28,
    "dataset": "fashion-mnist",
    "max_train_images": 15_000,
    "max_val_images": 2_000,
    "batch_size": 128,
    "scale": (0.8, 1.0),
    "mixup": 0.0,
    "cutmix": 0.0,
    "reprob": 0.0,
    "smoothing": 0.1,
    "drop_path": 0.0,
    "prune": PruneConfig("renyi", keep_rate=0.7, alpha=2.0),
    "epochs": 3,
    "lr": 2e-3,
    "warmup_epochs": 0.5,
})  # fmt: skip

#: The presets of ``renyi-prune train --preset``, by name.
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"cpu-quick": CPU_QUICK})


def preset_fields(name: str) -> dict[str, Any]:
    """A copy of the :class:`~renyi_prune.train.TrainConfig` field values of preset ``name``.

    Raises:
        ValueError: an unknown preset (the message lists the presets).

    Example:
        >>> fields = preset_fields("cpu-quick")
        >>> fields["epochs"], fields["img_size"], fields["prune"].label
        (3, 28, 'renyi α=2 r=0.7')
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return {key: dict(value) if isinstance(value, dict) else value for key, value in PRESETS[name].items()}


def _option_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's values as ``renyi-prune train`` option values (argparse dests): ``prune`` becomes
    ``keep_rate`` / ``criterion`` / ``alpha`` / ``prune_blocks`` / ``fuse_pruned`` / ``criterion_param``,
    ``model_kwargs`` (KEY, VALUE) pairs."""
    values = {k: v for k, v in fields.items() if k != "prune"}
    if "model_kwargs" in values:
        values["model_kwargs"] = list(values["model_kwargs"].items())
    prune = fields.get("prune")
    if prune is not None:
        as_list = lambda x: list(x) if isinstance(x, tuple) else [x]  # noqa: E731
        values.update(
            keep_rate=as_list(prune.keep_rate),
            criterion=prune.criterion,
            alpha=None if prune.alpha is None else as_list(prune.alpha),
            prune_blocks=list(prune.prune_blocks),
            fuse_pruned=prune.fuse_pruned,
            criterion_param=list(prune.params.items()),
        )
    return values


#: option given on the command line → the preset values (argparse dests) that belong to it and are dropped.
_TIED = {"criterion": ("alpha", "criterion_param"), "data": ("dataset",), "model": ("model_kwargs",)}


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` with the values of its ``--preset`` (if any) for every option not given on the
    command line.

    ``args.given_options`` (set while parsing, see :mod:`renyi_prune.train.options`) names the options
    given. Some preset values belong to another option and are left out when that option is given: the
    preset's α and criterion parameters with ``--criterion``, its ``--dataset`` with ``--data``, its
    ``--model-kwargs`` with ``--model`` (:data:`_TIED`).

    Example:
        >>> args = argparse.Namespace(preset="cpu-quick", given_options={"epochs"}, epochs=1, alpha=None)
        >>> args = apply_preset(args)
        >>> args.epochs, args.img_size, args.keep_rate, args.alpha
        (1, 28, [0.7], [2.0])
    """
    name = getattr(args, "preset", None)
    if name is None:
        return args
    args = argparse.Namespace(**vars(args))
    given = set(getattr(args, "given_options", None) or ())
    values = _option_values(preset_fields(name))
    for option, tied in _TIED.items():
        if option in given:
            for dest in tied:
                values.pop(dest, None)
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)
    return args
