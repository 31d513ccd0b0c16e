"""Output of the kernel benchmark (:mod:`renyi_prune.bench.kernel`): the CSV (pandas), the printed table
and the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from . import _common
from ._kernel_setup import CSV_COLUMNS, PROVIDERS


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    _common.write_csv(rows, path, CSV_COLUMNS)


#: The printed table: (row key, header, format of a value).
TABLE_COLUMNS = [
    ("provider", "provider", "{}"), ("impl", "impl", "{}"), ("dtype", "dtype", "{}"),
    ("alpha", "alpha", "{:g}"), ("B", "B", "{}"), ("H", "H", "{}"), ("N", "N", "{}"), ("D", "D", "{}"),
    ("ms_median", "ms", "{:.4g}"), ("ms_p20", "p20", "{:.4g}"), ("ms_p80", "p80", "{:.4g}"),
    ("tflops", "TFLOP/s", "{:.3g}"), ("peak_mem_MiB", "MiB", "{:.1f}"),
    ("x_sdpa", "x_sdpa", "{:.3f}"), ("x_eager", "x_eager", "{:.3f}"), ("error", "error", "{}"),
]  # fmt: skip


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a plain-text table (:func:`renyi_prune.bench._common.format_table`: pandas/tabulate).

    Example:
        >>> row = dict(provider="sdpa", impl="torch-sdpa", dtype="fp32", alpha=1.0, N=197, ms_median=0.5)
        >>> format_table([row]).splitlines()[0].split()[:3]
        ['provider', 'impl', 'dtype']
    """
    return _common.format_table(rows, TABLE_COLUMNS)


def plot_path(csv_path: Path) -> Path:
    """The PNG written next to a CSV: same name, ``.png``."""
    return Path(csv_path).with_suffix(".png")


def write_plot(rows: Sequence[dict], path: Path) -> bool:
    """Kernel time (ms, log scale, p20–p80 bars) and TFLOP/s against N, one line per provider, one
    column of panels per (dtype, α); x ticks name N and its batch B. Returns False (and writes
    nothing) if matplotlib is missing or no row has a timing."""
    rows = [r for r in rows if not r.get("error") and not math.isnan(r.get("ms_median", math.nan))]
    if not rows:
        return False
    groups = sorted({(r["dtype"], r["alpha"]) for r in rows}, key=lambda g: (g[0], g[1]))
    fig = _common.new_figure(figsize=(5.0 * len(groups), 7.0))
    if fig is None:
        return False
    axes = fig.subplots(2, len(groups), squeeze=False)
    mode = rows[0]["mode"]
    for col, (dtype, alpha) in enumerate(groups):
        ax_ms, ax_tf = axes[0][col], axes[1][col]
        sel = [r for r in rows if (r["dtype"], r["alpha"]) == (dtype, alpha)]
        for provider in PROVIDERS:
            pr = sorted((r for r in sel if r["provider"] == provider), key=lambda r: (r["N"], r["B"]))
            if not pr:
                continue
            ns = [r["N"] for r in pr]
            med = [r["ms_median"] for r in pr]
            err = [[m - r["ms_p20"] for m, r in zip(med, pr, strict=True)],
                   [r["ms_p80"] - m for m, r in zip(med, pr, strict=True)]]  # fmt: skip
            label = f"{provider} ({pr[0]['impl']})"
            ax_ms.errorbar(ns, med, yerr=err, marker="o", capsize=3, label=label)
            ax_tf.plot(ns, [r["tflops"] for r in pr], marker="o", label=label)
        ticks = sorted({(r["N"], r["B"]) for r in sel})
        for ax in (ax_ms, ax_tf):
            ax.set_xticks([n for n, _ in ticks], [f"{n}\nB={b}" for n, b in ticks])
            ax.grid(True, alpha=0.3)
        H, D = sel[0]["H"], sel[0]["D"]
        ax_ms.set_title(f"{mode}: {dtype}, alpha={alpha:g}, H={H}, D={D}")
        ax_ms.set_yscale("log")
        ax_ms.set_ylabel("ms per call (median, p20-p80)")
        ax_tf.set_ylabel("TFLOP/s")
        ax_tf.set_xlabel("N (tokens), batch B")
        ax_ms.legend(fontsize=8)
    fig.suptitle(f"{rows[0]['device']}  torch {rows[0]['torch']}  triton {rows[0]['triton']}  "
                 f"{rows[0]['git_commit']}", fontsize=9)  # fmt: skip
    _common.save_figure(fig, path)
    return True
