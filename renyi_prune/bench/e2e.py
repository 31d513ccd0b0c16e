"""End-to-end benchmark: images/s and GFLOPs of timm DeiTs, unpruned and pruned (paper Table 3).

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803), Table 3, compares
the throughput of DeiTs pruned by Rényi attention entropy with EViT's. Each configuration
(``--configs``, :class:`Config`) is a :class:`renyi_prune.PruneConfig` by name; the default ones:

* ``unpruned``: timm's model as is (no config);
* ``evit``: ``PruneConfig("evit", r)``: CLS attention, highest kept (EViT);
* ``evit+fusion``: the same with ``fuse_pruned=True`` (EViT's inattentive-token fusion);
* ``renyi``: ``PruneConfig("renyi", r, alpha)``: the fused Triton kernel returns the entropy in the
  attention pass (``backend="auto"``);
* ``renyi-eager``: ``params={"backend": "eager"}``: the entropy from the materialized (B, H, N, N)
  attention matrix, as in the paper's code.

Any other registered criterion (:func:`renyi_prune.available_criteria`), with ``+fusion`` or (criteria
with a ``backend``) ``-eager``, is a configuration too (:func:`config_names`).

Modules: :mod:`._e2e_setup` (configurations, settings, model checks), :mod:`._e2e_output` (ratios, CSV
via pandas, table, plot), :mod:`._e2e_options` (command line); this one runs the benchmark.

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
import math
import sys
from collections.abc import Sequence
from pathlib import Path  # noqa: F401  (used by the doctests)

import torch

from . import _common
from ._common import RESULTS_DIR, device_name, device_slug  # noqa: F401  (re-exported)
from ._common import time_calls as time_model
from ._e2e_options import DESCRIPTION, add_arguments, build_parser, check_settings, settings_from_args
from ._e2e_output import (
    TABLE_COLUMNS,
    _add_ratios,
    default_out_path,
    format_table,
    plot_path,
    target_checks,
    target_summary,
    write_csv,
    write_plot,
)
from ._e2e_setup import (
    CONFIGS,
    CPU_TIMING,
    CSV_COLUMNS,
    CUDA_TIMING,
    DEFAULT_BATCH,
    DEFAULT_CONFIGS,
    DEFAULT_KEEP_RATES,
    DEFAULT_MODELS,
    DTYPES,
    EAGER_SUFFIX,
    LOGIT_TOL,
    LOGIT_TOL_TF32,
    NOISE_FACTOR,
    SMOKE,
    TARGET,
    Config,
    CorrectnessError,
    Settings,
    _check_finite,
    _compile,
    _guard,
    _recorded_error,
    apply_config,
    compare_logits,
    config_impl,
    config_names,
    create_model,
    expected_tokens,
    get_config,
    gflops_per_image,
    has_fvcore,
    logit_tolerance,
    model_img_size,
)

__all__ = [
    "CONFIGS",
    "CSV_COLUMNS",
    "DEFAULT_CONFIGS",
    "Config",
    "CorrectnessError",
    "Settings",
    "TARGET",
    "add_arguments",
    "build_parser",
    "check_settings",
    "config_names",
    "get_config",
    "main",
    "run",
    "run_benchmark",
    "settings_from_args",
    "target_checks",
    "target_summary",
]

_REEXPORTED = (  # the helpers of the split modules, importable from here as before
    DESCRIPTION, TABLE_COLUMNS, CPU_TIMING, CUDA_TIMING, DEFAULT_BATCH, DEFAULT_KEEP_RATES,
    DEFAULT_MODELS, EAGER_SUFFIX, LOGIT_TOL, LOGIT_TOL_TF32, NOISE_FACTOR, SMOKE, compare_logits,
    default_out_path, format_table, plot_path, write_csv, write_plot, has_fvcore, logit_tolerance,
    create_model, model_img_size,
)  # fmt: skip
for _cls in (Config, CorrectnessError, Settings):
    _cls.__module__ = __name__  # shown (tracebacks, reprs) where users import them from


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
    configs = [get_config(c) for c in s.configs]  # ValueError for an unknown name
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
            alpha=math.nan
            if config.criterion is None or config.at(1.0, s.alpha, s.prune_blocks).alpha is None
            else s.alpha,
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
