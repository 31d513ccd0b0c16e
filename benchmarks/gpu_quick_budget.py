"""The budget of ``gpu_quick.py``: per-unit costs (:class:`Costs`), the work (:class:`Work`) and how to cut
it (:data:`REDUCTIONS`), :class:`Stage`, the counts of compiles / autotune keys / tests, the budget line
and each stage's timeout. All times in seconds.

Example:
    >>> specs_and_keys([197, 577, 1025], ["1", "2", "inf"])
    (3, 9)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import subprocess
import sys
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
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=stage_env(False))
    except (OSError, subprocess.SubprocessError):
        return TEST_COUNT_FALLBACK
    found = re.search(r"(\d+) tests? collected", res.stdout)
    return int(found.group(1)) if found else TEST_COUNT_FALLBACK


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def specs_and_keys(seq: Sequence[int], alphas: Sequence[str]) -> tuple[int, int]:
    """Kernel specializations and autotune keys of a kernel benchmark stage.

    Specializations: one per α (its entropy mode / power constexprs) and per class of N by Triton's
    divisibility-by-16 specialization; keys: one per (α, next power of two of N), the N_BUCKET key.
    """
    specs = len(set(alphas)) * len({n % 16 == 0 for n in seq})
    keys = len(set(alphas)) * len({_next_pow2(n) for n in seq})
    return specs, keys


def e2e_buckets(keep_rates: Sequence[float], tokens: int = 197, prefix: int = 1, blocks: int = 3) -> int:
    """Distinct N_BUCKET keys of the fused forward in the renyi configuration (guard at r = 1 included)."""
    from renyi_prune import num_kept

    ns = {tokens}
    for rate in keep_rates:
        n = tokens
        for _ in range(blocks - 1):  # tokens entering the 2nd, 3rd ... pruning block
            n = prefix + num_kept(n, prefix, rate)
            ns.add(n)
    return len({_next_pow2(n) for n in ns})


def cores() -> int:
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


def stage_env(smoke: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if smoke:  # the CPU (also on a GPU machine), the interpreter, one thread (the CPU may be shared)
        env.update(CUDA_VISIBLE_DEVICES="", TRITON_INTERPRET="1")
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


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
