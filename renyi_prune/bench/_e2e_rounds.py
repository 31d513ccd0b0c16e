"""Round-robin timing of the end-to-end benchmark (:mod:`renyi_prune.bench.e2e`), the CPU default.

Timing one configuration after another lets the machine's drift (frequency, other processes, memory
placement) fall between configurations: on a 2-core VM two sequential runs of the same comparison
differed by 13 % in EViT's own images/s. Here every timed run is a *round*: each checked (configuration,
keep rate) of one model is patched in turn onto the same model and timed once (``iters`` back-to-back
calls), the order rotated by one each round, so that drift hits every configuration alike. A row's
images/s are the median of its rounds, and its ratios (``speedup_vs_unpruned``, ``x_evit``,
``x_random``) the median of the per-round ratios (:func:`renyi_prune._timing.paired_ratio`), as the demo's
speed-ups are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._timing import Timing
from .._timing import time_calls as time_model
from ._e2e_output import ROUND_KEY, rate_columns
from ._e2e_setup import Config, CorrectnessError, _recorded_error, apply_config, config_label

__all__ = ["Entry", "time_round_robin"]


@dataclass
class Entry:
    """One checked (configuration, keep rate) of a model and its row, to be timed in rounds."""

    config: Config
    rate: float
    row: dict
    alpha: float = 1.0
    times: list[float] = field(default_factory=list)
    iters: int = 1


def time_round_robin(run, entries: list[Entry]) -> None:
    """Time ``entries`` of ``run`` (:class:`~renyi_prune.bench._e2e_model.ModelRun`) in
    ``run.timing["repeats"]`` rounds, then fill each row's timing columns and :data:`ROUND_KEY`.

    Each round patches every entry onto ``run.model`` in turn (rotated order) and times ``iters`` calls
    (one on the CPU by default, or about ``run_ms`` of calls; the warm-up was the entry's check forward).
    An entry that fails (out of memory) gets its row's ``error`` and leaves the later rounds.
    """
    s, timing = run.settings, run.timing
    live = list(entries)
    for r in range(timing["repeats"]):
        start = r % max(len(live), 1)
        for entry in live[start:] + live[:start]:
            if not _time_once(run, entry, timing):
                live.remove(entry)
        run.log(f"  round {r + 1}/{timing['repeats']} timed ({len(live)} configurations)")
    for entry in live:
        t = Timing(tuple(entry.times), entry.iters)
        entry.row.update(rate_columns(t, s.batch), **{ROUND_KEY: t})
        row, label = entry.row, config_label(entry.config, entry.alpha)
        run.log(f"  {label} r={entry.rate:g}: {row['images_per_s']:.1f} images/s (median of {t.repeats} "
                f"round(s), IQR {row['images_per_s_iqr']:.3g})")  # fmt: skip


def _time_once(run, entry: Entry, timing: dict) -> bool:
    """Patch ``entry`` onto the model and append one timed run; False (row's ``error`` set) on a failure."""
    s = run.settings
    try:
        apply_config(run.model, entry.config, entry.rate, entry.alpha, s.prune_blocks)
        times, entry.iters = time_model(lambda: run.forward(run.model), run.device, 1, timing["run_ms"], 0.0,
                                        warmup_calls=0)  # fmt: skip
    except CorrectnessError:
        raise
    except Exception as exc:
        entry.row["error"] = _recorded_error(exc, False)
        run.log(f"  {config_label(entry.config, entry.alpha)} r={entry.rate:g}: {entry.row['error']}")
        return False
    entry.times.append(times[0])
    return True
