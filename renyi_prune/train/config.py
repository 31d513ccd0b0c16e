"""The configuration of a training run (:class:`TrainConfig`) and of an evaluation (:class:`EvalConfig`).

One field per option of ``renyi-prune train`` / ``renyi-prune eval`` (the field is the option's name with
``_`` for ``-``: ``--max-train-images`` → ``max_train_images``), except the pruning options, which form one
:class:`renyi_prune.PruneConfig` (``prune``; None = no pruning). Scripts build a config and call
:func:`renyi_prune.train.train` / :func:`renyi_prune.train.evaluate_checkpoint` with it; the command line
builds the same config (:func:`renyi_prune.train.parse_train_args`). The fields both share (model, data,
pruning, runtime) are declared once, on their common base class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import jsonable
from ..config import PruneConfig

__all__ = ["DEFAULT_MODEL", "EvalConfig", "TrainConfig"]

DEFAULT_MODEL = "deit_small_patch16_224"
_PATHS = ("data", "checkpoint", "resume", "output")
_TUPLES = ("mean", "std", "scale", "ratio", "opt_betas")


def _normalize(config: Any) -> None:
    """Paths as :class:`~pathlib.Path`, sequences as tuples, ``model_kwargs`` as a dict (pairs allowed)."""
    for name in _PATHS:
        value = getattr(config, name, None)
        if value is not None and not isinstance(value, Path):
            object.__setattr__(config, name, Path(value))
    for name in _TUPLES:
        value = getattr(config, name, None)
        if value is not None:
            object.__setattr__(config, name, tuple(value))
    object.__setattr__(config, "model_kwargs", dict(config.model_kwargs))
    if config.prune is not None and not isinstance(config.prune, PruneConfig):
        raise TypeError(f"prune must be a renyi_prune.PruneConfig or None, got {config.prune!r}")


@dataclass(frozen=True)
class _Config:
    """The fields both configs share (model, data, pruning, runtime) and :meth:`replace`, :meth:`to_dict`,
    :meth:`from_dict`; :class:`TrainConfig` documents the fields."""

    # model (TrainConfig gives ``model`` a default)
    checkpoint: Path | None = None
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    # data
    dataset: str | None = None
    data: Path | None = None
    max_val_images: int | None = None
    img_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    batch_size: int = 256
    workers: int | None = None
    # pruning
    prune: PruneConfig | None = None
    # runtime
    device: str | None = None
    amp: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        _normalize(self)

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``, e.g. ``config.replace(epochs=3)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: paths as absolute strings, tuples as lists, ``prune`` as
        :meth:`PruneConfig.to_dict`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value.resolve())
            elif isinstance(value, PruneConfig):
                value = value.to_dict()
            out[f.name] = jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The config :meth:`to_dict` wrote (unknown keys raise ``TypeError``)."""
        fields = dict(data)
        if fields.get("prune") is not None:
            fields["prune"] = PruneConfig.from_dict(fields["prune"])
        return cls(**fields)


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Everything :func:`renyi_prune.train.train` needs; the defaults are those of ``renyi-prune train``.

    Groups (as in ``renyi-prune train --help``, where each field is documented as an option):

    * data: ``dataset`` (``"fashion-mnist"`` / ``"imagefolder"``; None: imagefolder when ``data`` is
      given), ``data`` (folder), ``max_train_images``, ``max_val_images``, ``img_size`` (px), ``mean``,
      ``std``, ``interpolation``, ``crop_pct``, ``batch_size`` (images per step and process), ``workers``;
    * augmentation (:func:`renyi_prune.data.build_transform`, :class:`timm.data.Mixup`):
      ``train_crop_mode``, ``scale``, ``ratio``, ``hflip``, ``color_jitter``, ``aa``, ``reprob``,
      ``remode``, ``recount``, ``mixup``, ``cutmix``, ``mixup_prob``,
      ``mixup_switch_prob``, ``mixup_mode``, ``smoothing``;
    * model (:func:`timm.create_model`): ``model``, ``model_kwargs``, ``pretrained``, ``checkpoint``,
      ``drop_path``, ``drop``, ``num_classes``;
    * pruning: ``prune`` (a :class:`renyi_prune.PruneConfig`, None = plain fine-tuning) and its keep-rate
      warm-up ``keep_rate_warmup_epochs``, ``keep_rate_start_epoch`` (:func:`renyi_prune.keep_rate_warmup`:
      keep rate 1 for the start epochs, then a half cosine to the target, updated every step);
    * optimization (:func:`timm.optim.create_optimizer_v2`, :func:`timm.scheduler.create_scheduler_v2`):
      ``epochs``, ``opt``, ``lr`` (None: 5e-4 × total batch / 512), ``weight_decay``, ``opt_eps``,
      ``opt_betas``, ``momentum``, ``clip_grad``, ``clip_mode``, ``sched``, ``warmup_epochs``,
      ``warmup_lr``, ``min_lr``, ``decay_epochs``, ``decay_rate``;
    * runtime: ``seed``, ``output`` (folder), ``resume`` (a checkpoint.pth), ``stop_after_epoch``,
      ``device``, ``amp`` (``auto``/``bf16``/``fp16``/``none``), ``progress``.

    Paths become :class:`~pathlib.Path`, sequences tuples, ``model_kwargs`` a dict. Options that do not fit
    together are found by :func:`~renyi_prune.train.train` (``UsageError``).

    Raises:
        TypeError: ``prune`` is not a :class:`renyi_prune.PruneConfig` or None, or an unknown field.

    Example:
        >>> from renyi_prune import PruneConfig
        >>> c = TrainConfig(epochs=3, prune=PruneConfig(keep_rate=0.5), model_kwargs=[("depth", 6)])
        >>> c.epochs, c.batch_size, c.prune.label, c.model_kwargs, c.scale
        (3, 256, 'renyi α=1 r=0.5', {'depth': 6}, (0.08, 1.0))
        >>> TrainConfig.from_dict(c.to_dict()) == c.replace(output=c.output.resolve())
        True
    """

    model: str = DEFAULT_MODEL  # the base's field, with a default for training
    # data (besides the base's)
    max_train_images: int | None = None
    # augmentation (DeiT's defaults, no RandAugment)
    train_crop_mode: str = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.0
    aa: str | None = None
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    smoothing: float = 0.1
    # model (besides the base's)
    pretrained: bool = False
    drop_path: float = 0.1
    drop: float = 0.0
    # pruning: the keep-rate warm-up of ``prune``
    keep_rate_warmup_epochs: float = 0.0
    keep_rate_start_epoch: float = 0.0
    # optimization
    epochs: int = 100
    opt: str = "adamw"
    lr: float | None = None
    weight_decay: float = 0.05
    opt_eps: float | None = None
    opt_betas: tuple[float, float] | None = None
    momentum: float = 0.9
    clip_grad: float | None = None
    clip_mode: str = "norm"
    sched: str = "cosine"
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    decay_epochs: float | None = None
    decay_rate: float = 0.1
    # runtime (besides the base's)
    seed: int = 0
    output: Path = Path("renyi_prune_train")
    resume: Path | None = None
    stop_after_epoch: int | None = None

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The configuration of ``renyi-prune train --preset NAME``
        (:data:`~renyi_prune.train.presets.PRESETS`) with ``overrides`` (field values; ``prune`` replaces the
        preset's pruning as a whole).

        Raises:
            ValueError: an unknown preset.

        Example:
            >>> c = TrainConfig.from_preset("cpu-quick", epochs=1, output="runs/quick")
            >>> c.epochs, c.img_size, c.max_val_images, c.prune.label, str(c.output)
            (1, 28, 2000, 'renyi α=2 r=0.7', 'runs/quick')
        """
        from .presets import preset_fields

        return cls(**{**preset_fields(name), **overrides})

    @property
    def has_keep_rate_warmup(self) -> bool:
        """Whether the training keep rate changes during the run (a warm-up or a delayed start)."""
        return self.prune is not None and (self.keep_rate_warmup_epochs > 0 or self.keep_rate_start_epoch > 0)


@dataclass(frozen=True)
class EvalConfig(_Config):
    """Everything :func:`renyi_prune.train.evaluate_checkpoint` needs (the options of ``renyi-prune eval``).

    ``checkpoint`` is a checkpoint.pth of ``renyi-prune train`` (model, data and pruning default to its
    run's) or a timm/PyTorch state dict with ``model``; it is None when ``model`` is a folder holding a
    ``transformers`` model saved with ``save_pretrained`` (its own weights). ``prune``: the pruning to
    evaluate with (None: the checkpoint's, unless ``no_prune``). ``output``: also write the result as JSON
    to this file. The data, model and runtime fields mean what they mean in :class:`TrainConfig`.

    Raises:
        TypeError: ``prune`` is not a :class:`renyi_prune.PruneConfig` or None, or an unknown field.

    Example:
        >>> c = EvalConfig(checkpoint="run/checkpoint.pth", no_prune=True, batch_size=64)
        >>> c.checkpoint.name, c.no_prune, c.prune, c.model
        ('checkpoint.pth', True, None, None)
    """

    no_prune: bool = False
    output: Path | None = None
