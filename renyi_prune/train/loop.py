"""One training epoch and one evaluation pass, on timm's pieces: :class:`timm.utils.AverageMeter`,
:func:`timm.utils.accuracy`, :class:`timm.utils.NativeScaler` / :func:`timm.utils.dispatch_clip_grad`, and
:func:`renyi_prune.keep_rate_warmup` + :func:`renyi_prune.set_keep_rate` every step during a warm-up."""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import PruneConfig
from ..pruning import preserved_rng, set_keep_rate
from ..schedule import keep_rate_warmup
from .runtime import Runtime, autocast, sync

__all__ = ["evaluate"]


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False)


def _all_reduce(values: torch.Tensor, runtime: Runtime | None) -> torch.Tensor:
    """Sum ``values`` (float64, CPU) over the process group (unchanged outside ``torchrun``)."""
    if runtime is None or not runtime.distributed:
        return values
    import torch.distributed as dist

    values = values.to(runtime.device)
    dist.all_reduce(values)
    return values.cpu()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "eval",
    runtime: Runtime | None = None,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy, cross entropy and throughput of ``model`` on ``loader``.

    Args:
        model: a classifier (patched or not) giving logits (B, classes); put in eval mode.
        loader: a sized iterable of ``(images (B, 3, S, S) float, labels (B,) int64)``, e.g. a DataLoader.
        device, amp_dtype: where and in which autocast dtype (None: fp32) to run.
        progress, desc: a tqdm bar on stderr and its label.
        runtime: under ``torchrun``, sum the counts over the process group (each rank evaluated its shard).

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
    from timm.utils import AverageMeter

    model.eval()
    meters = (AverageMeter(), AverageMeter(), AverageMeter())  # top-1, top-5, loss
    forward_s = 0.0
    with _progress(len(loader), desc, progress) as bar:
        for images, target in loader:
            forward_s += _eval_batch(model, images, target, device, amp_dtype, meters)
            bar.update()
    return _eval_totals(meters, forward_s, runtime)


def _eval_batch(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, device: torch.device,
    amp_dtype: torch.dtype | None, meters: tuple[Any, Any, Any],
) -> float:  # fmt: skip
    """Evaluate one batch into the (top-1, top-5, loss) ``meters``; returns the forward's seconds
    (device-synchronized)."""
    from timm.utils import accuracy

    images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
    sync(device)
    start = time.perf_counter()
    with autocast(device, amp_dtype):
        logits = model(images)
    sync(device)
    seconds = time.perf_counter() - start
    logits, n = logits.float(), len(target)
    acc1, acc5 = accuracy(logits, target, topk=(1, min(5, logits.shape[1])))
    top1, top5, loss = meters
    top1.update(acc1.item(), n)
    top5.update(acc5.item(), n)
    loss.update(F.cross_entropy(logits, target).item(), n)
    return seconds


def _eval_totals(meters: tuple[Any, Any, Any], forward_s: float, runtime: Runtime | None) -> dict[str, float]:
    """:func:`evaluate`'s result from its meters, summed over the process group under ``torchrun``."""
    top1, top5, loss = meters
    rate = top1.count / forward_s if forward_s > 0 else 0.0
    sums = torch.tensor([top1.sum / 100, top5.sum / 100, loss.sum, top1.count, rate], dtype=torch.float64)
    correct1, correct5, loss_sum, count, rate = _all_reduce(sums, runtime).tolist()
    n = max(count, 1.0)
    return {
        "top1": 100.0 * round(correct1) / n,
        "top5": 100.0 * round(correct5) / n,
        "loss": loss_sum / n,
        "images": int(count),
        "images_per_s": rate,
    }


@contextlib.contextmanager
def preserve_rng(model: nn.Module) -> Iterator[None]:
    """Run a side computation (validation) without consuming any RNG the training uses: torch's and the
    pruning criteria's (:func:`renyi_prune.pruning.preserved_rng`), Python's and NumPy's."""
    with preserved_rng(model):
        py, npy = random.getstate(), np.random.get_state()
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def count_gflops(model: nn.Module, img_size: int) -> float:
    """GFLOPs of one image (:func:`renyi_prune.count_flops`; advances no RNG the training uses)."""
    from ..flops import count_flops

    return count_flops(model, img_size)


def train_keep_rate(
    prune: PruneConfig, warmup_epochs: float, start_epoch: float, step: int, updates_per_epoch: int
) -> float | tuple[float, ...]:
    """The training keep rate after ``step`` optimizer updates: 1 for ``start_epoch`` epochs, then a half
    cosine to ``prune.keep_rate`` over ``warmup_epochs`` (:func:`renyi_prune.keep_rate_warmup`)."""
    ramp = max(1, round(warmup_epochs * updates_per_epoch))
    start = round(start_epoch * updates_per_epoch)
    return keep_rate_warmup(step, prune.keep_rate, ramp, start_step=start)


@dataclass
class TrainParts:
    """What a training epoch works with (built once per run by :mod:`renyi_prune.train.run`)."""

    model: nn.Module  # the model to call (DistributedDataParallel under torchrun)
    unwrapped: nn.Module  # the patched timm model itself
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a timm scheduler stepped every update, or None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    mixup_fn: Any  # timm.data.Mixup or None
    scaler: Any  # timm.utils.NativeScaler (fp16) or None
    amp_dtype: torch.dtype | None
    config: Any  # the TrainConfig: clipping, keep-rate warm-up, epochs, progress
    runtime: Runtime


def _step(parts: TrainParts, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One optimizer update; returns the (detached) loss."""
    from timm.utils import dispatch_clip_grad

    cfg, device = parts.config, parts.runtime.device
    images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
    if parts.mixup_fn is not None:
        images, target = parts.mixup_fn(images, target)
    with autocast(device, parts.amp_dtype):
        loss = parts.loss_fn(parts.model(images), target)
    parts.optimizer.zero_grad(set_to_none=True)
    params = parts.model.parameters()
    if parts.scaler is not None:
        parts.scaler(
            loss, parts.optimizer, clip_grad=cfg.clip_grad, clip_mode=cfg.clip_mode, parameters=params
        )
    else:
        loss.backward()
        if cfg.clip_grad is not None:
            dispatch_clip_grad(params, cfg.clip_grad, mode=cfg.clip_mode)
        parts.optimizer.step()
    return loss.detach()


def train_one_epoch(parts: TrainParts, loader: Any, epoch: int, num_updates: int) -> dict[str, Any]:
    """Train one epoch (0-based ``epoch``) from ``num_updates`` updates; returns its statistics.

    Raises:
        FloatingPointError: the training loss became NaN/inf (checked every 10 steps).
    """
    from timm.utils import AverageMeter

    cfg = parts.config
    parts.model.train()
    per_epoch, losses, keep = len(loader), AverageMeter(), None
    start = time.perf_counter()
    with _progress(per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress) as bar:
        for step, (images, target) in enumerate(loader):
            if cfg.has_keep_rate_warmup:
                keep = train_keep_rate(
                    cfg.prune, cfg.keep_rate_warmup_epochs, cfg.keep_rate_start_epoch, num_updates, per_epoch
                )
                set_keep_rate(parts.unwrapped, keep)
            losses.update(_step(parts, images, target).double(), len(images))  # a tensor: no sync per step
            num_updates += 1
            if parts.scheduler is not None:
                parts.scheduler.step_update(num_updates=num_updates)
            if step % 10 == 0 or step == per_epoch - 1:
                _check_finite(losses.avg.item(), epoch, step)
                lr = parts.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{losses.avg.item():.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update()
    sync(parts.runtime.device)
    elapsed = time.perf_counter() - start
    loss_sum, seen = _all_reduce(
        torch.tensor([losses.sum.item(), losses.count], dtype=torch.float64), parts.runtime
    ).tolist()
    if cfg.prune is not None and keep is None:
        keep = cfg.prune.keep_rate
    return {
        "train_loss": loss_sum / max(seen, 1.0),
        "lr": parts.optimizer.param_groups[0]["lr"],
        "train_images_per_s": seen / elapsed if elapsed > 0 else 0.0,
        "train_keep_rate": keep,
        "num_updates": num_updates,
    }


def _check_finite(value: float, epoch: int, step: int) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(
            f"training loss is {value} at epoch {epoch + 1}, step {step + 1}: lower --lr, or use "
            "--clip-grad, or --amp bf16 instead of fp16"
        )
