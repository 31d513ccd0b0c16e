"""The up-front duration estimate of ``renyi-prune bench e2e`` on the CPU, and the timing settings it
shares with the run (:func:`renyi_prune.bench.e2e.estimate_seconds` re-exports it)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ._e2e_setup import (
    CPU_TIMING,
    CUDA_TIMING,
    DTYPES,
    Settings,
    alphas,
    create_model,
    expected_tokens,
    get_config,
    interleaved,
    model_img_size,
)

__all__ = ["estimate_seconds"]


def _timing_settings(s: Settings, device: str) -> dict:
    """``warmup_ms``, ``run_ms``, ``repeats``: the settings' values, else the device's defaults."""
    timing = dict(CUDA_TIMING if device.startswith("cuda") else CPU_TIMING)
    for key in timing:
        if getattr(s, key) is not None:
            timing[key] = getattr(s, key)
    return timing


def _relative_cost(depth: int, num_tokens: int, blocks: Sequence[int], kept: Sequence[int]) -> float:
    """The tokens the blocks process, as a fraction of the unpruned model's: ``kept[i]`` tokens after
    pruning block ``blocks[i]`` (a rough measure of a pruned forward's cost).

    Example:
        >>> _relative_cost(4, 10, [1], [5])  # blocks 0, 1 see 10 tokens, blocks 2, 3 see 5
        0.75
    """
    after = dict(zip(sorted(blocks), kept, strict=True))
    total, tokens = 0, num_tokens
    for block in range(depth):
        total += tokens
        tokens = after.get(block, tokens)
    return total / (depth * num_tokens)


def estimate_seconds(settings: Settings) -> tuple[float, str]:
    """A rough duration of :func:`run_benchmark` on the CPU, before it starts: one forward of each model
    at the settings' batch is timed (after an untimed one of one image), then multiplied by the forwards
    the run makes (reference, guard, the check, warm-up and timed calls of each row), each pruned one
    weighted by the share of tokens its blocks process. GFLOPs counts and ``compile`` times are not
    included. Returns (seconds, a one-line explanation).

    Example:
        >>> s = Settings(models=["test_vit"], configs=["unpruned", "evit"], keep_rates=[0.5], img_size=32,
        ...              prune_blocks=[1, 3, 5], batch=1, device="cpu", repeats=2)
        >>> seconds, detail = estimate_seconds(s)
        >>> seconds > 0, detail.split(": ")[0]
        (True, 'test_vit')
    """
    from ._e2e_model import _forward_fn

    s = settings
    device = s.device or "cpu"
    dtype = DTYPES[s.dtype or ("bf16" if device.startswith("cuda") else "fp32")]
    timing = _timing_settings(s, device)
    configs = [get_config(c) for c in s.configs]
    total, parts = 0.0, []
    for name in s.models:
        model = create_model(name, s.img_size, device)
        size = model_img_size(model)
        _forward_fn(torch.randn(1, 3, *size, device=device), device, dtype)(model)  # untimed: lazy set-ups
        x = torch.randn(s.batch, 3, *size, device=device)
        forward = _forward_fn(x, device, dtype)
        start = time.perf_counter()
        forward(model)
        cost = time.perf_counter() - start
        iters = max(1, round(timing["run_ms"] / 1e3 / cost)) if timing["run_ms"] > 0 else 1
        warm = 0 if interleaved(s, device) else max(1, round(timing["warmup_ms"] / 1e3 / cost))
        per_rate = (
            1 + warm + timing["repeats"] * iters
        )  # the check, warm-up (round-robin: the check), timed calls
        n_tokens, n_prefix = model.patch_embed.num_patches + model.num_prefix_tokens, model.num_prefix_tokens
        forwards = 1.0 + (dtype != torch.float32)  # the reference logits (and the dtype's noise)
        for config in [c for c in configs for _ in alphas(s, c)]:  # one row set per α of renyi
            if config.criterion is None:
                forwards += per_rate
                continue
            forwards += 2 if config.fusion else 1  # the guard at keep rate 1
            for rate in s.keep_rates:
                kept = expected_tokens(n_tokens, n_prefix, rate, len(s.prune_blocks), config.fusion)
                forwards += per_rate * _relative_cost(len(model.blocks), n_tokens, s.prune_blocks, kept)
        total += cost * forwards
        parts.append(f"{name}: one forward of batch {s.batch} took {cost:.2g} s, about {forwards:.0f} "
                     "such forwards")  # fmt: skip
        del model, x
    note = "; plus compiling" if s.compile else ""
    return total, "; ".join(parts) + note
