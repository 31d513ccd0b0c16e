"""Reading and formatting for ``readme_tables.py``: the benchmark kinds (:data:`BENCH_KINDS`), the latest
result of each (:func:`latest_bench`), the accuracy studies (:func:`accuracy_studies`), and the cell
formatters shared by the tables (times in ms, GFLOPs per image, dates in UTC).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
#: Subfolder of the results holding one folder per accuracy study (not a device).
ACCURACY_DIR = "accuracy"
#: What the accuracy study writes and this script reads.
ACCURACY_FILES = ("summary.csv", "runs.csv", "environment.json", "config.json", "results.md")


@dataclass(frozen=True)
class BenchKind:
    """One benchmark output: its CSV file name (as ``renyi-prune bench`` names it) and a title."""

    filename: str
    title: str
    table: str  # "kernel" or "e2e"


#: Benchmark kinds in README order (file names: ``kernel.default_out_path`` / ``e2e.default_out_path``).
BENCH_KINDS: tuple[BenchKind, ...] = (
    BenchKind("kernel_fwd.csv", "Kernel, forward", "kernel"),
    BenchKind("kernel_fwdbwd.csv", "Kernel, forward + backward", "kernel"),
    BenchKind("e2e.csv", "End to end (paper Table 3, speed)", "e2e"),
    BenchKind("e2e_384px.csv", "End to end, 384 px", "e2e"),
    BenchKind("e2e_compile.csv", "End to end, `torch.compile`", "e2e"),
)


def to_num(text: str | None) -> float:
    """A CSV cell as a float; blank or unparsable is NaN.

    Example:
        >>> to_num("0.5"), to_num(""), to_num("n/a")
        (0.5, nan, nan)
    """
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _date(text: str | None) -> _dt.datetime:
    """An ISO 8601 date as an aware datetime (UTC if it has no zone); the earliest one if unparsable."""
    try:
        d = _dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    return d if d.tzinfo else d.replace(tzinfo=_dt.timezone.utc)


def _is_gpu(device: str) -> bool:
    return bool(device) and not device.lower().startswith("cpu")


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV as dicts of strings (pandas; blank cells are ``""``, no NaN); ``[]`` for
    an empty file."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return []
    return frame.to_dict("records")


@dataclass(frozen=True)
class BenchResult:
    path: Path
    rows: list[dict[str, str]]

    @property
    def date(self) -> _dt.datetime:
        return max(_date(r.get("date")) for r in self.rows)

    @property
    def device(self) -> str:
        return self.rows[0].get("device", "")


def latest_bench(results_dir: Path, filename: str) -> BenchResult | None:
    """The latest non-empty ``<results_dir>/<device-slug>/<filename>`` (GPU before CPU, then by date)."""
    found = []
    for path in sorted(Path(results_dir).glob(f"*/{filename}")):
        if path.parent.name == ACCURACY_DIR:
            continue
        rows = read_csv(path)
        if rows:
            found.append(BenchResult(path, rows))
    return max(found, key=lambda r: (_is_gpu(r.device), r.date), default=None)


@dataclass(frozen=True)
class AccuracyResult:
    folder: Path
    summary: list[dict[str, str]]
    runs: list[dict[str, str]]
    env: dict
    config: dict

    @property
    def date(self) -> _dt.datetime:
        return _date(self.env.get("date"))

    @property
    def name(self) -> str:
        return self.config.get("name") or self.folder.name


def accuracy_studies(results_dir: Path) -> list[AccuracyResult]:
    """Every complete study under ``<results_dir>/accuracy/``, latest first (GPU before CPU, then date)."""
    out = []
    for folder in sorted((Path(results_dir) / ACCURACY_DIR).glob("*/")):
        if not all((folder / f).is_file() for f in ACCURACY_FILES):
            continue
        summary = read_csv(folder / "summary.csv")
        env = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("config", {})
        if summary:
            out.append(AccuracyResult(folder, summary, read_csv(folder / "runs.csv"), env, config))
    return sorted(out, key=lambda s: (_is_gpu(s.env.get("device", "")), s.date), reverse=True)


def fmt_sig(value: float, digits: int = 3) -> str:
    """``digits`` significant digits without exponent for values ≥ 1e-3 (whole numbers from 10**digits);
    NaN is ``–``.

    Example:
        >>> fmt_sig(0.123456), fmt_sig(1234.5), fmt_sig(math.nan)
        ('0.123', '1234', '–')
    """
    if math.isnan(value):
        return "–"
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def fmt_alpha(text: str) -> str:
    """A CSV's α cell as the project writes α in tables (:func:`renyi_prune.config.format_alpha`); blank
    or unparsable as ``–``.

    Example:
        >>> fmt_alpha("2.0"), fmt_alpha("inf"), fmt_alpha("")
        ('2', '∞', '–')
    """
    from renyi_prune.config import format_alpha

    a = to_num(text)
    return format_alpha(None if math.isnan(a) else a, style="label")


def fmt_date(d: _dt.datetime) -> str:
    return d.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def rel_link(path: Path, link_root: Path) -> str:
    """``path`` relative to ``link_root`` with ``/`` separators (a Markdown link target)."""
    return Path(os.path.relpath(path, link_root)).as_posix()


def unique_values(rows: Sequence[dict[str, str]], key: str) -> list[str]:
    """The distinct non-empty values of column ``key`` in first-seen order."""
    return list(dict.fromkeys(r.get(key, "") for r in rows if r.get(key, "") != ""))


def md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub Markdown table by :meth:`pandas.DataFrame.to_markdown`, cells exactly as given."""
    import pandas as pd

    frame = pd.DataFrame(list(body), columns=list(header), dtype=object)
    return frame.to_markdown(index=False, tablefmt="github", disable_numparse=True).splitlines()


def error_cell(row: dict[str, str]) -> str:
    """A short cell for a row that has an error instead of timings (``OOM``, ``compile failed``)."""
    return row["error"].split(":", 1)[0].strip() or "error"


def source_line(result: BenchResult, link_root: Path, keys: Sequence[str]) -> str:
    """``Device ... · torch ... · commit ... · date · full results`` of a benchmark CSV."""
    r0 = result.rows[0]
    parts = [f"**{result.device}**"] + [f"{k} {r0[k]}" for k in keys if r0.get(k)]
    if r0.get("git_commit"):
        parts.append(f"commit `{r0['git_commit']}`")
    parts.append(fmt_date(result.date))
    link = f"[full results]({rel_link(result.path, link_root)})"
    png = result.path.with_suffix(".png")
    if png.is_file():
        link += f" ([plot]({rel_link(png, link_root)}))"
    return " · ".join(parts + [link])
