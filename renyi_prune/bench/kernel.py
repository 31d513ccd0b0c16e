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

Timing: :func:`renyi_prune._timing.time_cuda` (``triton.testing.do_bench``) on CUDA,
:func:`renyi_prune._timing.time_cpu` on the CPU: the timer the end-to-end benchmark and the demo share.
Reported per provider: the median call and the spread of the timed calls (p20/p80, IQR, min, max).

A PNG of time and TFLOP/s against N is written next to the CSV (pandas writes the CSV) when matplotlib
is installed. Modules: :mod:`._kernel_setup` (inputs, providers, checks), :mod:`._kernel_output`
(CSV, table, plot), :mod:`._kernel_options` (command line); this one runs the benchmark.

On the CPU (``--device cpu``, or no CUDA) the defaults are CPU-sized (fp32, batch 8, 2, 1 for N = 197,
577, 1025) and the run prints an estimate of its duration first (:func:`estimate_seconds`).

Outputs: ``./bench-results/<device-slug>/kernel_<mode>.csv`` and ``.png`` in the current directory, or
``--out``; ``--smoke`` writes under the system temp dir. Nothing is written into the package's folder or
its source checkout unless ``--out`` points there (``benchmarks/run_gpu.sh`` does, to commit GPU results).

Usage (see benchmarks/README.md; ``python -m renyi_prune.bench.kernel`` and the maintainers' script
``benchmarks/bench_kernel.py`` are the same)::

    TRITON_INTERPRET=1 renyi-prune bench kernel --smoke                 # CPU, Triton interpreter
    TRITON_INTERPRET=1 renyi-prune bench kernel --smoke --mode fwdbwd
    renyi-prune bench kernel --device cpu                               # CPU-sized shapes, fp32
    renyi-prune bench kernel                                            # GPU, DeiT-S shapes, bf16
    renyi-prune bench kernel --mode fwdbwd --out kernel/fwdbwd.csv
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path  # noqa: F401  (used by the doctests)

import torch

from .._timing import time_cpu, time_cuda
from ..config import format_alpha
from . import _common
from ._common import (  # noqa: F401  (re-exported: the kernel benchmark's public helpers)
    RESULTS_DIR,
    device_name,
    device_slug,
    git_commit,
    is_interpreting,
    triton_version,
)
from ._kernel_options import (
    DESCRIPTION,
    EPILOG,
    add_arguments,
    build_parser,
    default_batch,
    default_dtypes,
    default_out_path,
    resolve_shapes,
)
from ._kernel_output import (
    SMOKE_NOTE,
    TABLE_COLUMNS,
    add_speed_ratios,
    format_table,
    plot_path,
    summary_lines,
    time_columns,
    write_csv,
    write_plot,
)
from ._kernel_setup import (
    BWD_FLOP_FACTOR,
    CSV_COLUMNS,
    DEFAULT_BATCH_FOR_SEQ,
    DEFAULT_HEAD_DIM,
    DEFAULT_HEADS,
    DEFAULT_SEQ,
    DTYPES,
    ENT_TOL,
    GRAD_TOL,
    GRAD_TOL_TF32,
    MODES,
    OUT_TOL,
    OUT_TOL_TF32,
    PROVIDER_IMPL,
    PROVIDERS,
    SMOKE,
    Case,
    CorrectnessError,
    attention_flops,
    check_fused,
    check_fused_grad,
    fused_impl,
    grad_tol,
    make_fwdbwd_provider,
    make_grad_out,
    make_inputs,
    make_provider,
    make_qkv,
    make_qkv_leaf,
    peak_mem_mib,
    split_qkv,
)

__all__ = [
    "CSV_COLUMNS",
    "MODES",
    "PROVIDERS",
    "CorrectnessError",
    "add_arguments",
    "attention_flops",
    "build_parser",
    "estimate_seconds",
    "main",
    "resolve_shapes",
    "run",
    "run_benchmark",
]

_REEXPORTED = (  # the helpers of the split modules, importable from here as before
    DESCRIPTION, EPILOG, SMOKE_NOTE, TABLE_COLUMNS, BWD_FLOP_FACTOR, DEFAULT_BATCH_FOR_SEQ, DEFAULT_HEAD_DIM,
    DEFAULT_HEADS, DEFAULT_SEQ, ENT_TOL, GRAD_TOL, GRAD_TOL_TF32, OUT_TOL, OUT_TOL_TF32, SMOKE,
    check_fused, default_batch, grad_tol, make_qkv_leaf, make_grad_out, make_qkv, split_qkv,
    plot_path, write_csv, write_plot,
)  # fmt: skip
CorrectnessError.__module__ = __name__  # shown (tracebacks) where users import it from
_is_oom = _common.is_oom
_free = _common.free_memory


def _oom_message(exc: BaseException) -> str:
    return f"OOM: {_common.first_line(exc)}"


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"[bench] {msg}", file=sys.stderr)


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
    Times are ms per call (median, p20, p80; IQR, min and max of the timed calls), ``tflops`` in
    TFLOP/s (:func:`attention_flops`), ``peak_mem_MiB`` the peak extra CUDA memory of a call (NaN on CPU).

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
    if not device.startswith("cuda") and reps is None:
        reps = 5
    common = dict(device=device_name(device), torch=torch.__version__, triton=triton_version(),
                  git_commit=git_commit(), date=_common.utc_now(), mode=mode)  # fmt: skip
    rows: list[dict] = []
    for dtype in dtypes:
        for alpha in alphas:
            for B, H, N, D in shapes:
                case = Case(B, H, N, D, dtype, alpha, mode)
                rows.extend(_bench_shape(case, providers, device, reps, common, verbose))
    return rows


def _row(base: dict, provider: str, **kw) -> dict:
    r = {c: math.nan for c in CSV_COLUMNS}
    r.update(base, provider=provider, impl=PROVIDER_IMPL.get(provider, ""), error="")
    r.update(kw)
    return r


def _bench_shape(case: Case, providers, device: str, reps, common: dict, verbose: bool) -> list[dict]:
    """Guard, then time every provider on one case; one row per provider."""
    q, k, v, qkv, grad_out = make_inputs(case, device)
    base = dict(common, **case.columns())
    what = f"{'fwdbwd ' if case.fwdbwd else ''}{_common.dtype_name(case.dtype)}"
    _log(verbose, f"{what} alpha={format_alpha(case.alpha, style='file')} B={case.B} H={case.H} N={case.N} "
                  f"D={case.D}")  # fmt: skip
    if case.fwdbwd:
        fns = {p: make_fwdbwd_provider(p, qkv, grad_out, case.alpha) for p in providers}
    else:
        fns = {p: make_provider(p, q, k, v, case.alpha) for p in providers}
    try:
        errs = _guard(case, fns, (q, k, v), qkv, grad_out, device, verbose) if "fused" in fns else {}
    except CorrectnessError:
        raise
    except Exception as exc:  # only OOM is recorded; anything else re-raised
        if not _is_oom(exc):
            raise
        _free(device)
        return [_row(base, p, error="correctness check not run: " + _oom_message(exc)) for p in providers]
    fused = fused_impl(q) if "fused" in fns else ""
    rows = _time_providers(case, fns, base, errs, fused, device, reps, verbose)
    add_speed_ratios(rows)
    del q, k, v, qkv, grad_out, fns
    _free(device)
    return rows


def _guard(case: Case, fns: dict, qkv_views: tuple, qkv, grad_out, device: str, verbose: bool) -> dict:
    """The correctness guard of ``fused``: its output (and entropy) vs SDPA / the reference, in
    ``fwdbwd`` also its input gradient; the first calls of fused (Triton autotuning happens here) and
    sdpa. Returns the errors for the fused row; raises :class:`CorrectnessError`."""
    q, k, v = qkv_views
    with torch.inference_mode():
        fwd_fn = make_provider("fused", q, k, v, case.alpha) if case.fwdbwd else fns["fused"]
        out_err, ent_err = check_fused(q, k, v, case.alpha, fwd_fn)
    errs = dict(out_max_abs_err=out_err, ent_max_abs_err=ent_err)
    if case.fwdbwd:
        errs["grad_max_rel_err"] = check_fused_grad(qkv, grad_out, fns["fused"])
        tol = grad_tol(case.dtype, device.startswith("cuda"))
        _log(verbose, "  fused dq, dk, dv vs sdpa: worst max |diff| / max |sdpa| = "
                      f"{errs['grad_max_rel_err']:.3g} (tol {tol:g})")  # fmt: skip
    return errs


def _time_providers(
    case: Case, fns: dict, base: dict, errs: dict, fused: str, device: str, reps, verbose: bool
) -> list[dict]:
    """Call each provider once more, measure its peak memory and time it (``time_cuda`` / ``time_cpu``);
    one row each (an OOM gives a row with ``error``). ``fused``: the fused row's ``impl``."""
    flops = attention_flops(case.B, case.H, case.N, case.D, case.mode)
    rows = []
    # fwd: no autograd at all; fwdbwd: autograd on (also if the caller disabled it)
    with torch.enable_grad() if case.fwdbwd else torch.inference_mode():
        for p, fn in fns.items():
            try:
                fn()  # first call (again) outside the guard, result dropped
                mem = peak_mem_mib(fn, device)
                t = time_cuda(fn, reps) if device.startswith("cuda") else time_cpu(fn, reps)
            except Exception as exc:  # only OOM is recorded
                if not _is_oom(exc):
                    raise
                _free(device)
                rows.append(_row(base, p, error=_oom_message(exc)))
                _log(verbose, f"  {p}: {_oom_message(exc)}")
                continue
            extra = errs if p == "fused" else {}
            impl = fused if p == "fused" else PROVIDER_IMPL[p]
            rows.append(_row(base, p, impl=impl, **time_columns(t, flops), peak_mem_MiB=mem, **extra))
    return rows


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
    cpu = not device.startswith("cuda")
    shapes = resolve_shapes(args, cpu)
    dtypes = [DTYPES[d] for d in default_dtypes(args, cpu)]
    providers = args.providers or list(PROVIDERS)
    reps = args.reps if args.reps is not None else (SMOKE["reps"] if args.smoke else None)
    _warn_on_cpu(args, device, providers, dtypes[0])
    out_path = args.out if args.out is not None else default_out_path(args.mode, device, args.smoke)
    alphas = args.alpha or [1.0]
    if cpu and not args.smoke and not args.quiet:
        seconds = estimate_seconds(shapes, dtypes, alphas, providers, device, reps, args.mode)
        print(f"[bench] estimated run time on this CPU: about {_common.format_duration(seconds)} "
              f"({len(shapes)} shapes x {len(dtypes)} dtypes x {len(alphas)} alphas x {len(providers)} "
              f"providers; one call of each timed on the smallest shape, scaled by FLOPs) -> {out_path}",
              file=sys.stderr, flush=True)  # fmt: skip
    try:
        rows = run_benchmark(shapes, dtypes, alphas, providers, device, reps, not args.quiet, args.mode)
    except CorrectnessError as exc:
        return _common.correctness_failed(exc)
    for line in summary_lines(rows, args.mode, args.smoke):
        print(line)
    print(format_table(rows))
    plot = functools.partial(write_plot, smoke=args.smoke) if getattr(args, "plot", True) else None
    _common.write_results(rows, out_path, CSV_COLUMNS, plot, "bench")
    return 0


def _warn_on_cpu(args: argparse.Namespace, device: str, providers: Sequence[str], dtype: torch.dtype) -> None:
    """Warning of a CPU run: ``fused`` on the CPU path, not the Triton kernel."""
    if device == "cpu" and "fused" in providers:
        if fused_impl(torch.empty(1, 1, 1, 16, dtype=dtype)) in ("cpu", "eager-fallback"):
            print("[bench] WARNING: no CUDA and TRITON_INTERPRET unset: 'fused' runs the CPU path, "
                  "not the Triton kernel (impl=cpu); set TRITON_INTERPRET=1 before renyi_prune "
                  "is imported, e.g. TRITON_INTERPRET=1 renyi-prune bench kernel --smoke",
                  file=sys.stderr)  # fmt: skip


def estimate_seconds(
    shapes: Sequence[tuple[int, int, int, int]],
    dtypes: Sequence[torch.dtype],
    alphas: Sequence[float],
    providers: Sequence[str],
    device: str,
    reps: int | None,
    mode: str = "fwd",
) -> float:
    """A rough duration of :func:`run_benchmark` on the CPU, before it starts: one call of each provider
    is timed (after an untimed one) on the shape with the fewest FLOPs, in the first dtype, then scaled to
    every shape by its FLOPs (:func:`attention_flops`) and multiplied by the calls a case makes (the
    guard, the first call, the warm-up and ``reps`` timed calls, default 5).

    Example:
        >>> estimate_seconds([(1, 2, 16, 8), (1, 2, 32, 8)], [torch.float32], [1.0], ["sdpa"], "cpu", 2) > 0
        True
    """
    B, H, N, D = min(shapes, key=lambda s: attention_flops(*s, mode))
    case = Case(B, H, N, D, dtypes[0], alphas[0], mode)
    q, k, v, qkv, grad_out = make_inputs(case, device)
    per_call = 0.0
    with torch.enable_grad() if case.fwdbwd else torch.inference_mode():
        for p in providers:
            if case.fwdbwd:
                fn = make_fwdbwd_provider(p, qkv, grad_out, case.alpha)
            else:
                fn = make_provider(p, q, k, v, case.alpha)
            fn()
            start = time.perf_counter()
            fn()
            per_call += time.perf_counter() - start
    scale = sum(attention_flops(*s, mode) for s in shapes) / attention_flops(B, H, N, D, mode)
    calls = (5 if reps is None else reps) + 3
    return per_call * scale * calls * len(dtypes) * len(alphas)


if __name__ == "__main__":
    sys.exit(main())
