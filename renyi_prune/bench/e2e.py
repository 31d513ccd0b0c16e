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

Modules: :mod:`._e2e_setup` (configurations, settings, model checks), :mod:`._e2e_model` (one model's
batch, forward and reference logits), :mod:`._e2e_output` (ratios, timing columns, CSV via pandas,
table, plot), :mod:`._e2e_options` (command line); this one runs the benchmark.

Each pruned configuration runs at every keep rate r (``--keep-rates``, default 0.9 … 0.3), pruning
after blocks 4, 7 and 10 (indices 3, 6, 9). Models come from ``timm.create_model(name,
pretrained=False)``: random weights, since the weights do not change the amount of work (the kept
token counts depend on r only), so nothing is downloaded.

Timing: the model alone, on one random input batch already on the device (no data loading), under
``torch.inference_mode()``, with ``torch.autocast`` bf16 on CUDA (fp32 on CPU; ``--dtype``). Warm-up
calls are discarded; then ``--repeats`` timed runs of ``iters`` back-to-back forwards each (``iters``
chosen so that a run lasts about ``--run-ms``), timed by the shared timer :mod:`renyi_prune._timing`
(``triton.testing.do_bench`` on CUDA, ``time.perf_counter`` on CPU). On the CPU (``--interleave``) the
configurations are checked first, then timed round-robin, one run of each per round
(:mod:`._e2e_rounds`), and the ratios are medians of per-round ratios. Reported: images/s of the median
run, of its 20th/80th percentiles and its IQR; ms per batch of the median run with p20/p80, IQR, min
and max. ``--smoke`` output is labelled as a smoke run: its numbers are not results. ``--compile`` times
``torch.compile(model, fullgraph=True)`` instead (patched models compile without graph breaks);
dynamo is reset before each compiled configuration.

Correctness guard: before a configuration is timed, the patched model at keep rate 1.0 (nothing
pruned) must reproduce the unpatched model's logits (``allclose`` with a dtype-appropriate tolerance,
see :func:`logit_tolerance`); with ``--compile`` the compiled patched model too. At every keep rate
the kept token counts must be those of :func:`renyi_prune.num_kept` and the logits finite. On a
failure the run stops and writes nothing: a fast wrong model never produces a row.

GFLOPs per image come from :func:`renyi_prune.count_flops` (fvcore, one multiply-add = one FLOP, the
paper's convention); the column is blank if fvcore is not installed.

On the CPU (``--device cpu``, or no CUDA) the defaults are CPU-sized (:data:`CPU_DEFAULTS`: DeiT-S at
224 px, batch 32, keep rates 0.7 and 0.5, fp32, 5 timed runs) and the run prints an estimate of its
duration first (:func:`estimate_seconds`). The CSV's ``device`` names the CPU model and torch's threads
(also in the ``cpu_model`` and ``threads`` columns).

Outputs: ``./bench-results/<device-slug>/e2e[_<px>px][_compile].csv`` and ``.png`` in the current
directory, or ``--out``; ``--smoke`` writes under the system temp dir. Nothing is written into the
package's folder or its source checkout unless ``--out`` points there (``benchmarks/run_gpu.sh`` does,
to commit GPU results).

Usage (see benchmarks/README.md; ``python -m renyi_prune.bench.e2e`` and the maintainers' script
``benchmarks/bench_e2e.py`` are the same)::

    renyi-prune bench e2e --smoke              # CPU, seconds: deit_tiny at 64 px, batch 2
    renyi-prune bench e2e --device cpu         # CPU: DeiT-S, batch 32, r = 0.7 0.5 (minutes; estimate first)
    renyi-prune bench e2e                      # GPU: DeiT-Ti/S/B at 224 px, batch 256, bf16
    renyi-prune bench e2e --compile --models deit_small_patch16_224 --keep-rates 0.7 0.5
    renyi-prune bench e2e --models deit_base_patch16_384 --img-size 384 --batch 64 --out b384/e2e.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path  # noqa: F401  (used by the doctests)

import torch

from .._timing import Timing
from .._timing import time_calls as time_model
from . import _common
from ._common import RESULTS_DIR, device_name, device_slug  # noqa: F401  (re-exported)
from ._e2e_estimate import _timing_settings, estimate_seconds
from ._e2e_model import ModelRun, config_columns, kept_tokens, make_row, prepare_model, row_stamp
from ._e2e_options import DESCRIPTION, add_arguments, build_parser, check_settings, settings_from_args
from ._e2e_output import (
    SMOKE_NOTE,
    TABLE_COLUMNS,
    _add_ratios,
    cpu_target_checks,
    cpu_target_summary,
    default_out_path,
    format_table,
    plot_path,
    rate_columns,
    summary_lines,
    target_checks,
    target_summary,
    write_csv,
    write_plot,
)
from ._e2e_rounds import Entry, time_round_robin
from ._e2e_setup import (
    CONFIGS,
    CPU_DEFAULTS,
    CPU_TARGET,
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
    alphas,
    apply_config,
    compare_logits,
    config_label,
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
    "CPU_DEFAULTS",
    "CPU_TARGET",
    "CSV_COLUMNS",
    "DEFAULT_CONFIGS",
    "Config",
    "CorrectnessError",
    "Settings",
    "TARGET",
    "add_arguments",
    "build_parser",
    "check_settings",
    "cpu_target_checks",
    "cpu_target_summary",
    "config_names",
    "estimate_seconds",
    "get_config",
    "main",
    "run",
    "run_benchmark",
    "settings_from_args",
    "target_checks",
    "target_summary",
]

_REEXPORTED = (  # the helpers of the split modules, importable from here as before
    DESCRIPTION, SMOKE_NOTE, TABLE_COLUMNS, CPU_TIMING, CUDA_TIMING, DEFAULT_BATCH, DEFAULT_KEEP_RATES,
    DEFAULT_MODELS, EAGER_SUFFIX, LOGIT_TOL, LOGIT_TOL_TF32, NOISE_FACTOR, SMOKE, compare_logits,
    default_out_path, format_table, plot_path, write_csv, write_plot, has_fvcore, logit_tolerance,
    create_model, model_img_size, expected_tokens,
)  # fmt: skip
for _cls in (Config, CorrectnessError, Settings):
    _cls.__module__ = __name__  # shown (tracebacks, reprs) where users import them from


def run_benchmark(settings: Settings) -> list[dict]:
    """Guard, then time every model × configuration × keep rate; one dict per row.

    Rows have the keys of :data:`CSV_COLUMNS` (NaN where not measured). ``unpruned`` gives one row
    per model (keep_rate 1.0). Raises :class:`CorrectnessError` (before timing that configuration)
    if a patched model fails the guard. A configuration that runs out of memory, or fails to compile
    with ``compile``, gives rows with ``error`` set instead of timings; other exceptions propagate.
    Units: ``images_per_s`` (median run; p20/p80, IQR), ``ms_per_batch`` (median run; p20/p80, IQR, min,
    max), ``gflops`` per image (fvcore: one multiply-add = one FLOP), ``speedup_vs_unpruned`` and
    ``x_evit`` (images/s ratios).

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
    dtype = DTYPES[s.dtype or ("bf16" if device.startswith("cuda") else "fp32")]
    common = row_stamp(s, device, dtype)
    configs.sort(key=lambda c: c.criterion is not None)  # unpruned first: the speedup reference
    rows: list[dict] = []
    for name in s.models:
        model_rows = _bench_model(name, configs, s, device, dtype, _timing_settings(s, device), common)
        _add_ratios(model_rows)
        rows.extend(model_rows)
    return rows


def _bench_model(name, configs, s: Settings, device, dtype, timing, common) -> list[dict]:
    """Every configuration × keep rate of one model (:func:`_bench_config`); round-robin, each checked
    row is timed afterwards in rounds (:func:`~._e2e_rounds.time_round_robin`)."""
    import renyi_prune

    run = prepare_model(name, s, device, dtype, timing, common)
    rows, entries = [], []
    for config in configs:
        for alpha in alphas(s, config):  # one run per α (criteria with one), the same model
            config_rows = _bench_config(
                dataclasses.replace(run, settings=dataclasses.replace(s, alpha=alpha)), config
            )
            rows += config_rows
            entries += [
                Entry(config, r["keep_rate"], r, alpha) for r in config_rows if run.rounds and not r["error"]
            ]
    if entries:
        time_round_robin(run, entries)
    renyi_prune.unpatch(run.model)
    return rows


def _bench_config(run: ModelRun, config: Config) -> list[dict]:
    """Guard one configuration at keep rate 1.0, then time it at every keep rate (one row each)."""
    s = run.settings
    rates = [1.0] if config.criterion is None else list(s.keep_rates)
    row = functools.partial(make_row, config_columns(run, config))
    try:
        guard_err, compiled_r1 = _guard(
            run.model, config, s, run.ref, run.tol, run.forward, f"{run.name} {config.name}"
        )
    except CorrectnessError:
        raise
    except Exception as exc:
        msg = _recorded_error(exc, s.compile)
        torch._dynamo.reset()
        _common.free_memory(run.device)
        run.log(f"  {config_label(config, s.alpha)}: {msg} (guard)")
        return [row(r, error=msg) for r in rates]
    if not math.isnan(guard_err):
        run.log(f"  {config_label(config, s.alpha)}: guard max |logits - reference| / max |reference| = "
                f"{guard_err:.3g} (tol {run.tol:.3g})")  # fmt: skip
    rows = []
    for rate in rates:
        # the guard's compiled model is this very model at r = 1 (same patch): no second compile
        rows.append(_rate_row(run, config, rate, row, guard_err, compiled_r1 if rate == 1.0 else None))
        compiled_r1 = None  # dropped before the next keep rate
    return rows


def _rate_row(run: ModelRun, config: Config, rate: float, row, guard_err: float, reuse) -> dict:
    """Patch the model at ``rate`` (unless ``reuse``, the guard's compiled model at r = 1) and time it
    (:func:`_bench_rate`); an out-of-memory or compile failure gives a row with ``error``."""
    s = run.settings
    if reuse is None:
        apply_config(run.model, config, rate, s.alpha, s.prune_blocks)
        if s.compile:
            torch._dynamo.reset()
    try:
        r = _bench_rate(run.model, config, rate, run, reuse)
    except CorrectnessError:
        raise
    except Exception as exc:
        msg = _recorded_error(exc, s.compile)
        _common.free_memory(run.device)
        run.log(f"  {config_label(config, s.alpha)} r={rate:g}: {msg}")
        return row(rate, error=msg, guard_rel_err=guard_err)
    finally:
        reuse = None  # noqa: F841  (drop the compiled model before the next configuration)
        if s.compile:
            torch._dynamo.reset()
    timed = "timed in rounds" if run.rounds else (
        f"{r['images_per_s']:.1f} images/s, IQR {r['images_per_s_iqr']:.3g}; {r['ms_per_batch']:.3g} "
        f"ms/batch, x{r['iters']} calls x {r['repeats']} runs")  # fmt: skip
    run.log(f"  {config_label(config, s.alpha)} r={rate:g}: tokens {r['tokens_kept'] or '-'} ({timed})")
    return row(rate, guard_rel_err=guard_err, **r)


def _bench_rate(model, config: Config, rate: float, run: ModelRun, compiled=None) -> dict:
    """Check and time ``model`` (patched at ``rate``; ``compiled``: its compiled form, else compiled here
    with ``compile``): kept token counts, finite logits, GFLOPs, the timing columns."""
    s = run.settings
    # one eager forward: the kept token counts (and finite logits) at this keep rate
    _check_finite(run.forward(model).float(), f"{config.name} at keep_rate={rate:g}")
    tokens = kept_tokens(model, config, rate, run)
    key = (config.name, rate)
    if s.gflops and key not in run.flops_cache:
        run.flops_cache[key] = gflops_per_image(model, run.size)
    if run.rounds:  # timed later, round-robin with the other configurations
        return dict(gflops=run.flops_cache.get(key, math.nan), tokens_kept=tokens)
    target = model
    if s.compile:
        target = compiled if compiled is not None else _compile(model, s.compile_mode)
    times, iters = time_model(lambda: run.forward(target), run.device, run.timing["repeats"],
                              run.timing["run_ms"], run.timing["warmup_ms"])  # fmt: skip
    t = Timing(tuple(times), iters)
    return dict(rate_columns(t, s.batch), gflops=run.flops_cache.get(key, math.nan), tokens_kept=tokens)


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
    if settings.gflops and not has_fvcore():
        print("[bench-e2e] fvcore not installed: the gflops column is left blank", file=sys.stderr)
    out_path = args.out
    if out_path is None:
        out_path = default_out_path(device, args.smoke, args.compile, args.img_size)
    if device == "cpu" and not args.smoke and not args.quiet:
        seconds, detail = estimate_seconds(settings)
        print(f"[bench-e2e] estimated run time on this CPU: about {_common.format_duration(seconds)} "
              f"({detail}) -> {out_path}", file=sys.stderr, flush=True)  # fmt: skip

    try:
        rows = run_benchmark(settings)
    except CorrectnessError as exc:
        return _common.correctness_failed(exc)

    for line in summary_lines(rows, settings, args.smoke):
        print(line)
    print(format_table(rows))
    # the issue-5 targets are GPU targets, issue 15's CPU targets
    for line in target_summary(rows) if device.startswith("cuda") else cpu_target_summary(rows):
        print(line)
    plot = functools.partial(write_plot, smoke=args.smoke) if args.plot else None
    _common.write_results(rows, out_path, CSV_COLUMNS, plot, "bench-e2e")
    return 0


if __name__ == "__main__":
    sys.exit(main())
