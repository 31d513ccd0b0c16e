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

Timing: :func:`renyi_prune.bench._common.time_cuda` (``triton.testing.do_bench``) on CUDA,
:func:`renyi_prune.bench._common.time_cpu` on the CPU: the timer the end-to-end benchmark shares.

A PNG of time and TFLOP/s against N is written next to the CSV (pandas writes the CSV) when matplotlib
is installed. Modules: :mod:`._kernel_setup` (inputs, providers, checks), :mod:`._kernel_output`
(CSV, table, plot), :mod:`._kernel_options` (command line); this one runs the benchmark.

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
from collections.abc import Sequence
from pathlib import Path  # noqa: F401  (used by the doctests)

import torch

from . import _common
from ._common import (  # noqa: F401  (re-exported: the kernel benchmark's public helpers)
    RESULTS_DIR,
    device_name,
    device_slug,
    git_commit,
    is_interpreting,
    time_cpu,
    time_cuda,
    triton_version,
)
from ._kernel_options import (
    DESCRIPTION,
    EPILOG,
    add_arguments,
    build_parser,
    default_batch,
    default_out_path,
    resolve_shapes,
)
from ._kernel_output import TABLE_COLUMNS, format_table, plot_path, write_csv, write_plot
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
    CorrectnessError,
    attention_flops,
    check_fused,
    check_fused_grad,
    fused_impl,
    grad_tol,
    make_fwdbwd_provider,
    make_grad_out,
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
    "main",
    "resolve_shapes",
    "run",
    "run_benchmark",
]

_REEXPORTED = (  # the helpers of the split modules, importable from here as before
    DESCRIPTION, EPILOG, TABLE_COLUMNS, BWD_FLOP_FACTOR, DEFAULT_BATCH_FOR_SEQ, DEFAULT_HEAD_DIM,
    DEFAULT_HEADS, DEFAULT_SEQ, ENT_TOL, GRAD_TOL, GRAD_TOL_TF32, OUT_TOL, OUT_TOL_TF32, SMOKE,
    check_fused, default_batch, grad_tol, make_qkv_leaf, make_grad_out, make_qkv, split_qkv,
    plot_path, write_csv, write_plot,
)  # fmt: skip
CorrectnessError.__module__ = __name__  # shown (tracebacks) where users import it from
_is_oom = _common.is_oom
_free = _common.free_memory


def _oom_message(exc: BaseException) -> str:
    return f"OOM: {_common.first_line(exc)}"


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
