"""Quick GPU run: the kernels' GPU tests, both kernel benchmarks and one end-to-end model in ≤ 8 minutes.

``benchmarks/run_gpu.sh --quick OUT_DIR`` runs this script. It plans four stages, prints a budget line
(first line of stdout), writes ``OUT_DIR/environment.json``, then runs each stage as a subprocess with
its own timeout, appending a row to ``OUT_DIR/stages.csv`` as each stage finishes:

========================  ==============================================================================
``tests``                 pytest of the kernel test files (on CUDA they run on the GPU), xdist ``-n``
                          = CPU cores, junit XML ``tests.xml`` and log ``tests.log``
``kernel-fwd``            ``bench_kernel.py --seq 197 577 1025 --alpha 1 2 inf`` → ``kernel_fwd.csv``/.png
``kernel-fwdbwd``         the same with ``--mode fwdbwd`` → ``kernel_fwdbwd.csv``/.png
``e2e``                   ``bench_e2e.py``, DeiT-S, unpruned / evit / renyi at r = 0.7, 0.5 → ``e2e.csv``/.png
========================  ==============================================================================

**Budget.** Every stage's expected seconds come from counts of work times per-unit costs
(:class:`Costs`): compiles = kernel specializations × autotune configs × s per compile (spread over the
xdist workers in ``tests``); autotune benchmarking = autotune keys × configs × s per config; timed
measurements = shapes × α × providers × s per measurement; end to end = configurations × (warm-up +
repeats × run time) + model build and FLOPs counts; plus each process's start-up. The GPU costs
(:data:`GPU_COSTS`) are **estimates, not yet measured on a GPU**; the smoke costs were measured on a
2-core CPU. If the total exceeds the cap (480 s), the plan drops work (:data:`REDUCTIONS`, in order)
until it fits, and says so. A stage's timeout is its budget × :data:`SLACK`, capped by what is left
of the cap, so a cut-off run still leaves every finished stage's files. A failing or timed-out stage
does not stop the next; the exit code is 1 if any stage did not finish ok.

Usage::

    python benchmarks/gpu_quick.py OUT_DIR              # on the GPU machine (≤ 8 min)
    python benchmarks/gpu_quick.py --plan               # print the budget and the commands, run nothing
    python benchmarks/gpu_quick.py --plan --device cuda # the GPU plan on a machine without CUDA
    python benchmarks/gpu_quick.py --smoke OUT_DIR      # CPU, Triton interpreter, tiny shapes: ~30 s
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CAP_S = 480.0  # the whole command, plan included, must end within this many seconds
SLACK = 1.5  # a stage's timeout: its budget × SLACK (capped by what is left of the cap)
SMOKE_SLACK = 4.0  # --smoke: the CPU may be shared (e.g. with other tests' xdist workers) ...
SMOKE_MIN_TIMEOUT_S = 120.0  # ... and a loaded 2-core CPU runs a stage several times slower
MIN_STAGE_S = 5.0  # a stage with less time than this left is skipped
KILL_GRACE_S = 5.0  # SIGTERM → SIGKILL delay for a timed-out stage's process group

# Distinct kernel specializations the GPU test files launch (kernel, dtype, head dim, constexprs),
# as measured for issue 12 (part 5) under the interpreter (TRITON_INTERPRET=1, commit 4db95fe): a hook on
# renyi_prune.kernels._common.TiledKernel.__call__ recorded each distinct (kernel, q dtype, D, consts)
# while running TEST_FILES. On a GPU each one's first launch autotunes over its kernel's tile list.
TEST_SPECIALIZATIONS = {"fwd": 78, "dkdv": 17, "dq": 17, "colnorm": 14}  # 126 in all
TEST_COUNT_FALLBACK = 258  # tests in TEST_FILES (pytest --collect-only, commit 4db95fe), if collection fails
GPU_MACHINE_CORES = 16  # the GPU machine's CPU cores: xdist workers when planning for CUDA without CUDA
GPU_MACHINE_ARCH = 90  # compute capability assumed when planning for CUDA without CUDA (H100/H200)

TEST_FILES = (
    "tests/test_kernel.py", "tests/test_backward.py", "tests/test_op.py", "tests/test_nonfinite.py",
    "tests/test_extreme_alpha.py", "tests/test_colnorm.py", "tests/test_properties.py",
)  # fmt: skip
# --smoke: two fast single tests (no parametrization to expand), one process
SMOKE_TESTS = (
    "tests/test_kernel.py::test_kernel_runs_on_this_machine",
    "tests/test_kernel.py::test_shapes[16-17]",
)

STAGES = ("tests", "kernel-fwd", "kernel-fwdbwd", "e2e")


@dataclasses.dataclass(frozen=True)
class Costs:
    """Per-unit costs of the budget, in seconds.

    Attributes:
        startup: one stage process: Python, torch, CUDA context, imports.
        compile: one Triton compile of one autotune config (CPU-bound).
        cached_compile: a compile an earlier stage of the run already put in Triton's on-disk cache.
        autotune_config: benchmarking one config at one autotune key (do_bench: 25 ms warm-up + 100 ms).
        test: one test's own run time, compiles excluded (spread over the xdist workers).
        xdist_start: starting the xdist workers (in parallel: each imports torch and the package).
        measure: one timed (shape, α, provider) of the kernel benchmark, guard included, per mode.
        e2e_overhead: per timed end-to-end configuration: the token-count forward and the fvcore count.
        model_build: timm model creation and the unpatched reference forwards (autocast and fp32).
        e2e_call: one forward of the model (at least 2 warm-up calls and one to choose iters).
    """

    startup: float
    compile: float
    cached_compile: float
    autotune_config: float
    test: float
    xdist_start: float
    measure: dict[str, float]
    e2e_overhead: float
    model_build: float
    e2e_call: float


# ESTIMATES until measured on an H100/H200: ~2 s per compile is the static report's per-compile time on
# this project's kernels (sm_90); autotune: do_bench's 125 ms plus launch overhead; the rest are guesses.
GPU_COSTS = Costs(
    startup=10.0, compile=2.0, cached_compile=0.3, autotune_config=0.15, test=0.3, xdist_start=15.0,
    measure={"fwd": 0.4, "fwdbwd": 0.6}, e2e_overhead=3.0, model_build=5.0, e2e_call=0.1,
)  # fmt: skip
# Measured on a 2-core CPU (TRITON_INTERPRET=1, no compiles, one tile): the stages of --smoke.
SMOKE_COSTS = Costs(
    startup=2.5, compile=0.0, cached_compile=0.0, autotune_config=0.0, test=0.4, xdist_start=0.0,
    measure={"fwd": 0.3, "fwdbwd": 0.6}, e2e_overhead=0.5, model_build=0.5, e2e_call=0.05,
)  # fmt: skip


@dataclasses.dataclass
class Work:
    """What the stages do (the numbers the budget multiplies); :data:`REDUCTIONS` edit it."""

    seq: list[int] = dataclasses.field(default_factory=lambda: [197, 577, 1025])
    fwd_alpha: list[str] = dataclasses.field(default_factory=lambda: ["1", "2", "inf"])
    fwdbwd_alpha: list[str] = dataclasses.field(default_factory=lambda: ["1", "2", "inf"])
    providers: int = 3  # fused sdpa eager (bench_kernel.py's default)
    keep_rates: list[float] = dataclasses.field(default_factory=lambda: [0.7, 0.5])
    repeats: int = 10  # bench_e2e.py's CUDA defaults
    run_ms: float = 200.0
    warmup_ms: float = 500.0


# Applied in order while the estimate exceeds the cap: (what the plan prints, the edit)
REDUCTIONS = (
    ("e2e --repeats 5", lambda w: setattr(w, "repeats", 5)),
    ("e2e --warmup-ms 200 --run-ms 100", lambda w: w.__dict__.update(warmup_ms=200.0, run_ms=100.0)),
    ("kernel-fwdbwd --alpha 1", lambda w: setattr(w, "fwdbwd_alpha", ["1"])),
    ("kernel-fwd --alpha 1 inf", lambda w: setattr(w, "fwd_alpha", ["1", "inf"])),
    ("kernels --seq 197 577", lambda w: setattr(w, "seq", [197, 577])),
    ("e2e --keep-rates 0.7", lambda w: setattr(w, "keep_rates", [0.7])),
)  # fmt: skip


@dataclasses.dataclass
class Stage:
    """One stage: its command, its expected seconds by part, and the files it writes into OUT_DIR."""

    name: str
    argv: list[str]
    parts: dict[str, float]  # part → seconds
    notes: list[str]  # how each part was counted
    outputs: list[str]

    @property
    def budget(self) -> int:
        """Expected seconds, rounded up to a whole second (the budget line adds these)."""
        return math.ceil(sum(self.parts.values()))


# --------------------------------------------------------------------------------------------------
# counting the work


def tile_counts(arch: int | None) -> dict[str, int]:
    """Autotune configs per kernel on compute capability ``arch`` (e.g. 90), from the package's lists.

    Example:
        >>> tile_counts(90)["fwd"] >= 1, sorted(tile_counts(90))
        (True, ['colnorm', 'dkdv', 'dq', 'fwd'])
    """
    import importlib

    def module(name: str):  # the package re-exports functions under its kernel modules' names
        return importlib.import_module(f"renyi_prune.kernels.{name}")

    fwd, bwd = module("attention_entropy_fwd"), module("attention_entropy_bwd")
    launches = {
        "fwd": fwd._fwd_launch,
        "dkdv": bwd._dkdv_launch,
        "dq": bwd._dq_launch,
        "colnorm": module("attention_colnorm")._colnorm_launch,
    }
    return {name: len(launch.tuner(arch).configs) for name, launch in launches.items()}


@functools.cache
def collect_test_count(files: tuple[str, ...]) -> int:
    """Tests in ``files`` by ``pytest --collect-only -q`` (a few seconds), or :data:`TEST_COUNT_FALLBACK`."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:randomly", *files]
    try:
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=_stage_env(False))
    except (OSError, subprocess.SubprocessError):
        return TEST_COUNT_FALLBACK
    found = re.search(r"(\d+) tests? collected", res.stdout)
    return int(found.group(1)) if found else TEST_COUNT_FALLBACK


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _specs_and_keys(seq: Sequence[int], alphas: Sequence[str]) -> tuple[int, int]:
    """Kernel specializations and autotune keys of a kernel benchmark stage.

    Specializations: one per α (its entropy mode / power constexprs) and per class of N by Triton's
    divisibility-by-16 specialization; keys: one per (α, next power of two of N), the N_BUCKET key.
    """
    specs = len(set(alphas)) * len({n % 16 == 0 for n in seq})
    keys = len(set(alphas)) * len({_next_pow2(n) for n in seq})
    return specs, keys


def _e2e_buckets(keep_rates: Sequence[float], tokens: int = 197, prefix: int = 1, blocks: int = 3) -> int:
    """Distinct N_BUCKET keys of the fused forward in the renyi configuration (guard at r = 1 included)."""
    from renyi_prune import num_kept

    ns = {tokens}
    for rate in keep_rates:
        n = tokens
        for _ in range(blocks - 1):  # tokens entering the 2nd, 3rd ... pruning block
            n = prefix + num_kept(n, prefix, rate)
            ns.add(n)
    return len({_next_pow2(n) for n in ns})


# --------------------------------------------------------------------------------------------------
# the plan


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
    specs, keys = _specs_and_keys(seq, alphas)
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
    keys = 1 if smoke else _e2e_buckets(w.keep_rates)
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
        return 10 * major + minor, args.workers or _cores()
    return GPU_MACHINE_ARCH, args.workers or GPU_MACHINE_CORES


def _cores() -> int:
    """CPU cores this process may use (the affinity mask: a container may see more than it gets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def budget_line(stages: Sequence[Stage], plan_s: float, cap_s: float, smoke: bool) -> str:
    """One line: each stage's expected seconds, their total with the plan's, and the cap.

    Example:
        >>> s = Stage("e2e", [], {"timing": 9.5}, [], [])
        >>> budget_line([s], 2.2, 480.0, False)[:45]
        'budget: plan 3s + e2e 10s = 13s of 480s cap ('
    """
    items = [("plan", math.ceil(plan_s))] + [(s.name, s.budget) for s in stages]
    total = sum(v for _, v in items)
    note = (
        "smoke: costs measured on a 2-core CPU"
        if smoke
        else "GPU per-unit costs are estimates, not yet measured on a GPU"
    )
    over = " OVER THE CAP" if total > cap_s else ""
    return f"budget: {' + '.join(f'{n} {v}s' for n, v in items)} = {total}s of {cap_s:g}s cap{over} ({note})"


# --------------------------------------------------------------------------------------------------
# running


def _stage_env(smoke: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if smoke:  # the CPU (also on a GPU machine), the interpreter, one thread (the CPU may be shared)
        env.update(CUDA_VISIBLE_DEVICES="", TRITON_INTERPRET="1")
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def environment(args: argparse.Namespace, stages: Sequence[Stage], applied: list[str], line: str) -> dict:
    """``environment.json``: device, library versions, commit, date and the plan."""
    import torch

    from renyi_prune.bench import _common

    cuda = torch.cuda.is_available() and not args.smoke
    return {
        "device": _common.device_name("cuda") if cuda else f"cpu-interpreter ({platform.machine()})",
        "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else "",
        "torch": torch.__version__, "triton": _common.triton_version(), "timm": _common.timm_version(),
        "cuda": torch.version.cuda or "", "python": sys.version.split()[0], "cpu_cores": _cores(),
        "git_commit": _common.git_commit(), "date": _common.utc_now(), "smoke": args.smoke,
        "cap_s": args.cap_s, "slack": SMOKE_SLACK if args.smoke else SLACK, "budget_line": line,
        "reductions": applied,
        "costs": dataclasses.asdict(SMOKE_COSTS if args.smoke else GPU_COSTS),
        "stages": [{"name": s.name, "command": s.argv, "budget_s": s.budget, "parts_s": s.parts,
                    "notes": s.notes, "outputs": s.outputs} for s in stages],
    }  # fmt: skip


def stage_timeout(stage: Stage, smoke: bool) -> float:
    """A stage's timeout in seconds before the cap: budget × :data:`SLACK`; with ``smoke``, budget ×
    :data:`SMOKE_SLACK` and at least :data:`SMOKE_MIN_TIMEOUT_S`.

    Example:
        >>> s = Stage("e2e", [], {"timing": 10.0}, [], [])
        >>> stage_timeout(s, False), stage_timeout(s, True)
        (15.0, 120.0)
    """
    if smoke:
        return max(stage.budget * SMOKE_SLACK, SMOKE_MIN_TIMEOUT_S)
    return stage.budget * SLACK


STAGE_COLUMNS = ["stage", "status", "rc", "seconds", "budget_s", "timeout_s", "log", "command"]


def write_stages_csv(path: Path, rows: Sequence[dict]) -> None:
    """Rewrite ``stages.csv`` (atomically) with the finished stages' rows."""
    from renyi_prune._io import atomic_open

    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STAGE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run_stage(stage: Stage, out: Path, timeout: float, smoke: bool) -> tuple[str, int | None, float]:
    """Run one stage (its own process group) with stdout and stderr to ``OUT/<stage>.log``.

    Returns (status, exit code, seconds): status ``ok``, ``failed`` or ``timed out`` (the group is
    sent SIGTERM, then SIGKILL after :data:`KILL_GRACE_S`; exit code None).
    """
    t0 = time.perf_counter()
    with open(out / f"{stage.name}.log", "w") as log:
        proc = subprocess.Popen(stage.argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=_stage_env(smoke), start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return "timed out", None, time.perf_counter() - t0
    return ("ok" if rc == 0 else "failed"), rc, time.perf_counter() - t0


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def run_all(stages: Sequence[Stage], out: Path, args: argparse.Namespace, t_start: float) -> int:
    """Run the stages in order; print and record a summary per stage; exit code 0 if all were ok."""
    rows = []
    for stage in stages:
        left = args.cap_s - (time.perf_counter() - t_start)
        timeout = args.stage_timeout.get(stage.name, min(stage_timeout(stage, args.smoke), left))
        if stage.name not in args.stage_timeout and timeout < MIN_STAGE_S:
            status, rc, secs = "skipped (no time left)", None, 0.0
        else:
            print(f"[{stage.name}] start: budget {stage.budget} s, timeout {timeout:.0f} s", flush=True)
            status, rc, secs = run_stage(stage, out, timeout, args.smoke)
        rows.append(dict(stage=stage.name, status=status, rc="" if rc is None else rc, seconds=f"{secs:.1f}",
                         budget_s=stage.budget, timeout_s=f"{timeout:.1f}", log=f"{stage.name}.log",
                         command=" ".join(stage.argv)))  # fmt: skip
        write_stages_csv(out / "stages.csv", rows)
        print(f"[{stage.name}] {status} in {secs:.1f} s (budget {stage.budget} s)", flush=True)
    total = time.perf_counter() - t_start
    print(f"summary: {sum(r['status'] == 'ok' for r in rows)}/{len(rows)} stages ok in {total:.0f} s "
          f"of {args.cap_s:g} s; files in {out}", flush=True)  # fmt: skip
    for r in rows:
        print(f"  {r['stage']:<14} {r['status']:<10} {r['seconds']:>7} s  budget {r['budget_s']} s")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


# --------------------------------------------------------------------------------------------------
# command line


def _stage_timeout(text: str) -> tuple[str, float]:
    name, sep, secs = text.partition("=")
    if not sep or name not in STAGES:
        raise argparse.ArgumentTypeError(
            f"expected STAGE=SECONDS with STAGE in {', '.join(STAGES)}, got {text!r}"
        )
    try:
        value = float(secs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {secs!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"seconds must be > 0, got {secs!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """Options of the quick run (see the module docstring)."""
    p = argparse.ArgumentParser(prog="gpu_quick.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", type=Path, help="output folder (required unless --plan)")
    p.add_argument("--plan", action="store_true", help="print the budget line and the commands; run nothing")
    p.add_argument("--smoke", action="store_true", help="CPU, Triton interpreter, tiny shapes, same files")
    p.add_argument("--device", choices=("auto", "cuda"), default="auto",
                   help="cuda: the GPU plan; without CUDA only with --plan, for the GPU machine (sm_90, "
                        f"{GPU_MACHINE_CORES} cores); auto: the same unless --smoke")  # fmt: skip
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="default: all, in order")
    p.add_argument("--workers", type=int, help="xdist workers of the tests stage (default: CPU cores)")
    p.add_argument(
        "--cap-s", type=float, default=CAP_S, help=f"the whole run's cap in seconds (default {CAP_S:g})"
    )
    p.add_argument("--stage-timeout", type=_stage_timeout, action="append", default=[],
                   metavar="STAGE=SECONDS", help="override a stage's timeout (force a time-out)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Plan, print the budget line, then (unless ``--plan``) run the stages into OUT_DIR.

    Returns the exit code: 0 all stages ok, 1 a stage failed, timed out or was skipped, 2 bad arguments.
    """
    t_start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.stage_timeout = dict(args.stage_timeout)
    if args.out is None and not args.plan:
        parser.error("OUT_DIR is required unless --plan")
    if args.smoke and args.device == "cuda":
        parser.error("--smoke runs on the CPU; drop --device cuda")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import torch

    if not args.smoke and not torch.cuda.is_available():
        if not args.plan:
            parser.error("no CUDA here: --smoke for the CPU rehearsal, --plan for the GPU plan")
        print(f"[gpu_quick] no CUDA here: planning for the GPU machine (sm_{GPU_MACHINE_ARCH}, "
              f"{args.workers or GPU_MACHINE_CORES} cores)", file=sys.stderr)  # fmt: skip
    out = args.out.resolve() if args.out else Path("OUT_DIR")
    stages, applied = plan(out, args, t_start)
    plan_s = time.perf_counter() - t_start
    line = budget_line(stages, plan_s, args.cap_s, args.smoke)
    print(line, flush=True)
    if args.plan:
        _print_plan(stages, applied, args)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    from renyi_prune._io import write_json

    write_json(out / "environment.json", environment(args, stages, applied, line))
    return run_all(stages, out, args, t_start)


def _print_plan(stages: Sequence[Stage], applied: list[str], args: argparse.Namespace) -> None:
    print(f"reductions to fit the cap: {', '.join(applied) or 'none'}")
    for s in stages:
        parts = " + ".join(f"{k} {v:.1f}" for k, v in s.parts.items())
        timeout = stage_timeout(s, args.smoke)
        print(f"[{s.name}] {s.budget} s = {parts}; timeout {timeout:.0f} s (at most what is left)")
        for note in s.notes:
            print(f"    {note}")
        print(f"    $ {' '.join(s.argv)}")
    print(json.dumps({"outputs": {s.name: s.outputs for s in stages}}))


if __name__ == "__main__":
    sys.exit(main())
