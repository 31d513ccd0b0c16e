"""The numbers and the report of an accuracy study: :func:`summarize` (``summary.csv``) and
:func:`markdown` (``results.md``). Accuracies in %, GFLOPs per image (fvcore: 1 multiply-add = 1 FLOP).

Example:
    >>> _pm(71.234, 0.5), _pm(71.234, math.nan), _pm(math.nan, 1.0)
    ('71.23 ± 0.50', '71.23', '-')
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .config import StudyConfig, fmt

__all__ = ["RUN_COLUMNS", "SUMMARY_COLUMNS", "markdown", "summarize"]

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
    """One row per (variant, keep rate) of :func:`~.run.run_study`'s ``rows``: fine-tuned top-1 mean ±
    sample std over seeds, the no-fine-tune top-1, and the difference to the fine-tuned unpruned mean.

    Raises:
        KeyError: ``rows`` lack the unpruned job or a column.

    Example:
        >>> from renyi_prune.studies.accuracy import CONFIGS
        >>> row = {"variant": "unpruned", "criterion": "none", "alpha": None, "fuse_pruned": False,
        ...        "keep_rate": 1.0, "gflops": 0.1, "top5": 99.0, "eval_images_per_s": 100.0}
        >>> rows = [{**row, "finetuned": False, "top1": 80.0}, {**row, "finetuned": True, "top1": 82.0},
        ...         {**row, "finetuned": True, "top1": 84.0}]
        >>> (s,) = summarize(rows, CONFIGS["smoke"])
        >>> s["top1_no_finetune"], s["top1_mean"], s["n_seeds"], s["delta_vs_unpruned"]
        (80.0, 83.0, 2, 0.0)
    """
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
            f"r = {fmt(rate)} ({gf} GFLOPs vs {ref['gflops']:.4f} unpruned): fine-tuned top-1 from "
            f"{worst['top1_mean']:.2f}% ({worst['variant']}) to {best['top1_mean']:.2f}% ({best['variant']})"
            f"{spread}."
        )
        if best_renyi is not None:
            text += f" Best α: {fmt(best_renyi['alpha'])} ({best_renyi['top1_mean']:.2f}%)."
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
        "| criterion | " + " | ".join(f"r = {fmt(r)}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
        f"| unpruned (r = 1) | {unpruned} |" + " |" * (len(rates) - 1),
    ]
    for v in variants:
        cells = [by.get((v, r)) for r in rates]
        lines.append(f"| {v} | " + " | ".join(cell(c) if c else "-" for c in cells) + " |")
    return lines


def _intro(cfg: StudyConfig, base: dict[str, Any], env: dict[str, Any], tiny: bool) -> list[str]:
    """The report's opening paragraphs: what was run, and on which machine."""
    lines = (
        ["**Smoke run: these numbers only show that the pipeline works.**", ""] if cfg.name == "smoke" else []
    )
    caveat = (
        "A tiny from-scratch CPU study, not the paper's setting (ImageNet-1k, pretrained DeiT-S/B, 100 "
        "fine-tuning epochs at 224 px); its accuracies are not comparable to the paper's numbers. "
    )
    return lines + [
        f"**What this is.** {cfg.description}. "
        + (caveat if tiny else "")
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


def _caveats(cfg: StudyConfig, tiny: bool) -> list[str]:
    """The report's closing bullet points: what the numbers cannot show."""
    lines = [
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
    return lines


def markdown(
    cfg: StudyConfig, summary: list[dict[str, Any]], base_history: list[dict[str, Any]], env: dict[str, Any]
) -> str:
    """The ``results.md`` report of :func:`summarize`'s rows, the base model's history and ``env``
    (``environment.json``, with the wall times of the finished study).

    Raises:
        KeyError: ``summary`` has no unpruned row or ``env`` lacks a field.

    Example:
        >>> text = markdown(cfg, summarize(rows, cfg), history, env)  # doctest: +SKIP
        >>> text.splitlines()[0]  # doctest: +SKIP
        '# Accuracy study `smoke`'
    """
    by = {(s["variant"], s["keep_rate"]): s for s in summary}
    ref = by[("unpruned", 1.0)]
    tiny = cfg.name != "smoke" and "gpu" not in cfg.name
    lines = [f"# Accuracy study `{cfg.name}`", "", *_intro(cfg, base_history[-1], env, tiny)]
    table = functools.partial(_table, cfg.keep_rates, [v.label for v in cfg.variants], by)
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
    lines += _caveats(cfg, tiny)
    lines += [
        "",
        "Files: `runs.csv` (every run), `summary.csv`, `accuracy_vs_gflops.png`, `config.json` (exact "
        "configuration and command lines), `environment.json`.",
        "",
    ]
    return "\n".join(lines)
