"""Shapes, providers, correctness checks and constants of the kernel benchmark
(:mod:`renyi_prune.bench.kernel`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _common

PROVIDERS = ("fused", "sdpa", "eager")
MODES = ("fwd", "fwdbwd")
DTYPES = _common.DTYPES

# Default shapes: DeiT-S (H=6, D=64) at 224 px (N=197), 384 px (N=577) and 512 px (N=1025). The batch
# shrinks with N so that the eager provider's (B, H, N, N) fp32 attention matrix stays ~0.2–0.4 GB.
DEFAULT_SEQ = (197, 577, 1025)
DEFAULT_HEADS = 6
DEFAULT_HEAD_DIM = 64
DEFAULT_BATCH_FOR_SEQ = {197: 256, 577: 64, 1025: 16}
# CPU-sized defaults (``--device cpu``, or no CUDA): the same DeiT-S heads and token counts in fp32, batches
# small enough for a laptop (each shape's eager (B, H, N, N) matrix stays ~6–25 MB).
CPU_BATCH_FOR_SEQ = {197: 8, 577: 2, 1025: 1}
CPU_DTYPE = "fp32"

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
    "ms_iqr", "ms_min", "ms_max", "repeats",
]  # fmt: skip


class CorrectnessError(RuntimeError):
    """The fused op disagrees with SDPA / the eager reference: no benchmark row may be produced.

    Raised by :func:`run_benchmark` before anything of the failing shape is timed; :func:`run` then
    returns 1 and writes nothing.

    Example:
        >>> issubclass(CorrectnessError, RuntimeError)
        True
    """


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
    from renyi_prune.ops import uses_cpu_path, uses_triton

    if not uses_triton(q):
        return "cpu" if uses_cpu_path(q) else "eager-fallback"
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


@dataclass(frozen=True)
class Case:
    """One (B, H, N, D) shape × dtype × α of a run, in ``mode`` ``fwd`` or ``fwdbwd``."""

    B: int
    H: int
    N: int
    D: int
    dtype: torch.dtype
    alpha: float
    mode: str

    @property
    def fwdbwd(self) -> bool:
        return self.mode == "fwdbwd"

    def columns(self) -> dict:
        name = _common.dtype_name(self.dtype)
        return dict(dtype=name, alpha=self.alpha, B=self.B, H=self.H, N=self.N, D=self.D)


def make_inputs(case: Case, device: str) -> tuple:
    """(q, k, v, qkv, grad_out): timm-like q/k/v views; with ``fwdbwd`` also the (B, N, 3, H, D) leaf
    and the output gradient (else None)."""
    if not case.fwdbwd:
        return (*make_qkv(case.B, case.H, case.N, case.D, case.dtype, device), None, None)
    qkv = make_qkv_leaf(case.B, case.H, case.N, case.D, case.dtype, device)
    grad_out = make_grad_out(case.B, case.H, case.N, case.D, case.dtype, device)
    return (*split_qkv(qkv.detach()), qkv, grad_out)  # q, k, v for the forward guard


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
