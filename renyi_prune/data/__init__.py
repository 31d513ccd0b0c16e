"""Datasets and transforms for ``renyi-prune train`` / ``eval``: Fashion-MNIST offline, or any ImageFolder.

* **Fashion-MNIST** (Xiao, Rasul & Vollgraf, arXiv 1708.07747; 60,000 train / 10,000 test grayscale
  28 x 28 images, 10 classes) is read with numpy + gzip straight from the IDX files, as shipped by the
  Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) or by the
  original release / torchvision's ``FashionMNIST/raw`` folder (``.gz`` or uncompressed). No download.
  The folder is, in order: the ``root`` argument (``--data DIR``), the environment variable
  ``RENYI_PRUNE_FASHION_MNIST``, ``/usr/share/datasets/fashion-mnist``. Images are returned as RGB PIL
  images (the gray value repeated in the three channels) so that timm's transforms and 3-channel ViTs
  apply unchanged; the "val" split is the official test set.
* **ImageFolder**: ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg``
  (``torchvision.datasets.ImageFolder``), e.g. ImageNet laid out as timm expects.

Modules (dependencies point one way: idx → fashion_mnist → datasets; transforms stands alone):
:mod:`.idx` (IDX files), :mod:`.fashion_mnist`, :mod:`.datasets` (by name, subsets), :mod:`.transforms`.

Transforms come from timm (:func:`timm.data.create_transform`): random resized crop, horizontal flip,
optional RandAugment (``auto_augment``), normalization and RandomErasing for training; resize + center
crop + normalization for evaluation. Mixup/CutMix are batch operations and live in
:mod:`renyi_prune.train` (``timm.data.Mixup``).
"""

from __future__ import annotations

from .datasets import DATASETS, build_datasets, image_folder, subset
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_DIR,
    FASHION_MNIST_ENV,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DatasetNotFoundError,
    FashionMNIST,
    fashion_mnist_dir,
    write_fake_fashion_mnist,
)
from .idx import read_idx, write_idx
from .transforms import DataConfig, build_transform

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_DIR",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DataConfig",
    "DatasetNotFoundError",
    "FashionMNIST",
    "build_datasets",
    "build_transform",
    "fashion_mnist_dir",
    "image_folder",
    "read_idx",
    "subset",
    "write_fake_fashion_mnist",
    "write_idx",
]
