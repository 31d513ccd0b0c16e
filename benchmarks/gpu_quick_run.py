"""Running the stages of ``gpu_quick.py``: each in its own process group with a timeout, a row of
``stages.csv`` per finished stage, and ``environment.json`` (:func:`environment`). Times in seconds.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gpu_quick_budget import (
    GPU_COSTS,
    KILL_GRACE_S,
    MIN_STAGE_S,
    REPO,
    SLACK,
    SMOKE_COSTS,
    SMOKE_SLACK,
    Stage,
    cores,
    stage_env,
    stage_timeout,
)


def environment(args: argparse.Namespace, stages: Sequence[Stage], applied: list[str], line: str) -> dict:
    """``environment.json``: device, library versions, commit, date and the plan."""
    import torch

    from renyi_prune.bench import _common

    cuda = torch.cuda.is_available() and not args.smoke
    return {
        "device": _common.device_name("cuda") if cuda else f"cpu-interpreter ({platform.machine()})",
        "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else "",
        "torch": torch.__version__, "triton": _common.triton_version(), "timm": _common.timm_version(),
        "cuda": torch.version.cuda or "", "python": sys.version.split()[0], "cpu_cores": cores(),
        "git_commit": _common.git_commit(), "date": _common.utc_now(), "smoke": args.smoke,
        "cap_s": args.cap_s, "slack": SMOKE_SLACK if args.smoke else SLACK, "budget_line": line,
        "reductions": applied,
        "costs": dataclasses.asdict(SMOKE_COSTS if args.smoke else GPU_COSTS),
        "stages": [{"name": s.name, "command": s.argv, "budget_s": s.budget, "parts_s": s.parts,
                    "notes": s.notes, "outputs": s.outputs} for s in stages],
    }  # fmt: skip


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
                                env=stage_env(smoke), start_new_session=True)  # fmt: skip
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
