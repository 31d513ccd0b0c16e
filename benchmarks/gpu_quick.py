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

Modules: ``gpu_quick_budget.py`` (costs, work, counts, budget line, timeouts), ``gpu_quick_plan.py`` (the
stages and the reductions), ``gpu_quick_run.py`` (subprocesses, ``stages.csv``, ``environment.json``);
this file is the command line and re-exports their names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling modules, also when loaded by path (tests)

from gpu_quick_budget import (  # noqa: E402
    CAP_S,
    GPU_COSTS,
    GPU_MACHINE_ARCH,
    GPU_MACHINE_CORES,
    REDUCTIONS,
    REPO,
    SLACK,
    SMOKE_COSTS,
    SMOKE_SLACK,
    STAGES,
    Costs,
    Stage,
    Work,
    budget_line,
    stage_timeout,
    tile_counts,
)
from gpu_quick_plan import build_stages, plan  # noqa: E402
from gpu_quick_run import environment, run_all, run_stage, write_stages_csv  # noqa: E402

__all__ = [
    "CAP_S", "GPU_COSTS", "REDUCTIONS", "SLACK", "SMOKE_COSTS", "SMOKE_SLACK", "STAGES", "Costs", "Stage",
    "Work", "budget_line", "build_parser", "build_stages", "environment", "main", "plan", "run_all",
    "run_stage", "stage_timeout", "tile_counts", "write_stages_csv",
]  # fmt: skip


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
