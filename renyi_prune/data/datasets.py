"""The datasets of ``renyi-prune train`` / ``eval`` by name (:data:`DATASETS`): Fashion-MNIST or an
ImageFolder, their splits and class names, and fixed random subsets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset, Subset

from .fashion_mnist import FASHION_MNIST_CLASSES, DatasetNotFoundError, FashionMNIST

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

__all__ = ["DATASETS", "build_datasets", "image_folder", "subset"]

#: Dataset names accepted by :func:`build_datasets` (``--dataset``).
DATASETS = ("fashion-mnist", "imagefolder")


def image_folder(
    root: str | os.PathLike[str], split: str, transform: Callable[[Any], Any] | None = None
) -> ImageFolder:
    """``torchvision.datasets.ImageFolder(root/split)`` with a clear error when the folder is missing.

    Item ``i`` is ``(transform(PIL image), class index)``; class indices follow the sorted folder names.
    Images are decoded to RGB by :func:`renyi_prune.images.open_rgb` when an item is read.

    Raises:
        DatasetNotFoundError: ``root/split`` is not a folder, or it holds no class folders with images.
        OSError: (reading an item) its image cannot be decoded; the message names the file.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / "val" / name).mkdir(parents=True)
        ...     Image.new("RGB", (12, 10)).save(root / "val" / name / "0.png")
        >>> ds = image_folder(root, "val")
        >>> len(ds), ds.classes, ds[1][1]
        (2, ['cat', 'dog'], 1)
        >>> image_folder(root, "train")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune.data.DatasetNotFoundError: ImageFolder dataset: .../train is not a folder; ...
    """
    from torchvision.datasets import ImageFolder

    from ..images import open_rgb

    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"ImageFolder dataset: {folder} is not a folder; --data DIR needs DIR/train/<class>/<images> "
            "and DIR/val/<class>/<images> (or use the offline Fashion-MNIST: --dataset fashion-mnist)"
        )
    try:
        return ImageFolder(str(folder), transform=transform, loader=open_rgb)
    except FileNotFoundError as err:  # no class folder / no valid image
        raise DatasetNotFoundError(f"ImageFolder dataset {folder}: {err}") from err


def subset(dataset: Dataset, max_images: int | None, seed: int = 0) -> Dataset:
    """The first ``max_images`` items of a fixed random permutation of ``dataset`` (all if None or more).

    The permutation depends only on ``seed`` and ``len(dataset)``, so every run (and every rank) sees the
    same subset; being random rather than a prefix, it keeps the class balance of the full set. The
    subset's indices are sorted.

    Raises:
        ValueError: ``max_images`` < 1.

    Example:
        >>> small = subset(list(range(100)), 5)
        >>> len(small), small.indices == sorted(small.indices) == subset(list(range(100)), 5).indices
        (5, True)
        >>> len(subset(list(range(100)), None)), len(subset(list(range(100)), 500))
        (100, 100)
    """
    n = len(dataset)
    if max_images is None or max_images >= n:
        return dataset
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images]
    return Subset(dataset, sorted(order.tolist()))


def build_datasets(
    dataset: str = "fashion-mnist",
    root: str | os.PathLike[str] | None = None,
    train_transform: Callable[[Any], Any] | None = None,
    val_transform: Callable[[Any], Any] | None = None,
    splits: Sequence[str] = ("train", "val"),
) -> tuple[dict[str, Dataset], tuple[str, ...]]:
    """The requested splits of ``dataset`` and its class names.

    Args:
        dataset: ``"fashion-mnist"`` (``root`` = folder of the IDX files, default
            ``$RENYI_PRUNE_FASHION_MNIST`` or the Debian location) or ``"imagefolder"`` (``root`` =
            folder with ``train/`` and ``val/``; required).
        root: see ``dataset``.
        train_transform, val_transform: transforms of the ``"train"`` / ``"val"`` splits.
        splits: which splits to build (``("val",)`` for evaluation only).

    Returns:
        ``({split: Dataset}, class_names)``.

    Raises:
        ValueError: unknown dataset or split, ImageFolder without ``root``, or train/val class folders
            that differ.
        DatasetNotFoundError: the files are missing (with the install hint).

    Example:
        >>> import tempfile
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> root = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=12, val_images=6)
        >>> splits, classes = build_datasets("fashion-mnist", root)
        >>> {name: len(ds) for name, ds in splits.items()}, classes[:2]
        ({'train': 12, 'val': 6}, ('T-shirt/top', 'Trouser'))
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    bad = [s for s in splits if s not in ("train", "val")]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; choose from train, val")
    transforms = {"train": train_transform, "val": val_transform}
    if dataset == "fashion-mnist":
        return {s: FashionMNIST(root, s, transforms[s]) for s in splits}, FASHION_MNIST_CLASSES
    if root is None:
        raise ValueError("--dataset imagefolder needs --data DIR (with DIR/train and DIR/val)")
    out = {s: image_folder(root, s, transforms[s]) for s in splits}
    classes = {s: tuple(d.classes) for s, d in out.items()}
    if len(set(classes.values())) > 1:
        raise ValueError(
            f"ImageFolder {root}: train and val have different class folders "
            f"({len(classes['train'])} vs {len(classes['val'])} classes, e.g. "
            f"{sorted(set(classes['train']) ^ set(classes['val']))[:5]})"
        )
    return out, next(iter(classes.values()))
