"""Model runs of the demo: the unpruned reference, each configuration's fidelity, GFLOPs, kept tokens
and speed, and the per-patch entropy maps.

Units: GFLOPs per image in fvcore's convention (one multiply-add = one FLOP), images/s of the whole
batch on this machine (the shared timer of :mod:`renyi_prune._timing`: the median pass and the
interquartile range, min and max of the timed passes), entropies in nats.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._io import jsonable
from .._timing import Timing, measure, paired_ratio
from ..adapters import adapter_for
from ..config import DEFAULT_PRUNE_BLOCKS, PruneConfig
from ..flops import count_flops
from ..ops import eager_on_cpu
from ..pruning import kept_token_indices, patch, token_scores, unpatch
from .config import label

#: Nothing here is in ``__all__`` (each function needs a model to run; ``tests/test_demo.py`` runs them);
#: :mod:`renyi_prune.demo` re-exports them by name.
__all__: list[str] = []

#: Kept token indices of one configuration: ``kept_token_indices(model)`` on the CPU (``None``: unpruned).
Kept = dict[int, torch.Tensor] | None


def cls_embedding(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's final image embedding (B, D).

    timm: ``forward_head(forward_features(x), pre_logits=True)``; for timm ViTs with token pooling, e.g.
    the default DINOv2 (``num_classes=0``), this is the CLS token after the final norm, i.e. exactly
    ``model(x)``. A ``transformers`` model: the CLS token of its base model's ``last_hidden_state``
    (after the final layer norm).
    """
    if hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model.base_model(pixel_values=x).last_hidden_state[:, 0]


def num_blocks(model: nn.Module) -> int:
    """The model's transformer blocks (as its pruning adapter counts them: timm ``blocks``, transformers
    layers)."""
    return len(adapter_for(model).blocks(model))


def num_prefix_tokens(model: nn.Module) -> int:
    """Tokens before the patches (CLS, distillation, registers), as the pruning adapter counts them."""
    return adapter_for(model).num_prefix_tokens(model)


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """(rows, columns) of patches: timm's ``patch_embed.grid_size``, else ``config.image_size //
    config.patch_size`` of a ``transformers`` model (which the demo runs at its ``image_size``)."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        gh, gw = embed.grid_size
        return int(gh), int(gw)
    size, patch = model.config.image_size, model.config.patch_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    patch = patch if isinstance(patch, (tuple, list)) else (patch, patch)
    return int(size[0]) // int(patch[0]), int(size[1]) // int(patch[1])


@contextlib.contextmanager
def applied(model: nn.Module, config: PruneConfig | None) -> Iterator[nn.Module]:
    """Context manager: ``model`` patched with ``config`` (left as is for ``None``), unpatched on exit."""
    if config is not None:
        patch(model, config)
    try:
        yield model
    finally:
        unpatch(model)


def flops_model(model: nn.Module) -> nn.Module:
    """The model to count FLOPs on: ``model`` itself if it is on the CPU, else a CPU copy of it."""
    param = next(model.parameters(), None)
    if param is None or param.device.type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


def count_config_gflops(model: nn.Module, config: PruneConfig | None, img_size: int) -> float:
    """GFLOPs per image of ``config`` (fvcore convention), counted by fvcore on the eager CPU path.

    ``model`` must be on the CPU (:func:`flops_model`). On the eager path every attention statistic is
    plain PyTorch that fvcore's tracer can follow; the Triton column-norm pass of ``colln`` (and of
    ``headvar``/``headmad`` with ``source="column"``) cannot be traced by fvcore. The count is the same
    as on the Triton path wherever both can be counted (fvcore counts the matrix products; the fused
    Rényi op is counted as the two matmuls of attention), and for ``colln`` it includes the
    column pass's q·kᵀ (the eager pass materializes P; the Triton pass recomputes the same logits).
    """
    with eager_on_cpu(), applied(model, config):
        return count_flops(model, img_size)


def evaluate_config(
    model: nn.Module,
    x: torch.Tensor,
    config: PruneConfig | None,
    ref: torch.Tensor,
    img_size: int,
    gflops: float | None = None,
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS,
) -> tuple[dict[str, Any], Kept]:
    """Fidelity, GFLOPs and kept tokens of one configuration (its forward also warms it up for timing).

    ``gflops``, when given, is used instead of counting them again with :func:`count_config_gflops`
    (fvcore counts the matrix products, which depend on the criterion and keep rate, not on α).

    ``patch_tokens_kept`` are the patch tokens each pruning block keeps (``k``; with token fusion a
    fused token kept from an earlier block counts as one of them, and the new fused token the block
    appends is not counted: ``fused_token`` says that there is one). For the unpruned row they are the
    model's patches at each of ``prune_blocks`` (the pruning blocks of the other rows).

    Returns:
        ``(row, kept)``: the report row (JSON-ready, without ``images_per_s``) and, for a pruned config,
        the :func:`renyi_prune.kept_token_indices` of the batch on the CPU (``None`` when unpruned).
    """
    with applied(model, config):
        feat = cls_embedding(model, x)
        kept = None if config is None else {b: i.cpu() for b, i in kept_token_indices(model).items()}
    if gflops is None:
        gflops = count_config_gflops(flops_model(model), config, img_size)
    cos = F.cosine_similarity(feat.double(), ref.double(), dim=-1)  # per image, in float64
    row = {
        "label": label(config),
        "criterion": "none" if config is None else config.name,
        "patch_criterion": None if config is None else config.criterion,
        "criterion_params": {} if config is None else _plain_params(config),
        "fused_token": config is not None and config.fuse_pruned,
        "alpha": None if config is None else jsonable(config.alpha),
        "keep_rate": 1.0 if config is None else config.keep_rate,
        "prune_config": None if config is None else config.to_dict(),
        "gflops": gflops,
        "cls_cosine_mean": cos.mean().item(),
        "cls_cosine_min": cos.min().item(),
        "patch_tokens_kept": _tokens_kept(model, kept, prune_blocks),
    }
    return row, kept


def _tokens_kept(model: nn.Module, kept: Kept, prune_blocks: Sequence[int]) -> list[int]:
    """Patch tokens after each pruning block (all of the model's patches when unpruned)."""
    if kept is None:
        gh, gw = patch_grid(model)
        return [gh * gw] * len(prune_blocks)
    npt = num_prefix_tokens(model)
    return [kept[b].shape[1] - npt for b in sorted(kept)]


def _plain_params(config: PruneConfig) -> dict[str, Any]:
    """The criterion's parameters besides α and the attention backend (JSON-ready)."""
    return {k: v for k, v in config.criterion_params.items() if k not in ("alpha", "backend")}


def time_configs(
    model: nn.Module, x: torch.Tensor, configs: Sequence[PruneConfig | None], repeats: int, bar: Any = None
) -> list[Timing]:
    """The forward passes of ``x`` through each configuration, timed by the shared timer
    (:func:`renyi_prune._timing.measure`: one wall-clock call on the CPU, ``do_bench`` on CUDA), ``repeats``
    rounds; one :class:`renyi_prune._timing.Timing` (ms per batch: median, IQR, min, max) per configuration.

    The configurations are timed round-robin (one pass of every configuration per round), so a change
    in machine load during the run affects all of them alike rather than a few. Each configuration
    should have run once before (warm-up; :func:`evaluate_config` does it). ``bar`` (a tqdm bar or
    ``None``) is advanced once per timed pass.
    """
    times_ms: list[list[float]] = [[] for _ in configs]
    for _ in range(repeats):
        for times, config in zip(times_ms, configs, strict=True):
            with applied(model, config):
                times += measure(lambda: model(x), str(x.device), 1, warmup_calls=0).times_ms
            if bar is not None:
                bar.update()
    return [Timing(tuple(times)) for times in times_ms]


def speed_columns(timing: Timing, batch: int, reference: Timing | None = None) -> dict[str, Any]:
    """A report row's speed: ``images_per_s`` of the median pass, its interquartile range
    ``images_per_s_iqr`` and its ``images_per_s_min`` / ``_max`` (slowest / fastest pass), the
    ``timed_passes``, and with ``reference`` (the unpruned model's timing) the ``speed_up`` over it.

    ``speed_up`` is :func:`renyi_prune._timing.paired_ratio`: the configurations are timed round-robin, so
    it is the median over rounds of the per-round ratio (reference pass time / this pass time), or the
    ratio of the two medians when the passes do not pair up (e.g. on CUDA, ``do_bench``).

    Example:
        >>> cols = speed_columns(Timing((100.0, 200.0, 400.0)), 10, reference=Timing((200.0, 300.0, 1200.0)))
        >>> cols["images_per_s"], cols["images_per_s_min"], cols["images_per_s_max"], cols["timed_passes"]
        (50.0, 25.0, 100.0, 3)
        >>> cols["speed_up"]  # per round 2, 1.5, 3
        2.0
    """
    tp = timing.throughput(batch)
    cols = {
        "images_per_s": tp["median"],
        "images_per_s_iqr": tp["iqr"],
        "images_per_s_min": tp["min"],
        "images_per_s_max": tp["max"],
        "timed_passes": timing.repeats,
    }
    if reference is not None:
        cols["speed_up"] = paired_ratio(reference, timing)
    return cols


def entropy_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Shannon attention entropy (nats, mean over heads) of every patch token in every block.

    The model is patched with ``keep_rate=1.0`` at all blocks (nothing is pruned, the scores are
    recorded), run once, and unpatched.

    Returns:
        ``(depth, B, gh, gw)`` float32 CPU tensor.
    """
    npt = num_prefix_tokens(model)
    gh, gw = patch_grid(model)
    every_block = PruneConfig("renyi", keep_rate=1.0, alpha=1.0, prune_blocks=range(num_blocks(model)))
    with applied(model, every_block):
        model(x)
        scores = token_scores(model)
    maps = [scores[b][:, npt:].float().reshape(-1, gh, gw) for b in sorted(scores)]
    return torch.stack(maps).cpu()


def compare(
    model: nn.Module,
    x: torch.Tensor,
    configs: Sequence[PruneConfig | None],
    ref: torch.Tensor,
    img_size: int,
    repeats: int,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[Kept]]:
    """Evaluate every configuration (:func:`evaluate_config`), then time them all (:func:`time_configs`).

    Returns:
        ``(rows, kept)``: one report row per configuration (with :func:`speed_columns`, ``speed_up`` over
        the unpruned configuration ``None`` when it is among ``configs``; the unpruned row's
        ``patch_tokens_kept`` are the model's patches at each pruning block of the others) and the kept
        token indices of each configuration, in ``configs`` order.
    """
    from tqdm.auto import tqdm

    rows, kept, gflops = [], [], {}
    blocks = next((c.prune_blocks for c in configs if c is not None), DEFAULT_PRUNE_BLOCKS)
    counting_model = flops_model(model)
    with tqdm(
        total=len(configs) * (1 + repeats),
        desc="renyi-prune demo",
        unit="run",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for config in configs:
            key = None if config is None else config.replace(alpha=None)  # GFLOPs do not depend on α
            if key not in gflops:
                gflops[key] = count_config_gflops(counting_model, config, img_size)
            row, k = evaluate_config(model, x, config, ref, img_size, gflops[key], blocks)
            rows.append(row)
            kept.append(k)
            bar.update()
        timings = time_configs(model, x, configs, repeats, bar)
    reference = timings[list(configs).index(None)] if None in configs else None
    for row, timing in zip(rows, timings, strict=True):
        row.update(speed_columns(timing, x.shape[0], reference))
    return rows, kept
