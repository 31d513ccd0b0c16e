"""End-to-end benchmark: images/s and GFLOPs of timm DeiTs, unpruned and pruned (paper Table 3).

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803), Table 3, compares
the throughput of DeiTs pruned by Rényi attention entropy with EViT's. Configurations (``--configs``):

* ``unpruned``: timm's model as is;
* ``evit``: ``patch(model, r, criterion="evit")``: CLS attention, highest kept (EViT);
* ``evit+fusion``: the same with ``fuse_pruned=True`` (EViT's inattentive-token fusion);
* ``renyi``: ``patch(model, r, alpha, criterion="renyi")``: the fused Triton kernel returns the
  entropy in the attention pass (``backend="auto"``);
* ``renyi-eager``: ``patch(..., criterion="renyi", backend="eager")``: the entropy from the
  materialized (B, H, N, N) attention matrix, as in the paper's code.

Each pruned configuration runs at every keep rate r (``--keep-rates``, default 0.9 … 0.3), pruning
after blocks 4, 7 and 10 (indices 3, 6, 9). Models come from ``timm.create_model(name,
pretrained=False)``: random weights, since the weights do not change the amount of work (the kept
token counts depend on r only), so nothing is downloaded.

Timing: the model alone, on one random input batch already on the device (no data loading), under
``torch.inference_mode()``, with ``torch.autocast`` bf16 on CUDA (fp32 on CPU; ``--dtype``). Warm-up
calls are discarded; then ``--repeats`` timed runs of ``iters`` back-to-back forwards each (``iters``
chosen so that a run lasts about ``--run-ms``), timed with CUDA events (``time.perf_counter`` on
CPU). Reported: images/s of the median run and of its 20th/80th percentiles. ``--compile`` times
``torch.compile(model, fullgraph=True)`` instead (patched models compile without graph breaks);
dynamo is reset before each compiled configuration.

Correctness guard: before a configuration is timed, the patched model at keep rate 1.0 (nothing
pruned) must reproduce the unpatched model's logits (``allclose`` with a dtype-appropriate tolerance,
see :func:`logit_tolerance`); with ``--compile`` the compiled patched model too. At every keep rate
the kept token counts must be those of :func:`renyi_prune.num_kept` and the logits finite. On a
failure the run stops and writes nothing: a fast wrong model never produces a row.

GFLOPs per image come from :func:`renyi_prune.count_flops` (fvcore, one multiply-add = one FLOP, the
paper's convention); the column is blank if fvcore is not installed.

Usage (see benchmarks/README.md; ``benchmarks/bench_e2e.py`` is a thin script calling :func:`main`,
``renyi-prune bench e2e`` the same from the command line)::

    python benchmarks/bench_e2e.py --smoke              # CPU, seconds: deit_tiny at 64 px, batch 2
    python benchmarks/bench_e2e.py                      # GPU: DeiT-Ti/S/B at 224 px, batch 256, bf16
    python benchmarks/bench_e2e.py --compile --models deit_small_patch16_224 --keep-rates 0.7 0.5
    python benchmarks/bench_e2e.py --models deit_base_patch16_384 --img-size 384 --batch 64
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .._argtypes import (
    Option,
    UsageError,
    add_options,
    keep_rate,
    nonneg_float,
    nonneg_int,
    option,
    positive_int,
)
from .._argtypes import alpha as alpha_type
from ..config import DEFAULT_PRUNE_BLOCKS
from . import _common
from ._common import RESULTS_DIR, device_name, device_slug  # noqa: F401  (re-exported)

__all__ = [
    "CONFIGS",
    "CSV_COLUMNS",
    "Config",
    "CorrectnessError",
    "Settings",
    "add_arguments",
    "build_parser",
    "check_settings",
    "main",
    "run",
    "run_benchmark",
    "settings_from_args",
    "TARGET",
    "target_checks",
    "target_summary",
]


@dataclass(frozen=True)
class Config:
    """A model configuration: ``criterion=None`` is the unpruned model.

    Example:
        >>> c = CONFIGS["evit+fusion"]
        >>> c.criterion, c.fusion, c.description
        ('evit', True, 'EViT with inattentive-token fusion')
        >>> [c.backend for c in CONFIGS.values() if c.criterion == "renyi"]
        ['auto', 'eager']
    """

    name: str
    criterion: str | None
    fusion: bool = False
    backend: str | None = None  # the renyi criterion's backend ("auto": fused Triton; "eager": paper)
    description: str = ""


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("unpruned", None, description="timm's model, no pruning"),
        Config("evit", "evit", description="EViT: CLS attention, highest kept"),
        Config("evit+fusion", "evit", fusion=True, description="EViT with inattentive-token fusion"),
        Config("renyi", "renyi", backend="auto", description="Rényi entropy from the fused Triton kernel"),
        Config("renyi-eager", "renyi", backend="eager", description="Rényi entropy, materialized attention"),
    )
}
DEFAULT_MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224")
DEFAULT_KEEP_RATES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)

DEFAULT_BATCH = 256
DTYPES = _common.DTYPES
SMOKE = dict(models=["deit_tiny_patch16_224"], img_size=64, batch=2, keep_rates=[0.7, 0.5], repeats=1)
# Timing defaults: (warm-up ms, ms per timed run, timed runs) on CUDA / on CPU.
CUDA_TIMING = dict(warmup_ms=500.0, run_ms=200.0, repeats=10)
CPU_TIMING = dict(warmup_ms=0.0, run_ms=0.0, repeats=3)

# Correctness guard: max |logits − reference| ≤ tol · max |reference| (and allclose with rtol=tol).
# The floor per dtype; under autocast the tolerance is at least 2x the dtype's own noise, i.e. the
# difference between the unpatched model under autocast and in fp32 (see logit_tolerance).
LOGIT_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
LOGIT_TOL_TF32 = 1e-2  # fp32 with torch.backends.cuda.matmul.allow_tf32 = True
NOISE_FACTOR = 2.0

# Issue-5 targets (DeiT-S, r = 0.7) and the paper's Table 3 ratios (RTX A6000).
TARGET = dict(model="deit_small_patch16_224", keep_rate=0.7, x_evit=1.00, speedup=1.70)

CSV_COLUMNS = [
    "device", "torch", "triton", "timm", "git_commit", "date",
    "model", "img_size", "config", "criterion", "fusion", "backend", "impl", "compile",
    "keep_rate", "alpha", "prune_blocks", "batch", "dtype",
    "images_per_s", "images_per_s_p20", "images_per_s_p80", "ms_per_batch", "ms_p20", "ms_p80",
    "repeats", "iters", "gflops", "speedup_vs_unpruned", "x_evit", "tokens_kept", "guard_rel_err", "error",
]  # fmt: skip


class CorrectnessError(RuntimeError):
    """A patched model disagrees with the unpatched one: no benchmark row may be produced.

    Raised by :func:`run_benchmark` before the failing configuration is timed; :func:`run` then returns 1
    and writes nothing.

    Example:
        >>> compare_logits(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), 1e-4, "evit at keep_rate=1.0")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune.bench.e2e.CorrectnessError: evit at keep_rate=1.0: logits differ from the reference: ...
    """


# --------------------------------------------------------------------------------------------------
# models and checks


def create_model(name: str, img_size: int | None, device: str) -> torch.nn.Module:
    """``timm.create_model(name, pretrained=False[, img_size=...])`` in eval mode on ``device``.

    Random weights: the work done per image (and so the speed) does not depend on them.
    """
    import timm

    kwargs = {} if img_size is None else {"img_size": img_size}
    return timm.create_model(name, pretrained=False, **kwargs).to(device).eval()


def model_img_size(model: torch.nn.Module) -> tuple[int, int]:
    size = model.patch_embed.img_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def expected_tokens(
    num_tokens: int, num_prefix: int, keep_rate: float, num_blocks: int, fusion: bool
) -> list[int]:
    """Tokens kept (prefix + patches, without a fused token) by each pruning block, as
    :func:`renyi_prune.kept_token_indices` reports them: ``prefix + num_kept(n, prefix, r)``, n the
    tokens entering the block (the previous block's kept tokens, plus one fused token with fusion)."""
    from renyi_prune import num_kept

    out, n = [], num_tokens
    for _ in range(num_blocks):
        kept = num_prefix + num_kept(n, num_prefix, keep_rate)
        out.append(kept)
        n = kept + (1 if fusion else 0)
    return out


def logit_tolerance(dtype: torch.dtype, device: str, noise_rel: float = 0.0) -> float:
    """Relative tolerance of the guard: the dtype's floor (:data:`LOGIT_TOL`), at least
    ``NOISE_FACTOR`` × the dtype's measured noise ``noise_rel`` (autocast vs fp32, relative)."""
    tol = LOGIT_TOL[dtype]
    if dtype == torch.float32 and device.startswith("cuda") and torch.backends.cuda.matmul.allow_tf32:
        tol = LOGIT_TOL_TF32
    return max(tol, NOISE_FACTOR * noise_rel)


def compare_logits(got: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> float:
    """max |got − ref| / max |ref|; raises :class:`CorrectnessError` beyond ``tol`` or on NaN/inf."""
    got, ref = got.float(), ref.float()
    if got.shape != ref.shape:
        raise CorrectnessError(f"{what}: logits shape {tuple(got.shape)} != {tuple(ref.shape)}")
    if not torch.isfinite(got).all():
        raise CorrectnessError(f"{what}: non-finite logits")
    scale = max(ref.abs().max().item(), 1e-30)
    err = (got - ref).abs().max().item() / scale
    if not torch.allclose(got, ref, atol=tol * scale, rtol=tol):
        raise CorrectnessError(
            f"{what}: logits differ from the reference: max |diff| = {err:.3g} x max |ref| > tol {tol:.3g}"
        )
    return err


def config_impl(config: Config, model: torch.nn.Module, attn_dtype: torch.dtype, device: str) -> str:
    """What computes the pruning blocks' attention: ``triton``, ``triton-interpreter``, ``eager``
    (materialized P), ``eager-fallback`` (``auto`` without Triton), ``sdpa`` or ``timm-eager``."""
    if config.criterion == "renyi":
        from renyi_prune.ops import uses_triton

        if config.backend == "eager":
            return "eager"
        if not uses_triton(torch.empty(1, 1, 1, 64, dtype=attn_dtype, device=device), config.backend):
            return "eager-fallback"
        return "triton" if device.startswith("cuda") else "triton-interpreter"
    return "sdpa" if getattr(model.blocks[0].attn, "fused_attn", False) else "timm-eager"


def apply_config(
    model: torch.nn.Module,
    config: Config,
    keep_rate: float,
    alpha: float,
    prune_blocks: Sequence[int],
) -> torch.nn.Module:
    """Patch ``model`` in place for ``config`` at ``keep_rate`` (unpatch it for ``unpruned``)."""
    import renyi_prune

    if config.criterion is None:
        return renyi_prune.unpatch(model)
    kwargs = {}
    if config.criterion == "renyi":
        kwargs = dict(alpha=alpha, backend=config.backend)
    return renyi_prune.patch(
        model,
        keep_rate=keep_rate,
        criterion=config.criterion,
        fuse_pruned=config.fusion,
        prune_blocks=tuple(prune_blocks),
        **kwargs,
    )


def gflops_per_image(model: torch.nn.Module, img_size: tuple[int, int]) -> float:
    """fvcore GFLOPs of one image (NaN if fvcore is missing)."""
    if not has_fvcore():
        return math.nan
    import renyi_prune

    return renyi_prune.count_flops(model, img_size=img_size, batch_size=1)


def has_fvcore() -> bool:
    return importlib.util.find_spec("fvcore") is not None


# --------------------------------------------------------------------------------------------------
# timing


def time_model(
    fn: Callable[[], object], device: str, repeats: int, run_ms: float, warmup_ms: float
) -> tuple[list[float], int]:
    """Milliseconds per call of ``repeats`` timed runs, and the calls per run.

    Warm-up: at least 2 calls (1 on CPU) and at least ``warmup_ms`` of calls, discarded. Then one
    call is timed to choose ``iters`` = calls per run so that a run lasts about ``run_ms`` (1 if
    ``run_ms`` ≤ 0); each run is ``iters`` back-to-back calls between two CUDA events (on CPU,
    ``time.perf_counter``), divided by ``iters``.
    """
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t_end = time.perf_counter() + warmup_ms * 1e-3
    calls = 0
    while calls < (2 if cuda else 1) or time.perf_counter() < t_end:
        fn()
        sync()
        calls += 1
    t0 = time.perf_counter()
    fn()
    sync()
    one_ms = (time.perf_counter() - t0) * 1e3
    iters = max(1, math.ceil(run_ms / max(one_ms, 1e-3))) if run_ms > 0 else 1
    times = []
    for _ in range(max(1, repeats)):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / iters)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / iters)
    return times, iters


# --------------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Settings:
    """What :func:`run_benchmark` runs (see :func:`add_arguments` for the meaning of each field).

    ``None`` fields take the device's defaults (bf16 autocast and :data:`CUDA_TIMING` on CUDA, fp32 and
    :data:`CPU_TIMING` on CPU); ``run_ms`` and ``warmup_ms`` are milliseconds.

    Example:
        >>> s = Settings(models=["deit_small_patch16_224"], keep_rates=[0.7], compile=True)
        >>> list(s.configs), list(s.prune_blocks), s.batch, s.dtype
        (['unpruned', 'evit', 'evit+fusion', 'renyi', 'renyi-eager'], [3, 6, 9], 256, None)
    """

    models: Sequence[str] = DEFAULT_MODELS
    configs: Sequence[str] = tuple(CONFIGS)
    keep_rates: Sequence[float] = DEFAULT_KEEP_RATES
    img_size: int | None = None
    batch: int = DEFAULT_BATCH
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU
    alpha: float = 1.0
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS
    compile: bool = False
    compile_mode: str | None = None
    gflops: bool = True
    device: str | None = None
    repeats: int | None = None
    run_ms: float | None = None
    warmup_ms: float | None = None
    verbose: bool = True


def run_benchmark(settings: Settings) -> list[dict]:
    """Guard, then time every model × configuration × keep rate; one dict per row.

    Rows have the keys of :data:`CSV_COLUMNS` (NaN where not measured). ``unpruned`` gives one row
    per model (keep_rate 1.0). Raises :class:`CorrectnessError` (before timing that configuration)
    if a patched model fails the guard. A configuration that runs out of memory, or fails to compile
    with ``compile``, gives rows with ``error`` set instead of timings; other exceptions propagate.
    Units: ``images_per_s`` (median run; p20/p80), ``ms_per_batch``, ``gflops`` per image (fvcore: one
    multiply-add = one FLOP), ``speedup_vs_unpruned`` and ``x_evit`` (images/s ratios).

    Raises:
        ValueError: an unknown configuration name.

    Example:
        timm's 6-block test ViT (width 64) at 32 px (4 patches), pruned after blocks 1, 3 and 5:

        >>> s = Settings(models=["test_vit"], configs=["unpruned", "evit"], keep_rates=[0.5], img_size=32,
        ...              prune_blocks=[1, 3, 5], batch=1, gflops=False, device="cpu", repeats=1,
        ...              verbose=False)
        >>> rows = run_benchmark(s)
        >>> [(r["config"], r["keep_rate"], r["tokens_kept"], r["error"]) for r in rows]
        [('unpruned', 1.0, '', ''), ('evit', 0.5, '3 2 2', '')]
        >>> rows[0]["speedup_vs_unpruned"], rows[1]["x_evit"]
        (1.0, 1.0)
    """
    s = settings
    unknown = [c for c in s.configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    device = s.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    dtype = DTYPES[s.dtype or ("bf16" if on_cuda else "fp32")]
    timing = dict(CUDA_TIMING if on_cuda else CPU_TIMING)
    for key in timing:
        if getattr(s, key) is not None:
            timing[key] = getattr(s, key)
    common = dict(
        device=device_name(device),
        torch=torch.__version__,
        triton=_common.triton_version(),
        timm=_common.timm_version(),
        git_commit=_common.git_commit(),
        date=_common.utc_now(),
        batch=s.batch,
        dtype=_common.dtype_name(dtype),
        prune_blocks=" ".join(map(str, sorted(s.prune_blocks))),
        compile=(s.compile_mode or "default") if s.compile else "off",
    )
    configs = [CONFIGS[c] for c in s.configs]
    configs.sort(key=lambda c: c.criterion is not None)  # unpruned first: the speedup reference
    rows: list[dict] = []
    for name in s.models:
        model_rows = _bench_model(name, configs, s, device, dtype, timing, common)
        _add_ratios(model_rows)
        rows.extend(model_rows)
    return rows


def _log(settings: Settings, msg: str) -> None:
    if settings.verbose:
        print(f"[bench-e2e] {msg}", file=sys.stderr, flush=True)


def _bench_model(name, configs, s: Settings, device, dtype, timing, common) -> list[dict]:
    amp = dtype != torch.float32
    model = create_model(name, s.img_size, device)
    size = model_img_size(model)
    num_prefix = model.num_prefix_tokens
    num_tokens = model.patch_embed.num_patches + num_prefix
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(s.batch, 3, *size, generator=g, device=device)
    autocast = (
        (lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype))
        if amp
        else contextlib.nullcontext
    )

    def forward(m) -> torch.Tensor:
        with torch.inference_mode(), autocast():
            return m(x)

    _log(s, f"{name} img_size={size[0]}x{size[1]} batch={s.batch} {_common.dtype_name(dtype)} on {device}")
    import renyi_prune

    renyi_prune.unpatch(model)
    ref = forward(model).float()
    if not torch.isfinite(ref).all():
        raise CorrectnessError(f"{name}: the unpatched model gives non-finite logits")
    noise = 0.0
    if amp:  # the dtype's own noise: unpatched under autocast vs in fp32
        with torch.inference_mode():
            ref32 = model(x).float()
        noise = (ref - ref32).abs().max().item() / max(ref32.abs().max().item(), 1e-30)
        del ref32
    tol = logit_tolerance(dtype, device, noise)
    base = dict(common, model=name, img_size=size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}")
    rows = []
    flops_cache: dict[tuple[str, float], float] = {}
    for config in configs:
        rates = [1.0] if config.criterion is None else list(s.keep_rates)
        attn_dtype = dtype if amp else torch.float32
        cfg_base = dict(
            base,
            config=config.name,
            criterion=config.criterion or "",
            fusion=config.fusion,
            backend=config.backend or "",
            impl=config_impl(config, model, attn_dtype, device),
            alpha=s.alpha if config.criterion == "renyi" else math.nan,
        )
        row = functools.partial(_row, cfg_base)

        # -- correctness guard at keep rate 1.0 (nothing pruned): eager, then compiled
        try:
            guard_err, compiled_r1 = _guard(model, config, s, ref, tol, forward, f"{name} {config.name}")
        except CorrectnessError:
            raise
        except Exception as exc:
            msg = _recorded_error(exc, s.compile)
            torch._dynamo.reset()
            _common.free_memory(device)
            rows += [row(r, error=msg) for r in rates]
            _log(s, f"  {config.name}: {msg} (guard)")
            continue
        if not math.isnan(guard_err):
            _log(s, f"  {config.name}: guard max |logits - reference| / max |reference| = {guard_err:.3g} "
                    f"(tol {tol:.3g})")  # fmt: skip

        for rate in rates:
            # the guard's compiled model is this very model at r = 1 (same patch): no second compile
            reuse = compiled_r1 if rate == 1.0 else None
            compiled_r1 = None
            if reuse is None:
                apply_config(model, config, rate, s.alpha, s.prune_blocks)
                if s.compile:
                    torch._dynamo.reset()
            try:
                r = _bench_rate(model, config, rate, s, device, timing, forward, size, num_tokens,
                                num_prefix, flops_cache, reuse)  # fmt: skip
            except CorrectnessError:
                raise
            except Exception as exc:
                msg = _recorded_error(exc, s.compile)
                _common.free_memory(device)
                rows.append(row(rate, error=msg, guard_rel_err=guard_err))
                _log(s, f"  {config.name} r={rate:g}: {msg}")
                continue
            finally:
                reuse = None  # noqa: F841  (drop the compiled model before the next configuration)
                if s.compile:
                    torch._dynamo.reset()
            rows.append(row(rate, guard_rel_err=guard_err, **r))
            _log(s, f"  {config.name} r={rate:g}: {r['images_per_s']:.1f} images/s "
                    f"({r['ms_per_batch']:.3g} ms/batch, x{r['iters']} calls x {r['repeats']} runs), "
                    f"tokens {r['tokens_kept'] or '-'}")  # fmt: skip
    renyi_prune.unpatch(model)
    return rows


def _row(cfg_base: dict, rate: float, **kw) -> dict:
    r = {c: math.nan for c in CSV_COLUMNS}
    r.update(cfg_base, keep_rate=rate, tokens_kept="", error="")
    r.update(kw)
    return r


def _guard(model, config: Config, s: Settings, ref, tol, forward, what) -> tuple[float, object]:
    """Correctness guard of one configuration at keep rate 1.0 (nothing pruned).

    Non-fusion configurations must reproduce the unpatched logits ``ref``. A fusion configuration
    appends one empty fused token even at r = 1, so it is not the unpatched model: the same criterion
    without fusion must reproduce ``ref`` (the attention path), and the fusion model must give finite
    logits. With ``compile``, the compiled model must reproduce the eager model (``ref``, or the
    eager fusion model's logits).

    Returns (max relative error, or NaN if nothing was compared; the compiled model or None).
    """
    err = math.nan
    patched_ref = ref
    if config.criterion is not None:
        if config.fusion:
            plain = Config(f"{config.name} without fusion", config.criterion, False, config.backend)
            apply_config(model, plain, 1.0, s.alpha, s.prune_blocks)
            err = compare_logits(forward(model).float(), ref, tol, f"{what} without fusion at keep_rate=1.0")
        apply_config(model, config, 1.0, s.alpha, s.prune_blocks)
        logits = forward(model).float()
        if config.fusion:
            _check_finite(logits, f"{what} at keep_rate=1.0")
            patched_ref = logits
        else:
            err = compare_logits(logits, ref, tol, f"{what} at keep_rate=1.0")
    if not s.compile:
        return err, None
    torch._dynamo.reset()
    compiled = _compile(model, s.compile_mode)
    c_err = compare_logits(forward(compiled).float(), patched_ref, tol, f"{what} compiled at keep_rate=1.0")
    return (c_err if math.isnan(err) else max(err, c_err)), compiled


def _check_finite(logits: torch.Tensor, what: str) -> None:
    if not torch.isfinite(logits).all():
        raise CorrectnessError(f"{what}: non-finite logits")


def _recorded_error(exc: BaseException, compiling: bool) -> str:
    """The ``error`` cell for an out-of-memory or (with ``compile``) a compile failure; re-raises others."""
    if _common.is_oom(exc):
        return f"OOM: {_common.first_line(exc)}"
    if compiling and _is_compile_error(exc):
        return f"compile failed: {type(exc).__name__}: {_common.first_line(exc)}"
    raise exc


def _bench_rate(model, config, rate, s: Settings, device, timing, forward, size, num_tokens, num_prefix,
                flops_cache, compiled=None) -> dict:  # fmt: skip
    import renyi_prune

    # one eager forward: the kept token counts (and finite logits) at this keep rate
    _check_finite(forward(model).float(), f"{config.name} at keep_rate={rate:g}")
    tokens = ""
    if config.criterion is not None:
        got = [int(idx.shape[1]) for idx in renyi_prune.kept_token_indices(model).values()]
        want = expected_tokens(num_tokens, num_prefix, rate, len(got), config.fusion)
        if got != want:
            raise CorrectnessError(
                f"{config.name} at keep_rate={rate:g}: pruning blocks kept {got} tokens, expected {want}"
            )
        tokens = " ".join(map(str, got))
    key = (config.name, rate)
    if s.gflops and key not in flops_cache:
        flops_cache[key] = gflops_per_image(model, size)
    gflops = flops_cache.get(key, math.nan)

    target = model
    if s.compile:
        target = compiled if compiled is not None else _compile(model, s.compile_mode)
    times, iters = time_model(lambda: forward(target), device, timing["repeats"], timing["run_ms"],
                              timing["warmup_ms"])  # fmt: skip
    med, p20, p80 = _common.quantiles(times)
    per_s = 1e3 * s.batch
    return dict(
        images_per_s=per_s / med,
        images_per_s_p20=per_s / p80,  # the 20th percentile of throughput is the 80th of time
        images_per_s_p80=per_s / p20,
        ms_per_batch=med,
        ms_p20=p20,
        ms_p80=p80,
        repeats=len(times),
        iters=iters,
        gflops=gflops,
        tokens_kept=tokens,
    )


def _compile(model: torch.nn.Module, mode: str | None):
    kwargs = {} if mode is None else {"mode": mode}
    return torch.compile(model, fullgraph=True, **kwargs)


def _is_compile_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "dynamo" in type(exc).__name__.lower()


def _add_ratios(rows: list[dict]) -> None:
    """``speedup_vs_unpruned`` and ``x_evit`` (images/s ratios) within one model's rows."""

    def key(r, rate):
        return (r["model"], r["img_size"], r["compile"], r["batch"], r["dtype"], rate)

    ok = [r for r in rows if not r["error"]]
    unpruned = {key(r, None): r["images_per_s"] for r in ok if r["config"] == "unpruned"}
    evit = {key(r, r["keep_rate"]): r["images_per_s"] for r in ok if r["config"] == "evit"}
    for r in ok:
        if key(r, None) in unpruned:
            r["speedup_vs_unpruned"] = r["images_per_s"] / unpruned[key(r, None)]
        if r["config"] != "unpruned" and key(r, r["keep_rate"]) in evit:
            r["x_evit"] = r["images_per_s"] / evit[key(r, r["keep_rate"])]


# --------------------------------------------------------------------------------------------------
# output


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    _common.write_csv(rows, path, CSV_COLUMNS)


def format_table(rows: Sequence[dict]) -> str:
    cols = [
        ("model", "model", "{}"), ("img_size", "px", "{}"), ("config", "config", "{}"),
        ("impl", "impl", "{}"), ("compile", "compile", "{}"), ("keep_rate", "r", "{:g}"),
        ("images_per_s", "img/s", "{:.1f}"), ("images_per_s_p20", "p20", "{:.1f}"),
        ("images_per_s_p80", "p80", "{:.1f}"), ("ms_per_batch", "ms/batch", "{:.4g}"),
        ("gflops", "GFLOPs", "{:.3f}"), ("speedup_vs_unpruned", "speedup", "{:.3f}"),
        ("x_evit", "x_evit", "{:.3f}"), ("tokens_kept", "tokens", "{}"), ("error", "error", "{}"),
    ]  # fmt: skip
    return _common.format_table(rows, cols)


def target_checks(rows: Sequence[dict]) -> list[tuple[dict, float, float, bool]]:
    """The ``renyi`` rows of :data:`TARGET`'s model and keep rate, each with its images/s ratio to
    EViT, its speed-up over unpruned and whether both meet the target. Rows may come from a run
    (numbers) or from its CSV (strings); rows with an error are skipped.

    Example:
        >>> from renyi_prune.bench.e2e import TARGET, target_checks
        >>> row = {"model": TARGET["model"], "config": "renyi", "keep_rate": "0.7", "error": "",
        ...        "x_evit": "0.95", "speedup_vs_unpruned": "1.1"}
        >>> [(xe, met) for _, xe, _, met in target_checks([row])]
        [(0.95, False)]
    """
    checks = []
    for r in rows:
        if r["model"] != TARGET["model"] or r["config"] != "renyi" or r.get("error"):
            continue
        if not math.isclose(float(r["keep_rate"]), TARGET["keep_rate"]):
            continue
        xe, sp = float(r["x_evit"]), float(r["speedup_vs_unpruned"])
        checks.append((r, xe, sp, xe >= TARGET["x_evit"] and sp >= TARGET["speedup"]))
    return checks


def target_summary(rows: Sequence[dict]) -> list[str]:
    """Lines comparing the ``renyi`` rows of DeiT-S at r = 0.7 with the issue-5 targets.

    Example:
        >>> from renyi_prune.bench.e2e import TARGET, target_summary
        >>> row = {"model": TARGET["model"], "config": "renyi", "keep_rate": 0.7, "error": None,
        ...        "x_evit": 1.2, "speedup_vs_unpruned": 1.7, "img_size": 224, "compile": False}
        >>> target_summary([row])[0].endswith(": MET")
        True
    """
    return [
        f"target (DeiT-S r=0.7, {r['img_size']} px, compile={r['compile']}): renyi = {xe:.3f}x evit "
        f"(target >= {TARGET['x_evit']:.2f}; paper 0.89), {sp:.3f}x unpruned (target >= "
        f"{TARGET['speedup']:.2f}; paper 1.56): {'MET' if ok else 'NOT MET'}"
        for r, xe, sp, ok in target_checks(rows)
    ]


def plot_path(csv_path: Path) -> Path:
    """The PNG written next to a CSV: same name, ``.png``."""
    return Path(csv_path).with_suffix(".png")


def write_plot(rows: Sequence[dict], path: Path) -> bool:
    """Images/s against keep rate, one line per configuration (p20–p80 bars), the unpruned model as a
    dashed line; one panel per model and image size. Returns False (nothing written) if matplotlib is
    missing or no row has a timing."""
    rows = [r for r in rows if not r["error"] and not math.isnan(r["images_per_s"])]
    if not rows:
        return False
    panels = list(dict.fromkeys((r["model"], r["img_size"]) for r in rows))
    fig = _common.new_figure(figsize=(5.5 * len(panels), 4.5))
    if fig is None:
        return False
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (model, img) in zip(axes, panels, strict=True):
        sel = [r for r in rows if (r["model"], r["img_size"]) == (model, img)]
        for name in CONFIGS:
            pr = sorted((r for r in sel if r["config"] == name), key=lambda r: r["keep_rate"])
            if not pr:
                continue
            if name == "unpruned":
                ax.axhline(pr[0]["images_per_s"], color="black", linestyle="--", linewidth=1,
                           label=f"unpruned ({pr[0]['images_per_s']:.0f})")  # fmt: skip
                continue
            ys = [r["images_per_s"] for r in pr]
            err = [[y - r["images_per_s_p20"] for y, r in zip(ys, pr, strict=True)],
                   [r["images_per_s_p80"] - y for y, r in zip(ys, pr, strict=True)]]  # fmt: skip
            ax.errorbar([r["keep_rate"] for r in pr], ys, yerr=err, marker="o", capsize=3,
                        label=f"{name} ({pr[0]['impl']})")  # fmt: skip
        ax.set_xticks(sorted({r["keep_rate"] for r in sel if r["config"] != "unpruned"}))
        ax.set_title(f"{model} @ {img} px", fontsize=10)
        ax.set_xlabel("keep rate r")
        ax.set_ylabel("images/s (median, p20-p80)")
        ax.invert_xaxis()  # more pruning to the right
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(
        f"{r0['device']}  batch {r0['batch']}  {r0['dtype']}  compile={r0['compile']}  torch {r0['torch']}  "
        f"triton {r0['triton']}  timm {r0['timm']}  {r0['git_commit']}",
        fontsize=9,
    )
    _common.save_figure(fig, path)
    return True


# --------------------------------------------------------------------------------------------------
# command line


def default_out_path(
    device: str, smoke: bool = False, compile: bool = False, img_size: int | None = None
) -> Path:
    """``benchmarks/results/<device-slug>/e2e[_<img>px][_compile].csv``; with ``smoke`` the same name
    under the system temp dir, so that smoke numbers never land in ``results/``."""
    name = "e2e" + (f"_{img_size}px" if img_size else "") + ("_compile" if compile else "")
    return _common.output_path(f"{name}.csv", device, smoke)


DESCRIPTION = (
    "End-to-end images/s and GFLOPs of timm DeiTs, unpruned and pruned by EViT, EViT + fusion and Rényi "
    "entropy (fused Triton kernel, or materialized attention as in the paper): paper Table 3."
)


def _options() -> list[Option]:
    return [
        option("--models", f"timm model names, created with pretrained=False (default: "
               f"{' '.join(DEFAULT_MODELS)})", metavar="NAME", nargs="+"),
        option("--configs", f"configurations among {', '.join(CONFIGS)} (default: all)", metavar="NAME",
               nargs="+", choices=list(CONFIGS)),
        option("--keep-rates", f"keep rates in (0, 1] (default: {' '.join(map(str, DEFAULT_KEEP_RATES))})",
               keep_rate, metavar="R", nargs="+"),
        option("--img-size", "input resolution passed to timm.create_model (default: the model's own, e.g. "
               "224)", positive_int, metavar="PX"),
        option("--batch", f"images per forward (default {DEFAULT_BATCH})", positive_int),
        option("--dtype", "autocast dtype; fp32 = no autocast (default: bf16 on CUDA, fp32 on CPU)",
               choices=sorted(DTYPES)),
        option("--alpha", "Rényi order for renyi configs (default 1.0)", alpha_type, 1.0),
        option("--prune-blocks", "0-based pruning block indices (default 3 6 9)", nonneg_int, metavar="I",
               nargs="+"),
        option("--compile", "time torch.compile(model, fullgraph=True) instead of the eager model (default "
               "output e2e_compile.csv)", action="store_true"),
        option("--compile-mode", "torch.compile mode, e.g. max-autotune (default: torch's default)"),
        option("--no-gflops", "skip the fvcore GFLOPs count (blank column); it is blank anyway without "
               "fvcore", dest="gflops", action="store_false"),
        option("--repeats", "timed runs per configuration (default 10 on CUDA, 3 on CPU, 1 with --smoke)",
               positive_int),
        option("--run-ms", "target duration of one timed run in ms (default 200 on CUDA; 0 = one call, CPU "
               "default)", nonneg_float),
        option("--warmup-ms", "minimum warm-up in ms, discarded (default 500 on CUDA, 0 on CPU; at least 2 / "
               "1 calls)", nonneg_float),
        *_common.output_options(
            "CSV path (default benchmarks/results/<device>/e2e[_<px>px][_compile].csv; with --smoke the same "
            "name under the system temp dir); the PNG is written next to it",
            "deit_tiny at 64 px, batch 2, keep rates 0.7 0.5, 1 timed run: seconds on CPU; explicit options "
            "still win",
            "no progress lines on stderr",
        ),
    ]  # fmt: skip


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's parser (``prog`` as shown in messages); errors are one line and exit code 2.

    Example:
        >>> args = build_parser().parse_args(["--models", "deit_small_patch16_224", "--keep-rates", "0.7"])
        >>> args.models, args.keep_rates, args.configs, args.alpha
        (['deit_small_patch16_224'], [0.7], None, 1.0)
    """
    return _common.build_parser(prog, DESCRIPTION, _options())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, on any parser (e.g. a ``renyi-prune bench e2e`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench e2e")
        >>> add_arguments(p)
        >>> args = p.parse_args(["--smoke", "--compile", "--configs", "evit", "renyi"])
        >>> args.smoke, args.compile, args.configs, args.gflops
        (True, True, ['evit', 'renyi'], True)
    """
    add_options(p, _options())


def settings_from_args(args: argparse.Namespace, device: str) -> Settings:
    """The :class:`Settings` of parsed options: their values, else the defaults (``--smoke``: tiny ones).

    Example:
        >>> s = settings_from_args(build_parser().parse_args(["--smoke", "--batch", "4"]), "cpu")
        >>> list(s.models), s.img_size, s.batch, list(s.keep_rates), s.repeats
        (['deit_tiny_patch16_224'], 64, 4, [0.7, 0.5], 1)
    """
    smoke = args.smoke
    img_size = args.img_size if args.img_size is not None else (SMOKE["img_size"] if smoke else None)
    return Settings(
        models=args.models or (SMOKE["models"] if smoke else list(DEFAULT_MODELS)),
        configs=args.configs or list(CONFIGS),
        keep_rates=args.keep_rates or (SMOKE["keep_rates"] if smoke else list(DEFAULT_KEEP_RATES)),
        img_size=img_size,
        batch=args.batch or (SMOKE["batch"] if smoke else DEFAULT_BATCH),
        dtype=args.dtype,
        alpha=args.alpha,
        prune_blocks=args.prune_blocks or list(DEFAULT_PRUNE_BLOCKS),
        compile=args.compile,
        compile_mode=args.compile_mode,
        gflops=args.gflops,
        device=device,
        repeats=args.repeats if args.repeats is not None else (SMOKE["repeats"] if smoke else None),
        run_ms=args.run_ms,
        warmup_ms=args.warmup_ms,
        verbose=not args.quiet,
    )


def check_settings(settings: Settings) -> None:
    """Check what argparse cannot, before anything is timed: the models exist in timm and are ViTs with
    every pruning block, the prune blocks are distinct.

    Raises:
        UsageError: naming the bad model or block.

    Example:
        >>> check_settings(Settings(models=["deit_tiny_patch16_224"], prune_blocks=[3, 6, 9]))
        >>> check_settings(Settings(models=["deit_tiny_patch16_224"], prune_blocks=[3, 12]))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._argtypes.UsageError: argument --prune-blocks: block 12 is beyond ... (indices 0 to 11)
    """
    import timm

    unknown = [m for m in settings.models if not timm.is_model(m)]
    if unknown:
        raise UsageError(
            f"argument --models: unknown timm model(s) {', '.join(unknown)} (see timm.list_models())"
        )
    blocks = list(settings.prune_blocks)
    if len(set(blocks)) != len(blocks):
        raise UsageError(f"argument --prune-blocks: repeated block indices {blocks}")
    for name in settings.models:
        kwargs = {} if settings.img_size is None else {"img_size": settings.img_size}
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialization cost
                model = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as err:
            raise UsageError(f"argument --models: cannot create {name}: {_common.first_line(err)}") from None
        depth = len(getattr(model, "blocks", ()))
        if depth == 0:
            raise UsageError(f"argument --models: {name} is not a Vision Transformer with .blocks")
        beyond = [b for b in blocks if b >= depth]
        if beyond:
            raise UsageError(
                f"argument --prune-blocks: block {beyond[0]} is beyond {name}'s {depth} blocks "
                f"(indices 0 to {depth - 1})"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the end-to-end benchmark with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns the exit code: 0 written, 1 correctness check failed (nothing written), 2 bad arguments
    (one line ``PROG: error: ...`` on stderr). Prints the table of results; writes the CSV and the PNG.

    Example:
        timm's 6-block test ViT at 32 px, unpruned and EViT at r = 0.5, batch 1, one timed run (the
        numbers vary, so only the rows are shown):

        >>> import contextlib, csv, io, tempfile
        >>> out = Path(tempfile.mkdtemp()) / "e2e.csv"
        >>> argv = ["--models", "test_vit", "--prune-blocks", "1", "3", "5", "--configs", "unpruned", "evit",
        ...         "--keep-rates", "0.5", "--img-size", "32", "--batch", "1", "--repeats", "1",
        ...         "--no-gflops", "--device", "cpu", "--quiet", "--no-plot", "--out", str(out)]
        >>> with contextlib.redirect_stdout(io.StringIO()):
        ...     code = main(argv)
        >>> code, [(r["config"], r["keep_rate"], r["tokens_kept"]) for r in csv.DictReader(out.open())]
        (0, [('unpruned', '1', ''), ('evit', '0.5', '3 2 2')])
        >>> main(["--models", "deit_nano", "--smoke"])  # stderr: ... unknown timm model(s) deit_nano ...
        2
    """
    return _common.main(build_parser(), run, argv)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments (see :func:`add_arguments`); returns the exit code.

    0: the CSV (columns :data:`CSV_COLUMNS`: images/s, ms per batch, GFLOPs per image in fvcore's
    convention of one multiply-add = one FLOP, speedups) and the PNG are written; 1: the correctness
    guard failed and nothing was written.

    Raises:
        UsageError: ``--device cuda`` without CUDA, or see :func:`check_settings`.

    Example:
        >>> args = build_parser().parse_args(["--smoke", "--prune-blocks", "3", "30", "--device", "cpu"])
        >>> run(args)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._argtypes.UsageError: argument --prune-blocks: block 30 is beyond ... (indices 0 to 11)
    """
    device = _common.resolve_device(args.device)
    settings = settings_from_args(args, device)
    check_settings(settings)
    if device == "cpu" and not args.smoke and args.models is None:
        print("[bench-e2e] WARNING: GPU-sized defaults on CPU: slow (try --smoke)", file=sys.stderr)
    if settings.gflops and not has_fvcore():
        print("[bench-e2e] fvcore not installed: the gflops column is left blank", file=sys.stderr)
    out_path = args.out
    if out_path is None:
        out_path = default_out_path(device, args.smoke, args.compile, args.img_size)

    try:
        rows = run_benchmark(settings)
    except CorrectnessError as exc:
        return _common.correctness_failed(exc)

    first = rows[0] if rows else {}
    versions = " ".join(f"{k} {first.get(k, '')}" for k in ("torch", "triton", "timm"))
    print(f"device: {first.get('device', '')}  {versions}  commit {first.get('git_commit', '') or '?'}  "
          f"{first.get('date', '')}")  # fmt: skip
    gflops_note = "" if has_fvcore() or not settings.gflops else " - blank: fvcore not installed"
    print(f"batch {settings.batch}, {first.get('dtype', '')}, compile={first.get('compile', '')}; images/s = "
          "median of the timed runs (p20/p80 = its 20th/80th percentiles); GFLOPs per image, fvcore "
          f"(1 multiply-add = 1 FLOP){gflops_note}")  # fmt: skip
    print(format_table(rows))
    for line in target_summary(rows):
        print(line)
    _common.write_results(rows, out_path, CSV_COLUMNS, write_plot if args.plot else None, "bench-e2e")
    return 0


if __name__ == "__main__":
    sys.exit(main())
