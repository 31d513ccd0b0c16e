"""The plan of ``gpu_quick.py``: one :class:`~gpu_quick_budget.Stage` per stage (command, expected seconds
by part, outputs), and :func:`plan`, which drops work (:data:`~gpu_quick_budget.REDUCTIONS`) until the
budget fits the cap. All times in seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gpu_quick_budget import (
    GPU_COSTS,
    GPU_MACHINE_ARCH,
    GPU_MACHINE_CORES,
    REDUCTIONS,
    SMOKE_COSTS,
    SMOKE_TESTS,
    STAGES,
    TEST_FILES,
    TEST_SPECIALIZATIONS,
    Costs,
    Stage,
    Work,
    collect_test_count,
    cores,
    e2e_buckets,
    specs_and_keys,
    tile_counts,
)


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def pytest_stage(out: Path, c: Costs, tiles: dict[str, int], workers: int, smoke: bool) -> Stage:
    """The ``tests`` stage: on CUDA, each specialization's autotune compiles all its configs."""
    selection = list(SMOKE_TESTS) if smoke else list(TEST_FILES)
    n_tests = len(SMOKE_TESTS) if smoke else collect_test_count(TEST_FILES)
    specs = sum(TEST_SPECIALIZATIONS.values())
    compiles = sum(n * tiles[k] for k, n in TEST_SPECIALIZATIONS.items())
    per_worker = 1 if smoke else workers
    argv = _py("-m", "pytest", *selection, "-p", "no:randomly", "-n", "0" if smoke else str(workers), "-q",
               f"--junitxml={out / 'tests.xml'}")  # fmt: skip
    parts = {
        "startup": c.startup + c.xdist_start,
        "compiles": compiles * c.compile / per_worker,
        "autotune": compiles * c.autotune_config / per_worker,  # keys ≈ specializations, × their configs
        "tests": n_tests * c.test / per_worker,
    }
    notes = [
        f"startup {c.startup:g} s + xdist workers {c.xdist_start:g} s",
        f"compiles: {specs} specializations ({TEST_SPECIALIZATIONS}) x configs {tiles} = {compiles} "
        f"x {c.compile:g} s / {per_worker} workers",
        f"autotune: {compiles} (key, config) x {c.autotune_config:g} s / {per_worker} workers",
        f"tests: {n_tests} x {c.test:g} s / {per_worker} workers",
    ]
    return Stage("tests", argv, parts, notes, ["tests.xml", "tests.log"])


def kernel_stage(out: Path, c: Costs, tiles: dict[str, int], w: Work, mode: str, fwd_cached: bool,
                 smoke: bool) -> Stage:  # fmt: skip
    """``kernel-fwd`` / ``kernel-fwdbwd``: compiles, autotuning and shapes × α × providers timings."""
    seq = [17] if smoke else w.seq
    alphas = w.fwd_alpha if mode == "fwd" else w.fwdbwd_alpha
    specs, keys = specs_and_keys(seq, alphas)
    kernels = ["fwd"] if mode == "fwd" else ["fwd", "dkdv", "dq"]
    fresh = [k for k in kernels if not (k == "fwd" and fwd_cached)]
    compile_s = specs * sum(tiles[k] * (c.compile if k in fresh else c.cached_compile) for k in kernels)
    configs = sum(tiles[k] for k in kernels)
    measures = len(seq) * len(alphas) * w.providers
    name = f"kernel_{mode}"
    argv = _py("benchmarks/bench_kernel.py", *(["--smoke"] if smoke else []), "--seq", *map(str, seq),
               "--alpha", *alphas, "--out", str(out / f"{name}.csv"), "--quiet")  # fmt: skip
    if mode == "fwdbwd":
        argv[2:2] = ["--mode", "fwdbwd"]
    parts = {
        "startup": c.startup,
        "compiles": compile_s,
        "autotune": keys * configs * c.autotune_config,
        "measure": measures * c.measure[mode],
    }
    notes = [
        f"compiles: {specs} specializations x configs of {'+'.join(kernels)} "
        f"({'+'.join(str(tiles[k]) for k in kernels)}) x {c.compile:g} s"
        + (f" (fwd cached by kernel-fwd: {c.cached_compile:g} s)" if fwd_cached else ""),
        f"autotune: {keys} keys x {configs} configs x {c.autotune_config:g} s",
        f"measure: {len(seq)} shapes x {len(alphas)} alpha x {w.providers} providers x {c.measure[mode]:g} s",
    ]  # fmt: skip
    return Stage(f"kernel-{mode}", argv, parts, notes, [f"{name}.csv", f"{name}.png"])


def e2e_stage(out: Path, c: Costs, tiles: dict[str, int], w: Work, fwd_cached: bool, smoke: bool) -> Stage:
    """``e2e``: model build, guard, and per configuration warm-up + repeats × run time."""
    configs = 1 + 2 * len(w.keep_rates)  # unpruned + (evit, renyi) × keep rates
    repeats, run_s, warmup_s = (1, 0.0, 0.0) if smoke else (w.repeats, w.run_ms / 1e3, w.warmup_ms / 1e3)
    per_config = max(warmup_s, 2 * c.e2e_call) + c.e2e_call + repeats * max(run_s, c.e2e_call)
    keys = 1 if smoke else e2e_buckets(w.keep_rates)
    argv = _py("benchmarks/bench_e2e.py", *(["--smoke"] if smoke else ["--models", "deit_small_patch16_224"]),
               "--configs", "unpruned", "evit", "renyi", "--keep-rates", *map(str, w.keep_rates),
               "--out", str(out / "e2e.csv"))  # fmt: skip
    if not smoke:
        argv += ["--repeats", str(w.repeats), "--run-ms", f"{w.run_ms:g}", "--warmup-ms", f"{w.warmup_ms:g}"]
    parts = {
        "startup": c.startup,
        "model": c.model_build,
        "compiles": tiles["fwd"] * (c.cached_compile if fwd_cached else c.compile),
        "autotune": keys * tiles["fwd"] * c.autotune_config,
        "timing": configs * (per_config + c.e2e_overhead),
    }
    notes = [
        f"model build + reference forwards {c.model_build:g} s; fused forward: 1 specialization x "
        f"{tiles['fwd']} configs" + (" (in Triton's cache from kernel-fwd)" if fwd_cached else ""),
        f"autotune: {keys} N buckets x {tiles['fwd']} configs x {c.autotune_config:g} s",
        f"timing: {configs} configurations x (warm-up {max(warmup_s, 2 * c.e2e_call):g} s + "
        f"{repeats} repeats x {max(run_s, c.e2e_call):g} s + {c.e2e_call:g} s + checks/FLOPs "
        f"{c.e2e_overhead:g} s)",
    ]
    return Stage("e2e", argv, parts, notes, ["e2e.csv", "e2e.png"])


def build_stages(out: Path, w: Work, c: Costs, tiles: dict[str, int], workers: int, smoke: bool,
                 names: Sequence[str]) -> list[Stage]:  # fmt: skip
    """The selected stages, in :data:`STAGES` order, for work ``w`` and costs ``c``."""
    # an earlier stage's compiles of the same specialization are in Triton's on-disk cache
    fwd_ran = "kernel-fwd" in names
    fwdbwd_cached = fwd_ran and set(w.fwdbwd_alpha) <= set(w.fwd_alpha)
    e2e_cached = fwd_ran and "1" in w.fwd_alpha
    makers = {
        "tests": lambda: pytest_stage(out, c, tiles, workers, smoke),
        "kernel-fwd": lambda: kernel_stage(out, c, tiles, w, "fwd", False, smoke),
        "kernel-fwdbwd": lambda: kernel_stage(out, c, tiles, w, "fwdbwd", fwdbwd_cached, smoke),
        "e2e": lambda: e2e_stage(out, c, tiles, w, e2e_cached, smoke),
    }
    return [makers[n]() for n in STAGES if n in names]


def plan(out: Path, args: argparse.Namespace, t_start: float) -> tuple[list[Stage], list[str]]:
    """Stages and the reductions applied to fit ``args.cap_s``, counting the plan's own time since
    ``t_start`` (``time.perf_counter()``)."""
    arch, workers = _target(args)
    c = SMOKE_COSTS if args.smoke else GPU_COSTS
    tiles = {k: 1 for k in ("fwd", "dkdv", "dq", "colnorm")} if args.smoke else tile_counts(arch)
    w = Work()
    stages = build_stages(out, w, c, tiles, workers, args.smoke, args.stages)
    applied = []
    for label, edit in REDUCTIONS:
        if math.ceil(time.perf_counter() - t_start) + sum(s.budget for s in stages) <= args.cap_s:
            break
        edit(w)
        applied.append(label)
        stages = build_stages(out, w, c, tiles, workers, args.smoke, args.stages)
    return stages, applied


def _target(args: argparse.Namespace) -> tuple[int | None, int]:
    """(compute capability, xdist workers): this GPU's, or without CUDA the GPU machine's (sm_90, 16
    cores); (None, 1) for ``--smoke``."""
    import torch

    if args.smoke:
        return None, 1
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return 10 * major + minor, args.workers or cores()
    return GPU_MACHINE_ARCH, args.workers or GPU_MACHINE_CORES
