"""One generated sentence under each README results table that says what the numbers show, including
where the Rényi criterion loses. Pure functions of the table's numbers (no hand-typed claims).

* :func:`accuracy_finding`: top-1 per (criterion, keep rate): the winner per keep rate, and the best Rényi
  α against EViT and against random;
* :func:`kernel_finding`: the fused kernel's time against SDPA and the eager reference;
* :func:`e2e_finding`: Rényi's images/s against EViT's and random's over models and keep rates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

RENYI_PREFIX = "renyi"


def _rates_text(rates: Iterable[float]) -> str:
    return ", ".join(f"{r:g}" for r in sorted(rates, reverse=True))


def _span(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def _compare(name: str, gaps: Mapping[float, float], everywhere: str) -> str:
    """How the best Rényi row compares with ``name``: gaps = Rényi − name per keep rate, in points.

    Example:
        >>> _compare("evit", {0.9: 0.0, 0.7: 1.5, 0.3: -2.0}, "at every keep rate")
        'above evit at r = 0.7, level with evit at r = 0.9 and below evit at r = 0.3 (by 2.0 points)'
    """
    below = {r: -g for r, g in gaps.items() if g < 0}
    above = {r: g for r, g in gaps.items() if g > 0}
    level = [r for r, g in gaps.items() if g == 0]
    if len(below) == len(gaps):
        return f"below {name} {everywhere} (by {_span(list(below.values()))} points)"
    if len(above) == len(gaps):
        return f"above {name} {everywhere} (by {_span(list(above.values()))} points)"
    if len(level) == len(gaps):
        return f"level with {name} {everywhere}"
    parts = []
    if above:
        parts.append(f"above {name} at r = {_rates_text(above)}")
    if level:
        parts.append(f"level with {name} at r = {_rates_text(level)}")
    if below:
        parts.append(f"below {name} at r = {_rates_text(below)} (by {_span(list(below.values()))} points)")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def accuracy_finding(top1: Mapping[tuple[str, float], float], what: str = "top-1") -> str:
    """The finding of an accuracy table: ``top1[(criterion, keep_rate)]`` in %, one row per criterion
    (Rényi rows named ``renyi α=...``; ``evit`` and ``random`` compared when present).

    Example:
        >>> table = {("renyi α=1", 0.7): 70.0, ("renyi α=2", 0.7): 71.0, ("evit", 0.7): 72.5,
        ...          ("random", 0.7): 70.5, ("renyi α=1", 0.5): 66.0, ("evit", 0.5): 65.0,
        ...          ("random", 0.5): 60.0}
        >>> accuracy_finding(table)
        'Finding: the highest top-1 is evit at r = 0.7, renyi α=1 at r = 0.5. The best Rényi α is above evit at r = 0.5 and below evit at r = 0.7 (by 1.5 points); it is above random at every keep rate (by 0.5–6.0 points).'
    """  # noqa: E501
    rates = sorted({r for _, r in top1}, reverse=True)
    winners: dict[str, list[float]] = {}
    for rate in rates:
        row = {c: v for (c, r), v in top1.items() if r == rate and not math.isnan(v)}
        if row:
            winners.setdefault(max(row, key=row.__getitem__), []).append(rate)
    text = (
        "Finding: the highest "
        + what
        + " is "
        + ", ".join(f"{name} at r = {_rates_text(rs)}" for name, rs in winners.items())
    )
    best_renyi = {}
    for rate in rates:
        values = [v for (c, r), v in top1.items() if r == rate and c.startswith(RENYI_PREFIX)]
        if values:
            best_renyi[rate] = max(values)
    comparisons = []
    for rival in ("evit", "random"):
        gaps = {r: best_renyi[r] - top1[(rival, r)] for r in best_renyi if (rival, r) in top1}
        if gaps:
            comparisons.append(_compare(rival, gaps, "at every keep rate"))
    if comparisons:
        text += ". The best Rényi α is " + "; it is ".join(comparisons)
    return text + "."


def kernel_finding(ratios_sdpa: Sequence[float], ratios_eager: Sequence[float]) -> str:
    """The finding of a kernel table from the fused op's time over SDPA's and over the eager reference's
    (one ratio per shape; NaN entries are skipped).

    Example:
        >>> kernel_finding([1.05, 1.2, 1.31], [0.1, 0.25])
        'Finding: the fused kernel takes 1.05–1.31× the time of SDPA (median 1.20×), which returns no entropy, and 0.10–0.25× the time of the eager reference.'
    """  # noqa: E501
    sdpa = [r for r in ratios_sdpa if not math.isnan(r)]
    eager = [r for r in ratios_eager if not math.isnan(r)]
    parts = []
    if sdpa:
        median = statistics.median(sdpa)
        parts.append(
            f"{_span(sdpa, '{:.2f}')}× the time of SDPA (median {median:.2f}×), which returns no entropy"
        )
    if eager:
        parts.append(f"{_span(eager, '{:.2f}')}× the time of the eager reference")
    return ("Finding: the fused kernel takes " + ", and ".join(parts) + ".") if parts else ""


def e2e_finding(ratios: Mapping[str, Sequence[float]]) -> str:
    """The finding of an end-to-end table: ``ratios[rival]`` = the images/s ratios of the Rényi rows to the
    rival (``evit``, ``random``) at the same model and keep rate (the CSV's ``x_evit``/``x_random``:
    per-round paired on the CPU), over models, keep rates and α.

    Example:
        >>> e2e_finding({"evit": [0.95, 1.0078], "random": [0.96]})
        'Finding: Rényi runs at 0.95–1.01× the images/s of evit (slower in 1 of 2 cases) and 0.96× the images/s of random (slower in 1 of 1 case).'
    """  # noqa: E501
    parts = []
    for rival, values in ratios.items():
        values = [x for x in values if not math.isnan(x)]
        if values:
            slower = sum(x < 1 for x in values)
            case = "case" if len(values) == 1 else "cases"
            span = _span(values, "{:.2f}")
            parts.append(f"{span}× the images/s of {rival} (slower in {slower} of {len(values)} {case})")
    return ("Finding: Rényi runs at " + " and ".join(parts) + ".") if parts else ""
