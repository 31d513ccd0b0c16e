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

Transforms come from timm (:func:`timm.data.create_transform`): random resized crop, horizontal flip,
optional RandAugment (``auto_augment``), normalization and RandomErasing for training; resize + center
crop + normalization for evaluation. Mixup/CutMix are batch operations and live in
:mod:`renyi_prune.train` (``timm.data.Mixup``).
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ._io import atomic_write_bytes

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

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

#: Dataset names accepted by :func:`build_datasets` (``--dataset``).
DATASETS = ("fashion-mnist", "imagefolder")
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
_SPLIT_SIZES = {"train": 60000, "val": 10000}
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says how to install them or what to pass instead.

    Example:
        >>> FashionMNIST("/nonexistent/fashion-mnist")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune.data.DatasetNotFoundError: Fashion-MNIST not found: folder ... does not exist. ...
    """


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


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian header, then the raw array); ``.gz`` is gunzipped.

    Returns:
        The array with the shape and dtype the header declares (uint8 for (Fashion-)MNIST), read-only.

    Raises:
        ValueError: not an IDX file, or its size does not match the header (truncated download).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([9, 0, 3]))
        >>> read_idx(path)
        array([9, 0, 3], dtype=uint8)
        >>> _ = path.write_bytes(path.read_bytes()[:-1])
        >>> read_idx(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...labels-idx1-ubyte: 10 bytes, but its header (3,) needs 11 (truncated?)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read IDX file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but its header {shape} needs {expected} (truncated?)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically; returns the path.

    The inverse of :func:`read_idx`. dtypes: uint8, int8, and big-endian int16/int32/float32/float64
    (native-endian arrays are converted).

    Raises:
        ValueError: a dtype IDX cannot hold, or more than 255 dimensions.

    Example:
        >>> import tempfile
        >>> cube = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
        >>> path = write_idx(Path(tempfile.mkdtemp()) / "x-idx3-ubyte.gz", cube)
        >>> read_idx(path).shape, read_idx(path)[1].tolist()
        ((2, 2, 2), [[4, 5], [6, 7]])
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k
             for k, v in _IDX_DTYPES.items()}  # fmt: skip
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes or array.ndim > 255:
        raise ValueError(f"IDX cannot hold a {array.dtype} array of {array.ndim} dimensions")
    header = bytes([0, 0, codes[dtype], array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(dtype, copy=False).tobytes()
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


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

    from .images import open_rgb

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
