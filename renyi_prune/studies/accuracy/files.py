"""The study's result files: :func:`write_outputs`, :func:`load_runs` and :func:`rerender`.

``runs.csv`` (one row per run), ``summary.csv`` (mean ± std over seeds), ``results.md``,
``accuracy_vs_gflops.png``, ``config.json`` and ``environment.json``, each written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from ..._io import atomic_write_bytes, write_json
from ...bench import _common
from .config import StudyConfig, config_from_dict, num
from .plots import plot
from .report import RUN_COLUMNS, SUMMARY_COLUMNS, markdown, summarize

__all__ = ["load_runs", "rerender", "write_outputs"]

_NUMBERS = ("alpha", "keep_rate", "top1", "top5", "eval_loss", "gflops", "eval_images_per_s",
            "train_images_per_s", "wall_s")  # fmt: skip


def write_outputs(
    out: Path,
    cfg: StudyConfig,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    base_history: list[dict[str, Any]],
    commands: dict[str, Any],
    env: dict[str, Any],
) -> None:
    """Write every result file of the study to ``out`` (created if missing; atomically, one file at a
    time); the PNG is skipped without matplotlib.

    Raises:
        OSError: ``out`` cannot be created or written.

    Example:
        >>> write_outputs(Path("out"), cfg, rows, summary, history, commands, env)  # doctest: +SKIP
        >>> sorted(p.name for p in Path("out").iterdir())  # doctest: +SKIP
        ['accuracy_vs_gflops.png', 'config.json', 'environment.json', 'results.md', 'runs.csv', 'summary.csv']
    """
    out.mkdir(parents=True, exist_ok=True)
    _common.write_csv(rows, out / "runs.csv", RUN_COLUMNS, digits=10)  # enough to re-summarize exactly
    _common.write_csv(summary, out / "summary.csv", SUMMARY_COLUMNS)
    saved = {"config": dataclasses.asdict(cfg), "commands": commands, "base_history": base_history}
    write_json(out / "config.json", saved, nan=None)
    write_json(out / "environment.json", env, nan=None)
    plot(out / "accuracy_vs_gflops.png", cfg, summary)
    atomic_write_bytes(out / "results.md", markdown(cfg, summary, base_history, env).encode("utf-8"))


def load_runs(path: Path) -> list[dict[str, Any]]:
    """``runs.csv`` back into the row dicts :func:`~.run.run_study` produced.

    Raises:
        OSError: ``path`` cannot be read.
        KeyError: a column is missing.

    Example:
        >>> rows = load_runs(Path("benchmarks/results/accuracy/cpu-vit12-d64/runs.csv"))  # doctest: +SKIP
        >>> rows[0]["variant"], rows[0]["finetuned"]  # doctest: +SKIP
        ('unpruned', False)
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = dict(r)
            for key in _NUMBERS:
                row[key] = num(r[key])
            row["seed"] = int(r["seed"]) if r["seed"] else ""
            row["finetuned"] = r["finetuned"] == "True"
            row["fuse_pruned"] = r["fuse_pruned"] == "True"
            rows.append(row)
    return rows


def rerender(out: Path) -> None:
    """Rewrite ``summary.csv``, ``results.md`` and the PNG of ``out`` from its ``runs.csv``, ``config.json``
    and ``environment.json`` (after a change of the report format; no run is repeated).

    Raises:
        OSError: a file of ``out`` is missing or unwritable.

    Example:
        >>> rerender(Path("benchmarks/results/accuracy/cpu-vit12-d64"))  # doctest: +SKIP
    """
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    env = json.loads((out / "environment.json").read_text(encoding="utf-8"))
    cfg = config_from_dict(saved["config"])
    rows = load_runs(out / "runs.csv")
    write_outputs(out, cfg, rows, summarize(rows, cfg), saved["base_history"], saved["commands"], env)
