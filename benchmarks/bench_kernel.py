"""Forward-time benchmark: fused attention + Rényi entropy vs PyTorch SDPA vs the eager reference.

Providers, per shape (B, H, N, D), dtype and Rényi order α:

* ``fused``: ``renyi_prune.attention_with_entropy(q, k, v, alpha)`` — the public op (input checks,
  custom-op dispatch, the Triton kernel, entropy averaged over heads), i.e. what a user pays;
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention(q, k, v)`` — no entropy; the speed
  target;
* ``eager``: ``renyi_prune.reference.attention_with_entropy_reference(q, k, v, alpha)`` — materializes
  the (B, H, N, N) attention matrix, like the paper's code.

q, k, v are made the way timm makes them: strided views of one (B, N, 3, H, D) projection.

Before any shape is timed, the fused output is checked against SDPA (and its entropy against the
eager reference on the first and last batch element); on a mismatch the run aborts and no CSV is
written — a fast wrong kernel must never produce a benchmark row.

FLOPs are counted as 4·B·H·N²·D: the two matmuls Q·Kᵀ and P·V, 2 FLOPs per multiply-add. Softmax,
entropy and the head mean are not counted. The same count is used for every provider, so TFLOP/s
compares useful work per second.

Usage (see benchmarks/README.md)::

    TRITON_INTERPRET=1 python benchmarks/bench_kernel.py --smoke      # CPU, Triton interpreter
    python benchmarks/bench_kernel.py                                 # GPU, DeiT-S shapes, bf16
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

PROVIDERS = ("fused", "sdpa", "eager")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

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

CSV_COLUMNS = [
    "device", "torch", "triton", "git_commit", "date", "provider", "impl", "dtype", "alpha",
    "B", "H", "N", "D", "ms_median", "ms_p20", "ms_p80", "tflops", "peak_mem_MiB",
    "x_sdpa", "x_eager", "out_max_abs_err", "ent_max_abs_err", "error",
]  # fmt: skip


class CorrectnessError(RuntimeError):
    """The fused op disagrees with SDPA / the eager reference: no benchmark row may be produced."""


# --------------------------------------------------------------------------------------------------
# environment


def is_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def device_name(device: str) -> str:
    """Human-readable device: the GPU name, or ``cpu``/``cpu-interpreter`` plus the processor."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    proc = platform.processor() or platform.machine() or "unknown"
    return f"{'cpu-interpreter' if is_interpreting() else 'cpu'} ({proc})"


def device_slug(device: str) -> str:
    """Directory-safe device name, e.g. ``nvidia-h100-80gb-hbm3``, ``cpu-interpreter``, ``cpu-x86_64``."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    elif is_interpreting():
        name = "cpu-interpreter"
    else:
        name = f"cpu-{platform.machine() or 'unknown'}"
    return re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")


def git_commit() -> str:
    """Short commit of the repository holding this file, ``+dirty`` if it has local changes; '' if none."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return ""


# --------------------------------------------------------------------------------------------------
# inputs, providers, checks


def make_qkv(B: int, H: int, N: int, D: int, dtype: torch.dtype, device: str, seed: int = 0):
    """q, k, v as timm makes them: strided views (no copies) of one (B, N, 3, H, D) tensor."""
    g = torch.Generator(device=device).manual_seed(seed)
    qkv = torch.randn(B, N, 3, H, D, generator=g, device=device, dtype=dtype).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return q, k, v


def attention_flops(B: int, H: int, N: int, D: int) -> int:
    """Q·Kᵀ and P·V: 2·N²·D multiply-adds per (batch, head), 2 FLOPs each → 4·B·H·N²·D."""
    return 4 * B * H * N * N * D


def make_provider(name: str, q, k, v, alpha: float) -> Callable[[], object]:
    import renyi_prune
    from renyi_prune.reference import attention_with_entropy_reference

    if name == "fused":
        return lambda: renyi_prune.attention_with_entropy(q, k, v, alpha)
    if name == "sdpa":
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
    if name == "eager":
        return lambda: attention_with_entropy_reference(q, k, v, alpha)
    raise ValueError(f"unknown provider {name!r}; choose from {PROVIDERS}")


def fused_impl(q) -> str:
    """Which code the ``fused`` provider runs for inputs like ``q``."""
    from renyi_prune.ops import uses_triton

    if not uses_triton(q):
        return "eager-fallback"
    return "triton-interpreter" if q.device.type == "cpu" else "triton"


PROVIDER_IMPL = {"sdpa": "torch-sdpa", "eager": "torch-eager"}


def check_fused(q, k, v, alpha: float, fused_fn: Callable[[], object]) -> tuple[float, float]:
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


# --------------------------------------------------------------------------------------------------
# timing and memory


def _quantiles(times_ms: Sequence[float]) -> tuple[float, float, float]:
    t = torch.tensor(list(times_ms), dtype=torch.float64)
    med, p20, p80 = torch.quantile(t, torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64)).tolist()
    return med, p20, p80


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
    anything else live), i.e. the call's outputs plus its temporaries, in MiB. NaN on CPU."""
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


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _oom_message(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"OOM: {first[:160]}"


def _free(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


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
) -> list[dict]:
    """Time every provider on every (B, H, N, D) shape × dtype × α; return one dict per row.

    Rows have the keys of :data:`CSV_COLUMNS` (floats; NaN where not measured). Raises
    :class:`CorrectnessError` — before timing anything of that shape — if ``fused`` is among the
    providers and disagrees with SDPA / the reference. A provider that runs out of memory gives a row
    with ``error`` set instead of timings.
    """
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; choose from {PROVIDERS}")
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
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    rows: list[dict] = []
    for dtype in dtypes:
        for alpha in alphas:
            for B, H, N, D in shapes:
                shape_rows = _bench_shape(B, H, N, D, dtype, alpha, providers, device, reps, common, verbose)
                rows.extend(shape_rows)
    return rows


def _bench_shape(B, H, N, D, dtype, alpha, providers, device, reps, common, verbose) -> list[dict]:
    on_cuda = device.startswith("cuda")
    q, k, v = make_qkv(B, H, N, D, dtype, device)
    base = dict(common, dtype=_dtype_name(dtype), alpha=alpha, B=B, H=H, N=N, D=D)
    flops = attention_flops(B, H, N, D)
    if verbose:
        print(f"[bench] {_dtype_name(dtype)} alpha={alpha:g} B={B} H={H} N={N} D={D}", file=sys.stderr)

    def row(provider: str, **kw) -> dict:
        r = {c: math.nan for c in CSV_COLUMNS}
        r.update(base, provider=provider, impl=PROVIDER_IMPL.get(provider, ""), error="")
        r.update(kw)
        return r

    fns = {p: make_provider(p, q, k, v, alpha) for p in providers}
    errs = {}
    with torch.inference_mode():
        # correctness guard: first calls of fused (Triton autotuning happens here) and sdpa; every
        # provider is called once more below before its memory is measured and it is timed
        if "fused" in fns:
            try:
                out_err, ent_err = check_fused(q, k, v, alpha, fns["fused"])
                errs = dict(out_max_abs_err=out_err, ent_max_abs_err=ent_err)
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
    del q, k, v, fns
    _free(device)
    return rows


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


# --------------------------------------------------------------------------------------------------
# output


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    from renyi_prune._io import atomic_open

    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _fmt(r.get(c, "")) for c in CSV_COLUMNS})


def format_table(rows: Sequence[dict]) -> str:
    cols = [
        ("provider", "provider", "{}"), ("impl", "impl", "{}"), ("dtype", "dtype", "{}"),
        ("alpha", "alpha", "{:g}"), ("B", "B", "{}"), ("H", "H", "{}"), ("N", "N", "{}"), ("D", "D", "{}"),
        ("ms_median", "ms", "{:.4g}"), ("ms_p20", "p20", "{:.4g}"), ("ms_p80", "p80", "{:.4g}"),
        ("tflops", "TFLOP/s", "{:.3g}"), ("peak_mem_MiB", "MiB", "{:.1f}"),
        ("x_sdpa", "x_sdpa", "{:.3f}"), ("x_eager", "x_eager", "{:.3f}"), ("error", "error", "{}"),
    ]  # fmt: skip
    table = [[h for _, h, _ in cols]]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            val = r.get(key, "")
            if isinstance(val, float) and math.isnan(val):
                cells.append("-")
            else:
                cells.append(fmt.format(val))
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# command line


def default_batch(N: int) -> int:
    """Batch for a sequence length when --batch is not given: 256 (N ≤ 256), 64 (N ≤ 640), else 16."""
    if N in DEFAULT_BATCH_FOR_SEQ:
        return DEFAULT_BATCH_FOR_SEQ[N]
    return 256 if N <= 256 else 64 if N <= 640 else 16


def _alpha(text: str) -> float:
    try:
        a = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number or 'inf', got {text!r}") from None
    if math.isnan(a) or a < 0:
        raise argparse.ArgumentTypeError(f"alpha must be >= 0 (inf allowed), got {text!r}")
    return a


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Forward time of fused attention+Rényi entropy vs SDPA vs eager reference.",
        epilog="On a machine without CUDA run with TRITON_INTERPRET=1 (and --smoke), or 'fused' is the "
        "eager fallback (impl=eager-fallback).",
    )
    p.add_argument("--batch", type=int, nargs="+", help="B: one value for all N, or one per --seq value "
                   "(default: 256 for N=197, 64 for N=577, 16 for N=1025)")  # fmt: skip
    p.add_argument("--heads", type=int, help=f"H (default {DEFAULT_HEADS})")
    seq_default = " ".join(map(str, DEFAULT_SEQ))
    p.add_argument("--seq", type=int, nargs="+", help=f"token counts N (default {seq_default})")
    p.add_argument("--head-dim", type=int, help=f"D (default {DEFAULT_HEAD_DIM})")
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), help="default bf16")
    p.add_argument("--alpha", type=_alpha, nargs="+", help="Rényi order(s), 'inf' allowed (default 1.0)")
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, help="default: fused sdpa eager")
    p.add_argument("--reps", type=int, help="timed calls: CPU default 5; CUDA default "
                   "do_bench's 100 ms budget, else about this many calls")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--out", type=Path, help="CSV path (default benchmarks/results/<device>/kernel_fwd.csv; "
                   "with --smoke a file under the system temp dir)")  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny shapes (B=2, H=2, N=17,65, D=32, fp32, 3 reps) "
                   "for CPU / TRITON_INTERPRET=1 CI; explicit options still win")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no per-shape progress on stderr")
    return p


def resolve_shapes(args) -> list[tuple[int, int, int, int]]:
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
        raise SystemExit(f"--batch takes 1 value or one per --seq value ({len(seq)}), got {len(args.batch)}")
    for name, val in (("B", batch), ("H", [H]), ("N", seq), ("D", [D])):
        if any(x <= 0 for x in val):
            raise SystemExit(f"{name} must be positive, got {val}")
    return [(b, H, n, D) for b, n in zip(batch, seq, strict=True)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if (
        args.smoke
        and device == "cpu"
        and "TRITON_INTERPRET" not in os.environ
        and "renyi_prune.kernels.attention_entropy_fwd" not in sys.modules
    ):
        # the smoke run exists to exercise the Triton kernel on CPU; the variable only takes effect
        # if set before the kernels are decorated, i.e. before renyi_prune is imported
        os.environ["TRITON_INTERPRET"] = "1"
        print("[bench] --smoke without CUDA: set TRITON_INTERPRET=1", file=sys.stderr)

    shapes = resolve_shapes(args)
    dtypes = [DTYPES[d] for d in (args.dtype or (SMOKE["dtype"] if args.smoke else ["bf16"]))]
    alphas = args.alpha or [1.0]
    providers = args.providers or list(PROVIDERS)
    reps = args.reps if args.reps is not None else (SMOKE["reps"] if args.smoke else None)

    if device == "cpu" and "fused" in providers:
        q = torch.empty(1, 1, 1, 16, dtype=dtypes[0])
        if fused_impl(q) == "eager-fallback":
            print("[bench] WARNING: no CUDA and TRITON_INTERPRET unset: 'fused' runs the eager fallback, "
                  "not the Triton kernel (impl=eager-fallback)", file=sys.stderr)  # fmt: skip
    if device == "cpu" and not args.smoke and args.seq is None:
        print("[bench] WARNING: GPU-sized default shapes on CPU: slow (try --smoke)", file=sys.stderr)

    if args.out is not None:
        out_path = args.out
    elif args.smoke:
        out_path = Path(tempfile.gettempdir()) / "renyi-prune-bench" / device_slug(device) / "kernel_fwd.csv"
    else:
        out_path = RESULTS_DIR / device_slug(device) / "kernel_fwd.csv"

    try:
        rows = run_benchmark(shapes, dtypes, alphas, providers, device, reps, verbose=not args.quiet)
    except CorrectnessError as exc:
        print(f"\n*** CORRECTNESS CHECK FAILED: aborted, nothing written ***\n{exc}", file=sys.stderr)
        return 1

    write_csv(rows, out_path)
    first = rows[0] if rows else {}
    print(
        f"device: {first.get('device', '')}  torch {first.get('torch', '')}  "
        f"triton {first.get('triton', '')}  commit {first.get('git_commit', '') or '?'}  "
        f"{first.get('date', '')}"
    )
    print("TFLOP/s counts 4*B*H*N^2*D (QK^T and PV, 2 FLOPs per multiply-add); MiB = peak extra CUDA memory")
    print(format_table(rows))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
