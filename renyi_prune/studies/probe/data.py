"""The images of a probe run: the dataset's train and val splits with the backbone's preprocessing, their
labels, fixed stratified subsets, the validation split carved out of the train images, and an identity
of the dataset for the feature cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ...data import DataConfig, build_transform
from ...train.loaders import load_datasets
from .backbone import Backbone

__all__ = ["ProbeData", "stratified_subset"]


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted positions of ``n`` items of ``labels`` drawn with ``seed``, each class in proportion
    (scikit-learn's stratified split; a plain random draw when a class has too few items). All of them
    when ``n`` is ``None`` or at least ``len(labels)``.

    Example:
        >>> y = np.repeat(np.arange(4), 25)
        >>> idx = stratified_subset(y, 20, seed=0)
        >>> len(idx), np.bincount(y[idx]).tolist(), bool((np.diff(idx) > 0).all())
        (20, [5, 5, 5, 5], True)
    """
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    try:
        chosen, _ = train_test_split(positions, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # a class with a single item, or fewer items than classes
        chosen = np.random.default_rng(seed).permutation(len(labels))[:n]
    return np.sort(chosen)


def _fingerprint_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fingerprint_folder(samples: list[tuple[str, int]], root: Path) -> str:
    h = hashlib.sha256()
    for path, label in samples:
        st = Path(path).stat()
        h.update(f"{Path(path).relative_to(root)}:{label}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class ProbeData:
    """The two splits (``"train"``, ``"val"``) of a dataset, preprocessed for one backbone.

    Attributes:
        name: ``"fashion-mnist"`` or ``"imagefolder"``. root: the folder given (``None``: the default).
        splits: ``{"train": Dataset, "val": Dataset}`` of ``(float32 (3, S, S) tensor, label)``.
        classes: class names. transform: the preprocessing as a dict (``DataConfig.as_dict``).

    Example:
        >>> import tempfile
        >>> from renyi_prune.data import FashionMNIST, write_fake_fashion_mnist
        >>> root = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=6, val_images=3)
        >>> data = ProbeData("fashion-mnist", root, {s: FashionMNIST(root, s) for s in ("train", "val")},
        ...                  ("a",) * 10, {"img_size": 28})
        >>> data.labels("val").shape, len(data.identity("train"))
        ((3,), 64)
    """

    name: str
    root: Path | None
    splits: dict[str, Dataset]
    classes: tuple[str, ...]
    transform: dict[str, Any]
    _identity: dict[str, str] = field(default_factory=dict, repr=False)

    def labels(self, split: str, indices: np.ndarray | None = None) -> np.ndarray:
        """int64 labels of ``split`` (at ``indices``), read from the dataset's targets, not its images."""
        y = np.asarray(self.splits[split].targets, dtype=np.int64)
        return y if indices is None else y[np.asarray(indices)]

    def identity(self, split: str) -> str:
        """SHA-256 (hex) of the split's content: Fashion-MNIST's pixel and label arrays, or the
        ImageFolder's file list with sizes and modification times; with the preprocessing (computed once
        per split)."""
        if split not in self._identity:
            ds = self.splits[split]
            if hasattr(ds, "images"):
                content = _fingerprint_arrays(ds.images, np.asarray(ds.targets))
            else:
                content = _fingerprint_folder(ds.samples, Path(ds.root))
            text = f"{self.name}:{split}:{content}:{sorted(self.transform.items())}"
            self._identity[split] = hashlib.sha256(text.encode()).hexdigest()
        return self._identity[split]


def load_data(dataset: str | None, root: Path | None, backbone: Backbone) -> ProbeData:
    """Both splits of the dataset with ``backbone``'s evaluation preprocessing (timm's resize, center
    crop at ``backbone.crop_pct``, normalization with its mean/std; grey images are RGB already).

    Raises:
        renyi_prune._argtypes.UsageError: ``--data`` does not hold the dataset, imagefolder without it.
        renyi_prune.data.DatasetNotFoundError: Fashion-MNIST is not installed (the message says how).
    """
    name = dataset or ("imagefolder" if root is not None else "fashion-mnist")
    cfg = DataConfig(
        backbone.img_size,
        tuple(backbone.mean),
        tuple(backbone.std),
        backbone.interpolation,
        backbone.crop_pct,
    )

    splits, classes = load_datasets(SimpleNamespace(data=root), name, root)  # data: given by --data
    transform = build_transform(cfg, is_training=False)
    for ds in splits.values():
        ds.transform = transform
    return ProbeData(name, root, splits, tuple(classes), cfg.as_dict())


def carve_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) positions into ``labels``: ``fraction`` of them for validation, stratified when every
    class has at least two items, with ``seed``; both sorted, disjoint, covering all.

    Raises:
        ValueError: fewer than 2 items (nothing to split).

    Example:
        >>> fit, val = carve_validation(np.repeat(np.arange(2), 10), 0.2, seed=0)
        >>> len(fit), len(val), sorted(set(fit) | set(val)) == list(range(20))
        (16, 4, True)
    """
    n = len(labels)
    if n < 2:
        raise ValueError(f"need at least 2 train images to carve a validation split, got {n}")
    n_val = min(n - 1, max(1, round(fraction * n)))
    val = stratified_subset(labels, n_val, seed + 1)
    fit = np.setdiff1d(np.arange(n), val)
    return fit, val
