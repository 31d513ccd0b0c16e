"""What a training run writes about itself: the ``config.json`` record, the ``metrics.jsonl`` record of an
epoch and its printed line, and the run's part of ``checkpoint.pth`` (beside the tensors that
:func:`renyi_prune.train.checkpoint.save_checkpoint` adds)."""

from __future__ import annotations

from typing import Any

from ..data import DataConfig
from .config import TrainConfig
from .runtime import Runtime, environment


def model_config(config: TrainConfig, num_classes: int, img_size: int) -> dict[str, Any]:
    """The model's identity, compared when resuming: name, its keyword arguments, classes, input size."""
    return {
        "model": config.model,
        "model_kwargs": dict(config.model_kwargs),
        "num_classes": num_classes,
        "img_size": img_size,
    }


def config_record(config: TrainConfig, resolved: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """``config.json``: the options (``args``), what they resolved to (``resolved``: ``lr``, ``dataset``,
    ``classes``, ``train_images``, ``val_images``, ``data_config``, ``model_config``, ``amp``,
    ``workers``), the pruning and the environment."""
    return {
        "args": config.to_dict(),
        "lr": resolved["lr"],
        "total_batch_size": config.batch_size * runtime.world_size,
        "dataset": resolved["dataset"],
        "classes": list(resolved["classes"]),
        "train_images": resolved["train_images"],
        "val_images": resolved["val_images"],
        "data_config": resolved["data_config"],
        "model_config": resolved["model_config"],
        "pruning": config.prune.to_dict() if config.prune is not None else None,
        "amp": resolved["amp"],
        "workers": resolved["workers"],
        "environment": environment(runtime),
    }


def epoch_record(
    config: TrainConfig,
    epoch: int,
    stats: dict[str, Any],
    ev: dict[str, Any],
    gflops: float | None,
    seconds: float,
) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of epoch ``epoch`` (0-based) from the training ``stats`` and the
    validation ``ev`` (:data:`renyi_prune.train.METRIC_FIELDS`)."""
    return {
        "epoch": epoch + 1,
        "num_updates": stats["num_updates"],
        "train_loss": stats["train_loss"],
        "lr": stats["lr"],
        "top1": ev["top1"],
        "top5": ev["top5"],
        "eval_loss": ev["loss"],
        "keep_rate": config.prune.keep_rate if config.prune is not None else None,
        "train_keep_rate": stats["train_keep_rate"],
        "train_images_per_s": stats["train_images_per_s"],
        "eval_images_per_s": ev["images_per_s"],
        "gflops": gflops,
        "epoch_time_s": seconds,
    }


def checkpoint_state(
    config: TrainConfig,
    history: list[dict[str, Any]],
    scheduler: Any,
    rng: list[Any],
    model_cfg: dict[str, Any],
    data_cfg: DataConfig,
    dataset: str,
) -> dict[str, Any]:
    """The run's entries of ``checkpoint.pth`` after the last epoch of ``history``: epoch, arch, updates,
    scheduler, every process's RNG state, history, model / data / pruning configuration, options."""
    last = history[-1]
    return {
        "epoch": last["epoch"],
        "arch": config.model,
        "num_updates": last["num_updates"],
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng,
        "history": history,
        "model_config": model_cfg,
        "data_config": data_cfg.as_dict(),
        "dataset": {
            "name": dataset,
            "data": str(config.data.resolve()) if config.data is not None else None,
        },
        "pruning": config.prune.to_dict() if config.prune is not None else None,
        "args": config.to_dict(),
    }


def format_record(r: dict[str, Any], epochs: int) -> str:
    """The line printed after an epoch.

    Example:
        >>> r = dict(epoch=1, train_loss=2.0, lr=1e-3, top1=50.0, top5=90.0, keep_rate=[0.7, 0.5],
        ...          gflops=None, train_images_per_s=100.0, eval_images_per_s=300.0, epoch_time_s=1.25)
        >>> format_record(r, 3).split("  ")
        ['epoch 1/3', 'loss 2.0000', 'lr 1.00e-03', 'top1 50.00', 'top5 90.00', 'keep 0.7/0.5', \
'train 100 img/s', 'eval 300 img/s', '- GFLOPs', '1.2 s']
    """
    keep = "-" if r["keep_rate"] is None else "/".join(f"{k:g}" for k in _as_tuple(r["keep_rate"]))
    gflops = "-" if r["gflops"] is None else f"{r['gflops']:.3f}"
    return (
        f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  lr {r['lr']:.2e}  top1 {r['top1']:.2f}  "
        f"top5 {r['top5']:.2f}  keep {keep}  train {r['train_images_per_s']:.0f} img/s  "
        f"eval {r['eval_images_per_s']:.0f} img/s  {gflops} GFLOPs  {r['epoch_time_s']:.1f} s"
    )


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
