"""Configurations, settings and model checks of the end-to-end benchmark (:mod:`renyi_prune.bench.e2e`)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import DEFAULT_PRUNE_BLOCKS, FUSION_SUFFIX, PruneConfig
from ..criteria import available_criteria, get_criterion
from ..flops import model_input_size as model_img_size  # noqa: F401  (re-exported: the bench's name)
from . import _common

#: ``--configs`` suffix of a criterion computed on the materialized attention (``backend="eager"``).
EAGER_SUFFIX = "-eager"


@dataclass(frozen=True)
class Config:
    """A named benchmark configuration: a :class:`renyi_prune.PruneConfig` template (its keep rate, α and
    pruning blocks are set per row by :meth:`at`), or ``prune=None`` for the unpruned model.

    Names (:func:`get_config`): ``unpruned``; a registered criterion (``evit``, ``renyi``, ...) with its
    registered default parameters; ``+fusion`` for EViT's token fusion (:attr:`PruneConfig.name`); and,
    for criteria with a ``backend`` parameter, ``-eager`` for ``backend="eager"`` (the entropy from the
    materialized attention matrix, as in the paper's code).

    Example:
        >>> c = get_config("evit+fusion")
        >>> c.criterion, c.fusion, c.description.endswith("ICLR 2022); with token fusion")
        ('evit', True, True)
        >>> [get_config(n).backend for n in ("renyi", "renyi-eager", "evit")]
        ['auto', 'eager', None]
        >>> get_config("renyi").at(0.7, 2.0, (3, 6, 9)).label, get_config("unpruned").at(0.7, 2.0, (3,))
        ('renyi α=2 r=0.7', None)
    """

    name: str
    prune: PruneConfig | None

    @property
    def criterion(self) -> str | None:
        """The registered criterion (``None``: unpruned)."""
        return None if self.prune is None else self.prune.criterion

    @property
    def fusion(self) -> bool:
        return self.prune is not None and self.prune.fuse_pruned

    @property
    def backend(self) -> str | None:
        """The attention backend of criteria that have one (``auto``: fused Triton; ``eager``), else None."""
        return None if self.prune is None else self.prune.criterion_params.get("backend")

    @property
    def description(self) -> str:
        """One line, from the criterion registry's description."""
        if self.prune is None:
            return "timm's model, no pruning"
        text = get_criterion(self.prune.criterion).description
        if self.backend == "eager":
            text += "; from the materialized attention"
        return text + ("; with token fusion" if self.fusion else "")

    @property
    def has_alpha(self) -> bool:
        """Whether the criterion has a Rényi order α (``renyi``: one row per ``--alpha``)."""
        return self.prune is not None and "alpha" in get_criterion(self.prune.criterion).params

    def at(self, keep_rate: float, alpha: float, prune_blocks: Sequence[int]) -> PruneConfig | None:
        """The :class:`PruneConfig` of one row: ``alpha`` only for criteria with an α (``None``: unpruned)."""
        if self.prune is None:
            return None
        return self.prune.replace(
            keep_rate=keep_rate, alpha=alpha if self.has_alpha else None, prune_blocks=tuple(prune_blocks)
        )


def config_names() -> list[str]:
    """Every ``--configs`` name: ``unpruned``, then each registered criterion, its ``+fusion`` variant and
    (criteria with a ``backend`` parameter) its ``-eager`` variant.

    Example:
        >>> names = config_names()
        >>> names[0], {"evit", "evit+fusion", "renyi", "renyi-eager"} <= set(names)
        ('unpruned', True)
    """
    names = ["unpruned"]
    for crit in available_criteria():
        names += [crit, crit + FUSION_SUFFIX]
        if "backend" in get_criterion(crit).params:
            names.append(crit + EAGER_SUFFIX)
    return names


def get_config(name: str) -> Config:
    """The :class:`Config` called ``name`` (see :func:`config_names`).

    Raises:
        ValueError: ``name`` is none of :func:`config_names` (the message lists them).

    Example:
        >>> get_config("renyi-eager").prune.params["backend"], get_config("unpruned").prune
        ('eager', None)
        >>> get_config("bogus")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown config 'bogus'; choose from unpruned, colln, ...
    """
    if name not in config_names():
        raise ValueError(f"unknown config {name!r}; choose from {', '.join(config_names())}")
    if name == "unpruned":
        return Config(name, None)
    if name.endswith(EAGER_SUFFIX):
        return Config(name, PruneConfig(name[: -len(EAGER_SUFFIX)], params={"backend": "eager"}))
    return Config(name, PruneConfig.from_name(name))


#: The paper's Table 3 comparison: the default ``--configs``.
DEFAULT_CONFIGS = ("unpruned", "evit", "evit+fusion", "renyi", "renyi-eager")
#: Every configuration by name, from the criterion registry at import (:func:`get_config` reads it anew).
CONFIGS: dict[str, Config] = {name: get_config(name) for name in config_names()}
DEFAULT_MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224")
DEFAULT_KEEP_RATES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)

DEFAULT_BATCH = 256
DTYPES = _common.DTYPES
SMOKE = dict(models=["deit_tiny_patch16_224"], img_size=64, batch=2, keep_rates=[0.7, 0.5], repeats=1)
#: CPU-sized defaults (``--device cpu``, or no CUDA): DeiT-S at its 224 px, batch 32, r = 0.7 and 0.5 (the
#: CPU comparison of issue 15: minutes on 2 cores; the run prints its estimate first).
CPU_DEFAULTS = dict(models=["deit_small_patch16_224"], batch=32, keep_rates=[0.7, 0.5])
# Timing defaults: (warm-up ms, ms per timed run, timed runs) on CUDA / on CPU.
CUDA_TIMING = dict(warmup_ms=500.0, run_ms=200.0, repeats=10)
CPU_TIMING = dict(warmup_ms=0.0, run_ms=0.0, repeats=5)

# Correctness guard: max |logits − reference| ≤ tol · max |reference| (and allclose with rtol=tol).
# The floor per dtype; under autocast the tolerance is at least 2x the dtype's own noise, i.e. the
# difference between the unpatched model under autocast and in fp32 (see logit_tolerance).
LOGIT_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
LOGIT_TOL_TF32 = 1e-2  # fp32 with torch.backends.cuda.matmul.allow_tf32 = True
NOISE_FACTOR = 2.0

# Issue-5 targets (DeiT-S, r = 0.7) and the paper's Table 3 ratios (RTX A6000).
TARGET = dict(model="deit_small_patch16_224", keep_rate=0.7, x_evit=1.00, speedup=1.70)
# Issue-15 CPU targets (DeiT-S, r = 0.7, batch 32, 2 threads): renyi images/s ratios to evit and random.
CPU_TARGET = dict(model="deit_small_patch16_224", keep_rate=0.7, x_evit=0.97, x_random=0.95)

CSV_COLUMNS = [
    "device", "torch", "triton", "timm", "git_commit", "date",
    "model", "img_size", "config", "criterion", "fusion", "backend", "impl", "compile",
    "keep_rate", "alpha", "prune_blocks", "batch", "dtype",
    "images_per_s", "images_per_s_p20", "images_per_s_p80", "ms_per_batch", "ms_p20", "ms_p80",
    "repeats", "iters", "gflops", "speedup_vs_unpruned", "x_evit", "tokens_kept", "guard_rel_err", "error",
    "ms_iqr", "ms_min", "ms_max", "images_per_s_iqr", "cpu_model", "threads", "x_random", "timing",
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


def create_model(name: str, img_size: int | None, device: str) -> torch.nn.Module:
    """``timm.create_model(name, pretrained=False[, img_size=...])`` in eval mode on ``device``.

    Random weights: the work done per image (and so the speed) does not depend on them.
    """
    import timm

    kwargs = {} if img_size is None else {"img_size": img_size}
    return timm.create_model(name, pretrained=False, **kwargs).to(device).eval()


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
    (materialized P), ``cpu`` (``auto`` on the CPU without the interpreter: :mod:`renyi_prune.cpu_attention`),
    ``eager-fallback`` (``auto`` elsewhere without Triton: the reference), ``sdpa`` or ``timm-eager``."""
    if config.backend is not None:  # an entropy criterion (renyi, shannon): the fused op or the eager one
        from renyi_prune.ops import uses_cpu_path, uses_triton

        if config.backend == "eager":
            return "eager"
        q = torch.empty(1, 1, 1, 64, dtype=attn_dtype, device=device)
        if not uses_triton(q, config.backend):
            return "cpu" if uses_cpu_path(q, config.backend) else "eager-fallback"
        return "triton" if device.startswith("cuda") else "triton-interpreter"
    return "sdpa" if getattr(model.blocks[0].attn, "fused_attn", False) else "timm-eager"


def apply_config(
    model: torch.nn.Module,
    config: Config,
    keep_rate: float,
    alpha: float,
    prune_blocks: Sequence[int],
) -> torch.nn.Module:
    """Patch ``model`` in place with ``config.at(keep_rate, alpha, prune_blocks)`` (unpatch it for
    ``unpruned``)."""
    import renyi_prune

    prune = config.at(keep_rate, alpha, prune_blocks)
    return renyi_prune.unpatch(model) if prune is None else renyi_prune.patch(model, prune)


def gflops_per_image(model: torch.nn.Module, img_size: tuple[int, int]) -> float:
    """fvcore GFLOPs of one image (NaN if fvcore is missing)."""
    if not has_fvcore():
        return math.nan
    import renyi_prune

    return renyi_prune.count_flops(model, img_size=img_size, batch_size=1)


def has_fvcore() -> bool:
    return importlib.util.find_spec("fvcore") is not None


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
    configs: Sequence[str] = DEFAULT_CONFIGS
    keep_rates: Sequence[float] = DEFAULT_KEEP_RATES
    img_size: int | None = None
    batch: int = DEFAULT_BATCH
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU
    alpha: float | Sequence[float] = 1.0  # several: one row per α for criteria with one (:func:`alphas`)
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS
    compile: bool = False
    compile_mode: str | None = None
    gflops: bool = True
    device: str | None = None
    repeats: int | None = None
    run_ms: float | None = None
    warmup_ms: float | None = None
    verbose: bool = True
    interleave: bool | None = None  # None: round-robin on CPU without compile (:func:`interleaved`)


def alphas(s: Settings, config: Config | None = None) -> list[float]:
    """The Rényi orders of a run (``s.alpha``, one or several); for a ``config`` without α only the first
    (its rows show none).

    Example:
        >>> alphas(Settings(alpha=[1.0, 2.0])), alphas(Settings(alpha=[1.0, 2.0]), get_config("evit"))
        ([1.0, 2.0], [1.0])
    """
    values = [float(a) for a in s.alpha] if isinstance(s.alpha, Sequence) else [float(s.alpha)]
    return values if config is None or config.has_alpha else values[:1]


def config_label(config: Config, alpha: float) -> str:
    """A configuration as progress lines name it: ``renyi α=2``, ``evit``."""
    from renyi_prune.config import format_alpha

    return f"{config.name} α={format_alpha(alpha)}" if config.has_alpha else config.name


def interleaved(s: Settings, device: str) -> bool:
    """Whether the run times its configurations round-robin (:mod:`._e2e_rounds`): ``s.interleave``, else
    on the CPU without ``compile`` (on CUDA, do_bench times each configuration on its own).

    Example:
        >>> interleaved(Settings(), "cpu"), interleaved(Settings(), "cuda")
        (True, False)
        >>> interleaved(Settings(compile=True), "cpu"), interleaved(Settings(interleave=True), "cuda")
        (False, True)
    """
    if s.interleave is not None:
        return s.interleave
    return not device.startswith("cuda") and not s.compile


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
            plain = Config(f"{config.name} without fusion", config.prune.replace(fuse_pruned=False))
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


def _compile(model: torch.nn.Module, mode: str | None):
    kwargs = {} if mode is None else {"mode": mode}
    return torch.compile(model, fullgraph=True, **kwargs)


def _is_compile_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "dynamo" in type(exc).__name__.lower()
