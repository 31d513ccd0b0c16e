"""Output of the end-to-end benchmark (:mod:`renyi_prune.bench.e2e`): speed-up ratios, the CSV (pandas),
the printed table, the issue-5 target lines and the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .._timing import Timing, paired_ratio
from . import _common
from ._e2e_setup import CPU_TARGET, CSV_COLUMNS, TARGET, Settings

#: Printed above the table of a ``--smoke`` run and in its plot's title: its numbers are no results.
SMOKE_NOTE = (
    "SMOKE RUN - a tiny model input, batch and repeats, usually on the CPU: it checks that the benchmark "
    "runs; these numbers are not results (run without --smoke on a GPU for those)"
)


def rate_columns(t: Timing, batch: int) -> dict:
    """The timing columns of one row: images/s of the median run, its p20/p80 and IQR; ms per batch of the
    median run, its p20/p80, IQR, min and max; the timed runs and the calls per run.

    Example:
        >>> cols = rate_columns(Timing((10.0, 20.0, 40.0)), batch=2)
        >>> cols["images_per_s"], cols["ms_per_batch"], cols["repeats"], cols["ms_min"]
        (100.0, 20.0, 3, 10.0)
    """
    tp = t.throughput(batch)
    return dict(
        images_per_s=tp["median"],
        images_per_s_p20=tp["p20"],  # the 20th percentile of throughput is the 80th of time
        images_per_s_p80=tp["p80"],
        images_per_s_iqr=tp["iqr"],
        ms_per_batch=t.median,
        ms_p20=t.p20,
        ms_p80=t.p80,
        ms_iqr=t.iqr,
        ms_min=t.min,
        ms_max=t.max,
        repeats=t.repeats,
        iters=t.iters,
    )


def summary_lines(rows: Sequence[dict], settings: Settings, smoke: bool = False) -> list[str]:
    """The lines printed above the table: the stamp, what the columns mean and, for a smoke run,
    :data:`SMOKE_NOTE`.

    Example:
        >>> summary_lines([], Settings(gflops=False), smoke=True)[-1].startswith("SMOKE RUN")
        True
    """
    from ._e2e_setup import has_fvcore

    first = rows[0] if rows else {}
    versions = " ".join(f"{k} {first.get(k, '')}" for k in ("torch", "triton", "timm"))
    gflops_note = "" if has_fvcore() or not settings.gflops else " - blank: fvcore not installed"
    lines = [
        f"device: {first.get('device', '')}  {versions}  commit {first.get('git_commit', '') or '?'}  "
        f"{first.get('date', '')}",
        f"batch {settings.batch}, {first.get('dtype', '')}, compile={first.get('compile', '')}; images/s = "
        "median of the timed runs (p20/p80 = its 20th/80th percentiles, IQR = p75 - p25); GFLOPs per image, "
        f"fvcore (1 multiply-add = 1 FLOP){gflops_note}",
    ]
    return [*lines, SMOKE_NOTE] if smoke else lines


#: Row key of a round-robin row's :class:`~renyi_prune._timing.Timing` of its rounds (not a CSV column;
#: :mod:`._e2e_rounds`).
ROUND_KEY = "rounds"


def _ratio(row: dict, ref: dict) -> float:
    """images/s of ``row`` over ``ref``'s: per-round paired (:func:`renyi_prune._timing.paired_ratio`)
    when both were timed in the same rounds."""
    if ROUND_KEY in row and ROUND_KEY in ref:
        return paired_ratio(ref[ROUND_KEY], row[ROUND_KEY])
    return row["images_per_s"] / ref["images_per_s"]


def _add_ratios(rows: list[dict]) -> None:
    """``speedup_vs_unpruned``, ``x_evit`` and ``x_random`` (images/s ratios to the unpruned model, and
    to evit and random at the same keep rate) within one model's rows; rows timed in the same rounds
    get the median of their per-round ratios (:func:`renyi_prune._timing.paired_ratio`)."""

    def key(r, rate):
        return (r["model"], r["img_size"], r["compile"], r["batch"], r["dtype"], rate)

    ok = [r for r in rows if not r["error"]]
    unpruned = {key(r, None): r for r in ok if r["config"] == "unpruned"}
    by_config = {c: {key(r, r["keep_rate"]): r for r in ok if r["config"] == c} for c in ("evit", "random")}
    for r in ok:
        if key(r, None) in unpruned:
            r["speedup_vs_unpruned"] = _ratio(r, unpruned[key(r, None)])
        for name, refs in by_config.items():
            ref = refs.get(key(r, r["keep_rate"]))
            if r["config"] != "unpruned" and ref is not None:
                r[f"x_{name}"] = _ratio(r, ref)


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """Write atomically: a temp file in the target directory, then ``os.replace``."""
    _common.write_csv(rows, path, CSV_COLUMNS)


#: The printed table: (row key, header, format of a value).
TABLE_COLUMNS = [
    ("model", "model", "{}"), ("img_size", "px", "{}"), ("config", "config", "{}"),
    ("impl", "impl", "{}"), ("compile", "compile", "{}"), ("keep_rate", "r", "{:g}"), ("alpha", "α", "{:g}"),
    ("images_per_s", "img/s", "{:.1f}"), ("images_per_s_p20", "p20", "{:.1f}"),
    ("images_per_s_p80", "p80", "{:.1f}"), ("images_per_s_iqr", "IQR", "{:.3g}"),
    ("ms_per_batch", "ms/batch", "{:.4g}"),
    ("gflops", "GFLOPs", "{:.3f}"), ("speedup_vs_unpruned", "speedup", "{:.3f}"),
    ("x_evit", "x_evit", "{:.3f}"), ("x_random", "x_random", "{:.3f}"), ("tokens_kept", "tokens", "{}"),
    ("error", "error", "{}"),
]  # fmt: skip


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a plain-text table (:func:`renyi_prune.bench._common.format_table`: pandas/tabulate).

    Example:
        >>> row = dict(model="deit_tiny_patch16_224", img_size=64, config="evit", impl="sdpa", compile="off",
        ...            keep_rate=0.5, images_per_s=12.0, error="")
        >>> format_table([row]).splitlines()[0].split()[:4]
        ['model', 'px', 'config', 'impl']
    """
    return _common.format_table(rows, TABLE_COLUMNS)


def _target_rows(rows: Sequence[dict], target: dict) -> list[dict]:
    """The ``renyi`` rows without an error at ``target``'s model and keep rate (rows of a run or its CSV)."""
    return [
        r
        for r in rows
        if r["model"] == target["model"] and r["config"] == "renyi" and not r.get("error")
        and math.isclose(float(r["keep_rate"]), target["keep_rate"])
    ]  # fmt: skip


def target_checks(rows: Sequence[dict]) -> list[tuple[dict, float, float, bool]]:
    """The ``renyi`` rows of :data:`TARGET`'s model and keep rate, each with its images/s ratio to
    EViT, its speed-up over unpruned and whether both meet the target. Rows may come from a run
    (numbers) or from its CSV (strings); rows with an error are skipped.

    Example:
        >>> from renyi_prune.bench.e2e import TARGET, target_checks
        >>> row = {"model": TARGET["model"], "config": "renyi", "keep_rate": "0.7", "error": "",
        ...        "x_evit": "0.95", "speedup_vs_unpruned": "1.1"}
        >>> [(xe, met) for _, xe, _, met in target_checks([row])]
        [(0.95, False)]
    """
    checks = []
    for r in _target_rows(rows, TARGET):
        xe, sp = float(r["x_evit"]), float(r["speedup_vs_unpruned"])
        checks.append((r, xe, sp, xe >= TARGET["x_evit"] and sp >= TARGET["speedup"]))
    return checks


def target_summary(rows: Sequence[dict]) -> list[str]:
    """Lines comparing the ``renyi`` rows of DeiT-S at r = 0.7 with the issue-5 targets.

    Example:
        >>> from renyi_prune.bench.e2e import TARGET, target_summary
        >>> row = {"model": TARGET["model"], "config": "renyi", "keep_rate": 0.7, "error": None,
        ...        "x_evit": 1.2, "speedup_vs_unpruned": 1.7, "img_size": 224, "compile": False}
        >>> target_summary([row])[0].endswith(": MET")
        True
    """
    return [
        f"target (DeiT-S r=0.7, {r['img_size']} px, compile={r['compile']}): renyi = {xe:.3f}x evit "
        f"(target >= {TARGET['x_evit']:.2f}; paper 0.89), {sp:.3f}x unpruned (target >= "
        f"{TARGET['speedup']:.2f}; paper 1.56): {'MET' if ok else 'NOT MET'}"
        for r, xe, sp, ok in target_checks(rows)
    ]


def cpu_target_checks(rows: Sequence[dict]) -> list[tuple[dict, float, float, bool]]:
    """The ``renyi`` rows of :data:`CPU_TARGET`'s model and keep rate (one per α), each with its images/s
    ratios to evit and random and whether both meet the issue-15 CPU targets; rows from a run or its CSV
    (strings); rows with an error or without both ratios are skipped.

    Example:
        >>> row = {"model": CPU_TARGET["model"], "config": "renyi", "keep_rate": "0.7", "error": "",
        ...        "x_evit": "0.99", "x_random": "0.94"}
        >>> [(xe, xr, met) for _, xe, xr, met in cpu_target_checks([row])]
        [(0.99, 0.94, False)]
    """
    checks = []
    for r in _target_rows(rows, CPU_TARGET):
        xe, xr = (float(r.get(k) or math.nan) for k in ("x_evit", "x_random"))
        if not (math.isnan(xe) or math.isnan(xr)):
            checks.append((r, xe, xr, xe >= CPU_TARGET["x_evit"] and xr >= CPU_TARGET["x_random"]))
    return checks


def cpu_target_summary(rows: Sequence[dict]) -> list[str]:
    """Lines comparing the ``renyi`` rows of DeiT-S at r = 0.7 with the issue-15 CPU targets
    (:func:`cpu_target_checks`).

    Example:
        >>> row = {"model": CPU_TARGET["model"], "config": "renyi", "keep_rate": 0.7, "error": "",
        ...        "alpha": 2.0, "x_evit": 0.99, "x_random": 0.96, "threads": 2}
        >>> cpu_target_summary([row])[0].split(": ")[-1]
        'MET'
    """
    return [
        f"CPU target (DeiT-S r=0.7, alpha {float(r['alpha']):g}, {r['threads']} threads): renyi = {xe:.3f}x "
        f"evit (target >= {CPU_TARGET['x_evit']:.2f}), {xr:.3f}x random (target >= "
        f"{CPU_TARGET['x_random']:.2f}): {'MET' if met else 'NOT MET'}"
        for r, xe, xr, met in cpu_target_checks(rows)
    ]


def plot_path(csv_path: Path) -> Path:
    """The PNG written next to a CSV: same name, ``.png``."""
    return Path(csv_path).with_suffix(".png")


def write_plot(rows: Sequence[dict], path: Path, smoke: bool = False) -> bool:
    """Images/s against keep rate, one line per configuration (p20–p80 bars), the unpruned model as a
    dashed line; one panel per model and image size; a ``smoke`` run's title says so. Returns False
    (nothing written) if matplotlib is missing or no row has a timing."""
    rows = [r for r in rows if not r["error"] and not math.isnan(r["images_per_s"])]
    if not rows:
        return False
    panels = list(dict.fromkeys((r["model"], r["img_size"]) for r in rows))
    fig = _common.new_figure(figsize=(5.5 * len(panels), 4.5))
    if fig is None:
        return False
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (model, img) in zip(axes, panels, strict=True):
        sel = [r for r in rows if (r["model"], r["img_size"]) == (model, img)]
        for name in dict.fromkeys(r["config"] for r in sel):
            pr = sorted((r for r in sel if r["config"] == name), key=lambda r: r["keep_rate"])
            if not pr:
                continue
            if name == "unpruned":
                ax.axhline(pr[0]["images_per_s"], color="black", linestyle="--", linewidth=1,
                           label=f"unpruned ({pr[0]['images_per_s']:.0f})")  # fmt: skip
                continue
            ys = [r["images_per_s"] for r in pr]
            err = [[y - r["images_per_s_p20"] for y, r in zip(ys, pr, strict=True)],
                   [r["images_per_s_p80"] - y for y, r in zip(ys, pr, strict=True)]]  # fmt: skip
            ax.errorbar([r["keep_rate"] for r in pr], ys, yerr=err, marker="o", capsize=3,
                        label=f"{name} ({pr[0]['impl']})")  # fmt: skip
        ax.set_xticks(sorted({r["keep_rate"] for r in sel if r["config"] != "unpruned"}))
        ax.set_title(f"{model} @ {img} px", fontsize=10)
        ax.set_xlabel("keep rate r")
        ax.set_ylabel("images/s (median, p20-p80)")
        ax.invert_xaxis()  # more pruning to the right
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    r0 = rows[0]
    stamp = (
        f"{r0['device']}  batch {r0['batch']}  {r0['dtype']}  compile={r0['compile']}  torch {r0['torch']}  "
        f"triton {r0['triton']}  timm {r0['timm']}  {r0['git_commit']}"
    )
    fig.suptitle(("SMOKE RUN, not results: " if smoke else "") + stamp, fontsize=9)
    _common.save_figure(fig, path)
    return True


def default_out_path(
    device: str, smoke: bool = False, compile: bool = False, img_size: int | None = None
) -> Path:
    """``bench-results/<device-slug>/e2e[_<img>px][_compile].csv``, relative to the current directory; with
    ``smoke`` the same name under the system temp dir, so that smoke numbers never land among results.

    Example:
        >>> default_out_path("cpu", compile=True).as_posix().split("/")[::2]
        ['bench-results', 'e2e_compile.csv']
    """
    name = "e2e" + (f"_{img_size}px" if img_size else "") + ("_compile" if compile else "")
    return _common.output_path(f"{name}.csv", device, smoke)
