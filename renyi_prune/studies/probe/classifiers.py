"""The two classifiers of the probe, fitted on unpruned CLS features, and top-1 with a bootstrap interval.

* Linear probe: standardized features (``StandardScaler``) → multinomial logistic regression
  (scikit-learn, L-BFGS), its inverse regularization C chosen by stratified k-fold cross-validation
  (accuracy) on the fitting features among :data:`CS` (``LogisticRegressionCV``), then refitted on all of
  them. With fewer than two images in some class no cross-validation is possible: C = 1.
* k-NN as DINOv2's evaluation (Oquab et al., 2023; Wu et al., 2018): cosine similarity, the k = 20
  nearest fitting features vote with weight exp(similarity / 0.07) (``KNeighborsClassifier`` with
  ``metric="cosine"`` and :func:`knn_weights`).
* Top-1 (%) with a 95 % percentile bootstrap interval over the test images: :data:`BOOTSTRAP` resamples
  with replacement, drawn with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["CS", "KNN_K", "KNN_T", "Probes", "fit_probes", "knn_weights", "top1_interval"]

#: Inverse regularization strengths the linear probe's cross-validation chooses among.
CS = tuple(float(c) for c in np.logspace(-4, 0, 5))
#: Neighbours and temperature of the k-NN classifier (DINOv2's evaluation).
KNN_K, KNN_T = 20, 0.07
#: Folds of the linear probe's cross-validation (fewer when a class has fewer fitting images).
CV_FOLDS = 5


def knn_weights(distances: np.ndarray) -> np.ndarray:
    """Vote weights exp(similarity / T) from scikit-learn's cosine distances d = 1 − similarity (scaled by
    exp(−1 / T), which does not change the vote).

    Example:
        >>> w = knn_weights(np.array([[0.0, 0.07]]))
        >>> round(float(w[0, 0] / w[0, 1]), 4)  # exp(0.07 / 0.07) = e
        2.7183
    """
    return np.exp(-np.asarray(distances, dtype=np.float64) / KNN_T)


@dataclass
class Probes:
    """A fitted linear probe and k-NN classifier.

    Attributes:
        linear: ``Pipeline(StandardScaler, LogisticRegression)``. knn: ``KNeighborsClassifier``.
        info: how they were fitted (C, folds, CV accuracy per C, k, images).

    Example:
        >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 1.0], [1.0, 0.1]], np.float32)
        >>> y = np.array([0, 1, 0, 1])
        >>> [p.tolist() for p in fit_probes(x, y).predict(x)]
        [[0, 1, 0, 1], [0, 1, 0, 1]]
    """

    linear: Any
    knn: Any
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels (linear, k-NN) of float32 ``features`` (n, D)."""
        with threadpool_limits(1):
            return self.linear.predict(features), self.knn.predict(features)


def _choose_c(x: np.ndarray, y: np.ndarray, seed: int, folds: int) -> tuple[float, list[float]]:
    """C by stratified ``folds``-fold cross-validation (accuracy) and the mean CV accuracy of each C."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kwargs: dict[str, Any] = {
        "Cs": list(CS),
        "scoring": "accuracy",
        "max_iter": 5000,
        "random_state": seed,
        "cv": StratifiedKFold(folds, shuffle=True, random_state=seed),
    }
    accepted = inspect.signature(LogisticRegressionCV).parameters  # newer scikit-learn: no FutureWarning
    kwargs.update(
        {k: v for k, v in (("l1_ratios", (0.0,)), ("use_legacy_attributes", False)) if k in accepted}
    )
    # the scaler is fitted on all the fitting features; CV compares C values, it does not report an accuracy
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(**kwargs)).fit(x, y)
    lr = model[-1]
    scores = np.asarray(next(iter(lr.scores_.values())) if isinstance(lr.scores_, dict) else lr.scores_)
    per_c = scores.reshape(scores.shape[0], len(CS), -1).mean(axis=(0, 2))
    return float(np.ravel(lr.C_)[0]), [float(s) for s in per_c]


def _regularization(x: np.ndarray, y: np.ndarray, seed: int, cache: Any) -> dict[str, Any]:
    """C by cross-validation (or 1 when a class has a single image), remembered in ``cache`` per features,
    labels, seed, grid and folds; returns the probe info so far."""
    folds = min(CV_FOLDS, int(np.bincount(y).compress(np.bincount(y) > 0).min()))
    info: dict[str, Any] = {"images": len(y), "Cs": list(CS), "cv_folds": folds if folds >= 2 else 0}
    if folds < 2:
        return {
            **info,
            "C": 1.0,
            "cv_accuracy": None,
            "note": "too few images per class for cross-validation",
        }
    digest = hashlib.sha256(x.tobytes() + y.astype(np.int64).tobytes()).hexdigest()
    key = {"kind": "probe-cv-v1", "features": digest, "seed": seed, "Cs": list(CS), "folds": folds}
    found = cache.get_json(key) if cache is not None else None
    if found is None:
        c, per_c = _choose_c(x, y, seed, folds)
        if cache is not None:
            cache.put_json(key, {"C": c, "cv_accuracy": per_c})
    else:
        c, per_c = float(found["C"]), list(found["cv_accuracy"])
    return {**info, "C": c, "cv_accuracy": per_c}


def fit_probes(x: np.ndarray, y: np.ndarray, seed: int = 0, cache: Any = None) -> Probes:
    """Fit the linear probe (C by cross-validation) and the k-NN classifier on features ``x`` (n, D),
    labels ``y`` (n,). ``cache`` (a :class:`~.cache.FeatureCache`) remembers the chosen C of these exact
    features, labels and seed, so that a rerun fits once instead of once per C and fold.

    Raises:
        ValueError: fewer than two images, or a single class.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat(np.arange(3), 30)
        >>> x = (np.eye(3)[y] * 3 + rng.normal(size=(90, 3))).astype(np.float32)
        >>> probes = fit_probes(x, y)
        >>> lin, knn = probes.predict(x)
        >>> bool((lin == y).mean() > 0.8), bool((knn == y).mean() > 0.8), probes.info["k"]
        (True, True, 20)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise ValueError(f"need at least two images of two classes to fit a probe, got {len(y)} image(s)")
    with threadpool_limits(1):  # small BLAS calls: extra threads only spin, badly so on a busy machine
        info = _regularization(x, y, seed, cache)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            linear = make_pipeline(
                StandardScaler(), LogisticRegression(C=info["C"], max_iter=5000, random_state=seed)
            )
            linear.fit(x, y)
        k = min(KNN_K, len(y))
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights=knn_weights, algorithm="brute")
        knn.fit(x, y)
    info.update(k=k, temperature=KNN_T)
    return Probes(linear, knn, info)


def top1_interval(
    predicted: np.ndarray, labels: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Top-1 (%) of ``predicted`` against ``labels`` and its 95 % percentile bootstrap interval (%):
    ``resamples`` draws of the test images with replacement (``numpy.random.default_rng(seed)``).

    Raises:
        ValueError: no labels, or ``predicted`` and ``labels`` of different lengths.

    Example:
        >>> y = np.arange(200) % 4
        >>> pred = np.where(np.arange(200) < 150, y, -1)  # 75 % right
        >>> top1, lo, hi = top1_interval(pred, y)
        >>> top1, lo < top1 < hi, 65 < lo and hi < 85
        (75.0, True, True)
    """
    correct = np.asarray(predicted) == np.asarray(labels)
    n = len(correct)
    if n == 0 or len(predicted) != len(labels):
        raise ValueError(f"need as many predictions as labels (> 0), got {len(predicted)} and {len(labels)}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # chunks bound the memory: 256 x n booleans
        stop = min(resamples, start + 256)
        means[start:stop] = correct[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return 100.0 * float(correct.mean()), 100.0 * float(lo), 100.0 * float(hi)
