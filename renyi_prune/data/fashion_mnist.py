"""Fashion-MNIST (Xiao, Rasul & Vollgraf, arXiv 1708.07747) read offline from its IDX files: where they
are, the dataset of RGB PIL images, and fake files of the same layout for tests and smoke runs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .idx import read_idx, write_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_DIR",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DatasetNotFoundError",
    "FashionMNIST",
    "fashion_mnist_dir",
    "write_fake_fashion_mnist",
]

#: Environment variable naming the Fashion-MNIST folder.
FASHION_MNIST_ENV = "RENYI_PRUNE_FASHION_MNIST"
#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Class names in label order (label 0 … 9).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Per-channel mean / std of the 60,000 training images in [0, 1] (0.28604, 0.35302), repeated for RGB.
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)

_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says how to install them or what to pass instead.

    Example:
        >>> FashionMNIST("/nonexistent/fashion-mnist")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune.data.DatasetNotFoundError: Fashion-MNIST not found: folder ... does not exist. ...
    """

    __module__ = "renyi_prune.data"  # its public home: tracebacks and pickles name the re-export


def _install_hint() -> str:
    return (
        "Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files in "
        f"{FASHION_MNIST_DEFAULT_DIR}), or point ${FASHION_MNIST_ENV} / --data at a folder holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz, or train on your own images with --dataset imagefolder --data DIR "
        "(DIR/train/<class>/..., DIR/val/<class>/...)."
    )


def fashion_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The Fashion-MNIST folder: ``root``, else ``$RENYI_PRUNE_FASHION_MNIST``, else the Debian location.

    Only chooses the folder (``~`` expanded); :class:`FashionMNIST` checks the files.

    Example:
        >>> fashion_mnist_dir("/data/fashion-mnist").as_posix()
        '/data/fashion-mnist'
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(FASHION_MNIST_ENV, "").strip()
    return Path(env).expanduser() if env else FASHION_MNIST_DEFAULT_DIR


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    where = (
        f"folder {folder} does not exist" if not folder.is_dir() else f"no {stem}.gz (or {stem}) in {folder}"
    )
    raise DatasetNotFoundError(f"Fashion-MNIST not found: {where}. {_install_hint()}")


def write_fake_fashion_mnist(
    root: str | os.PathLike[str], train_images: int = 64, val_images: int = 16, seed: int = 0
) -> Path:
    """Random images and labels in Fashion-MNIST's files (uint8 28 x 28, labels 0…9) in ``root``; returns it.

    For tests, examples and smoke runs without the real dataset: ``renyi-prune train --data ROOT``
    (with ``--dataset fashion-mnist``) reads them like the real files. The content is noise: nothing can be
    learned from it.

    Example:
        >>> import tempfile
        >>> root = write_fake_fashion_mnist(Path(tempfile.mkdtemp()), train_images=10, val_images=4)
        >>> sorted(p.name for p in root.iterdir())[:2]
        ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
        >>> len(FashionMNIST(root, "train")), len(FashionMNIST(root, "val"))
        (10, 4)
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", train_images), ("val", val_images)):
        images, labels = _FASHION_MNIST_FILES[split]
        write_idx(root / f"{images}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{labels}.gz", rng.integers(0, len(FASHION_MNIST_CLASSES), n, dtype=np.uint8))
    return root


@functools.lru_cache(maxsize=4)
def _load_split(images: Path, labels: Path, mtimes: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{images} / {labels}: expected uint8 images (N, H, W) and N labels, got {x.dtype} {x.shape} "
            f"and {y.dtype} {y.shape}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(FASHION_MNIST_CLASSES)):
        raise ValueError(f"{labels}: labels outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
    return x, y.astype(np.int64)


class FashionMNIST(Dataset):
    """Fashion-MNIST as a map-style dataset of ``(image, label)``; no download, no torchvision.

    Args:
        root: folder of the IDX files (see :func:`fashion_mnist_dir` for the default).
        split: ``"train"`` (60,000 images) or ``"val"`` (alias ``"test"``: the 10,000 test images).
        transform: applied to the RGB PIL image (e.g. from :func:`build_transform`); ``None`` returns the
            PIL image (mode ``"RGB"``, 28 x 28, gray replicated in R, G and B).

    Item ``i`` is ``(transform(image), label)`` with ``label`` an int in 0…9 (:data:`FASHION_MNIST_CLASSES`).
    The arrays are read once per process and cached (~55 MB for both splits).

    Raises:
        DatasetNotFoundError: the files are missing (the message says how to install them).
        ValueError: a bad split name, or a corrupt/truncated file.

    Example:
        >>> import tempfile
        >>> root = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=8, val_images=4)
        >>> ds = FashionMNIST(root, "test")
        >>> image, label = ds[0]
        >>> len(ds), image.mode, image.size, 0 <= label <= 9
        (4, 'RGB', (28, 28), True)
    """

    classes = FASHION_MNIST_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        split = {"test": "val"}.get(split, split)
        if split not in _FASHION_MNIST_FILES:
            raise ValueError(f"split must be 'train' or 'val' ('test'), got {split!r}")
        self.root = fashion_mnist_dir(root)
        self.split = split
        self.transform = transform
        images, labels = (_find_idx(self.root, stem) for stem in _FASHION_MNIST_FILES[split])
        self.images, self.targets = _load_split(
            images.resolve(), labels.resolve(), (images.stat().st_mtime, labels.stat().st_mtime)
        )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index]).convert("RGB")  # uint8 (H, W) -> mode "L"
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return f"FashionMNIST(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"
