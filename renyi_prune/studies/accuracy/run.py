"""Running an accuracy study: :func:`run_study` trains the base model, evaluates and fine-tunes every
variant x keep rate (and the unpruned reference) and writes the result files (:mod:`.files`).

Times are wall-clock seconds (``time.perf_counter``); accuracies in %, GFLOPs per image (fvcore).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...bench import _common
from ...train import config_to_argv, evaluate_checkpoint, train
from .config import StudyConfig, Variant, base_config, eval_config, finetune_config, fmt
from .files import write_outputs
from .report import summarize

__all__ = ["run_study"]

Job = tuple[Variant | None, float | None]


def _quiet(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` with its per-epoch stdout lines captured (the study prints one line per run)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _loadavg() -> str:
    """The 1/5/15-minute load averages as text, ``""`` where the OS has none."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return ""


def _environment(cfg: StudyConfig) -> dict[str, Any]:
    """Device, versions, date, git commit and host of this study (``environment.json``)."""
    import timm
    import torch

    cuda = torch.cuda.is_available() and (cfg.device is None or cfg.device.startswith("cuda"))
    device = (
        torch.cuda.get_device_name()
        if cuda
        else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    )
    return {
        "device": device,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "date": _common.utc_now(),
        "git_commit": _common.git_commit(),
        "host": platform.node(),
    }


def _common_fields(cfg: StudyConfig, variant: Variant | None, rate: float | None) -> dict[str, Any]:
    """The columns of ``runs.csv`` that every run of one job shares."""
    return {
        "config": cfg.name,
        "variant": variant.label if variant else "unpruned",
        "criterion": variant.criterion if variant else "none",
        "alpha": variant.alpha if variant else None,
        "fuse_pruned": variant.fuse if variant else False,
        "keep_rate": rate if rate is not None else 1.0,
    }


def _run_job(cfg: StudyConfig, base_ckpt: Path, work: Path, job: Job) -> tuple[list[dict[str, Any]], str]:
    """One variant x keep rate: the base evaluated pruned, then fine-tuned once per seed.

    Returns the ``runs.csv`` rows and the part of the progress line after the label.
    """
    variant, rate = job
    common = _common_fields(cfg, variant, rate)
    t0 = time.perf_counter()
    ev = _quiet(evaluate_checkpoint, eval_config(cfg, base_ckpt, variant, rate))
    rows = [{**common, "seed": "", "finetuned": False, "top1": ev["top1"], "top5": ev["top5"],
             "eval_loss": ev["loss"], "gflops": ev["gflops"], "eval_images_per_s": ev["images_per_s"],
             "train_images_per_s": None, "wall_s": time.perf_counter() - t0}]  # fmt: skip
    tuned = []
    for seed in cfg.seeds:
        t0 = time.perf_counter()
        run_dir = work / "run"
        last = _quiet(train, finetune_config(cfg, base_ckpt, variant, rate, seed, run_dir))["last"]
        shutil.rmtree(run_dir, ignore_errors=True)
        tuned.append(last["top1"])
        rows.append({**common, "seed": seed, "finetuned": True, "top1": last["top1"], "top5": last["top5"],
                     "eval_loss": last["eval_loss"], "gflops": last["gflops"],
                     "eval_images_per_s": last["eval_images_per_s"],
                     "train_images_per_s": last["train_images_per_s"],
                     "wall_s": time.perf_counter() - t0})  # fmt: skip
    where = f"r={fmt(rate)}" if rate is not None else "r=1"
    tuned_text = " ".join(f"{t:6.2f}" for t in tuned)
    text = f"{where:<6} no fine-tune {ev['top1']:6.2f}%  fine-tuned {tuned_text}%  {ev['gflops']:.4f} GFLOPs"
    return rows, text


def _example_commands(cfg: StudyConfig, base_ckpt: Path, work: Path) -> dict[str, list[str]]:
    """The command lines of the first pruned fine-tune and evaluation (saved in ``config.json``)."""
    v, r = cfg.variants[0], cfg.keep_rates[0]
    return {
        "finetune_example": ["renyi-prune", "train",
                             *config_to_argv(finetune_config(cfg, base_ckpt, v, r, 0, work / "run"))],
        "eval_example": ["renyi-prune", "eval", *config_to_argv(eval_config(cfg, base_ckpt, v, r))],
    }  # fmt: skip


def _run_all(cfg: StudyConfig, work: Path, log: Callable[[str], Any], started: float) -> dict[str, Any]:
    """Base model, then every job; returns ``rows``, ``commands``, the base ``history`` and ``base_s``."""
    t0 = time.perf_counter()
    base_cfg = base_config(cfg, work / "base")
    commands: dict[str, Any] = {"base": ["renyi-prune", "train", *config_to_argv(base_cfg)]}
    base = _quiet(train, base_cfg)
    base_ckpt = work / "base" / "checkpoint.pth"
    base_s = time.perf_counter() - t0
    log(f"base: {cfg.base_epochs} epochs, top1 {base['last']['top1']:.2f}% ({base_s:.0f} s)")
    jobs: list[Job] = [(None, None)] + [(v, r) for r in cfg.keep_rates for v in cfg.variants]
    commands.update(_example_commands(cfg, base_ckpt, work))
    rows: list[dict[str, Any]] = []
    for i, job in enumerate(jobs, 1):
        job_rows, text = _run_job(cfg, base_ckpt, work, job)
        rows += job_rows
        label = job[0].label if job[0] else "unpruned"
        log(f"[{i}/{len(jobs)}] {label:<14} {text}  ({time.perf_counter() - started:.0f} s)")
    return {"rows": rows, "commands": commands, "history": base["history"], "base_s": base_s}


def run_study(
    cfg: StudyConfig, out: Path, workdir: Path | None = None, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run the whole study and write its files to ``out`` (see :func:`.files.write_outputs`).

    ``workdir`` keeps the checkpoints (default: a temporary folder, deleted afterwards); its ``base`` and
    ``run`` subfolders from an earlier study are removed first. ``log`` receives one line per run.

    Returns:
        ``{"rows", "summary", "wall_s", "base_history"}`` (``wall_s`` in seconds).

    Raises:
        renyi_prune._argtypes.UsageError: a configuration :func:`renyi_prune.train.train` rejects.

    Example:
        >>> from renyi_prune.studies.accuracy import CONFIGS
        >>> result = run_study(CONFIGS["smoke"], Path("smoke-out"))  # doctest: +SKIP
        >>> len(result["summary"])  # doctest: +SKIP
        6
    """
    started = time.perf_counter()
    env = {**_environment(cfg), "load_average_start": _loadavg()}
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="renyi-prune-study-")) if workdir is None else Path(workdir)
    for stale in ("base", "run"):  # runs of an earlier study in --workdir: train refuses to mix with them
        shutil.rmtree(work / stale, ignore_errors=True)
    try:
        done = _run_all(cfg, work, log, started)
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
    wall_s = time.perf_counter() - started
    env.update(load_average_end=_loadavg(), wall_time_s=wall_s, base_wall_time_s=done["base_s"])
    summary = summarize(done["rows"], cfg)
    write_outputs(out, cfg, done["rows"], summary, done["history"], done["commands"], env)
    return {"rows": done["rows"], "summary": summary, "wall_s": wall_s, "base_history": done["history"]}
