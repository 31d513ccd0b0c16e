"""Output of the kernel benchmark (:mod:`renyi_prune.bench.kernel`): the CSV (pandas), the printed table
and the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .._timing import Timing
from ..config import format_alpha
from . import _common
from ._kernel_setup import CSV_COLUMNS, PROVIDERS


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    _common.write_csv(rows, path, CSV_COLUMNS)


def time_columns(t: Timing, flops: float) -> dict:
    """The CSV's timing columns of one provider (ms per call) and its TFLOP/s at the median."""
    return dict(ms_median=t.median, ms_p20=t.p20, ms_p80=t.p80, ms_iqr=t.iqr, ms_min=t.min, ms_max=t.max,
                repeats=t.repeats, tflops=flops / (t.median * 1e-3) / 1e12)  # fmt: skip


def add_speed_ratios(rows: list[dict]) -> None:
    """``x_sdpa`` and ``x_eager``: each row's median time over SDPA's / the eager reference's."""
    times = {r["provider"]: r["ms_median"] for r in rows if not r["error"]}
    for r in rows:
        if r["error"]:
            continue
        for ref_p, col in (("sdpa", "x_sdpa"), ("eager", "x_eager")):
            if ref_p in times:
                r[col] = r["ms_median"] / times[ref_p]


#: The printed table: (row key, header, format of a value).
TABLE_COLUMNS = [
    ("provider", "provider", "{}"), ("impl", "impl", "{}"), ("dtype", "dtype", "{}"),
    ("alpha", "alpha", "{:g}"), ("B", "B", "{}"), ("H", "H", "{}"), ("N", "N", "{}"), ("D", "D", "{}"),
    ("ms_median", "ms", "{:.4g}"), ("ms_p20", "p20", "{:.4g}"), ("ms_p80", "p80", "{:.4g}"),
    ("ms_iqr", "IQR", "{:.2g}"), ("tflops", "TFLOP/s", "{:.3g}"), ("peak_mem_MiB", "MiB", "{:.1f}"),
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


#: Printed above the table of a ``--smoke`` run and in its plot's title: its numbers are no results.
SMOKE_NOTE = (
    "SMOKE RUN - tiny shapes, few calls, on the CPU or the Triton interpreter: it checks that the benchmark "
    "runs; these numbers are not results (run without --smoke on a GPU for those)"
)


def summary_lines(rows: Sequence[dict], mode: str, smoke: bool = False) -> list[str]:
    """The lines printed above the table: the stamp, what the columns count, the fused op's gradient
    errors (``fwdbwd``) and, for a smoke run, :data:`SMOKE_NOTE`.

    Example:
        >>> summary_lines([], "fwd", smoke=True)[-1].startswith("SMOKE RUN")
        True
    """
    first = rows[0] if rows else {}
    lines = [
        f"device: {first.get('device', '')}  torch {first.get('torch', '')}  triton {first.get('triton', '')}"
        f"  commit {first.get('git_commit', '') or '?'}  {first.get('date', '')}"
    ]
    spread = "ms = median of the timed calls (p20/p80 percentiles, IQR = p75 - p25)"
    if mode == "fwd":
        lines.append(f"{spread}; TFLOP/s counts 4*B*H*N^2*D (QK^T and PV, 2 FLOPs per multiply-add); "
                     "MiB = peak extra CUDA memory")  # fmt: skip
    else:
        lines.append(f"mode fwdbwd: {spread} per forward+backward call; TFLOP/s counts 3.5 * 4*B*H*N^2*D "
                     "(forward + backward at 2.5x forward, FlashAttention's convention); MiB = peak extra "
                     "CUDA memory")  # fmt: skip
        for r in rows:
            if r.get("grad_max_rel_err") is not None and r["provider"] == "fused":
                alpha = format_alpha(r["alpha"], style="file")
                lines.append(f"fused dq, dk, dv vs SDPA ({r['dtype']} alpha={alpha} B={r['B']} N={r['N']}): "
                             f"worst max |diff| / max |sdpa| = {r['grad_max_rel_err']:.3g}")  # fmt: skip
    return [*lines, SMOKE_NOTE] if smoke else lines


def plot_path(csv_path: Path) -> Path:
    """The PNG written next to a CSV: same name, ``.png``."""
    return Path(csv_path).with_suffix(".png")


def write_plot(rows: Sequence[dict], path: Path, smoke: bool = False) -> bool:
    """Kernel time (ms, log scale, p20–p80 bars) and TFLOP/s against N, one line per provider, one
    column of panels per (dtype, α); x ticks name N and its batch B; a ``smoke`` run's title says so.
    Returns False (and writes nothing) if matplotlib is missing or no row has a timing."""
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
        ax_ms.set_title(f"{mode}: {dtype}, alpha={format_alpha(alpha, style='file')}, H={H}, D={D}")
        ax_ms.set_yscale("log")
        ax_ms.set_ylabel("ms per call (median, p20-p80)")
        ax_tf.set_ylabel("TFLOP/s")
        ax_tf.set_xlabel("N (tokens), batch B")
        ax_ms.legend(fontsize=8)
    stamp = (
        f"{rows[0]['device']}  torch {rows[0]['torch']}  triton {rows[0]['triton']}  {rows[0]['git_commit']}"
    )
    fig.suptitle(("SMOKE RUN, not results: " if smoke else "") + stamp, fontsize=9)
    _common.save_figure(fig, path)
    return True
