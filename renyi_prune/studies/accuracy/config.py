"""What defines an accuracy study: :class:`Variant`, :class:`StudyConfig`, the named :data:`CONFIGS`, and
the :class:`~renyi_prune.train.TrainConfig` / :class:`~renyi_prune.train.EvalConfig` of each run.

Units: epochs, images (counts), learning rates per step, image sizes in px.

Example:
    >>> cfg = CONFIGS["smoke"]
    >>> [v.label for v in cfg.variants]
    ['renyi α=1', 'renyi α=inf', 'evit', 'evit+fusion', 'random']
    >>> dict(cfg.variants[-1].prune(0.5, seed=3).params)
    {'seed': 3}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import PruneConfig, format_alpha
from ...train import EvalConfig, TrainConfig

__all__ = [
    "ALPHAS", "CONFIGS", "LIGHT_RECIPE", "PAPER_RECIPE", "StudyConfig", "Variant", "base_config",
    "config_from_dict", "eval_config", "finetune_config", "fmt", "num",
]  # fmt: skip


def fmt(x: float) -> str:
    """``x`` as in the study's labels, tables and file names: ``inf`` or the shortest ``%g`` form
    (:func:`renyi_prune.config.format_alpha` with ``style="file"``).

    Example:
        >>> fmt(0.5), fmt(2.0), fmt(math.inf)
        ('0.5', '2', 'inf')
    """
    return format_alpha(x, style="file")


@dataclass(frozen=True)
class Variant:
    """One pruning configuration without its keep rate: a label, a registered criterion, α, fusion.

    Example:
        >>> Variant("renyi α=2", "renyi", alpha=2.0).prune(0.5, seed=0).label
        'renyi α=2 r=0.5'
    """

    label: str
    criterion: str
    alpha: float | None = None
    fuse: bool = False

    def prune(self, keep_rate: float, seed: int) -> PruneConfig:
        """The :class:`PruneConfig` at ``keep_rate``; the random criterion draws from ``seed``."""
        params = {"seed": seed} if self.criterion == "random" else {}
        return PruneConfig(self.criterion, keep_rate=keep_rate, alpha=self.alpha, fuse_pruned=self.fuse,
                           params=params)  # fmt: skip


def _variants(alphas: Sequence[float], others: Sequence[str]) -> tuple[Variant, ...]:
    out = [Variant(f"renyi α={fmt(a)}", "renyi", alpha=a) for a in alphas]
    for name in others:
        prune = PruneConfig.from_name(name)
        out.append(Variant(name, prune.criterion, fuse=prune.fuse_pruned))
    return tuple(out)


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; saved verbatim in ``config.json``. Epochs and warm-ups in epochs,
    image counts (None: all), ``img_size`` in px; the ``*_augment`` dicts are :class:`TrainConfig` fields.

    Example:
        >>> cfg = CONFIGS["smoke"]
        >>> cfg.keep_rates, cfg.seeds, cfg.base_epochs
        ((0.5,), (0, 1), 1)
    """

    name: str
    description: str
    model: str
    model_kwargs: dict[str, Any]
    img_size: int
    batch_size: int
    val_images: int | None
    # base model (from scratch, unpruned)
    base_epochs: int
    base_train_images: int | None
    base_lr: float
    base_warmup_epochs: float
    # fine-tuning with pruning (per variant, keep rate and seed)
    finetune_epochs: int
    finetune_train_images: int | None
    finetune_lr: float
    finetune_warmup_epochs: float
    keep_rate_warmup_epochs: float
    seeds: tuple[int, ...]
    keep_rates: tuple[float, ...]
    variants: tuple[Variant, ...]
    # augmentation/regularization of each phase (TrainConfig fields)
    base_augment: dict[str, Any] = field(default_factory=dict)
    finetune_augment: dict[str, Any] = field(default_factory=dict)
    amp: str = "none"
    workers: int | None = None
    device: str | None = None
    expected_minutes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ALL_OTHERS = ("evit", "evit+fusion", "colln", "headvar", "random")
ALPHAS = (0.5, 1.0, 2.0, 3.0, math.inf)
#: The paper's fine-tuning augmentations with DeiT's strengths (RandomResizedCrop, flip, Mixup 0.8,
#: CutMix 1.0, RandomErasing 0.25, label smoothing 0.1, drop path 0.1), crop area 0.8-1 for 28 px images.
PAPER_RECIPE = {
    "scale": (0.8, 1.0), "hflip": 0.5, "mixup": 0.8, "cutmix": 1.0, "reprob": 0.25, "smoothing": 0.1,
    "drop_path": 0.1, "weight_decay": 0.05,
}  # fmt: skip
#: A light recipe for a from-scratch base that must learn in 2 epochs (crop + flip + smoothing only).
LIGHT_RECIPE = {
    "scale": (0.8, 1.0), "hflip": 0.5, "mixup": 0.0, "cutmix": 0.0, "reprob": 0.0, "smoothing": 0.1,
    "drop_path": 0.0, "weight_decay": 0.05,
}  # fmt: skip

#: The studies side by side: ``field: (cpu-vit12-d64, gpu-vit12-d192, smoke)`` of :class:`StudyConfig`.
_CONFIG_NAMES = ("cpu-vit12-d64", "gpu-vit12-d192", "smoke")
_CONFIG_TABLE: dict[str, tuple[Any, Any, Any]] = {
    "description": (
        "CPU-sized: a ViT of depth 12, width 64, 4 heads of 16, MLP ratio 2, on 28 px images in patches of 4 "
        "px (49 patches + CLS), trained from scratch on Fashion-MNIST for 2 epochs (60,000 images, light "
        "augmentation); each fine-tune: 1 epoch on 2,560 images with the paper's augmentations; evaluation "
        "on 2,000 test images",
        "GPU-sized: a ViT-Ti-shaped model (depth 12, width 192, 3 heads of 64, MLP ratio 4) on 28 px images "
        "in patches of 4 px, trained from scratch on Fashion-MNIST for 60 epochs with the paper's "
        "augmentations; each fine-tune: 5 epochs on the 60,000 training images with a 1-epoch keep-rate "
        "warm-up; evaluation on the 10,000 test images; bf16 autocast",
        "smoke test only (numbers mean nothing): depth 12, width 32, 2 heads of 16, patch 7, 512 training "
        "images, 1 epoch",
    ),
    "model": ("vit_tiny_patch16_224",) * 3,
    "model_kwargs": (
        {"patch_size": 4, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 2.0},
        {"patch_size": 4},
        {"patch_size": 7, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 1.0},
    ),
    "img_size": (28, 28, 28),
    "batch_size": (128, 256, 64),
    "val_images": (2000, None, 128),
    "base_epochs": (2, 60, 1),
    "base_train_images": (None, None, 512),
    "base_lr": (2e-3, 1e-3, 1e-3),
    "base_warmup_epochs": (0.2, 5.0, 0.0),
    "finetune_epochs": (1, 5, 1),
    "finetune_train_images": (2560, None, 128),
    "finetune_lr": (2e-4, 1e-4, 1e-4),
    "finetune_warmup_epochs": (0.0, 0.5, 0.0),
    "keep_rate_warmup_epochs": (0.0, 1.0, 0.5),
    "seeds": ((0, 1), (0, 1, 2), (0, 1)),
    "keep_rates": ((0.9, 0.7, 0.5, 0.3), (0.9, 0.7, 0.5, 0.3), (0.5,)),
    "variants": (
        _variants(ALPHAS, ALL_OTHERS),
        _variants(ALPHAS, ALL_OTHERS),
        _variants((1.0, math.inf), ("evit", "evit+fusion", "random")),
    ),
    "base_augment": (LIGHT_RECIPE, PAPER_RECIPE, LIGHT_RECIPE),
    "finetune_augment": (PAPER_RECIPE,) * 3,
    "amp": ("none", "bf16", "none"),
    "workers": (None, 8, None),
    "expected_minutes": (
        "minutes on a 2-core CPU (the measured wall time is in environment.json)",
        "not measured yet; about 40M training images pass through PIL transforms, which bound the speed: use "
        "many loader workers",
        "under a minute",
    ),
}
CONFIGS: dict[str, StudyConfig] = {
    name: StudyConfig(name=name, **{field: values[i] for field, values in _CONFIG_TABLE.items()})
    for i, name in enumerate(_CONFIG_NAMES)
}


def _shared(cfg: StudyConfig) -> dict[str, Any]:
    """The settings every run of the study shares (TrainConfig / EvalConfig fields)."""
    return {"batch_size": cfg.batch_size, "amp": cfg.amp, "progress": False, "max_val_images": cfg.val_images,
            "workers": cfg.workers, "device": cfg.device}  # fmt: skip


def _model(cfg: StudyConfig) -> dict[str, Any]:
    return {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs), "img_size": cfg.img_size}


def base_config(cfg: StudyConfig, output: Path) -> TrainConfig:
    """The training configuration of the base model (from scratch, unpruned, seed 0), written to ``output``.

    Example:
        >>> c = base_config(CONFIGS["smoke"], Path("base"))
        >>> c.epochs, c.seed, c.max_train_images, c.prune
        (1, 0, 512, None)
    """
    return TrainConfig(**_model(cfg), **_shared(cfg), **cfg.base_augment, epochs=cfg.base_epochs,
                       lr=cfg.base_lr, warmup_epochs=cfg.base_warmup_epochs, seed=0, output=output,
                       max_train_images=cfg.base_train_images)  # fmt: skip


def finetune_config(
    cfg: StudyConfig,
    base_ckpt: Path,
    variant: Variant | None,
    keep_rate: float | None,
    seed: int,
    output: Path,
) -> TrainConfig:
    """One fine-tuning run from the base model (``variant`` None: the unpruned reference).

    Example:
        >>> cfg = CONFIGS["smoke"]
        >>> c = finetune_config(cfg, Path("base.pth"), cfg.variants[0], 0.5, 1, Path("run"))
        >>> c.prune.label, c.seed, c.checkpoint.name
        ('renyi α=1 r=0.5', 1, 'base.pth')
    """
    prune = variant.prune(keep_rate, seed) if variant is not None else None
    warmup = cfg.keep_rate_warmup_epochs if prune is not None else 0.0
    return TrainConfig(**_model(cfg), **_shared(cfg), **cfg.finetune_augment, checkpoint=base_ckpt,
                       epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, min_lr=cfg.finetune_lr / 10,
                       warmup_epochs=cfg.finetune_warmup_epochs, seed=seed, output=output,
                       max_train_images=cfg.finetune_train_images, prune=prune,
                       keep_rate_warmup_epochs=warmup)  # fmt: skip


def eval_config(cfg: StudyConfig, ckpt: Path, variant: Variant | None, keep_rate: float | None) -> EvalConfig:
    """The evaluation of the base model pruned without fine-tuning (``variant`` None: unpruned).

    Example:
        >>> c = eval_config(CONFIGS["smoke"], Path("base.pth"), None, None)
        >>> c.prune, c.no_prune
        (None, True)
    """
    prune = variant.prune(keep_rate, 0) if variant is not None else None
    return EvalConfig(ckpt, **_shared(cfg), prune=prune, no_prune=prune is None)


def config_from_dict(d: dict[str, Any]) -> StudyConfig:
    """The :class:`StudyConfig` that ``config.json`` holds (also one written before the study called
    ``train`` directly: variants with their ``options``, augmentations as command-line options).

    Raises:
        TypeError: an unknown or missing field.

    Example:
        >>> from dataclasses import asdict
        >>> config_from_dict(asdict(CONFIGS["smoke"])) == CONFIGS["smoke"]
        True
    """
    d = dict(d)
    d["variants"] = tuple(
        Variant(**{k: v for k, v in v.items() if k != "options"} | {"alpha": num(v["alpha"])})
        for v in d["variants"]
    )
    for key in ("seeds", "keep_rates"):
        d[key] = tuple(d[key])
    for key in ("base_augment", "finetune_augment"):
        d[key] = _augment_from_argv(d[key]) if isinstance(d[key], list) else dict(d[key])
    return StudyConfig(**d)


def _augment_from_argv(argv: list[str]) -> dict[str, Any]:
    """TrainConfig fields of ``renyi-prune train`` options (the augmentations of an older config.json)."""
    from ...train import parse_train_args

    config = parse_train_args(argv)
    dests = [flag[2:].replace("-", "_") for flag in argv if flag.startswith("--")]
    return {dest: getattr(config, dest) for dest in dests}


def num(text: Any) -> Any:
    """A number read back from CSV/JSON text: ``""``/None → None, ``"inf"`` → ∞, numbers unchanged.

    Raises:
        ValueError: ``text`` is not a number.

    Example:
        >>> num(""), num("inf"), num("0.25"), num(3)
        (None, inf, 0.25, 3)
    """
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return text
    return math.inf if text == "inf" else float(text)
