"""A probe run: :func:`prepare` (backbone, data, GFLOPs, the plan and its time estimate) and
:func:`run_probe` (features, probes, the α choice on validation, the test rows, the files).

Order of work, so that the test split cannot influence the α choice: train features (unpruned) →
probes → validation split carved out of the train images → its pruned features → α chosen per keep
rate → only then are the test images drawn (their labels read) and classified.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..._argtypes import UsageError
from ..._io import locked_folder
from ...config import PruneConfig
from ...demo.compare import count_config_gflops, flops_model, num_blocks
from .backbone import Backbone, load_backbone
from .cache import FeatureCache, FeatureSet
from .classifiers import Probes, fit_probes, top1_interval
from .config import AUTOCAST_DTYPES, ProbeConfig, default_cache_dir, describe_configs, fmt_alpha
from .data import ProbeData, carve_validation, load_data, stratified_subset
from .features import extract, synchronize, timing_info
from .report import versions, write_outputs
from .selection import CHOSEN_LABEL, choose_alpha

__all__ = ["Prepared", "prepare", "run_probe"]


@dataclass
class Prepared:
    """What :func:`prepare` sets up: the backbone, data, cache, configurations, their GFLOPs per image,
    the planned image counts and the time estimate (seconds, ``None`` before :func:`estimate`).

    Example:
        >>> p = prepare(ProbeConfig())  # doctest: +SKIP
        >>> p.counts, p.backbone.split_at  # doctest: +SKIP
        ({'train': 2000, 'val': 400, 'test': 1000}, 3)
    """

    cfg: ProbeConfig
    backbone: Backbone
    data: ProbeData
    cache: FeatureCache
    configs: list[PruneConfig | None]
    gflops: dict[PruneConfig | None, float]
    depth: int
    counts: dict[str, int] = field(default_factory=dict)
    estimate_s: float | None = None
    rate: float | None = None


def _gflops(backbone: Backbone, cache: FeatureCache, configs: list[PruneConfig | None]) -> dict:
    """GFLOPs per image of each configuration (fvcore; they do not depend on α), from the cache if there."""
    counting, out = None, {}
    for c in configs:
        plain = None if c is None else c.replace(alpha=None)
        key = {
            "kind": "probe-gflops-v1",
            "model": backbone.fingerprint,
            "prune": None if plain is None else plain.to_dict(),
        }
        value = cache.get_json(key)
        if value is None:
            counting = counting or flops_model(backbone.model)
            value = count_config_gflops(counting, plain, backbone.img_size)
            cache.put_json(key, value)
        out[c] = float(value)
    return out


def prepare(cfg: ProbeConfig) -> Prepared:
    """Load the backbone and the data, check the pruning blocks against the model, count GFLOPs.

    Raises:
        renyi_prune._argtypes.UsageError: options that do not fit the model or data (named).
        FileNotFoundError, ValueError, ImportError: the model or dataset cannot be loaded.

    Example:
        >>> estimate(prepare(ProbeConfig(train_images=100)))  # doctest: +SKIP
        probe plan: 13 configurations (unpruned, renyi α=1 r=0.7, ...)
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fashion = (cfg.dataset or ("imagefolder" if cfg.data else "fashion-mnist")) == "fashion-mnist"
    backbone = load_backbone(cfg.model, cfg.checkpoint, cfg.img_size, device, fashion)
    depth = num_blocks(backbone.model)
    if max(cfg.prune_blocks) >= depth:
        raise UsageError(
            f"argument --prune-blocks: block {max(cfg.prune_blocks)}, but the model has {depth} "
            f"blocks (0 … {depth - 1})"
        )
    backbone.set_split(min(cfg.prune_blocks))
    backbone.autocast = AUTOCAST_DTYPES[cfg.dtype]
    data = load_data(cfg.dataset, cfg.data, backbone)
    cache = FeatureCache(cfg.cache_dir or default_cache_dir(), cfg.use_cache)
    configs = cfg.prune_configs()
    prepared = Prepared(cfg, backbone, data, cache, configs, _gflops(backbone, cache, configs), depth)
    n_train = min(cfg.train_images or 10**12, len(data.splits["train"]))
    n_val = min(n_train - 1, max(1, round(cfg.val_fraction * n_train))) if cfg.alpha_choice else 0
    n_test = min(cfg.test_images or 10**12, len(data.splits["val"]))
    prepared.counts = {"train": n_train, "val": n_val, "test": n_test}
    return prepared


def _relative_cost(p: Prepared, configs: list[PruneConfig | None]) -> float:
    """Cost of one image through ``configs`` in unpruned forwards (GFLOPs ratios; the shared prefix once)."""
    ratios = [p.gflops[c] / p.gflops[None] for c in configs]
    if p.backbone.split_at is None:
        return sum(ratios)
    shared = p.backbone.split_at / p.depth
    return shared + sum(r - shared for r in ratios)


def estimate(p: Prepared, log: Callable[[str], Any] = print) -> float:
    """Time unpruned forwards of up to 32 images (one warm-up, the faster of two timed passes) and
    estimate the run's forward time from the GFLOPs; logs the plan. Returns the estimate in seconds
    (cached feature sets would take none of it)."""
    bb = p.backbone
    x = torch.randn(min(32, p.cfg.batch_size), 3, bb.img_size, bb.img_size, device=bb.device)
    seconds = []
    with torch.inference_mode():
        for _ in range(3):
            synchronize(bb.device)
            t0 = time.perf_counter()
            bb.features(x)
            synchronize(bb.device)
            seconds.append(time.perf_counter() - t0)
    p.rate = x.shape[0] / min(seconds[1:])
    renyi = p.cfg.renyi_configs() if p.cfg.alpha_choice else []
    c = p.counts
    cost = (
        c["train"]
        + c["val"] * _relative_cost(p, renyi) * bool(renyi)
        + c["test"] * _relative_cost(p, p.configs)
    )
    p.estimate_s = cost / p.rate
    passes = c["train"] + c["val"] * len(renyi) + c["test"] * len(p.configs)
    timing = timing_info(p.backbone.device)
    log(f"probe plan: {len(p.configs)} configurations ({describe_configs(p.configs)})")
    if timing["device"] == "cpu-interpreter":
        log("  TRITON_INTERPRET is set: the attention runs on Triton's interpreter (many times slower)")
    log(
        f"  image forwards: train {c['train']} (unpruned)"
        + (f" + validation {c['val']} x {len(renyi)} (renyi α)" if renyi else "")
        + f" + test {c['test']} x {len(p.configs)} = {passes:,}; estimated {p.estimate_s / 60:.1f} min at "
        f"{p.rate:.1f} images/s unpruned ({timing['device']}, {timing['threads']} threads"
        + (f", shared first {p.backbone.split_at} blocks" if p.backbone.split_at else "")
        + "), plus fitting the probes; cached feature sets take no time"
    )
    return p.estimate_s


def _extract(p: Prepared, split: str, indices: np.ndarray, configs: list, desc: str) -> tuple:
    """:func:`.features.extract` with the run's backbone, data, cache, batch size and progress bar."""
    return extract(p.backbone, p.data, split, indices, configs, p.cache, p.cfg.batch_size,
                   len(p.cfg.prune_blocks), p.cfg.progress, desc)  # fmt: skip


def _row(config: PruneConfig | None, fs: FeatureSet, probes: Probes, y: np.ndarray, p: Prepared) -> dict:
    lin, knn = probes.predict(fs.features)
    a, a_lo, a_hi = top1_interval(lin, y, p.cfg.bootstrap, p.cfg.seed)
    b, b_lo, b_hi = top1_interval(knn, y, p.cfg.bootstrap, p.cfg.seed)
    return {
        "label": "unpruned" if config is None else config.label,
        "criterion": "unpruned" if config is None else config.name,
        "alpha": None if config is None else config.alpha,
        "keep_rate": 1.0 if config is None else config.keep_rate,
        "alpha_chosen_on_val": False,
        "top1_linear": a,
        "top1_linear_lo": a_lo,
        "top1_linear_hi": a_hi,
        "top1_knn": b,
        "top1_knn_lo": b_lo,
        "top1_knn_hi": b_hi,
        "gflops": p.gflops[config],
        "images_per_s": fs.images_per_s,
        "kept_tokens": "/".join(map(str, fs.kept)),
        "test_images": len(y),
    }


def _with_chosen(rows: list[dict], chosen: dict[float, float]) -> list[dict]:
    """``rows`` with, after the last renyi row of each keep rate, a copy of its chosen α's row."""
    out = []
    for i, row in enumerate(rows):
        out.append(row)
        last_renyi = row["criterion"] == "renyi" and (
            i + 1 == len(rows)
            or rows[i + 1]["criterion"] != "renyi"
            or rows[i + 1]["keep_rate"] != row["keep_rate"]
        )
        r = row["keep_rate"]
        if last_renyi and r in chosen:
            best = next(
                x
                for x in rows
                if x["criterion"] == "renyi" and x["keep_rate"] == r and x["alpha"] == chosen[r]
            )
            label = f"{CHOSEN_LABEL} α={best['label'].split('α=')[1].split()[0]} r={r:g}"
            out.append({**best, "label": label, "criterion": CHOSEN_LABEL, "alpha_chosen_on_val": True})
    return out


def _choose(p: Prepared, train_idx: np.ndarray, train: FeatureSet, y_train: np.ndarray) -> tuple:
    """Validation split, probes on the rest, renyi features of the held-out images, α per keep rate.

    Returns ``(val table, {keep rate: α}, probe info, sizes, image forwards)``."""
    fit, val = carve_validation(y_train, p.cfg.val_fraction, p.cfg.seed)
    probes = fit_probes(train.features[fit], y_train[fit], p.cfg.seed, p.cache)
    renyi = p.cfg.renyi_configs()
    sets, n = _extract(p, "train", train_idx[val], renyi, "validation (renyi α)")
    rows = []
    for c, fs in zip(renyi, sets, strict=True):
        lin, knn = probes.predict(fs.features)
        rows.append(
            {
                "keep_rate": c.keep_rate,
                "alpha": c.alpha,
                "val_top1_linear": 100 * float((lin == y_train[val]).mean()),
                "val_top1_knn": 100 * float((knn == y_train[val]).mean()),
            }
        )
    table = pd.DataFrame(rows)
    return table, choose_alpha(table), probes.info, {"val": len(val), "val_fit": len(fit)}, n


def _meta(p: Prepared, probes: Probes, timing: dict, sizes: dict, extra: dict) -> dict[str, Any]:
    """``config.json``: the configuration, backbone, data, sizes, probes, timing machine and versions."""
    return {
        "config": p.cfg.to_dict(),
        "backbone": p.backbone.describe(),
        "data": {
            "name": p.data.name,
            "root": p.data.root,
            "classes": list(p.data.classes),
            "transform": p.data.transform,
            "train_split": len(p.data.splits["train"]),
            "test_split": len(p.data.splits["val"]),
        },
        "prune_blocks": list(p.cfg.prune_blocks),
        "sizes": sizes,
        "probes": probes.info,
        "timing": timing,
        "bootstrap": p.cfg.bootstrap,
        "bootstrap_method": "percentile, numpy default_rng(seed) resampling "
        "of the test images with replacement; the same resamples for every row",
        "versions": versions(),
        "estimate_s": p.estimate_s,
        "estimate_images_per_s": p.rate,
        **extra,
    }


def run_probe(cfg: ProbeConfig, out: str | Path, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the probe as ``cfg`` says and write its files to ``out`` (see :mod:`.report`).

    Returns:
        ``{"results": DataFrame, "val": DataFrame | None, "chosen": {keep rate: α}, "forward_images": int,
        "wall_time_s": float, "files": [names]}``; ``forward_images`` counts the image forwards run (0 when
        every feature set came from the cache).

    Raises:
        renyi_prune._argtypes.UsageError: options that do not fit the model or data.
        renyi_prune._io.OutputFolderError: ``out`` cannot be written or another run holds it.
        FileNotFoundError, ValueError, ImportError: the model or dataset cannot be loaded.

    Example:
        >>> result = run_probe(ProbeConfig(), "probe-results")  # doctest: +SKIP
        >>> result["results"][["label", "top1_linear"]].head(2)  # doctest: +SKIP
    """
    started = time.perf_counter()
    with locked_folder(Path(out), "renyi-prune probe") as folder:
        p = prepare(cfg)
        estimate(p, log)
        y_all = p.data.labels("train")
        train_idx = stratified_subset(y_all, cfg.train_images, cfg.seed)
        y_train = y_all[train_idx]
        (train,), forwards = _extract(p, "train", train_idx, [None], "train features (unpruned)")
        log(f"fitting the probes on {len(train_idx)} train images")
        probes = fit_probes(train.features, y_train, cfg.seed, p.cache)
        val, chosen, sizes = None, {}, {"train": len(train_idx), "fit": len(train_idx)}
        if cfg.alpha_choice:
            val, chosen, val_info, val_sizes, n = _choose(p, train_idx, train, y_train)
            sizes.update(val_sizes, val_probes=val_info)
            forwards += n
            log(
                "α chosen on validation: "
                + ", ".join(f"r={r:g}: α={fmt_alpha(a)}" for r, a in chosen.items())
            )
        y_val = p.data.labels("val")  # the test split's labels: read only now, after the choice
        test_idx = stratified_subset(y_val, cfg.test_images, cfg.seed)
        sets, n = _extract(p, "val", test_idx, p.configs, "test features")
        forwards += n
        sizes["test"] = len(test_idx)
        rows = [_row(c, fs, probes, y_val[test_idx], p) for c, fs in zip(p.configs, sets, strict=True)]
        results = pd.DataFrame(_with_chosen(rows, chosen))
        wall = time.perf_counter() - started
        meta = _meta(p, probes, sets[0].timing, sizes, {"forward_images": forwards, "wall_time_s": wall})
        files = write_outputs(folder, results, val, chosen, meta)
    return {
        "results": results,
        "val": val,
        "chosen": chosen,
        "forward_images": forwards,
        "wall_time_s": wall,
        "files": files,
    }
