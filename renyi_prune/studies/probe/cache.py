"""The probe's disk cache: feature sets (``.npz``) and small JSON records (GFLOPs, cross-validated C),
each under the SHA-256 of a JSON key that names everything the stored value depends on.

A feature set's key holds the backbone's fingerprint (class, input size, every weight), the dataset
split's identity (content and preprocessing), the image indices, the pruning configuration
(:meth:`renyi_prune.PruneConfig.to_dict`; ``None`` unpruned), the device type (the Triton and CPU
paths may differ in the last bits), the package version, and for a criterion that draws random numbers
the batch size (its draws follow the batches). Files are written atomically; an unreadable or
mismatched file is a miss.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._io import atomic_write_bytes, jsonable

__all__ = ["FeatureCache", "FeatureSet", "cache_key"]


def cache_key(key: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``key`` as sorted strict JSON (α = ∞ as ``"inf"``).

    Example:
        >>> cache_key({"a": 1, "alpha": float("inf")}) == cache_key({"alpha": float("inf"), "a": 1})
        True
    """
    text = json.dumps(jsonable(key), sort_keys=True, allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FeatureSet:
    """CLS features of some images under one configuration, with how they were computed.

    Attributes:
        features: float32 (n, D). kept: patch tokens kept after each pruning block (all the model's
            patches at each for the unpruned model). seconds: forward time of the timed images (s).
        timed_images: images those seconds cover (the first batch, a warm-up, is not timed when there
            are others). timing: device, threads and CPU model of the measurement.

    Example:
        >>> FeatureSet(np.zeros((4, 2), np.float32), [2, 1], seconds=0.5, timed_images=4).images_per_s
        8.0
    """

    features: np.ndarray
    kept: list[int]
    seconds: float
    timed_images: int
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        """Throughput of the forward passes (images / s); NaN when nothing was timed."""
        return self.timed_images / self.seconds if self.seconds > 0 else float("nan")


class FeatureCache:
    """Feature sets and JSON records in ``folder``; with ``enabled=False`` every lookup misses and
    nothing is written.

    Example:
        >>> import tempfile
        >>> cache = FeatureCache(Path(tempfile.mkdtemp()))
        >>> fs = FeatureSet(np.ones((2, 3), np.float32), [4, 2], 0.5, 2, {"device": "cpu"})
        >>> cache.put_features({"x": 1}, fs)
        >>> got = cache.get_features({"x": 1}, n=2)
        >>> got.features.shape, got.kept, got.images_per_s, cache.get_features({"x": 2}, n=2)
        ((2, 3), [4, 2], 4.0, None)
    """

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled

    def _path(self, key: dict[str, Any], suffix: str) -> Path:
        digest = cache_key(key)
        return self.folder / digest[:2] / f"{digest}{suffix}"

    def get_features(self, key: dict[str, Any], n: int) -> FeatureSet | None:
        """The stored feature set of ``key`` if it holds ``n`` rows, else ``None``."""
        if not self.enabled:
            return None
        path = self._path(key, ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                features, meta = z["features"], json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError):
            return None
        if features.ndim != 2 or features.shape[0] != n or meta.get("key") != jsonable(key):
            return None
        return FeatureSet(
            features,
            list(meta["kept"]),
            float(meta["seconds"]),
            int(meta["timed_images"]),
            dict(meta.get("timing", {})),
        )

    def put_features(self, key: dict[str, Any], fs: FeatureSet) -> None:
        """Store ``fs`` under ``key`` (atomically); nothing when disabled."""
        if not self.enabled:
            return
        meta = {
            "key": jsonable(key),
            "kept": fs.kept,
            "seconds": fs.seconds,
            "timed_images": fs.timed_images,
            "timing": jsonable(fs.timing),
        }
        buf = io.BytesIO()
        np.savez(buf, features=fs.features.astype(np.float32), meta=np.array(json.dumps(meta)))
        atomic_write_bytes(self._path(key, ".npz"), buf.getvalue())

    def get_json(self, key: dict[str, Any]) -> Any:
        """The value stored under ``key`` by :meth:`put_json`, or ``None``."""
        if not self.enabled:
            return None
        try:
            record = json.loads(self._path(key, ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record.get("value") if record.get("key") == jsonable(key) else None

    def put_json(self, key: dict[str, Any], value: Any) -> None:
        """Store a JSON-ready ``value`` under ``key`` (atomically); nothing when disabled."""
        if self.enabled:
            text = json.dumps({"key": jsonable(key), "value": jsonable(value)}, allow_nan=False)
            atomic_write_bytes(self._path(key, ".json"), text.encode())
