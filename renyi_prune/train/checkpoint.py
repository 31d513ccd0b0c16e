"""The files of a run: ``checkpoint.pth`` (one file, rewritten atomically after every epoch) and
``metrics.jsonl``; reading a checkpoint back, resuming from it, and what a failed run says about them.

The checkpoint carries timm's keys (``state_dict``, ``optimizer``, ``amp_scaler``, ``epoch``, ``arch``),
so :func:`timm.models.resume_checkpoint` restores model, optimizer and loss scaler from it and
``timm.create_model(name, checkpoint_path=...)`` loads its weights; beside them the format marker
:data:`CHECKPOINT_FORMAT`, ``model`` (the same tensors, stored once), the scheduler, the RNG states of every
process, the metrics history, the model/data/pruning configuration and the options (``args``).
``epoch`` is the number of completed epochs, i.e. the 0-based index of the epoch a resume starts with.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .._argtypes import UsageError
from .._io import BadFileError, atomic_open, check_weights_file, jsonable

__all__ = ["CHECKPOINT_FORMAT", "METRIC_FIELDS"]

#: Marker of the checkpoints written by :func:`renyi_prune.train.train`.
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


def read_checkpoint(path: str | os.PathLike[str], option: str) -> dict[str, Any] | None:
    """A checkpoint written by :func:`renyi_prune.train.train`, or None for any other weights file.

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


def read_resume(config: Any) -> tuple[Any, dict[str, Any] | None]:
    """The :class:`~renyi_prune.train.TrainConfig` and its ``resume`` checkpoint (None without one).
    Without data / dataset the run reads the data of the checkpoint's run (its folder is stored absolute,
    so this works from any working folder).

    Raises:
        UsageError: the file is not a checkpoint written by ``renyi-prune train`` (or see
            :func:`read_checkpoint`).
    """
    if config.resume is None:
        return config, None
    resume = read_checkpoint(config.resume, "--resume")
    if resume is None or "state_dict" not in resume:
        raise UsageError(f"--resume {config.resume}: not a checkpoint written by renyi-prune train")
    saved = resume["dataset"]
    if config.data is None and config.dataset is None and saved.get("data") is not None:
        config = config.replace(dataset=resume.get("args", {}).get("dataset"), data=Path(saved["data"]))
    return config, resume


def save_checkpoint(
    path: Path, state: dict[str, Any], model: torch.nn.Module, optimizer: Any, scaler: Any
) -> None:
    """Write ``state`` (epoch, history, configuration, ...) with the model, optimizer and loss scaler
    under timm's keys to ``path``, atomically (a crash leaves the previous checkpoint or none)."""
    weights = model.state_dict()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        **state,
        "state_dict": weights,
        "model": weights,
        "optimizer": optimizer.state_dict(),
    }
    if scaler is not None:
        checkpoint[scaler.state_dict_key] = scaler.state_dict()
    with atomic_open(path) as fh:
        torch.save(checkpoint, fh)


def resume(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, scaler: Any) -> int:
    """Restore model, optimizer and loss scaler (:func:`timm.models.resume_checkpoint`) and the scheduler
    from the checkpoint at ``path``; returns the epoch to start with (0-based)."""
    from timm.models import resume_checkpoint

    epoch = resume_checkpoint(model, str(path), optimizer=optimizer, loss_scaler=scaler, log_info=False)
    if scheduler is not None:
        state = torch.load(path, map_location="cpu", weights_only=True).get("scheduler")
        if state is not None:
            scheduler.load_state_dict(state)
    return int(epoch)


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON object per epoch (:data:`METRIC_FIELDS`), written atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for record in history:
            fh.write(json.dumps(jsonable(record), allow_nan=False) + "\n")


def check_output_folder(output: Path, resuming: bool) -> None:
    """A run must not mix its files with another run's checkpoint and metrics: only a run resuming from
    ``output``'s own checkpoint (``resuming``) may use a folder that holds them.

    Raises:
        UsageError: ``output`` holds another run's files (message: how to continue that run).
    """
    if resuming:
        return
    found = [name for name in ("checkpoint.pth", "metrics.jsonl") if (output / name).exists()]
    if found:
        raise UsageError(
            f"argument --output: {output} already holds a run ({', '.join(found)}); continue it with "
            f"--resume {output / 'checkpoint.pth'}, or choose another --output"
        )


def add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (Python 3.11+), also on 3.10; :func:`renyi_prune.cli.main` prints the notes."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:
        err.__notes__ = [*getattr(err, "__notes__", []), note]


def failed_epoch_note(output: Path, epoch: int, epochs: int, done: int) -> str:
    """What ``output`` holds after epoch ``epoch`` of ``epochs`` failed, ``done`` epochs being saved."""
    ckpt = output / "checkpoint.pth"
    where = (
        f"{ckpt} holds epoch {done} (continue with --resume {ckpt})" if done else "no checkpoint was written"
    )
    return f"epoch {epoch}/{epochs} did not complete; {where}"


_NOT_COMPARED = {"resume", "stop_after_epoch", "progress", "output", "workers", "device"}


def warn_changed_options(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Warn when a resumed run's options (``now``, :meth:`TrainConfig.to_dict`) differ from its
    checkpoint's."""
    changed = sorted(k for k in now if k not in _NOT_COMPARED and k in saved and saved[k] != now[k])
    if changed:
        warnings.warn(
            "--resume: options differ from the checkpoint's run, so it does not continue identically: "
            + ", ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed),
            stacklevel=4,
        )
