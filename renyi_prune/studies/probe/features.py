"""CLS features of a set of images under several pruning configurations, from the cache or computed.

The images are read and preprocessed once per batch; every configuration whose features are not cached
runs on that batch (round robin, so that a change of machine load affects all alike). When the
backbone's forward can be split (:meth:`Backbone.set_split`), the blocks before the first pruning
block run once per batch, unpruned, and each configuration runs only the rest; its forward time is
the shared part's plus its own. Times exclude data loading; on CUDA they are synchronized.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ...bench._common import cpu_model
from ...config import PruneConfig
from ...criteria import get_criterion
from ...demo.compare import applied, num_prefix_tokens, patch_grid
from ...kernels import is_interpreting
from ...pruning import kept_token_indices, pruning_generators
from .backbone import Backbone
from .cache import FeatureCache, FeatureSet
from .data import ProbeData

__all__ = ["extract", "timing_info"]


def timing_info(device: torch.device) -> dict[str, Any]:
    """Where forward times are measured: device (GPU name or ``cpu``), torch threads, CPU model.

    Example:
        >>> sorted(timing_info(torch.device("cpu")))
        ['cpu', 'device', 'threads']
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = "cpu-interpreter" if is_interpreting() else "cpu"  # TRITON_INTERPRET=1: Triton's interpreter
    return {"device": name, "threads": torch.get_num_threads(), "cpu": cpu_model()}


def feature_key(
    backbone: Backbone,
    data: ProbeData,
    split: str,
    indices: np.ndarray,
    config: PruneConfig | None,
    batch_size: int,
) -> dict[str, Any]:
    """The cache key of one feature set (see :mod:`.cache`)."""
    from ... import __version__

    key = {
        "kind": "probe-features-v1",
        "package": __version__,
        "model": backbone.fingerprint,
        "data": data.identity(split),
        "indices": hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest(),
        "n": len(indices),
        "prune": None if config is None else config.to_dict(),
        "device": backbone.device.type,
    }
    if backbone.autocast is not None:  # fp32 keys stay as they were (earlier caches remain valid)
        key["autocast"] = str(backbone.autocast)
    if config is not None and not get_criterion(config.criterion).deterministic:
        key["batch_size"] = batch_size  # a random criterion's draws follow the batches
    return key


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _kept(backbone: Backbone, config: PruneConfig | None, n_blocks: int) -> list[int]:
    """Patch tokens kept after each pruning block by the last forward (all patches when unpruned)."""
    if config is None:
        gh, gw = patch_grid(backbone.model)
        return [gh * gw] * n_blocks
    npt = num_prefix_tokens(backbone.model)
    kept = kept_token_indices(backbone.model)
    return [int(kept[b].shape[1]) - npt for b in sorted(kept)]


class _Runner:
    """Runs one configuration after another on the batches, keeping each one's random streams."""

    def __init__(self, backbone: Backbone, configs: Sequence[PruneConfig | None], n_blocks: int) -> None:
        self.backbone, self.configs, self.n_blocks = backbone, list(configs), n_blocks
        self.feats: list[list[torch.Tensor]] = [[] for _ in configs]
        self.seconds = [0.0] * len(configs)
        self.timed = [0] * len(configs)
        self.kept: list[list[int] | None] = [None] * len(configs)
        self.rng: list[list[torch.Tensor] | None] = [None] * len(configs)

    def batch(self, x: torch.Tensor, timed: bool, bar: Any) -> None:
        bb, dev = self.backbone, self.backbone.device
        shared = 0.0
        if bb.split_at is not None:
            synchronize(dev)
            t0 = time.perf_counter()
            tokens = bb.prefix(x)
            synchronize(dev)
            shared = time.perf_counter() - t0
        for i, config in enumerate(self.configs):
            with applied(bb.model, config):
                gens = pruning_generators(bb.model)
                for g, state in zip(gens, self.rng[i] or [], strict=False):
                    g.set_state(state)
                synchronize(dev)
                t0 = time.perf_counter()
                f = bb.suffix(tokens) if bb.split_at is not None else bb.features(x)
                synchronize(dev)
                elapsed = time.perf_counter() - t0 + shared
                self.rng[i] = [g.get_state() for g in gens]
                if self.kept[i] is None:
                    self.kept[i] = _kept(bb, config, self.n_blocks)
            # a copy: f is a view of the (B, N, D) tokens, which the run must not keep alive batch after
            # batch (the 224-px study grew to 24 GB and was killed)
            self.feats[i].append(f.to(device="cpu", dtype=torch.float32, copy=True))
            if timed:
                self.seconds[i] += elapsed
                self.timed[i] += x.shape[0]
            if bar is not None:
                bar.update(x.shape[0])


def extract(
    backbone: Backbone,
    data: ProbeData,
    split: str,
    indices: np.ndarray,
    configs: Sequence[PruneConfig | None],
    cache: FeatureCache,
    batch_size: int,
    n_blocks: int,
    progress: bool = True,
    desc: str = "",
) -> tuple[list[FeatureSet], int]:
    """Feature sets of the images ``indices`` of ``split``, one per configuration (``None``: unpruned).

    Returns:
        ``(sets, forwards)``: a :class:`FeatureSet` per configuration, in order (features float32
        (len(indices), D)), and the image forwards this call ran (0 when everything was cached).

    Example:
        >>> configs = [None, PruneConfig(keep_rate=0.5)]
        >>> sets, forwards = extract(backbone, data, "val", np.arange(100), configs, cache, batch_size=64,
        ...                          n_blocks=3)  # doctest: +SKIP
        >>> sets[1].features.shape, sets[1].kept, forwards  # doctest: +SKIP
        ((100, 384), [32, 16, 8], 200)
    """
    keys = [feature_key(backbone, data, split, indices, c, batch_size) for c in configs]
    sets: list[FeatureSet | None] = [cache.get_features(k, len(indices)) for k in keys]
    missing = [i for i, s in enumerate(sets) if s is None]
    if not missing:
        return sets, 0  # type: ignore[return-value]
    from tqdm.auto import tqdm

    runner = _Runner(backbone, [configs[i] for i in missing], n_blocks)
    loader = DataLoader(Subset(data.splits[split], [int(i) for i in indices]), batch_size=batch_size)
    n_batches = len(loader)
    total = len(indices) * len(missing)
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, file=sys.stderr) as bar:
        with torch.inference_mode():
            for b, (x, _) in enumerate(loader):
                runner.batch(x.to(backbone.device), timed=b > 0 or n_batches == 1, bar=bar)
    timing = timing_info(backbone.device)
    for j, i in enumerate(missing):
        fs = FeatureSet(
            torch.cat(runner.feats[j]).numpy(),
            runner.kept[j] or [],
            runner.seconds[j],
            runner.timed[j],
            timing,
        )
        cache.put_features(keys[i], fs)
        sets[i] = fs
    return sets, total  # type: ignore[return-value]
