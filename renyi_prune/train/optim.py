"""timm's optimization pieces for a run: :func:`timm.optim.create_optimizer_v2`,
:func:`timm.scheduler.create_scheduler_v2` (stepped every update), :class:`timm.data.Mixup` and the loss
(:mod:`timm.loss`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._argtypes import UsageError
from .config import TrainConfig


def loss_and_mixup(config: TrainConfig, num_classes: int) -> tuple[nn.Module, Any]:
    """:class:`timm.data.Mixup` + soft-target CE when mixing, else label smoothing or plain CE."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if config.mixup > 0 or config.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=config.mixup,
            cutmix_alpha=config.cutmix,
            prob=config.mixup_prob,
            switch_prob=config.mixup_switch_prob,
            mode=config.mixup_mode,
            label_smoothing=config.smoothing,
            num_classes=num_classes,
        )
        return SoftTargetCrossEntropy(), mixup
    if config.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=config.smoothing), None
    return nn.CrossEntropyLoss(), None


def build_optimizer(config: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """:func:`timm.optim.create_optimizer_v2` (weight decay skips biases and norms)."""
    from timm.optim import create_optimizer_v2

    extra: dict[str, Any] = {}
    if config.opt_eps is not None:
        extra["eps"] = config.opt_eps
    if config.opt_betas is not None:
        extra["betas"] = tuple(config.opt_betas)
    try:
        return create_optimizer_v2(
            model, opt=config.opt, lr=lr, weight_decay=config.weight_decay, momentum=config.momentum, **extra
        )
    except (AssertionError, ValueError, KeyError) as err:
        raise UsageError(f"argument --opt {config.opt!r}: {err}") from None


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, updates_per_epoch: int) -> Any:
    """:func:`timm.scheduler.create_scheduler_v2`, stepped every update (None for ``sched="none"``)."""
    from timm.scheduler import create_scheduler_v2

    extra = {"decay_epochs": config.decay_epochs} if config.decay_epochs is not None else {}
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config.sched,
        num_epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        decay_rate=config.decay_rate,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
        **extra,
    )
    return scheduler
