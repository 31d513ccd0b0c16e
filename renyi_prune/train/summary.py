"""What a training run is about to do, said before it does it: warnings for settings that cannot work as
intended (:func:`config_warnings`, :func:`warn_validation_cost`, :class:`TrainConfigWarning`) and the
start-up summary (model, data, pruning, optimization, runtime and an estimated time from a few timed
steps: :func:`summary_lines`, :func:`time_steps`), which :func:`renyi_prune.train.train` prints on rank 0
before the first step."""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .loop import preserve_rng
from .presets import CPU_QUICK
from .runtime import autocast, sync

__all__ = [
    "StepTimes", "TrainConfigWarning", "config_warnings", "estimate_seconds", "format_duration",
    "summary_lines", "time_steps", "warn_config", "warn_validation_cost",
]  # fmt: skip

#: Epochs below which a from-scratch run with Mixup/CutMix/RandomErasing is warned about.
SHORT_RUN_EPOCHS = 10


class TrainConfigWarning(UserWarning):
    """A training setting that runs but cannot do what it is meant to (see :func:`config_warnings`).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", TrainConfigWarning)  # a script that refuses such settings
        ...     warn_config(TrainConfig(epochs=3, warmup_epochs=0.3, mixup=0, cutmix=0, reprob=0))  # fine
    """


def config_warnings(config: TrainConfig) -> list[str]:
    """The settings of ``config`` that cannot work as intended, one message each:

    * ``warmup_epochs >= epochs``: the learning rate is still warming up when the run ends (it never
      reaches its peak);
    * ``keep_rate_start_epoch + keep_rate_warmup_epochs >= epochs`` with pruning: the training keep rate
      never reaches its target (every epoch is still evaluated at the target);
    * Mixup, CutMix or RandomErasing (the defaults, meant for 100-epoch runs) on a from-scratch run
      (no ``pretrained``, ``checkpoint`` or ``resume``) of fewer than :data:`SHORT_RUN_EPOCHS` epochs.

    Example:
        >>> for message in config_warnings(TrainConfig(epochs=3)):
        ...     print(message.split(":")[0])
        --warmup-epochs 5 >= --epochs 3
        Mixup, CutMix, RandomErasing on a from-scratch run of 3 epochs
        >>> config_warnings(TrainConfig(epochs=3, warmup_epochs=0.3, mixup=0, cutmix=0, reprob=0))
        []
    """
    c, out = config, []
    if c.sched != "none" and 0 < c.warmup_epochs and c.warmup_epochs >= c.epochs:
        out.append(
            f"--warmup-epochs {c.warmup_epochs:g} >= --epochs {c.epochs}: the learning rate is still warming "
            f"up when the run ends and never reaches its peak; use a shorter warm-up (e.g. --warmup-epochs "
            f"{max(0.1, round(c.epochs / 10, 1)):g})"
        )
    ramp = c.keep_rate_start_epoch + c.keep_rate_warmup_epochs
    if c.has_keep_rate_warmup and ramp >= c.epochs:
        out.append(
            f"--keep-rate-start-epoch {c.keep_rate_start_epoch:g} + --keep-rate-warmup-epochs "
            f"{c.keep_rate_warmup_epochs:g} >= --epochs {c.epochs}: the training keep rate never reaches its "
            f"target {c.prune.keep_rate} (each epoch is still evaluated at the target)"
        )
    heavy = [name for name, on in (("Mixup", c.mixup > 0), ("CutMix", c.cutmix > 0),
                                   ("RandomErasing", c.reprob > 0)) if on]  # fmt: skip
    from_scratch = not c.pretrained and c.checkpoint is None and c.resume is None
    if heavy and from_scratch and c.epochs < SHORT_RUN_EPOCHS:
        out.append(
            f"{', '.join(heavy)} on a from-scratch run of {_count(c.epochs, 'epoch')}: these "
            "defaults regularize long runs (the paper fine-tunes 100 epochs) and make a short run learn much "
            "less; for a short run pass --mixup 0 --cutmix 0 --reprob 0 (or see --preset cpu-quick)"
        )
    return out


def warn_config(config: TrainConfig, stacklevel: int = 3) -> None:
    """Issue a :class:`TrainConfigWarning` for each of :func:`config_warnings`.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_config(TrainConfig(epochs=2, warmup_epochs=2, mixup=0, cutmix=0, reprob=0))
        >>> [(w.category.__name__, str(w.message)[:31]) for w in caught]
        [('TrainConfigWarning', '--warmup-epochs 2 >= --epochs 2')]
    """
    for message in config_warnings(config):
        warnings.warn(message, TrainConfigWarning, stacklevel=stacklevel)


@dataclass(frozen=True)
class StepTimes:
    """Seconds per image of a run, from :func:`time_steps`: ``data`` (reading and transforming one
    training image), ``train`` (forward + backward), ``forward`` (an evaluation forward); ``images``:
    the batch they were timed on.

    Example:
        >>> t = StepTimes(data=0.001, train=0.002, forward=0.0005, images=128)
        >>> round(128 * (t.data + t.train), 3)  # seconds per step of 128 images, without loader workers
        0.384
    """

    data: float
    train: float
    forward: float
    images: int


def time_steps(model: nn.Module, dataset: Any, batch_size: int, device: torch.device,
               amp_dtype: torch.dtype | None, repeats: int = 1,
               budget_s: float = 0.5) -> StepTimes:  # fmt: skip
    """Time reading a batch of ``dataset``, then ``repeats`` forward + backward passes (after one untimed)
    and an evaluation forward of ``model`` on it: the full batch on a GPU; on a CPU first 8 images, then
    4× more (up to the batch) while a pass takes under ``budget_s`` seconds (a small model computes a
    few images less efficiently than a full batch; a large one is timed on 8).

    The model is left as it was: no random stream the training draws from advances
    (:func:`~renyi_prune.train.loop.preserve_rng`), buffers are restored, gradients cleared, the
    train/eval mode kept; no optimizer step is taken.

    Example:
        >>> import timm
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=14, embed_dim=16,
        ...                           depth=2, num_heads=1, num_classes=10)
        >>> dataset = [(torch.rand(3, 28, 28), 0)] * 8
        >>> t = time_steps(model, dataset, batch_size=8, device=torch.device("cpu"), amp_dtype=None)
        >>> t.images, t.train > 0, t.forward > 0, model.training
        (8, True, True, True)
    """
    most = min(batch_size, len(dataset))
    n = most if device.type == "cuda" else min(most, 8)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    with preserve_rng(model):
        try:
            while True:
                images, data = _read(dataset, n, device)
                train = _median_seconds(model, images, device, amp_dtype, repeats, backward=True)
                if n >= most or train >= budget_s:
                    break
                n = min(most, 4 * n)
            forward = _median_seconds(model, images, device, amp_dtype, 1, backward=False, warm=True)
        finally:
            model.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
            model.train(was_training)
    return StepTimes(data, train / n, forward / n, n)


def _read(dataset: Any, n: int, device: torch.device) -> tuple[torch.Tensor, float]:
    """The first ``n`` images of ``dataset`` as a batch on ``device``, and the seconds per image it took."""
    start = time.perf_counter()
    items = [dataset[i] for i in range(n)]
    seconds = (time.perf_counter() - start) / n
    return torch.stack([torch.as_tensor(x) for x, _ in items]).to(device), seconds


def _median_seconds(model: nn.Module, images: torch.Tensor, device: torch.device,
                    amp_dtype: torch.dtype | None, repeats: int, backward: bool,
                    warm: bool = False) -> float:  # fmt: skip
    """The median seconds of ``repeats`` passes (training mode with ``backward``), after one untimed pass
    unless the model is ``warm`` already."""
    model.train(backward)
    seconds = []
    for _ in range(repeats + (not warm)):
        sync(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward), autocast(device, amp_dtype):
            out = model(images)
        if backward:
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.float().logsumexp(-1).mean().backward()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[0 if warm else 1 :])


def estimate_seconds(times: StepTimes, steps: int, batch_size: int, workers: int, val_images: int,
                     epochs: int) -> tuple[float, float]:  # fmt: skip
    """(training, validation) seconds of ``epochs`` epochs of ``steps`` steps of ``batch_size`` images
    and ``val_images`` validation images (this process's share), from :func:`time_steps`'s ``times``;
    loader workers read in parallel with the steps.

    Example:
        >>> estimate_seconds(StepTimes(data=0.001, train=0.01, forward=0.002, images=8), steps=10,
        ...                  batch_size=100, workers=0, val_images=500, epochs=2)
        (22.0, 3.0)
    """
    compute, data = batch_size * times.train, batch_size * times.data
    step = compute + data if workers == 0 else max(compute, data / workers)
    val_image = times.forward + (times.data if workers == 0 else times.data / workers)
    return epochs * steps * step, epochs * val_images * val_image


def format_duration(seconds: float) -> str:
    """``< 1 s``, ``~N s`` under 2 minutes, ``~N min`` under 2 hours, ``~N h`` under 2 days, else
    ``~N days``.

    Example:
        >>> format_duration(42), format_duration(150), format_duration(3 * 3600), format_duration(3e6)
        ('~42 s', '~2.5 min', '~3.0 h', '~34.7 days')
    """
    if seconds < 1:
        return "< 1 s"
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"


def summary_lines(run: Any, epochs: int, times: StepTimes | None) -> list[str]:
    """The start-up summary of a :class:`renyi_prune.train.run._Run` that trains ``epochs`` epochs now:
    model, data, pruning, augmentation, optimization, runtime and, with ``times``, the estimated time.

    Example:
        >>> for line in summary_lines(run, epochs=3, times=None):  # doctest: +SKIP
        ...     print(line)
        renyi-prune train: runs/cpu-quick
          model     ...
    """
    cfg = run.config
    lines = [f"renyi-prune train: {cfg.output}"]
    lines += [_model_line(run), _data_line(run), _pruning_line(cfg), _augmentation_line(cfg)]
    lines += [_optimization_line(cfg, run.lr), _runtime_line(run)]
    if times is not None:
        train_s, val_s = _run_estimate(run, epochs, times)
        lines.append(
            f"  estimate  {format_duration(train_s + val_s)} for {_count(epochs, 'epoch')}: "
            f"training {format_duration(train_s)}, validation {format_duration(val_s)} (from steps timed "
            f"on {times.images} images: {1e3 * cfg.batch_size * times.train:.0f} ms of compute per step)"
        )
        small = (cfg.model, cfg.model_kwargs) == (CPU_QUICK["model"], CPU_QUICK["model_kwargs"])
        if run.runtime.device.type == "cpu" and train_s + val_s > 3600 and not small:
            lines.append("            on a CPU, --preset cpu-quick trains a small ViT in minutes")
    return lines


def _run_estimate(run: Any, epochs: int, times: StepTimes) -> tuple[float, float]:
    """(training, validation) seconds of ``epochs`` epochs of ``run`` (:func:`estimate_seconds`)."""
    val = -(-len(run.val_set) // run.runtime.world_size)  # this process's share
    return estimate_seconds(times, len(run.train_loader), run.config.batch_size, run.workers, val, epochs)


def warn_validation_cost(run: Any, epochs: int, times: StepTimes) -> None:
    """A :class:`TrainConfigWarning` when validating every epoch is estimated to take longer than training
    and no ``--max-val-images`` was given (e.g. 10,000 test images after epochs of 512).

    Example:
        >>> times = time_steps(model, dataset, 64, device, amp_dtype=None)  # doctest: +SKIP
        >>> warn_validation_cost(run, epochs=3, times=times)  # doctest: +SKIP
    """
    train_s, val_s = _run_estimate(run, epochs, times)
    if val_s > train_s and run.config.max_val_images is None:
        warnings.warn(
            f"validating on all {len(run.val_set):,} images after every epoch is estimated to take longer "
            f"({format_duration(val_s)}) than training ({format_duration(train_s)}); --max-val-images N "
            "validates on a fixed random subset",
            TrainConfigWarning,
            stacklevel=3,
        )


def _optimization_line(cfg: TrainConfig, lr: float) -> str:
    schedule = "constant" if cfg.sched == "none" else cfg.sched
    warmup = ""
    if cfg.warmup_epochs:
        warmup = f"{_count(cfg.warmup_epochs, 'warm-up epoch')} from {cfg.warmup_lr:.1e}, "
    return (
        f"  optimize  {_count(cfg.epochs, 'epoch')}, {cfg.opt} lr {lr:.2e} ({warmup}{schedule} to "
        f"{cfg.min_lr:.1e}), weight decay {cfg.weight_decay:g}"
    )


def _model_line(run: Any) -> str:
    cfg, model = run.config, run.model
    kwargs = " ".join(f"{k}={v}" for k, v in cfg.model_kwargs.items())
    params = sum(p.numel() for p in model.parameters())
    start = "pretrained" if cfg.pretrained else f"from {cfg.checkpoint}" if cfg.checkpoint else "from scratch"
    if cfg.resume is not None:
        start = f"resumed from {cfg.resume}"
    patches = getattr(getattr(model, "patch_embed", None), "num_patches", None)
    tokens = ""
    if patches is not None:
        extra = getattr(model, "num_prefix_tokens", 0)
        tokens = f", {patches} patches" + (f" + {extra} token{'s' * (extra != 1)}" if extra else "")
    gflops = f", {run.gflops:.3g} GFLOPs per image" if run.gflops is not None else ""
    return (
        f"  model     {cfg.model}{f' ({kwargs})' if kwargs else ''}: {params / 1e6:.2f} M parameters, "
        f"{start}; {run.img_size} px{tokens}, {run.num_classes} classes{gflops}"
    )


def _data_line(run: Any) -> str:
    cfg, world = run.config, run.runtime.world_size
    n_train, n_val = len(run.train_set), len(run.val_set)
    all_train, all_val = run.split_sizes
    steps = len(run.train_loader)
    train = f"{n_train:,}" + (f" of {all_train:,}" if n_train < all_train else "")
    val = f"{n_val:,}" + (f" of {all_val:,}" if n_val < all_val else "")
    per_step = f"{cfg.batch_size} × {world} processes" if world > 1 else f"{cfg.batch_size}"
    return (
        f"  data      {run.dataset}: {train} training images ({_count(steps, 'step')} of {per_step} = "
        f"{steps * cfg.batch_size * world:,} images per epoch), {val} validation images"
    )


def _pruning_line(cfg: TrainConfig) -> str:
    if cfg.prune is None:
        return "  pruning   none (unpruned; --keep-rate R prunes)"
    blocks = ", ".join(map(str, cfg.prune.prune_blocks))
    warmup = ""
    if cfg.has_keep_rate_warmup:
        start, ramp = cfg.keep_rate_start_epoch, cfg.keep_rate_warmup_epochs
        held = f"1 for {_count(start, 'epoch')}, then " if start else ""
        warmup = f"; keep rate {held}from 1 to the target over {_count(ramp, 'epoch')}"
    return f"  pruning   {cfg.prune.label} at blocks {blocks} (0-based){warmup}"


def _augmentation_line(cfg: TrainConfig) -> str:
    on_off = lambda x: f"{x:g}" if x else "off"  # noqa: E731
    return (
        f"  augment   crop {cfg.train_crop_mode} area {cfg.scale[0]:g}-{cfg.scale[1]:g}, flip {cfg.hflip:g}, "
        f"Mixup {on_off(cfg.mixup)}, CutMix {on_off(cfg.cutmix)}, RandomErasing {on_off(cfg.reprob)}, "
        f"label smoothing {cfg.smoothing:g}, drop path {cfg.drop_path:g}"
    )


def _runtime_line(run: Any) -> str:
    rt = run.runtime
    amp = str(run.amp).replace("torch.", "") if run.amp else "none"
    where = f"{rt.device}" + (f", {rt.world_size} processes" if rt.distributed else "")
    n = torch.get_num_threads()
    threads = f", {_count(n, 'thread')}" if rt.device.type == "cpu" else ""
    return f"  runtime   {where}{threads}, AMP {amp}, {run.workers} loader workers, seed {run.config.seed}"


def _count(n: float, word: str) -> str:
    """``1 epoch``, ``0.5 epochs``, ``1,200 steps``."""
    return f"{n:,g} {word}{'s' * (n != 1)}"
