"""Accuracy study: token-pruning criteria on real data (Fashion-MNIST), the paper's protocol scaled down.

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803) fine-tunes ImageNet-pretrained
DeiTs for 100 epochs with pruning at blocks 4/7/10 active during training and test, and compares criteria
at keep rates 0.7/0.5/0.3 (α searched per keep rate). No pretrained weights or ImageNet are reachable
offline, so this study:

1. trains one small ViT from scratch, unpruned (the *base*), with :func:`renyi_prune.train.train`
   (what ``renyi-prune train`` runs);
2. for every criterion variant x keep rate: evaluates the base with pruning switched on (*no fine-tune*,
   :func:`renyi_prune.train.evaluate_checkpoint`), then fine-tunes the base briefly with pruning active
   (a :class:`renyi_prune.train.TrainConfig` with ``checkpoint=base`` and the variant's
   :class:`renyi_prune.PruneConfig`) once per seed and evaluates with pruning at the same keep rate (the
   paper's protocol); the unpruned reference gets the same fine-tuning (so extra training is not mistaken
   for a pruning effect);
3. writes ``runs.csv`` (one row per run), ``summary.csv`` (mean ± std over seeds), ``results.md``,
   ``accuracy_vs_gflops.png``, ``config.json`` (the exact configuration and the equivalent command lines,
   :func:`renyi_prune.train.config_to_argv`) and
   ``environment.json`` (device, versions, date, git commit, machine load) to
   ``benchmarks/results/accuracy/<config-name>/`` (every file written atomically).

Seeds vary the fine-tuning (data order, augmentation, Mixup/CutMix, drop path, the random criterion);
the base model is trained once (seed 0), so the spread does not include base-training variance.

Usage::

    python benchmarks/accuracy_study.py --smoke                 # seconds, tiny model, writes to a temp dir
    python benchmarks/accuracy_study.py --config cpu-vit12-d64  # CPU: minutes (2 cores), see its results.md
    python benchmarks/accuracy_study.py --config gpu-vit12-d192 # one GPU, bf16, full data, more epochs
    python benchmarks/accuracy_study.py --rerender benchmarks/results/accuracy/cpu-vit12-d64  # report only

On CPU keep ``TRITON_INTERPRET`` unset (the eager attention path); the script sets
``OMP_WAIT_POLICY=PASSIVE`` (unless set): spinning OpenMP workers slow a shared small machine many-fold.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first torch import

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from renyi_prune._io import atomic_write_bytes, write_json  # noqa: E402
from renyi_prune.bench import _common  # noqa: E402
from renyi_prune.config import PruneConfig  # noqa: E402
from renyi_prune.train import EvalConfig, TrainConfig, config_to_argv  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results" / "accuracy"
SMOKE_DIR = Path(tempfile.gettempdir()) / "renyi-prune-accuracy-smoke"


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else f"{x:g}"


@dataclass(frozen=True)
class Variant:
    """One pruning configuration without its keep rate: a label, a registered criterion, α, fusion."""

    label: str
    criterion: str
    alpha: float | None = None
    fuse: bool = False

    def prune(self, keep_rate: float, seed: int) -> PruneConfig:
        """The :class:`PruneConfig` at ``keep_rate``; the random criterion draws from ``seed``."""
        params = {"seed": seed} if self.criterion == "random" else {}
        return PruneConfig(self.criterion, keep_rate=keep_rate, alpha=self.alpha, fuse_pruned=self.fuse,
                           params=params)  # fmt: skip


def _variants(alphas: Sequence[float], others: Sequence[str]) -> tuple[Variant, ...]:
    out = [Variant(f"renyi α={_fmt(a)}", "renyi", alpha=a) for a in alphas]
    for name in others:
        prune = PruneConfig.from_name(name)
        out.append(Variant(name, prune.criterion, fuse=prune.fuse_pruned))
    return tuple(out)


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; saved verbatim in ``config.json``."""

    name: str
    description: str
    model: str
    model_kwargs: dict[str, Any]
    img_size: int
    batch_size: int
    val_images: int | None
    # base model (from scratch, unpruned)
    base_epochs: int
    base_train_images: int | None
    base_lr: float
    base_warmup_epochs: float
    # fine-tuning with pruning (per variant, keep rate and seed)
    finetune_epochs: int
    finetune_train_images: int | None
    finetune_lr: float
    finetune_warmup_epochs: float
    keep_rate_warmup_epochs: float
    seeds: tuple[int, ...]
    keep_rates: tuple[float, ...]
    variants: tuple[Variant, ...]
    # augmentation/regularization of each phase (TrainConfig fields)
    base_augment: dict[str, Any] = field(default_factory=dict)
    finetune_augment: dict[str, Any] = field(default_factory=dict)
    amp: str = "none"
    workers: int | None = None
    device: str | None = None
    expected_minutes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ALL_OTHERS = ("evit", "evit+fusion", "colln", "headvar", "random")
ALPHAS = (0.5, 1.0, 2.0, 3.0, math.inf)
#: The paper's fine-tuning augmentations with DeiT's strengths (RandomResizedCrop, flip, Mixup 0.8,
#: CutMix 1.0, RandomErasing 0.25, label smoothing 0.1, drop path 0.1), crop area 0.8-1 for 28 px images.
PAPER_RECIPE = {
    "scale": (0.8, 1.0), "hflip": 0.5, "mixup": 0.8, "cutmix": 1.0, "reprob": 0.25, "smoothing": 0.1,
    "drop_path": 0.1, "weight_decay": 0.05,
}  # fmt: skip
#: A light recipe for a from-scratch base that must learn in 2 epochs (crop + flip + smoothing only).
LIGHT_RECIPE = {
    "scale": (0.8, 1.0), "hflip": 0.5, "mixup": 0.0, "cutmix": 0.0, "reprob": 0.0, "smoothing": 0.1,
    "drop_path": 0.0, "weight_decay": 0.05,
}  # fmt: skip

#: The studies side by side: ``field: (cpu-vit12-d64, gpu-vit12-d192, smoke)`` of :class:`StudyConfig`.
_CONFIG_NAMES = ("cpu-vit12-d64", "gpu-vit12-d192", "smoke")
_CONFIG_TABLE: dict[str, tuple[Any, Any, Any]] = {
    "description": (
        "CPU-sized: a ViT of depth 12, width 64, 4 heads of 16, MLP ratio 2, on 28 px images in patches of 4 "
        "px (49 patches + CLS), trained from scratch on Fashion-MNIST for 2 epochs (60,000 images, light "
        "augmentation); each fine-tune: 1 epoch on 2,560 images with the paper's augmentations; evaluation "
        "on 2,000 test images",
        "GPU-sized: a ViT-Ti-shaped model (depth 12, width 192, 3 heads of 64, MLP ratio 4) on 28 px images "
        "in patches of 4 px, trained from scratch on Fashion-MNIST for 60 epochs with the paper's "
        "augmentations; each fine-tune: 5 epochs on the 60,000 training images with a 1-epoch keep-rate "
        "warm-up; evaluation on the 10,000 test images; bf16 autocast",
        "smoke test only (numbers mean nothing): depth 12, width 32, 2 heads of 16, patch 7, 512 training "
        "images, 1 epoch",
    ),
    "model": ("vit_tiny_patch16_224",) * 3,
    "model_kwargs": (
        {"patch_size": 4, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 2.0},
        {"patch_size": 4},
        {"patch_size": 7, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 1.0},
    ),
    "img_size": (28, 28, 28),
    "batch_size": (128, 256, 64),
    "val_images": (2000, None, 128),
    "base_epochs": (2, 60, 1),
    "base_train_images": (None, None, 512),
    "base_lr": (2e-3, 1e-3, 1e-3),
    "base_warmup_epochs": (0.2, 5.0, 0.0),
    "finetune_epochs": (1, 5, 1),
    "finetune_train_images": (2560, None, 128),
    "finetune_lr": (2e-4, 1e-4, 1e-4),
    "finetune_warmup_epochs": (0.0, 0.5, 0.0),
    "keep_rate_warmup_epochs": (0.0, 1.0, 0.5),
    "seeds": ((0, 1), (0, 1, 2), (0, 1)),
    "keep_rates": ((0.9, 0.7, 0.5, 0.3), (0.9, 0.7, 0.5, 0.3), (0.5,)),
    "variants": (
        _variants(ALPHAS, ALL_OTHERS),
        _variants(ALPHAS, ALL_OTHERS),
        _variants((1.0, math.inf), ("evit", "evit+fusion", "random")),
    ),
    "base_augment": (LIGHT_RECIPE, PAPER_RECIPE, LIGHT_RECIPE),
    "finetune_augment": (PAPER_RECIPE,) * 3,
    "amp": ("none", "bf16", "none"),
    "workers": (None, 8, None),
    "expected_minutes": (
        "minutes on a 2-core CPU (the measured wall time is in environment.json)",
        "not measured yet; about 40M training images pass through PIL transforms, which bound the speed: use "
        "many loader workers",
        "under a minute",
    ),
}
CONFIGS: dict[str, StudyConfig] = {
    name: StudyConfig(name=name, **{field: values[i] for field, values in _CONFIG_TABLE.items()})
    for i, name in enumerate(_CONFIG_NAMES)
}


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


def _shared(cfg: StudyConfig) -> dict[str, Any]:
    """The settings every run of the study shares (TrainConfig / EvalConfig fields)."""
    return {"batch_size": cfg.batch_size, "amp": cfg.amp, "progress": False, "max_val_images": cfg.val_images,
            "workers": cfg.workers, "device": cfg.device}  # fmt: skip


def _model(cfg: StudyConfig) -> dict[str, Any]:
    return {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs), "img_size": cfg.img_size}


def base_config(cfg: StudyConfig, output: Path) -> TrainConfig:
    """The training configuration of the base model (from scratch, unpruned, seed 0)."""
    return TrainConfig(**_model(cfg), **_shared(cfg), **cfg.base_augment, epochs=cfg.base_epochs,
                       lr=cfg.base_lr, warmup_epochs=cfg.base_warmup_epochs, seed=0, output=output,
                       max_train_images=cfg.base_train_images)  # fmt: skip


def finetune_config(
    cfg: StudyConfig,
    base_ckpt: Path,
    variant: Variant | None,
    keep_rate: float | None,
    seed: int,
    output: Path,
) -> TrainConfig:
    """One fine-tuning run from the base model (``variant`` None: the unpruned reference)."""
    prune = variant.prune(keep_rate, seed) if variant is not None else None
    warmup = cfg.keep_rate_warmup_epochs if prune is not None else 0.0
    return TrainConfig(**_model(cfg), **_shared(cfg), **cfg.finetune_augment, checkpoint=base_ckpt,
                       epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, min_lr=cfg.finetune_lr / 10,
                       warmup_epochs=cfg.finetune_warmup_epochs, seed=seed, output=output,
                       max_train_images=cfg.finetune_train_images, prune=prune,
                       keep_rate_warmup_epochs=warmup)  # fmt: skip


def eval_config(cfg: StudyConfig, ckpt: Path, variant: Variant | None, keep_rate: float | None) -> EvalConfig:
    """The evaluation of the base model pruned without fine-tuning (``variant`` None: unpruned)."""
    prune = variant.prune(keep_rate, 0) if variant is not None else None
    return EvalConfig(ckpt, **_shared(cfg), prune=prune, no_prune=prune is None)


def _quiet(fn, *args):
    """Call ``fn`` with its per-epoch stdout lines captured (the study prints one line per run)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def run_study(cfg: StudyConfig, out: Path, workdir: Path | None = None, log=print) -> dict[str, Any]:
    """Run the whole study and write its files to ``out``; returns ``{"rows", "summary", "wall_s"}``."""
    from renyi_prune.train import evaluate_checkpoint, train

    started = time.perf_counter()
    env = {**_environment(cfg), "load_average_start": _loadavg()}
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="renyi-prune-study-")) if workdir is None else Path(workdir)
    for stale in ("base", "run"):  # runs of an earlier study in --workdir: train refuses to mix with them
        shutil.rmtree(work / stale, ignore_errors=True)
    commands: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        # 1. base model
        t0 = time.perf_counter()
        base_cfg = base_config(cfg, work / "base")
        commands["base"] = ["renyi-prune", "train", *config_to_argv(base_cfg)]
        base = _quiet(train, base_cfg)
        base_ckpt = work / "base" / "checkpoint.pth"
        base_s = time.perf_counter() - t0
        log(f"base: {cfg.base_epochs} epochs, top1 {base['last']['top1']:.2f}% ({base_s:.0f} s)")

        # 2. variants x keep rates (+ the unpruned reference), no fine-tune and fine-tuned per seed
        jobs: list[tuple[Variant | None, float | None]] = [(None, None)]
        jobs += [(v, r) for r in cfg.keep_rates for v in cfg.variants]
        commands["finetune_example"] = [
            "renyi-prune",
            "train",
            *config_to_argv(
                finetune_config(cfg, base_ckpt, cfg.variants[0], cfg.keep_rates[0], 0, work / "run")
            ),
        ]
        commands["eval_example"] = [
            "renyi-prune",
            "eval",
            *config_to_argv(eval_config(cfg, base_ckpt, cfg.variants[0], cfg.keep_rates[0])),
        ]
        for i, (variant, rate) in enumerate(jobs, 1):
            label = variant.label if variant else "unpruned"
            common = {
                "config": cfg.name,
                "variant": label,
                "criterion": variant.criterion if variant else "none",
                "alpha": variant.alpha if variant else None,
                "fuse_pruned": variant.fuse if variant else False,
                "keep_rate": rate if rate is not None else 1.0,
            }
            t0 = time.perf_counter()
            ev = _quiet(evaluate_checkpoint, eval_config(cfg, base_ckpt, variant, rate))
            rows.append(
                {
                    **common,
                    "seed": "",
                    "finetuned": False,
                    "top1": ev["top1"],
                    "top5": ev["top5"],
                    "eval_loss": ev["loss"],
                    "gflops": ev["gflops"],
                    "eval_images_per_s": ev["images_per_s"],
                    "train_images_per_s": None,
                    "wall_s": time.perf_counter() - t0,
                }
            )
            tuned = []
            for seed in cfg.seeds:
                t0 = time.perf_counter()
                run_dir = work / "run"
                result = _quiet(train, finetune_config(cfg, base_ckpt, variant, rate, seed, run_dir))
                last = result["last"]
                shutil.rmtree(run_dir, ignore_errors=True)
                tuned.append(last["top1"])
                rows.append(
                    {
                        **common,
                        "seed": seed,
                        "finetuned": True,
                        "top1": last["top1"],
                        "top5": last["top5"],
                        "eval_loss": last["eval_loss"],
                        "gflops": last["gflops"],
                        "eval_images_per_s": last["eval_images_per_s"],
                        "train_images_per_s": last["train_images_per_s"],
                        "wall_s": time.perf_counter() - t0,
                    }
                )
            where = f"r={_fmt(rate)}" if rate is not None else "r=1"
            log(
                f"[{i}/{len(jobs)}] {label:<14} {where:<6} no fine-tune {ev['top1']:6.2f}%  fine-tuned "
                f"{' '.join(f'{t:6.2f}' for t in tuned)}%  {ev['gflops']:.4f} GFLOPs  "
                f"({time.perf_counter() - started:.0f} s)"
            )
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)

    wall_s = time.perf_counter() - started
    env.update(load_average_end=_loadavg(), wall_time_s=wall_s, base_wall_time_s=base_s)
    summary = summarize(rows, cfg)
    write_outputs(out, cfg, rows, summary, base["history"], commands, env)
    return {"rows": rows, "summary": summary, "wall_s": wall_s, "base_history": base["history"]}


# --------------------------------------------------------------------------------------------------------
# Aggregation and output
# --------------------------------------------------------------------------------------------------------

RUN_COLUMNS = [
    "config",
    "variant",
    "criterion",
    "alpha",
    "fuse_pruned",
    "keep_rate",
    "seed",
    "finetuned",
    "top1",
    "top5",
    "eval_loss",
    "gflops",
    "eval_images_per_s",
    "train_images_per_s",
    "wall_s",
]
SUMMARY_COLUMNS = [
    "variant",
    "criterion",
    "alpha",
    "fuse_pruned",
    "keep_rate",
    "gflops",
    "top1_no_finetune",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "n_seeds",
    "delta_vs_unpruned",
    "eval_images_per_s",
]


def summarize(rows: list[dict[str, Any]], cfg: StudyConfig) -> list[dict[str, Any]]:
    """One row per (variant, keep rate): fine-tuned top-1 mean ± sample std over seeds, and the rest."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["keep_rate"]), []).append(r)
    ref = [r["top1"] for r in groups[("unpruned", 1.0)] if r["finetuned"]]
    ref_mean = statistics.fmean(ref) if ref else math.nan
    out = []
    for (variant, rate), rs in groups.items():
        tuned = [r for r in rs if r["finetuned"]]
        zero = [r for r in rs if not r["finetuned"]]
        top1 = [r["top1"] for r in tuned]
        first = rs[0]
        out.append(
            {
                "variant": variant,
                "criterion": first["criterion"],
                "alpha": first["alpha"],
                "fuse_pruned": first["fuse_pruned"],
                "keep_rate": rate,
                "gflops": first["gflops"],
                "top1_no_finetune": zero[0]["top1"] if zero else math.nan,
                "top1_mean": statistics.fmean(top1) if top1 else math.nan,
                "top1_std": statistics.stdev(top1) if len(top1) > 1 else math.nan,
                "top5_mean": statistics.fmean(r["top5"] for r in tuned) if tuned else math.nan,
                "n_seeds": len(top1),
                "delta_vs_unpruned": (statistics.fmean(top1) - ref_mean) if top1 else math.nan,
                "eval_images_per_s": statistics.median(r["eval_images_per_s"] for r in rs),
            }
        )
    return out


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _std0(s: dict[str, Any]) -> float:
    return 0.0 if math.isnan(s["top1_std"]) else s["top1_std"]


def _findings(summary: list[dict[str, Any]], cfg: StudyConfig) -> list[str]:
    """Plain statements computed from the numbers (nothing typed by hand)."""
    ref = next(s for s in summary if s["variant"] == "unpruned")
    lines = [
        f"Fine-tuning itself ({cfg.finetune_epochs} epoch(s) on {cfg.finetune_train_images or 'all'} images "
        "with the fine-tuning recipe) moves the unpruned model from "
        f"{ref['top1_no_finetune']:.2f}% to {_pm(ref['top1_mean'], ref['top1_std'])}%; compare pruned "
        "fine-tuned runs with the fine-tuned unpruned row, and pruned no-fine-tune runs with the base."
    ]
    for rate in cfg.keep_rates:
        at = [s for s in summary if s["keep_rate"] == rate and s["variant"] != "unpruned"]
        if not at:
            continue
        best = max(at, key=lambda s: s["top1_mean"])
        worst = min(at, key=lambda s: s["top1_mean"])
        gmin, gmax = min(s["gflops"] for s in at), max(s["gflops"] for s in at)
        rnd = next((s for s in at if s["criterion"] == "random"), None)
        renyi = [s for s in at if s["criterion"] == "renyi"]
        best_renyi = max(renyi, key=lambda s: s["top1_mean"]) if renyi else None
        stds = [s["top1_std"] for s in at if not math.isnan(s["top1_std"])]
        spread = f"; seed std up to {max(stds):.2f}" if stds else ""
        gf = f"{gmin:.4f}" if gmin == gmax else f"{gmin:.4f}-{gmax:.4f}"
        text = (
            f"r = {_fmt(rate)} ({gf} GFLOPs vs {ref['gflops']:.4f} unpruned): fine-tuned top-1 from "
            f"{worst['top1_mean']:.2f}% ({worst['variant']}) to {best['top1_mean']:.2f}% ({best['variant']})"
            f"{spread}."
        )
        if best_renyi is not None:
            text += f" Best α: {_fmt(best_renyi['alpha'])} ({best_renyi['top1_mean']:.2f}%)."
        if rnd is not None:
            beat = [
                s["variant"]
                for s in at
                if s is not rnd and s["top1_mean"] - rnd["top1_mean"] > 2 * max(_std0(s), _std0(rnd))
            ]
            text += (
                f" Above random ({rnd['top1_mean']:.2f}%) by more than twice the larger seed std: "
                f"{', '.join(beat) if beat else 'none'}."
            )
        zero_best = max(at, key=lambda s: s["top1_no_finetune"])
        zero_worst = min(at, key=lambda s: s["top1_no_finetune"])
        text += (
            f" Without fine-tuning: from {zero_worst['top1_no_finetune']:.2f}% ({zero_worst['variant']}) to "
            f"{zero_best['top1_no_finetune']:.2f}% ({zero_best['variant']})"
            + (f", random {rnd['top1_no_finetune']:.2f}%." if rnd is not None else ".")
        )
        lines.append(text)
    return lines


def _table(
    rates: Sequence[float],
    variants: Sequence[str],
    by: dict[tuple[str, float], dict[str, Any]],
    title: str,
    unpruned: str,
    cell: Callable[[dict[str, Any]], str],
) -> list[str]:
    """A ``## title`` section: a markdown table with one column per keep rate, the unpruned model's row
    (``unpruned`` in its first cell) and one row per variant (``cell`` of its summary row, ``-`` if none)."""
    lines = [
        "",
        f"## {title}",
        "",
        "| criterion | " + " | ".join(f"r = {_fmt(r)}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
        f"| unpruned (r = 1) | {unpruned} |" + " |" * (len(rates) - 1),
    ]
    for v in variants:
        cells = [by.get((v, r)) for r in rates]
        lines.append(f"| {v} | " + " | ".join(cell(c) if c else "-" for c in cells) + " |")
    return lines


def markdown(
    cfg: StudyConfig, summary: list[dict[str, Any]], base_history: list[dict[str, Any]], env: dict[str, Any]
) -> str:
    """The ``results.md`` report."""
    by = {(s["variant"], s["keep_rate"]): s for s in summary}
    ref = by[("unpruned", 1.0)]
    base = base_history[-1]
    tiny = cfg.name != "smoke" and "gpu" not in cfg.name
    lines = [f"# Accuracy study `{cfg.name}`", ""]
    table = functools.partial(_table, cfg.keep_rates, [v.label for v in cfg.variants], by)
    if cfg.name == "smoke":
        lines += ["**Smoke run: these numbers only show that the pipeline works.**", ""]
    lines += [
        f"**What this is.** {cfg.description}. "
        + (
            "A tiny from-scratch CPU study, not the paper's setting (ImageNet-1k, pretrained DeiT-S/B, 100 "
            "fine-tuning epochs at 224 px); its accuracies are not comparable to the paper's numbers. "
            if tiny
            else ""
        )
        + f"Base model (unpruned, trained from scratch, seed 0): top-1 {base['top1']:.2f}% after "
        f"{base['epoch']} epochs on {cfg.base_train_images or 'all'} training images. "
        f"Each pruned configuration is then fine-tuned {cfg.finetune_epochs} epoch(s) on "
        f"{cfg.finetune_train_images or 'all'} training images with pruning active (blocks 3/6/9 0-based = "
        "the "
        f"paper's 4/7/10) and evaluated with pruning at the same keep rate, on "
        f"{cfg.val_images or 'all 10,000'} Fashion-MNIST test images; seeds {list(cfg.seeds)} vary the "
        "fine-tuning only (the base model is shared). The unpruned row is fine-tuned the same way.",
        "",
        f"Device: {env['device']}; torch {env['torch']}, timm {env['timm']}; {env['date']}; commit "
        f"{env['git_commit'] or 'unknown'}; wall time {env['wall_time_s'] / 60:.1f} min (base "
        f"{env['base_wall_time_s']:.0f} s); load average at start/end {env['load_average_start']} / "
        f"{env['load_average_end']} (other jobs on the machine slow it down and add noise to images/s).",
    ]
    lines += table(
        "Top-1 (%) after fine-tuning with pruning, mean ± std over seeds",
        f"{_pm(ref['top1_mean'], ref['top1_std'])} (all columns)",
        lambda c: _pm(c["top1_mean"], c["top1_std"]),
    )
    lines += table(
        "Top-1 (%) of the base model pruned at test time only (no fine-tuning)",
        f"{ref['top1_no_finetune']:.2f}",
        lambda c: f"{c['top1_no_finetune']:.2f}",
    )
    lines += table(
        "GFLOPs per image (fvcore, 1 multiply-add = 1 FLOP) and eval images/s (median of runs)",
        f"{ref['gflops']:.4f} GFLOPs, {ref['eval_images_per_s']:.0f} img/s",
        lambda c: f"{c['gflops']:.4f}, {c['eval_images_per_s']:.0f} img/s",
    )
    lines += ["", "## What the numbers show, and what they do not", ""]
    lines += [f"- {t}" for t in _findings(summary, cfg)]
    lines += [
        "- Differences smaller than about twice the seed std are not resolved by this study; with "
        f"{len(cfg.seeds)} seed(s) the std itself is a rough estimate, and the seeds vary only the "
        "fine-tuning.",
        "- The picked-best α is chosen on the same test images it is reported on (as a per-keep-rate search "
        "on the evaluation set would be), so it is optimistic.",
        "- images/s on CPU come from the eager attention path (materialized attention for entropy-based "
        "criteria; SDPA for the others) and say nothing about the fused Triton kernel on a GPU.",
    ]
    if tiny:
        lines.append(
            "- A 28 px image cut into 49 patches of 4 px, a base model trained for minutes and one short "
            "fine-tuning epoch are far from the paper's regime: which criterion wins here need not carry "
            "over to ImageNet-pretrained DeiTs; the paper's claims are neither confirmed nor refuted by it."
        )
    lines += [
        "",
        "Files: `runs.csv` (every run), `summary.csv`, `accuracy_vs_gflops.png`, `config.json` (exact "
        "configuration and command lines), `environment.json`.",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, cfg: StudyConfig, summary: list[dict[str, Any]]) -> bool:
    """Top-1 vs GFLOPs (fine-tuned, and no fine-tune) as PNG; False if matplotlib is missing."""
    fig = _common.new_figure(figsize=(12, 4.8))
    if fig is None:
        return False
    axes = fig.subplots(1, 2, sharey=False)
    ref = next(s for s in summary if s["variant"] == "unpruned")
    styles = {}
    for v in cfg.variants:
        if v.criterion == "renyi":
            styles[v.label] = dict(marker="o", linestyle="-")
        else:
            styles[v.label] = dict(marker="s", linestyle="--")
    for ax, key, title in (
        (axes[0], "top1_mean", "fine-tuned with pruning (mean ± std over seeds)"),
        (axes[1], "top1_no_finetune", "base model pruned at test time only"),
    ):
        for v in cfg.variants:
            pts = sorted((s for s in summary if s["variant"] == v.label), key=lambda s: s["gflops"])
            if not pts:
                continue
            xs, ys = [p["gflops"] for p in pts], [p[key] for p in pts]
            if key == "top1_mean" and all(not math.isnan(p["top1_std"]) for p in pts):
                ax.errorbar(
                    xs, ys, yerr=[p["top1_std"] for p in pts], label=v.label, capsize=2, **styles[v.label]
                )
            else:
                ax.plot(xs, ys, label=v.label, **styles[v.label])
        ax.plot(
            [ref["gflops"]],
            [ref[key]],
            marker="*",
            markersize=14,
            color="black",
            linestyle="none",
            label="unpruned",
        )
        ax.set_xlabel("GFLOPs per image (fvcore)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{cfg.name}: Fashion-MNIST test top-1 vs GFLOPs, keep rates {', '.join(map(_fmt, cfg.keep_rates))}",
        fontsize=11,
    )
    _common.save_figure(fig, path, dpi=110)
    return True


def write_outputs(out: Path, cfg: StudyConfig, rows, summary, base_history, commands, env) -> None:
    """Write every result file of the study to ``out`` (atomically, one file at a time)."""
    out.mkdir(parents=True, exist_ok=True)
    _common.write_csv(rows, out / "runs.csv", RUN_COLUMNS, digits=10)  # enough to re-summarize exactly
    _common.write_csv(summary, out / "summary.csv", SUMMARY_COLUMNS)
    saved = {"config": asdict(cfg), "commands": commands, "base_history": base_history}
    write_json(out / "config.json", saved, nan=None)
    write_json(out / "environment.json", env, nan=None)
    plot(out / "accuracy_vs_gflops.png", cfg, summary)
    atomic_write_bytes(out / "results.md", markdown(cfg, summary, base_history, env).encode("utf-8"))


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return ""


def _environment(cfg: StudyConfig) -> dict[str, Any]:
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


def _config_from_dict(d: dict[str, Any]) -> StudyConfig:
    """The :class:`StudyConfig` that ``config.json`` holds (also one written before the study called
    ``train`` directly: variants with their ``options``, augmentations as command-line options)."""
    d = dict(d)
    d["variants"] = tuple(
        Variant(**{k: v for k, v in v.items() if k != "options"} | {"alpha": _num(v["alpha"])})
        for v in d["variants"]
    )
    for key in ("seeds", "keep_rates"):
        d[key] = tuple(d[key])
    for key in ("base_augment", "finetune_augment"):
        d[key] = _augment_from_argv(d[key]) if isinstance(d[key], list) else dict(d[key])
    return StudyConfig(**d)


def _augment_from_argv(argv: list[str]) -> dict[str, Any]:
    """TrainConfig fields of ``renyi-prune train`` options (the augmentations of an older config.json)."""
    from renyi_prune.train import parse_train_args

    config = parse_train_args(argv)
    dests = [flag[2:].replace("-", "_") for flag in argv if flag.startswith("--")]
    return {dest: getattr(config, dest) for dest in dests}


def _num(text: Any) -> Any:
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return text
    return math.inf if text == "inf" else float(text)


def load_runs(path: Path) -> list[dict[str, Any]]:
    """``runs.csv`` back into the row dicts :func:`run_study` produced."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = dict(r)
            for key in ("alpha", "keep_rate", "top1", "top5", "eval_loss", "gflops", "eval_images_per_s",
                        "train_images_per_s", "wall_s"):  # fmt: skip
                row[key] = _num(r[key])
            row["seed"] = int(r["seed"]) if r["seed"] else ""
            row["finetuned"] = r["finetuned"] == "True"
            row["fuse_pruned"] = r["fuse_pruned"] == "True"
            rows.append(row)
    return rows


def rerender(out: Path) -> None:
    """Rewrite ``summary.csv``, ``results.md`` and the PNG of ``out`` from its ``runs.csv``, ``config.json``
    and ``environment.json`` (after a change of the report format; no run is repeated)."""
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    env = json.loads((out / "environment.json").read_text(encoding="utf-8"))
    cfg = _config_from_dict(saved["config"])
    rows = load_runs(out / "runs.csv")
    write_outputs(out, cfg, rows, summarize(rows, cfg), saved["base_history"], saved["commands"], env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        choices=sorted(CONFIGS),
        default="cpu-vit12-d64",
        help="study configuration (default: %(default)s)",
    )
    parser.add_argument("--smoke", action="store_true", help="= --config smoke, output to a temp dir")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: benchmarks/results/accuracy/<config>)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="override the fine-tuning seeds")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--workdir", type=Path, help="keep checkpoints here (default: a temp dir, deleted)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, = cores)")
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="DIR",
        help="only rewrite the summary, report and plot of a finished study from its runs.csv",
    )
    args = parser.parse_args(argv)
    if args.rerender is not None:
        rerender(args.rerender)
        print(f"rewrote {args.rerender}/summary.csv, results.md, accuracy_vs_gflops.png")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = CONFIGS["smoke" if args.smoke else args.config]
    if args.seeds:
        cfg = replace(cfg, seeds=tuple(args.seeds))
    if args.device:
        cfg = replace(cfg, device=args.device)
    out = args.out or ((SMOKE_DIR if args.smoke else RESULTS_DIR) / cfg.name)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and cfg.name != "smoke":
        print(
            "accuracy_study: TRITON_INTERPRET is set; the Triton interpreter makes this study take hours. "
            "Unset it for the eager CPU path.",
            file=sys.stderr,
        )
    print(
        f"accuracy study {cfg.name}: {len(cfg.variants)} variants x {len(cfg.keep_rates)} keep rates x "
        f"{len(cfg.seeds)} seeds -> {out}",
        flush=True,
    )
    result = run_study(cfg, out, args.workdir, log=lambda s: print(s, flush=True))
    print(
        f"wrote {out}/results.md, summary.csv, runs.csv, accuracy_vs_gflops.png, config.json, "
        f"environment.json ({result['wall_s'] / 60:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
