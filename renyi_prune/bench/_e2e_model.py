"""One model of an end-to-end benchmark run (:mod:`renyi_prune.bench.e2e`): the model, its input batch and
timed forward, its unpatched reference logits and the guard's tolerance (:class:`ModelRun`), and the
row cells every row of a configuration shares."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _common
from ._e2e_setup import (
    CSV_COLUMNS,
    Config,
    CorrectnessError,
    Settings,
    config_impl,
    create_model,
    expected_tokens,
    interleaved,
    logit_tolerance,
    model_img_size,
)


@dataclass
class ModelRun:
    """What every configuration of one model shares: the settings, device, dtype and timing (``warmup_ms``,
    ``run_ms``, ``repeats``), the model and its timed ``forward`` (inference mode, autocast unless fp32)
    on one random batch, its image ``size``, token counts, the unpatched logits ``ref``, the guard's
    relative tolerance ``tol``, the cells of its rows (``base``) and the GFLOPs counted so far."""

    name: str
    settings: Settings
    device: str
    dtype: torch.dtype
    timing: dict
    model: nn.Module
    forward: Callable[[nn.Module], torch.Tensor]
    size: tuple[int, int]
    num_tokens: int
    num_prefix: int
    ref: torch.Tensor = field(repr=False)
    tol: float
    base: dict
    flops_cache: dict[tuple[str, float], float] = field(default_factory=dict)

    @property
    def rounds(self) -> bool:
        """Whether the configurations are timed round-robin after their checks (:func:`interleaved`)."""
        return interleaved(self.settings, self.device)

    @property
    def amp(self) -> bool:
        return self.dtype != torch.float32

    def log(self, msg: str) -> None:
        if self.settings.verbose:
            print(f"[bench-e2e] {msg}", file=sys.stderr, flush=True)


def _forward_fn(x: torch.Tensor, device: str, dtype: torch.dtype) -> Callable[[nn.Module], torch.Tensor]:
    """``forward(m)``: ``m(x)`` under ``torch.inference_mode()`` and, unless fp32, ``torch.autocast``."""

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=dtype)

    def forward(m: nn.Module) -> torch.Tensor:
        with torch.inference_mode(), autocast():
            return m(x)

    return forward


def _dtype_noise(model: nn.Module, x: torch.Tensor, ref: torch.Tensor) -> float:
    """The dtype's own noise: max |unpatched under autocast − unpatched in fp32| / max |fp32 logits|."""
    with torch.inference_mode():
        ref32 = model(x).float()
    return (ref - ref32).abs().max().item() / max(ref32.abs().max().item(), 1e-30)


def prepare_model(
    name: str, s: Settings, device: str, dtype: torch.dtype, timing: dict, common: dict
) -> ModelRun:
    """Create ``name`` (random weights) and its batch; the unpatched logits and the guard's tolerance.

    Raises:
        CorrectnessError: the unpatched model gives non-finite logits.
    """
    import renyi_prune

    model = create_model(name, s.img_size, device)
    size = model_img_size(model)
    num_prefix = model.num_prefix_tokens
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(s.batch, 3, *size, generator=g, device=device)
    forward = _forward_fn(x, device, dtype)
    if s.verbose:
        print(f"[bench-e2e] {name} img_size={size[0]}x{size[1]} batch={s.batch} {_common.dtype_name(dtype)} "
              f"on {device}", file=sys.stderr, flush=True)  # fmt: skip
    renyi_prune.unpatch(model)
    ref = forward(model).float()
    if not torch.isfinite(ref).all():
        raise CorrectnessError(f"{name}: the unpatched model gives non-finite logits")
    noise = _dtype_noise(model, x, ref) if dtype != torch.float32 else 0.0
    img = size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"
    return ModelRun(
        name=name, settings=s, device=device, dtype=dtype, timing=timing, model=model, forward=forward,
        size=size, num_tokens=model.patch_embed.num_patches + num_prefix, num_prefix=num_prefix, ref=ref,
        tol=logit_tolerance(dtype, device, noise), base=dict(common, model=name, img_size=img),
    )  # fmt: skip


def config_columns(run: ModelRun, config: Config) -> dict:
    """The cells every row of ``config`` on this model shares (``alpha`` NaN for criteria without one)."""
    s = run.settings
    has_alpha = config.has_alpha
    return dict(
        run.base,
        config=config.name,
        criterion=config.criterion or "",
        fusion=config.fusion,
        backend=config.backend or "",
        impl=config_impl(config, run.model, run.dtype if run.amp else torch.float32, run.device),
        alpha=s.alpha if has_alpha else math.nan,
    )


def make_row(cfg_base: dict, rate: float, **kw) -> dict:
    """One CSV row: NaN in every column, then ``cfg_base``, the keep rate and ``kw``."""
    r = {c: math.nan for c in CSV_COLUMNS}
    r.update(cfg_base, keep_rate=rate, tokens_kept="", error="")
    r.update(kw)
    return r


def row_stamp(s: Settings, device: str, dtype: torch.dtype) -> dict:
    """The cells every row of a run shares: machine, versions, commit, date and the run's settings."""
    return dict(
        device=_common.device_name(device),
        torch=torch.__version__,
        triton=_common.triton_version(),
        timm=_common.timm_version(),
        git_commit=_common.git_commit(),
        date=_common.utc_now(),
        cpu_model=_common.cpu_model(),
        threads=torch.get_num_threads(),
        batch=s.batch,
        dtype=_common.dtype_name(dtype),
        prune_blocks=" ".join(map(str, sorted(s.prune_blocks))),
        compile=(s.compile_mode or "default") if s.compile else "off",
        timing="round-robin" if interleaved(s, device) else "sequential",
    )


def kept_tokens(model, config: Config, rate: float, run: ModelRun) -> str:
    """The tokens each pruning block kept (``"139 98 69"``; ``""`` unpruned); raises
    :class:`CorrectnessError` unless they are :func:`expected_tokens`."""
    import renyi_prune

    if config.criterion is None:
        return ""
    got = [int(idx.shape[1]) for idx in renyi_prune.kept_token_indices(model).values()]
    want = expected_tokens(run.num_tokens, run.num_prefix, rate, len(got), config.fusion)
    if got != want:
        raise CorrectnessError(
            f"{config.name} at keep_rate={rate:g}: pruning blocks kept {got} tokens, expected {want}"
        )
    return " ".join(map(str, got))
