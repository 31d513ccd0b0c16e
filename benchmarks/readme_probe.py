"""The README's "Linear probe" results: the committed ``renyi-prune probe`` studies under
``benchmarks/results/probe/<name>/`` (``results.csv``, ``config.json``, ``accuracy_vs_gflops.png``), one
compact table each (linear-probe top-1 per criterion and keep rate), its plot and its finding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from readme_findings import accuracy_finding
from readme_sources import fmt_alpha, fmt_sig, md_table, read_csv, rel_link, to_num

PROBE_DIR = "probe"
CHOSEN = "(α chosen on val)"


@dataclass(frozen=True)
class ProbeResult:
    """One committed probe study: its folder, rows of ``results.csv`` and ``config.json``."""

    name: str
    folder: Path
    rows: list[dict[str, str]]
    config: dict


def probe_studies(results_dir: Path) -> list[ProbeResult]:
    """Every folder under ``<results_dir>/probe/`` holding ``results.csv`` and ``config.json``, by name."""
    root = Path(results_dir) / PROBE_DIR
    folders = sorted(p.parent for p in root.glob("*/results.csv") if (p.parent / "config.json").is_file())
    return [
        ProbeResult(f.name, f, read_csv(f / "results.csv"), json.loads((f / "config.json").read_text()))
        for f in folders
    ]


def _row_name(row: dict[str, str]) -> str:
    """``renyi α=2``, ``renyi (α chosen on val)``, ``evit``, ``unpruned``."""
    if row["alpha_chosen_on_val"] == "True":
        return row["criterion"] if CHOSEN in row["criterion"] else f"{row['criterion']} {CHOSEN}"
    return row["criterion"] + (f" α={fmt_alpha(row['alpha'])}" if row["alpha"] else "")


def _cell(row: dict[str, str]) -> str:
    """Linear top-1 with its 95 % interval; the α chosen on validation after it."""
    lo, hi = to_num(row["top1_linear_lo"]), to_num(row["top1_linear_hi"])
    text = f"{to_num(row['top1_linear']):.1f} ({lo:.1f}–{hi:.1f})"
    return text + (f", α={fmt_alpha(row['alpha'])}" if row["alpha_chosen_on_val"] == "True" else "")


def _table(rows: list[dict[str, str]]) -> tuple[list[str], list[list[str]], dict[tuple[str, float], float]]:
    rates = sorted({to_num(r["keep_rate"]) for r in rows if r["criterion"] != "unpruned"}, reverse=True)
    header = ["criterion", "unpruned"] + [f"r = {r:g}" for r in rates]
    cells: dict[str, dict[float, str]] = {}
    top1: dict[tuple[str, float], float] = {}
    for r in rows:
        name, rate = _row_name(r), to_num(r["keep_rate"])
        cells.setdefault(name, {})[rate] = _cell(r)
        if r["criterion"] != "unpruned" and r["alpha_chosen_on_val"] != "True":
            top1[(name, rate)] = to_num(r["top1_linear"])
    body = [[name, by_rate.get(1.0, "") if name == "unpruned" else ""] + [by_rate.get(r, "") for r in rates]
            for name, by_rate in cells.items()]  # fmt: skip
    gflops = [
        "GFLOPs per image",
        fmt_sig(min(to_num(r["gflops"]) for r in rows if r["criterion"] == "unpruned")),
    ]
    for rate in rates:
        values = [to_num(r["gflops"]) for r in rows if to_num(r["keep_rate"]) == rate]
        lo, hi = fmt_sig(min(values)), fmt_sig(max(values))
        gflops.append(lo if lo == hi else f"{lo}–{hi}")
    return header, body + [gflops], top1


def _precision(cfg: dict) -> str:
    """`` in bf16 autocast`` for a study whose forwards ran under autocast, else nothing (fp32)."""
    dtype = cfg.get("dtype", "fp32")
    return "" if dtype == "fp32" else f" in {dtype} autocast"


def render_probe(study: ProbeResult, link_root: Path) -> list[str]:
    """The Markdown of one probe study: what was run, the table, the plot, the finding."""
    c, cfg = study.config, study.config["config"]
    header, body, top1 = _table(study.rows)
    versions = " · ".join(
        f"{k} {v}" for k, v in c["versions"].items() if k in ("torch", "timm", "scikit-learn")
    )
    timing = c["timing"]
    ran = (
        f"Ran in {c.get('wall_time_s', math.nan) / 60:.0f} min" if c.get("forward_images") else "Cached rerun"
    )
    lines = [
        f"Study `{study.name}`: {c['backbone']['name']} at {cfg['img_size']} px{_precision(cfg)}, "
        f"training-free, on {c['data']['name']}: linear probe (C = {c['probes']['C']:g} by "
        f"{c['probes']['cv_folds']}-fold cross-validation) fitted on {c['sizes']['fit']:,} unpruned train "
        f"images, tested on {c['sizes']['test']:,} test images, unpruned and pruned at blocks "
        f"{', '.join(str(b + 1) for b in c['prune_blocks'])} (1-based). {ran} on "
        f"{timing['device']} ({timing.get('cpu', '?')}, {timing['threads']} threads) · {versions} · "
        f"[full results: k-NN, images/s, kept tokens]({rel_link(study.folder / 'results.md', link_root)})",
        "",
        "Linear-probe top-1 (%) with its 95 % bootstrap interval; *α chosen on val*: α picked per keep rate "
        "on a validation split of the train images, then tested.",
        "",
    ]
    lines += md_table(header, body)
    png = study.folder / "accuracy_vs_gflops.png"
    if png.is_file():
        lines += ["", f"![Accuracy vs GFLOPs, {study.name}]({rel_link(png, link_root)})"]
    return lines + ["", accuracy_finding(top1, "training-free linear-probe top-1")]
