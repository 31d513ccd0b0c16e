"""Preprocessing: the normalization and resizing a model was trained with (:class:`DataConfig`, stored in
checkpoints) and timm's training / evaluation transforms built from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DataConfig", "build_transform"]


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing shared by training and evaluation (stored in checkpoints, so eval matches train).

    Attributes:
        img_size: square input side in pixels.
        mean, std: per-channel normalization of [0, 1] RGB values.
        interpolation: PIL resampling of the resize/crop (``"bicubic"``, ``"bilinear"``, ...).
        crop_pct: evaluation center-crop fraction: resize the short side to ``img_size / crop_pct``, then
            center-crop ``img_size`` (timm's convention; 1.0 = resize only).

    Example:
        >>> from renyi_prune.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD
        >>> cfg = DataConfig(28, FASHION_MNIST_MEAN, FASHION_MNIST_STD, crop_pct=1.0)
        >>> cfg.as_dict()["mean"], cfg.as_dict()["crop_pct"]
        ([0.286, 0.286, 0.286], 1.0)
    """

    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples); ``DataConfig(**d)`` rebuilds an equal config."""
        return {
            "img_size": self.img_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }


def build_transform(
    config: DataConfig,
    is_training: bool,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    train_crop_mode: str = "rrc",
    hflip: float = 0.5,
    color_jitter: float = 0.0,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
    re_mode: str = "pixel",
    re_count: int = 1,
) -> Callable[[Any], torch.Tensor]:
    """A timm transform (:func:`timm.data.create_transform`): PIL image → normalized (3, S, S) tensor.

    Training: ``train_crop_mode`` crop (``"rrc"`` = RandomResizedCrop with ``scale``/``ratio``, DeiT's
    default; ``"rkrr"`` = random-scale resize + RandomCrop with reflect padding), horizontal flip with
    probability ``hflip``, RandAugment/AutoAugment if ``auto_augment`` (e.g. ``"rand-m9-mstd0.5-inc1"``,
    DeiT's), color jitter if ``color_jitter`` > 0 (ignored with ``auto_augment``), normalization, then
    RandomErasing with probability ``re_prob`` (``re_mode`` ``"pixel"``: per-pixel normal noise, DeiT's).
    Evaluation: resize to ``img_size / crop_pct`` + center crop + normalization. S = ``config.img_size``;
    the tensor is float32, ``(pixel / 255 - mean) / std`` per channel.

    Example:
        >>> from PIL import Image
        >>> cfg = DataConfig(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop_pct=1.0)
        >>> x = build_transform(cfg, False)(Image.new("RGB", (40, 30), (255, 0, 0)))
        >>> x.shape, x.dtype, x[:, 0, 0].tolist()
        (torch.Size([3, 32, 32]), torch.float32, [1.0, -1.0, -1.0])
        >>> build_transform(cfg, True, re_prob=0.25)(Image.new("RGB", (40, 30))).shape
        torch.Size([3, 32, 32])
    """
    from timm.data import create_transform

    if is_training:
        return create_transform(
            config.img_size,
            is_training=True,
            train_crop_mode=train_crop_mode,
            scale=tuple(scale),
            ratio=tuple(ratio),
            hflip=hflip,
            color_jitter=color_jitter if color_jitter > 0 else None,
            auto_augment=auto_augment or None,
            interpolation=config.interpolation,
            mean=config.mean,
            std=config.std,
            re_prob=re_prob,
            re_mode=re_mode,
            re_count=re_count,
        )
    return create_transform(
        config.img_size,
        is_training=False,
        interpolation=config.interpolation,
        mean=config.mean,
        std=config.std,
        crop_pct=config.crop_pct,
    )
