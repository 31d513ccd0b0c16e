"""Kernel benchmark: fused attention + Rényi entropy vs PyTorch SDPA vs the eager reference.

Two modes (``--mode``): ``fwd`` (default) times the forward pass; ``fwdbwd`` times forward + backward.

Providers, per shape (B, H, N, D), dtype and Rényi order α:

* ``fused``: ``renyi_prune.attention_with_entropy(q, k, v, alpha)`` — the public op (input checks,
  custom-op dispatch, the Triton kernel, entropy averaged over heads), i.e. what a user pays;
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention(q, k, v)`` — no entropy; the speed
  target;
* ``eager``: ``renyi_prune.reference.attention_with_entropy_reference(q, k, v, alpha)`` — materializes
  the (B, H, N, N) attention matrix, like the paper's code.

q, k, v are made the way timm makes them: strided views of one (B, N, 3, H, D) projection.

``fwdbwd`` mode: that (B, N, 3, H, D) tensor is a leaf with ``requires_grad=True``; each timed call
takes the q, k, v views of it (as timm's forward does), runs the provider's forward and then
``torch.autograd.grad(out, qkv, grad_out)`` with one fixed, pre-made output gradient laid out as
timm's ``out.transpose(1, 2).reshape(B, N, C)`` hands it back. ``autograd.grad`` returns d qkv instead
of accumulating it into ``qkv.grad``: no ``.grad`` reset in the timed region, no accumulation kernel,
and nothing of the previous call stays alive. The fused op's entropy is not differentiated (the op's
default, ``entropy_grad=False``); the eager reference backpropagates through its materialized (B, H,
N, N) attention matrix.

Before any shape is timed, the fused output is checked against SDPA (and its entropy against the
eager reference on the first and last batch element); in ``fwdbwd`` mode the fused op's input
gradient d qkv is also checked against SDPA's. On a mismatch the run aborts and no CSV is written — a
fast wrong kernel must never produce a benchmark row.

FLOPs (``fwd``) are counted as 4·B·H·N²·D: the two matmuls Q·Kᵀ and P·V, 2 FLOPs per multiply-add.
Softmax, entropy and the head mean are not counted. ``fwdbwd`` adds the backward as 2.5× the forward
(FlashAttention's convention: the backward's five matmuls S = Q·Kᵀ (recomputed), dV = Pᵀ·dO,
dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q, each the size of one forward matmul), i.e. 3.5 × 4·B·H·N²·D in
total, whether or not a provider recomputes S. The same count is used for every provider, so TFLOP/s
compares useful work per second.

A PNG of time and TFLOP/s against N is written next to the CSV when matplotlib is installed.

Usage (see benchmarks/README.md; ``benchmarks/bench_kernel.py`` is a thin script calling :func:`main`,
``renyi-prune bench kernel`` the same from the command line)::

    TRITON_INTERPRET=1 python benchmarks/bench_kernel.py --smoke                # CPU, Triton interpreter
    TRITON_INTERPRET=1 python benchmarks/bench_kernel.py --smoke --mode fwdbwd
    python benchmarks/bench_kernel.py                                           # GPU, DeiT-S shapes, bf16
    python benchmarks/bench_kernel.py --mode fwdbwd
    python -m renyi_prune.bench.kernel --mode fwdbwd                            # the same, no script
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .._argtypes import Option, UsageError, add_options, option, positive_int
from .._argtypes import alpha as alpha_type
from . import _common
from ._common import (  # noqa: F401  (re-exported: the kernel benchmark's public helpers)
    RESULTS_DIR,
    device_name,
    device_slug,
    git_commit,
    is_interpreting,
    triton_version,
)

__all__ = [
    "CSV_COLUMNS",
    "MODES",
    "PROVIDERS",
    "CorrectnessError",
    "add_arguments",
    "attention_flops",
    "build_parser",
    "main",
    "resolve_shapes",
    "run",
    "run_benchmark",
]

PROVIDERS = ("fused", "sdpa", "eager")
MODES = ("fwd", "fwdbwd")
DTYPES = _common.DTYPES

# Default shapes: DeiT-S (H=6, D=64) at 224 px (N=197), 384 px (N=577) and 512 px (N=1025). The batch
# shrinks with N so that the eager provider's (B, H, N, N) fp32 attention matrix stays ~0.2–0.4 GB.
DEFAULT_SEQ = (197, 577, 1025)
DEFAULT_HEADS = 6
DEFAULT_HEAD_DIM = 64
DEFAULT_BATCH_FOR_SEQ = {197: 256, 577: 64, 1025: 16}

SMOKE = dict(batch=[2], heads=2, seq=[17, 65], head_dim=32, dtype=["fp32"], reps=3)

# Correctness guard tolerances (atol = rtol): fused output vs SDPA, both against the same rounded
# inputs; both differ from the exact result by roughly one rounding of the output dtype.
OUT_TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
OUT_TOL_TF32 = 5e-3  # fp32 with torch.backends.cuda.matmul.allow_tf32 = True
# Entropy (fp32 on every path) vs the eager reference on a batch slice.
ENT_TOL = 1e-3
# fwdbwd: fused dq, dk, dv vs SDPA's, each max |difference| as a fraction of that gradient's max |SDPA|.
# Half-precision backwards (flash-style, both) round P and dS to the input dtype before their matmuls.
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
GRAD_TOL_TF32 = 1e-2  # fp32 with torch.backends.cuda.matmul.allow_tf32 = True

# FlashAttention's FLOP convention: the backward does 5 matmuls of the size of the forward's 2.
BWD_FLOP_FACTOR = 2.5

CSV_COLUMNS = [
    "device", "torch", "triton", "git_commit", "date", "mode", "provider", "impl", "dtype", "alpha",
    "B", "H", "N", "D", "ms_median", "ms_p20", "ms_p80", "tflops", "peak_mem_MiB",
    "x_sdpa", "x_eager", "out_max_abs_err", "ent_max_abs_err", "error",
]  # fmt: skip


class CorrectnessError(RuntimeError):
    """The fused op disagrees with SDPA / the eager reference: no benchmark row may be produced.

    Raised by :func:`run_benchmark` before anything of the failing shape is timed; :func:`run` then
    returns 1 and writes nothing.

    Example:
        >>> issubclass(CorrectnessError, RuntimeError)
        True
    """


# --------------------------------------------------------------------------------------------------
# inputs, providers, checks


_QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def make_qkv(B: int, H: int, N: int, D: int, dtype: torch.dtype, device: str, seed: int = 0) -> _QKV:
    """q, k, v as timm makes them: strided views (no copies) of one (B, N, 3, H, D) tensor."""
    g = torch.Generator(device=device).manual_seed(seed)
    qkv = torch.randn(B, N, 3, H, D, generator=g, device=device, dtype=dtype).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return q, k, v


def make_qkv_leaf(
    B: int, H: int, N: int, D: int, dtype: torch.dtype, device: str, seed: int = 0
) -> torch.Tensor:
    """The (B, N, 3, H, D) tensor of :func:`make_qkv` (same values) as a leaf with ``requires_grad``."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(B, N, 3, H, D, generator=g, device=device, dtype=dtype).requires_grad_(True)


def split_qkv(qkv: torch.Tensor) -> _QKV:
    """timm's q, k, v: ``qkv.permute(2, 0, 3, 1, 4).unbind(0)``, three (B, H, N, D) strided views."""
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def make_grad_out(
    B: int, H: int, N: int, D: int, dtype: torch.dtype, device: str, seed: int = 1
) -> torch.Tensor:
    """A fixed (B, H, N, D) output gradient laid out as (B, N, H, D) in memory: the layout timm's
    backward hands back through ``out.transpose(1, 2).reshape(B, N, H * D)``."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(B, N, H, D, generator=g, device=device, dtype=dtype).transpose(1, 2)


def attention_flops(B: int, H: int, N: int, D: int, mode: str = "fwd") -> float:
    """Q·Kᵀ and P·V: 2·N²·D multiply-adds per (batch, head), 2 FLOPs each → 4·B·H·N²·D (``fwd``).

    ``fwdbwd`` adds the backward at 2.5× the forward (FlashAttention's convention: S = Q·Kᵀ
    recomputed, dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q — five matmuls of the forward's size),
    3.5 × 4·B·H·N²·D in all. (This is 2 FLOPs per multiply-add, twice fvcore's count.)

    Raises:
        ValueError: an unknown ``mode``.

    Example:
        >>> attention_flops(1, 1, 4, 8), attention_flops(1, 1, 4, 8, "fwdbwd")
        (512, 1792.0)
        >>> round(attention_flops(256, 6, 197, 64) / 1e9, 1)  # DeiT-S at 224 px, batch 256: GFLOP per call
        15.3
    """
    fwd = 4 * B * H * N * N * D
    if mode == "fwd":
        return fwd
    if mode == "fwdbwd":
        return fwd * (1.0 + BWD_FLOP_FACTOR)
    raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


def make_provider(
    name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: float
) -> Callable[[], object]:
    import renyi_prune
    from renyi_prune.reference import attention_with_entropy_reference

    if name == "fused":
        return lambda: renyi_prune.attention_with_entropy(q, k, v, alpha)
    if name == "sdpa":
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
    if name == "eager":
        return lambda: attention_with_entropy_reference(q, k, v, alpha)
    raise ValueError(f"unknown provider {name!r}; choose from {PROVIDERS}")


def make_fwdbwd_provider(
    name: str, qkv: torch.Tensor, grad_out: torch.Tensor, alpha: float
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """One forward + backward of a provider; the callable returns ``(out, d qkv)``.

    Each call takes timm's q, k, v views of the leaf ``qkv`` (as timm's forward does), runs the
    forward, then ``torch.autograd.grad(out, qkv, grad_out)``: the gradient is returned, not
    accumulated into ``qkv.grad``, so no ``.grad`` reset or accumulation kernel is timed and nothing
    from the previous call stays alive. The fused op's entropy is computed but not differentiated
    (``entropy_grad=False``, the op's default).
    """
    import renyi_prune
    from renyi_prune.reference import attention_with_entropy_reference

    if name == "fused":
        fwd = lambda q, k, v: renyi_prune.attention_with_entropy(q, k, v, alpha)[0]
    elif name == "sdpa":
        fwd = torch.nn.functional.scaled_dot_product_attention
    elif name == "eager":
        fwd = lambda q, k, v: attention_with_entropy_reference(q, k, v, alpha)[0]
    else:
        raise ValueError(f"unknown provider {name!r}; choose from {PROVIDERS}")

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = split_qkv(qkv)
        out = fwd(q, k, v)
        (dqkv,) = torch.autograd.grad(out, qkv, grad_out)
        return out, dqkv

    return step


def fused_impl(q: torch.Tensor) -> str:
    """Which code the ``fused`` provider runs for inputs like ``q``."""
    from renyi_prune.ops import uses_triton

    if not uses_triton(q):
        return "eager-fallback"
    return "triton-interpreter" if q.device.type == "cpu" else "triton"


PROVIDER_IMPL = {"sdpa": "torch-sdpa", "eager": "torch-eager"}


def check_fused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: float, fused_fn: Callable[[], object]
) -> tuple[float, float]:
    """Fused output vs SDPA (whole shape) and entropy vs the eager reference (first/last batch element).

    Returns (max |out − sdpa|, max |ent − reference|); raises :class:`CorrectnessError` on a mismatch
    or a non-finite value.
    """
    from renyi_prune.reference import attention_with_entropy_reference

    out, ent = fused_fn()
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    tol = OUT_TOL[q.dtype]
    if q.dtype == torch.float32 and q.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        tol = OUT_TOL_TF32
    B = q.shape[0]
    idx = sorted({0, B - 1})
    _, ref_ent, _ = attention_with_entropy_reference(q[idx], k[idx], v[idx], alpha)
    shape = f"B={B} H={q.shape[1]} N={q.shape[2]} D={q.shape[3]} dtype={q.dtype} alpha={alpha}"
    problems = []
    shapes_ok = out.shape == ref.shape and tuple(ent.shape) == (B, q.shape[2])
    out_err = ent_err = math.nan
    if not shapes_ok:
        problems.append(f"shapes: out {tuple(out.shape)} vs sdpa {tuple(ref.shape)}, ent {tuple(ent.shape)}")
    else:
        out_err = (out.float() - ref.float()).abs().max().item()
        ent_err = (ent[idx].float() - ref_ent.float()).abs().max().item()
        if not torch.isfinite(out).all() or not torch.isfinite(ent).all():
            problems.append("non-finite values in fused output or entropy")
        if not torch.allclose(out.float(), ref.float(), atol=tol, rtol=tol):
            problems.append(f"output differs from SDPA (atol=rtol={tol})")
        if not torch.allclose(ent[idx].float(), ref_ent.float(), atol=ENT_TOL, rtol=ENT_TOL):
            problems.append(f"entropy differs from the eager reference (atol=rtol={ENT_TOL})")
    if problems:
        raise CorrectnessError(
            f"fused attention_with_entropy is WRONG at {shape}: {'; '.join(problems)} "
            f"(max |out - sdpa| = {out_err:.3g}, max |ent - ref| = {ent_err:.3g}). No benchmark rows written."
        )
    return out_err, ent_err


def grad_tol(dtype: torch.dtype, is_cuda: bool) -> float:
    """Allowed max |fused d qkv − SDPA d qkv| as a fraction of max |SDPA d qkv|."""
    if dtype == torch.float32 and is_cuda and torch.backends.cuda.matmul.allow_tf32:
        return GRAD_TOL_TF32
    return GRAD_TOL[dtype]


def check_fused_grad(
    qkv: torch.Tensor, grad_out: torch.Tensor, fused_step: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> float:
    """fwdbwd guard: the fused step's d qkv (and its output) vs SDPA's forward + backward.

    Same leaf, same output gradient. Each of dq, dk, dv (the three slices of d qkv) is compared
    with SDPA's relative to its own largest magnitude, so a small but wrong dq cannot hide behind a
    large dv. Returns the largest of max |dx − SDPA dx| / max |SDPA dx| over x = q, k, v; raises
    :class:`CorrectnessError` if that exceeds :func:`grad_tol`, if the output differs from SDPA's
    (the forward tolerances), on non-finite values or on wrong shapes.
    """
    with torch.enable_grad():
        out, dqkv = fused_step()
        q, k, v = split_qkv(qkv)
        ref_out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        (ref,) = torch.autograd.grad(ref_out, qkv, grad_out)
    out, dqkv, ref_out, ref = (t.detach() for t in (out, dqkv, ref_out, ref))
    B, N, _, H, D = qkv.shape
    shape = f"B={B} H={H} N={N} D={D} dtype={qkv.dtype}"
    tol = grad_tol(qkv.dtype, qkv.is_cuda)
    tf32 = qkv.dtype == torch.float32 and qkv.is_cuda and torch.backends.cuda.matmul.allow_tf32
    out_tol = OUT_TOL_TF32 if tf32 else OUT_TOL[qkv.dtype]
    problems = []
    rel_err = math.nan
    if dqkv.shape != ref.shape or out.shape != ref_out.shape:
        problems.append(f"shapes: d qkv {tuple(dqkv.shape)} vs {tuple(ref.shape)}, out {tuple(out.shape)}")
    else:
        rel = {}
        for i, name in enumerate("qkv"):
            got_x, ref_x = dqkv[:, :, i].float(), ref[:, :, i].float()
            ref_max = ref_x.abs().max().item()
            err = (got_x - ref_x).abs().max().item()
            rel[name] = err / ref_max if ref_max > 0 else (0.0 if err == 0 else math.inf)
            if not rel[name] <= tol:  # also catches NaN
                problems.append(
                    f"d{name} differs from SDPA's: max |d{name} - sdpa| = {err:.3g} = {rel[name]:.3g} x "
                    f"max |sdpa d{name}| ({ref_max:.3g}) > {tol:g}"
                )
        rel_err = max(rel.values())
        if not torch.isfinite(dqkv).all() or not torch.isfinite(out).all():
            problems = ["non-finite values in the fused d qkv or output"]
        if not torch.allclose(out.float(), ref_out.float(), atol=out_tol, rtol=out_tol):
            problems.append(f"output of the fwd+bwd step differs from SDPA (atol=rtol={out_tol})")
    if problems:
        raise CorrectnessError(
            f"fused attention_with_entropy backward is WRONG at {shape}: {'; '.join(problems)}. "
            "No benchmark rows written."
        )
    return rel_err


# --------------------------------------------------------------------------------------------------
# timing and memory


def _quantiles(times_ms: Sequence[float]) -> tuple[float, float, float]:
    return _common.quantiles(times_ms)


def time_cpu(fn: Callable[[], object], reps: int, warmup_ms: float = 100.0) -> tuple[float, float, float]:
    """Median, 20th and 80th percentile (ms) of ``reps`` back-to-back single calls.

    Warm-up: at least one call and at least ``warmup_ms`` of calls. CPU numbers are for smoke tests
    only; on small VMs torch's spin-waiting OpenMP workers can add ~8 ms per parallel op (run with
    ``OMP_WAIT_POLICY=PASSIVE``, see benchmarks/README.md).
    """
    t_end = time.perf_counter() + warmup_ms * 1e-3
    fn()
    while time.perf_counter() < t_end:
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return _quantiles(times)


def time_cuda(fn: Callable[[], object], reps: int | None) -> tuple[float, float, float]:
    """``triton.testing.do_bench`` (L2 flushed before each call): median, p20, p80 in ms.

    ``reps=None`` uses do_bench's default 100 ms of timed calls; otherwise about ``reps`` timed calls.
    """
    import triton.testing

    rep_ms = 100.0
    if reps is not None:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        rep_ms = max(1.0, reps * (time.perf_counter() - t0) * 1e3)
    med, p20, p80 = triton.testing.do_bench(fn, warmup=25, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
    return float(med), float(p20), float(p80)


def peak_mem_mib(fn: Callable[[], object], device: str) -> float:
    """CUDA only: peak memory allocated during one call minus what was allocated before it (inputs and
    anything else live), i.e. the call's outputs plus its temporaries, in MiB. NaN on CPU.

    In ``fwdbwd`` mode one call is a forward + backward step, so this is the output, the activations
    saved for the backward, the backward's temporaries and the returned d qkv; the leaf ``qkv`` and
    ``grad_out`` are inputs (allocated before) and no stale ``qkv.grad`` exists (``autograd.grad``).
    """
    if not device.startswith("cuda"):
        return math.nan
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    res = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del res
    return (peak - base) / 2**20


_is_oom = _common.is_oom
_free = _common.free_memory


def _oom_message(exc: BaseException) -> str:
    return f"OOM: {_common.first_line(exc)}"


# --------------------------------------------------------------------------------------------------
# the benchmark


def run_benchmark(
    shapes: Sequence[tuple[int, int, int, int]],
    dtypes: Sequence[torch.dtype] = (torch.bfloat16,),
    alphas: Sequence[float] = (1.0,),
    providers: Sequence[str] = PROVIDERS,
    device: str | None = None,
    reps: int | None = None,
    verbose: bool = True,
    mode: str = "fwd",
) -> list[dict]:
    """Time every provider on every (B, H, N, D) shape × dtype × α; return one dict per row.

    ``mode``: ``"fwd"`` times the forward, ``"fwdbwd"`` forward + backward (see the module docstring).
    Rows have the keys of :data:`CSV_COLUMNS` (floats; NaN where not measured); ``fused`` rows of a
    ``fwdbwd`` run also carry ``grad_max_rel_err`` (not written to the CSV). Raises
    :class:`CorrectnessError` — before timing anything of that shape — if ``fused`` is among the
    providers and disagrees with SDPA / the reference (in ``fwdbwd`` mode: also its input gradient
    vs SDPA's). A provider that runs out of memory gives a row with ``error`` set instead of timings.
    Times are ms per call (median, p20, p80), ``tflops`` in TFLOP/s (:func:`attention_flops`),
    ``peak_mem_MiB`` the peak extra CUDA memory of a call (NaN on CPU).

    Raises:
        ValueError: an unknown provider or mode.

    Example:
        >>> rows = run_benchmark([(1, 2, 16, 8)], [torch.float32], [1.0], ["sdpa", "eager"], device="cpu",
        ...                      reps=2, verbose=False)
        >>> [(r["provider"], r["impl"], r["N"], r["error"]) for r in rows], rows[0]["x_sdpa"]
        ([('sdpa', 'torch-sdpa', 16, ''), ('eager', 'torch-eager', 16, '')], 1.0)
    """
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; choose from {PROVIDERS}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = device.startswith("cuda")
    if not on_cuda and reps is None:
        reps = 5
    common = dict(
        device=device_name(device),
        torch=torch.__version__,
        triton=triton_version(),
        git_commit=git_commit(),
        date=_common.utc_now(),
        mode=mode,
    )
    rows: list[dict] = []
    for dtype in dtypes:
        for alpha in alphas:
            for B, H, N, D in shapes:
                shape_rows = _bench_shape(
                    B, H, N, D, dtype, alpha, providers, device, reps, common, verbose, mode
                )
                rows.extend(shape_rows)
    return rows


def _bench_shape(B, H, N, D, dtype, alpha, providers, device, reps, common, verbose, mode) -> list[dict]:
    on_cuda = device.startswith("cuda")
    fwdbwd = mode == "fwdbwd"
    if fwdbwd:
        qkv = make_qkv_leaf(B, H, N, D, dtype, device)
        grad_out = make_grad_out(B, H, N, D, dtype, device)
        q, k, v = split_qkv(qkv.detach())  # for the forward guard
    else:
        qkv = grad_out = None
        q, k, v = make_qkv(B, H, N, D, dtype, device)
    base = dict(common, dtype=_common.dtype_name(dtype), alpha=alpha, B=B, H=H, N=N, D=D)
    flops = attention_flops(B, H, N, D, mode)
    if verbose:
        tag = "fwdbwd " if fwdbwd else ""
        print(
            f"[bench] {tag}{_common.dtype_name(dtype)} alpha={alpha:g} B={B} H={H} N={N} D={D}",
            file=sys.stderr,
        )

    def row(provider: str, **kw) -> dict:
        r = {c: math.nan for c in CSV_COLUMNS}
        r.update(base, provider=provider, impl=PROVIDER_IMPL.get(provider, ""), error="")
        r.update(kw)
        return r

    if fwdbwd:
        fns = {p: make_fwdbwd_provider(p, qkv, grad_out, alpha) for p in providers}
    else:
        fns = {p: make_provider(p, q, k, v, alpha) for p in providers}
    errs = {}
    # correctness guard: first calls of fused (Triton autotuning happens here) and sdpa; every
    # provider is called once more below before its memory is measured and it is timed
    if "fused" in fns:
        try:
            with torch.inference_mode():
                fwd_fn = make_provider("fused", q, k, v, alpha) if fwdbwd else fns["fused"]
                out_err, ent_err = check_fused(q, k, v, alpha, fwd_fn)
            errs = dict(out_max_abs_err=out_err, ent_max_abs_err=ent_err)
            if fwdbwd:
                errs["grad_max_rel_err"] = check_fused_grad(qkv, grad_out, fns["fused"])
                if verbose:
                    print(f"[bench]   fused dq, dk, dv vs sdpa: worst max |diff| / max |sdpa| = "
                          f"{errs['grad_max_rel_err']:.3g} (tol {grad_tol(dtype, on_cuda):g})",
                          file=sys.stderr)  # fmt: skip
        except CorrectnessError:
            raise
        except Exception as exc:  # only OOM is recorded; anything else re-raised
            if not _is_oom(exc):
                raise
            _free(device)
            msg = "correctness check not run: " + _oom_message(exc)
            return [row(p, error=msg) for p in providers]
    rows = []
    times = {}
    # fwd: no autograd at all; fwdbwd: autograd on (also if the caller disabled it)
    with torch.enable_grad() if fwdbwd else torch.inference_mode():
        for p, fn in fns.items():
            try:
                fn()  # first call (again) outside the guard, result dropped
                mem = peak_mem_mib(fn, device)
                med, p20, p80 = time_cuda(fn, reps) if on_cuda else time_cpu(fn, reps)
            except Exception as exc:  # only OOM is recorded
                if not _is_oom(exc):
                    raise
                _free(device)
                rows.append(row(p, error=_oom_message(exc)))
                if verbose:
                    print(f"[bench]   {p}: {_oom_message(exc)}", file=sys.stderr)
                continue
            times[p] = med
            extra = errs if p == "fused" else {}
            impl = fused_impl(q) if p == "fused" else PROVIDER_IMPL[p]
            rows.append(
                row(p, impl=impl, ms_median=med, ms_p20=p20, ms_p80=p80,
                    tflops=flops / (med * 1e-3) / 1e12, peak_mem_MiB=mem, **extra)
            )  # fmt: skip
    for r in rows:
        if r["error"]:
            continue
        for ref_p, col in (("sdpa", "x_sdpa"), ("eager", "x_eager")):
            if ref_p in times:
                r[col] = r["ms_median"] / times[ref_p]
    del q, k, v, qkv, grad_out, fns
    _free(device)
    return rows


# --------------------------------------------------------------------------------------------------
# output


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    _common.write_csv(rows, path, CSV_COLUMNS)


def format_table(rows: Sequence[dict]) -> str:
    cols = [
        ("provider", "provider", "{}"), ("impl", "impl", "{}"), ("dtype", "dtype", "{}"),
        ("alpha", "alpha", "{:g}"), ("B", "B", "{}"), ("H", "H", "{}"), ("N", "N", "{}"), ("D", "D", "{}"),
        ("ms_median", "ms", "{:.4g}"), ("ms_p20", "p20", "{:.4g}"), ("ms_p80", "p80", "{:.4g}"),
        ("tflops", "TFLOP/s", "{:.3g}"), ("peak_mem_MiB", "MiB", "{:.1f}"),
        ("x_sdpa", "x_sdpa", "{:.3f}"), ("x_eager", "x_eager", "{:.3f}"), ("error", "error", "{}"),
    ]  # fmt: skip
    return _common.format_table(rows, cols)


def plot_path(csv_path: Path) -> Path:
    """The PNG written next to a CSV: same name, ``.png``."""
    return Path(csv_path).with_suffix(".png")


def write_plot(rows: Sequence[dict], path: Path) -> bool:
    """Kernel time (ms, log scale, p20–p80 bars) and TFLOP/s against N, one line per provider, one
    column of panels per (dtype, α); x ticks name N and its batch B. Returns False (and writes
    nothing) if matplotlib is missing or no row has a timing."""
    rows = [r for r in rows if not r.get("error") and not math.isnan(r.get("ms_median", math.nan))]
    if not rows:
        return False
    groups = sorted({(r["dtype"], r["alpha"]) for r in rows}, key=lambda g: (g[0], g[1]))
    fig = _common.new_figure(figsize=(5.0 * len(groups), 7.0))
    if fig is None:
        return False
    axes = fig.subplots(2, len(groups), squeeze=False)
    mode = rows[0]["mode"]
    for col, (dtype, alpha) in enumerate(groups):
        ax_ms, ax_tf = axes[0][col], axes[1][col]
        sel = [r for r in rows if (r["dtype"], r["alpha"]) == (dtype, alpha)]
        for provider in PROVIDERS:
            pr = sorted((r for r in sel if r["provider"] == provider), key=lambda r: (r["N"], r["B"]))
            if not pr:
                continue
            ns = [r["N"] for r in pr]
            med = [r["ms_median"] for r in pr]
            err = [[m - r["ms_p20"] for m, r in zip(med, pr, strict=True)],
                   [r["ms_p80"] - m for m, r in zip(med, pr, strict=True)]]  # fmt: skip
            label = f"{provider} ({pr[0]['impl']})"
            ax_ms.errorbar(ns, med, yerr=err, marker="o", capsize=3, label=label)
            ax_tf.plot(ns, [r["tflops"] for r in pr], marker="o", label=label)
        ticks = sorted({(r["N"], r["B"]) for r in sel})
        for ax in (ax_ms, ax_tf):
            ax.set_xticks([n for n, _ in ticks], [f"{n}\nB={b}" for n, b in ticks])
            ax.grid(True, alpha=0.3)
        H, D = sel[0]["H"], sel[0]["D"]
        ax_ms.set_title(f"{mode}: {dtype}, alpha={alpha:g}, H={H}, D={D}")
        ax_ms.set_yscale("log")
        ax_ms.set_ylabel("ms per call (median, p20-p80)")
        ax_tf.set_ylabel("TFLOP/s")
        ax_tf.set_xlabel("N (tokens), batch B")
        ax_ms.legend(fontsize=8)
    fig.suptitle(f"{rows[0]['device']}  torch {rows[0]['torch']}  triton {rows[0]['triton']}  "
                 f"{rows[0]['git_commit']}", fontsize=9)  # fmt: skip
    _common.save_figure(fig, path)
    return True


# --------------------------------------------------------------------------------------------------
# command line


def default_batch(N: int) -> int:
    """Batch for a sequence length when --batch is not given: 256 (N ≤ 256), 64 (N ≤ 640), else 16."""
    if N in DEFAULT_BATCH_FOR_SEQ:
        return DEFAULT_BATCH_FOR_SEQ[N]
    return 256 if N <= 256 else 64 if N <= 640 else 16


DESCRIPTION = (
    "Forward (or forward+backward) time of fused attention+Rényi entropy vs SDPA vs eager reference."
)
EPILOG = (
    "On a machine without CUDA run with TRITON_INTERPRET=1 set before renyi_prune is imported (and "
    "--smoke), or 'fused' is the eager fallback (impl=eager-fallback); benchmarks/bench_kernel.py --smoke "
    "sets it for you."
)


def _options() -> list[Option]:
    seq_default = " ".join(map(str, DEFAULT_SEQ))
    return [
        option("--mode", "fwd: forward only (default); fwdbwd: forward + backward of the output w.r.t. q, "
               "k, v", default="fwd", choices=MODES),
        option("--batch", "B: one value for all N, or one per --seq value (default: 256 for N=197, 64 for "
               "N=577, 16 for N=1025)", positive_int, nargs="+"),
        option("--heads", f"H (default {DEFAULT_HEADS})", positive_int),
        option("--seq", f"token counts N (default {seq_default})", positive_int, nargs="+"),
        option("--head-dim", f"D (default {DEFAULT_HEAD_DIM})", positive_int),
        option("--dtype", "default bf16", nargs="+", choices=sorted(DTYPES)),
        option("--alpha", "Rényi order(s), 'inf' allowed (default 1.0)", alpha_type, nargs="+"),
        option("--providers", "default: fused sdpa eager", nargs="+", choices=PROVIDERS),
        option("--reps", "timed calls: CPU default 5; CUDA default do_bench's 100 ms budget, else about this "
               "many calls", positive_int),
        *_common.output_options(
            "CSV path (default benchmarks/results/<device>/kernel_<mode>.csv; with --smoke a file under the "
            "system temp dir); the PNG is written next to it",
            "tiny shapes (B=2, H=2, N=17,65, D=32, fp32, 3 reps) for CPU / TRITON_INTERPRET=1 CI; explicit "
            "options still win",
            "no per-shape progress on stderr",
        ),
    ]  # fmt: skip


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's parser (``prog`` as shown in messages); errors are one line and exit code 2.

    Example:
        >>> args = build_parser().parse_args(["--mode", "fwdbwd", "--seq", "197", "577", "--alpha", "inf"])
        >>> args.mode, args.seq, args.alpha, args.device
        ('fwdbwd', [197, 577], [inf], 'auto')
    """
    return _common.build_parser(prog, DESCRIPTION, _options(), EPILOG)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, on any parser (e.g. a ``renyi-prune bench kernel`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench kernel")
        >>> add_arguments(p)
        >>> args = p.parse_args(["--smoke", "--providers", "fused", "sdpa"])
        >>> args.smoke, args.providers, args.mode, args.plot
        (True, ['fused', 'sdpa'], 'fwd', True)
    """
    add_options(p, _options())


def resolve_shapes(args: argparse.Namespace) -> list[tuple[int, int, int, int]]:
    """The (B, H, N, D) shapes the options ask for (defaults: DeiT-S's; ``--smoke``: tiny ones).

    Raises:
        UsageError: ``--batch`` has neither 1 value nor one per ``--seq`` value, or a size is < 1.

    Example:
        >>> resolve_shapes(build_parser().parse_args(["--seq", "197", "577", "--batch", "8"]))  # (B, H, N, D)
        [(8, 6, 197, 64), (8, 6, 577, 64)]
        >>> resolve_shapes(build_parser().parse_args(["--smoke"]))
        [(2, 2, 17, 32), (2, 2, 65, 32)]
    """
    smoke = args.smoke
    seq = args.seq or (SMOKE["seq"] if smoke else list(DEFAULT_SEQ))
    H = args.heads or (SMOKE["heads"] if smoke else DEFAULT_HEADS)
    D = args.head_dim or (SMOKE["head_dim"] if smoke else DEFAULT_HEAD_DIM)
    if args.batch is None:
        batch = [SMOKE["batch"][0] if smoke else default_batch(n) for n in seq]
    elif len(args.batch) == 1:
        batch = args.batch * len(seq)
    elif len(args.batch) == len(seq):
        batch = list(args.batch)
    else:
        raise UsageError(
            f"argument --batch: takes 1 value or one per --seq value ({len(seq)}), got {len(args.batch)}"
        )
    for name, val in (("B", batch), ("H", [H]), ("N", seq), ("D", [D])):
        if any(x <= 0 for x in val):
            raise UsageError(f"{name} must be positive, got {val}")
    return [(b, H, n, D) for b, n in zip(batch, seq, strict=True)]


def default_out_path(mode: str, device: str, smoke: bool = False) -> Path:
    """``benchmarks/results/<device-slug>/kernel_<mode>.csv``; with ``smoke`` the same name under the
    system temp dir, so that smoke numbers never land in ``results/``."""
    return _common.output_path(f"kernel_{mode}.csv", device, smoke)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kernel benchmark with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns the exit code: 0 written, 1 correctness check failed (nothing written), 2 bad arguments
    (one line ``PROG: error: ...`` on stderr). Prints the table of results; writes the CSV and the PNG.

    Example:
        SDPA alone on one tiny shape (the table and the paths printed vary, so they are not shown):

        >>> import contextlib, io, tempfile
        >>> out = Path(tempfile.mkdtemp()) / "kernel.csv"
        >>> argv = ["--providers", "sdpa", "--seq", "16", "--batch", "1", "--heads", "1", "--head-dim", "8",
        ...         "--dtype", "fp32", "--reps", "2", "--device", "cpu", "--quiet", "--no-plot"]
        >>> with contextlib.redirect_stdout(io.StringIO()):
        ...     code = main([*argv, "--out", str(out)])
        >>> code, out.read_text().splitlines()[0].split(",")[:6]
        (0, ['device', 'torch', 'triton', 'git_commit', 'date', 'mode'])
        >>> main(["--batch", "1", "2", "--seq", "17"])  # stderr: ... --batch: takes 1 value or one per ...
        2
    """
    return _common.main(build_parser(), run, argv)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments (see :func:`add_arguments`); returns the exit code.

    0: the CSV (columns :data:`CSV_COLUMNS`; ms per call, TFLOP/s, peak extra CUDA MiB) and the PNG are
    written; 1: the correctness guard failed and nothing was written.

    Raises:
        UsageError: ``--device cuda`` without CUDA, or inconsistent sizes (see :func:`resolve_shapes`).

    Example:
        >>> import contextlib, io, tempfile
        >>> args = build_parser().parse_args(["--providers", "sdpa", "eager", "--smoke", "--seq", "17",
        ...     "--device", "cpu", "--quiet", "--no-plot", "--out", str(Path(tempfile.mkdtemp()) / "k.csv")])
        >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
        ...     code = run(args)
        >>> code, "x_sdpa" in printed.getvalue(), "wrote" in printed.getvalue()
        (0, True, True)
    """
    device = _common.resolve_device(args.device)
    # TRITON_INTERPRET only takes effect if set before the kernels are decorated, i.e. before
    # renyi_prune is imported: too late here (benchmarks/bench_kernel.py sets it for --smoke)

    shapes = resolve_shapes(args)
    dtypes = [DTYPES[d] for d in (args.dtype or (SMOKE["dtype"] if args.smoke else ["bf16"]))]
    alphas = args.alpha or [1.0]
    providers = args.providers or list(PROVIDERS)
    reps = args.reps if args.reps is not None else (SMOKE["reps"] if args.smoke else None)

    if device == "cpu" and "fused" in providers:
        q = torch.empty(1, 1, 1, 16, dtype=dtypes[0])
        if fused_impl(q) == "eager-fallback":
            print("[bench] WARNING: no CUDA and TRITON_INTERPRET unset: 'fused' runs the eager fallback, "
                  "not the Triton kernel (impl=eager-fallback); set TRITON_INTERPRET=1 before renyi_prune "
                  "is imported (benchmarks/bench_kernel.py --smoke does)", file=sys.stderr)  # fmt: skip
    if device == "cpu" and not args.smoke and args.seq is None:
        print("[bench] WARNING: GPU-sized default shapes on CPU: slow (try --smoke)", file=sys.stderr)

    out_path = args.out if args.out is not None else default_out_path(args.mode, device, args.smoke)

    try:
        rows = run_benchmark(
            shapes, dtypes, alphas, providers, device, reps, verbose=not args.quiet, mode=args.mode
        )
    except CorrectnessError as exc:
        return _common.correctness_failed(exc)

    first = rows[0] if rows else {}
    print(
        f"device: {first.get('device', '')}  torch {first.get('torch', '')}  "
        f"triton {first.get('triton', '')}  commit {first.get('git_commit', '') or '?'}  "
        f"{first.get('date', '')}"
    )
    if args.mode == "fwd":
        print("TFLOP/s counts 4*B*H*N^2*D (QK^T and PV, 2 FLOPs per multiply-add); "
              "MiB = peak extra CUDA memory")  # fmt: skip
    else:
        print("mode fwdbwd: ms per forward+backward call; TFLOP/s counts 3.5 * 4*B*H*N^2*D (forward + "
              "backward at 2.5x forward, FlashAttention's convention); MiB = peak extra CUDA "
              "memory")  # fmt: skip
        grads = [r for r in rows if r.get("grad_max_rel_err") is not None and r["provider"] == "fused"]
        for r in grads:
            print(f"fused dq, dk, dv vs SDPA ({r['dtype']} alpha={r['alpha']:g} B={r['B']} N={r['N']}): "
                  f"worst max |diff| / max |sdpa| = {r['grad_max_rel_err']:.3g}")  # fmt: skip
    print(format_table(rows))
    plot = write_plot if getattr(args, "plot", True) else None
    _common.write_results(rows, out_path, CSV_COLUMNS, plot, "bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
