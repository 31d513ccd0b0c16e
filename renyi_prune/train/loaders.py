"""The data of a run: datasets (:func:`renyi_prune.data.build_datasets`), normalization and resizing
(:class:`renyi_prune.data.DataConfig`), and the loaders (a :class:`~torch.utils.data.DistributedSampler`
under ``torchrun``; validation sharded exactly, without padding duplicates)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .._argtypes import UsageError
from ..data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataConfig,
    DatasetNotFoundError,
    build_datasets,
    build_transform,
)
from .runtime import Runtime


def dataset_name(config: Any, default: str | None = None) -> str:
    """``config.dataset``, else imagefolder when ``config.data`` is given, else ``default`` (or
    fashion-mnist)."""
    if config.dataset is not None:
        return config.dataset
    if config.data is not None:
        return "imagefolder"
    return default or "fashion-mnist"


def load_datasets(
    config: Any, dataset: str, root: Any, splits: Sequence[str] = ("train", "val")
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """:func:`renyi_prune.data.build_datasets`; a dataset missing from the ``--data`` folder the user gave
    is a usage error (exit code 2), one missing from its default place a failure (1).

    Raises:
        UsageError: imagefolder without a folder, or the ``--data`` folder lacks the dataset.
        DatasetNotFoundError: the default dataset is not installed (message: how to install it).
    """
    if dataset == "imagefolder" and root is None:
        raise UsageError("--dataset imagefolder needs --data DIR (with DIR/train and DIR/val)")
    try:
        return build_datasets(dataset, root, splits=splits)
    except DatasetNotFoundError as err:
        if config.data is None:
            raise
        raise UsageError(f"argument --data {config.data}: {err}") from None


def data_config(
    config: Any, dataset: str, model: nn.Module, img_size: int, base: dict[str, Any] | None = None
) -> DataConfig:
    """Normalization/resizing: ``config``'s fields > ``base`` (a checkpoint's) > the dataset's > the
    model's."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if base is not None:
        mean, std = tuple(base["mean"]), tuple(base["std"])
        interpolation, crop_pct = base["interpolation"], base["crop_pct"]
    elif dataset == "fashion-mnist":
        mean, std, interpolation, crop_pct = FASHION_MNIST_MEAN, FASHION_MNIST_STD, "bicubic", 1.0
    else:
        mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        interpolation, crop_pct = cfg.get("interpolation", "bicubic") or "bicubic", cfg.get("crop_pct", 0.875)
    return DataConfig(
        img_size=img_size,
        mean=config.mean if config.mean is not None else mean,
        std=config.std if config.std is not None else std,
        interpolation=config.interpolation or interpolation,
        crop_pct=config.crop_pct if config.crop_pct is not None else crop_pct,
    )


def train_transform(config: Any, data_cfg: DataConfig) -> Any:
    """The training transform: :func:`renyi_prune.data.build_transform` with the run's augmentation
    (crop scale/ratio/mode, flip, colour jitter, AutoAugment, random erasing)."""
    return build_transform(
        data_cfg,
        True,
        scale=config.scale,
        ratio=config.ratio,
        train_crop_mode=config.train_crop_mode,
        hflip=config.hflip,
        color_jitter=config.color_jitter,
        auto_augment=config.aa,
        re_prob=config.reprob,
        re_mode=config.remode,
        re_count=config.recount,
    )


def train_loader(
    dataset: Any, batch_size: int, workers: int, seed: int, runtime: Runtime
) -> tuple[DataLoader, torch.Generator]:
    """The shuffling training loader (full batches only) and the generator to seed before each epoch.

    Raises:
        UsageError: the (per-process) training set is smaller than one batch.
    """
    sampler = None
    if runtime.distributed:
        sampler = DistributedSampler(
            dataset,
            num_replicas=runtime.world_size,
            rank=runtime.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
    generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=True,
        generator=generator,
    )
    if len(loader) == 0:
        raise UsageError(
            f"the training set has {len(dataset)} images ({len(dataset) // runtime.world_size} per process), "
            f"fewer than --batch-size {batch_size}"
        )
    return loader, generator


def val_loader(dataset: Any, batch_size: int, workers: int, runtime: Runtime) -> DataLoader:
    """The validation loader; under ``torchrun`` rank r takes items r, r + W, ... (no padding duplicates)."""
    if runtime.distributed:
        dataset = Subset(dataset, range(runtime.rank, len(dataset), runtime.world_size))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=False,
    )
