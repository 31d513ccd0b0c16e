"""The one timer of the benchmarks and the demo: ``triton.testing.do_bench`` on CUDA, one CPU wall-clock
timer (:func:`cpu_times`) elsewhere, and the statistics of the timed repeats (:class:`Timing`: median,
interquartile range, min and max, 20th/80th percentiles).

A shared helper: it imports torch (and, lazily, ``triton.testing`` on CUDA), nothing of the package.

Example:
    >>> t = measure(lambda: sum(range(100)), "cpu", repeats=5)
    >>> len(t.times_ms), t.iters, t.min <= t.q1 <= t.median <= t.q3 <= t.max
    (5, 1, True)
    >>> Timing((4.0, 1.0, 2.0, 3.0)).median, Timing((4.0, 1.0, 2.0, 3.0)).iqr
    (2.5, 1.5)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "Timing",
    "cpu_times",
    "cuda_times",
    "measure",
    "paired_ratio",
    "quantiles",
    "time_calls",
    "time_cpu",
    "time_cuda",
]


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.2, 0.8)) -> tuple[float, ...]:
    """The quantiles ``qs`` of ``values`` (linear interpolation); default: median, 20th and 80th percentile.

    Example:
        >>> quantiles([1.0, 2.0, 3.0, 4.0, 5.0])
        (3.0, 1.8, 4.2)
    """
    t = torch.tensor(list(values), dtype=torch.float64)
    return tuple(torch.quantile(t, torch.tensor(list(qs), dtype=torch.float64)).tolist())


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call of each timed repeat (``times_ms``) and the calls per repeat (``iters``),
    with their statistics: :attr:`median`, :attr:`q1`/:attr:`q3` and :attr:`iqr`, :attr:`min`,
    :attr:`max`, :attr:`p20`/:attr:`p80`."""

    times_ms: tuple[float, ...]
    iters: int = 1

    def __post_init__(self) -> None:
        if not self.times_ms:
            raise ValueError("Timing needs at least one timed repeat")
        object.__setattr__(self, "times_ms", tuple(float(t) for t in self.times_ms))

    @property
    def repeats(self) -> int:
        return len(self.times_ms)

    @property
    def median(self) -> float:
        return quantiles(self.times_ms, (0.5,))[0]

    @property
    def q1(self) -> float:
        """25th percentile (ms)."""
        return quantiles(self.times_ms, (0.25,))[0]

    @property
    def q3(self) -> float:
        """75th percentile (ms)."""
        return quantiles(self.times_ms, (0.75,))[0]

    @property
    def iqr(self) -> float:
        """Interquartile range q3 − q1 (ms)."""
        return self.q3 - self.q1

    @property
    def p20(self) -> float:
        return quantiles(self.times_ms, (0.2,))[0]

    @property
    def p80(self) -> float:
        return quantiles(self.times_ms, (0.8,))[0]

    @property
    def min(self) -> float:
        return min(self.times_ms)

    @property
    def max(self) -> float:
        return max(self.times_ms)

    def throughput(self, items: float) -> dict[str, float]:
        """``items`` per second at the median call and its spread: ``median``, ``iqr`` (per second at q1
        minus at q3), ``min``/``max`` (at the slowest/fastest repeat), ``p20``/``p80`` (the 20th percentile
        of throughput is the 80th of time).

        Example:
            >>> Timing((100.0, 200.0, 400.0)).throughput(10)["median"]
            50.0
        """
        per = 1e3 * items
        return dict(
            median=per / self.median,
            iqr=per / self.q1 - per / self.q3,
            min=per / self.max,
            max=per / self.min,
            p20=per / self.p80,
            p80=per / self.p20,
        )


def paired_ratio(reference: Timing, timing: Timing) -> float:
    """How many times faster ``timing``'s calls are than ``reference``'s. Timed round-robin (one run of
    each per round, so the same number of repeats), the median over rounds of the per-round ratio
    (reference time / this time): the two runs of a round share the machine's load, and their ratio is
    steadier than the ratio of the medians, which is the answer when the repeats do not pair up (e.g.
    ``do_bench`` on CUDA).

    Example:
        >>> paired_ratio(Timing((200.0, 300.0, 1200.0)), Timing((100.0, 200.0, 400.0)))  # per round 2, 1.5, 3
        2.0
        >>> paired_ratio(Timing((200.0, 300.0)), Timing((100.0, 200.0, 400.0)))  # 250 / 200
        1.25
    """
    if reference.repeats == timing.repeats:
        return statistics.median(r / t for r, t in zip(reference.times_ms, timing.times_ms, strict=True))
    return reference.median / timing.median


def cpu_times(
    fn: Callable[[], object],
    reps: int,
    warmup_ms: float = 100.0,
    run_ms: float = 0.0,
    *,
    warmup_calls: int = 1,
) -> tuple[list[float], int]:
    """Milliseconds per call of ``reps`` timed runs on the CPU (wall clock), and the calls per run.

    Warm-up: at least ``warmup_calls`` calls and at least ``warmup_ms`` of calls, discarded. With
    ``run_ms`` > 0, one call is timed to choose ``iters`` = calls per run so that a run lasts about
    ``run_ms`` (else ``iters`` = 1); each run is ``iters`` back-to-back calls, divided by ``iters``. CPU
    numbers are for smoke tests only; on small VMs torch's spin-waiting OpenMP workers can add ~8 ms per
    parallel op (run with ``OMP_WAIT_POLICY=PASSIVE``, see benchmarks/README.md).

    Example:
        >>> times, iters = cpu_times(lambda: sum(range(100)), reps=3, warmup_ms=0.0)
        >>> len(times), iters, all(t >= 0 for t in times)
        (3, 1, True)
    """
    t_end = time.perf_counter() + warmup_ms * 1e-3
    for _ in range(max(0, warmup_calls)):
        fn()
    while time.perf_counter() < t_end:
        fn()
    iters = 1
    if run_ms > 0:
        t0 = time.perf_counter()
        fn()
        one_ms = (time.perf_counter() - t0) * 1e3
        iters = max(1, math.ceil(run_ms / max(one_ms, 1e-3)))
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) * 1e3 / iters)
    return times, iters


def cuda_times(
    fn: Callable[[], object], reps: int | None = None, warmup_ms: float = 25.0, run_ms: float | None = None
) -> list[float]:
    """Milliseconds of each timed call by ``triton.testing.do_bench`` (CUDA events, L2 flushed before
    each call, ``warmup_ms`` of warm-up calls discarded).

    The timed budget: ``reps`` × ``run_ms`` ms when both are given; else about ``reps`` calls (one call is
    timed first); else do_bench's default 100 ms.
    """
    import triton.testing

    rep_ms = 100.0
    if reps is not None and run_ms:
        rep_ms = reps * run_ms
    elif reps is not None:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        rep_ms = max(1.0, reps * (time.perf_counter() - t0) * 1e3)
    return [float(t) for t in triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")]


def time_calls(
    fn: Callable[[], object],
    device: str,
    reps: int,
    run_ms: float,
    warmup_ms: float,
    *,
    warmup_calls: int = 1,
) -> tuple[list[float], int]:
    """The timer: milliseconds per call of each timed run, and the calls per run.

    CUDA: :func:`cuda_times` (do_bench; one call per run, ``reps`` × ``run_ms`` ms of calls, or about
    ``reps`` calls when ``run_ms`` ≤ 0); CPU: :func:`cpu_times` (``warmup_calls``: its warm-up calls).

    Example:
        >>> times, iters = time_calls(lambda: None, "cpu", reps=2, run_ms=0.0, warmup_ms=0.0)
        >>> len(times), iters
        (2, 1)
    """
    if str(device).startswith("cuda"):
        return cuda_times(fn, reps, max(warmup_ms, 1.0), run_ms if run_ms > 0 else None), 1
    return cpu_times(fn, reps, warmup_ms, run_ms, warmup_calls=warmup_calls)


def measure(
    fn: Callable[[], object],
    device: str,
    repeats: int,
    run_ms: float = 0.0,
    warmup_ms: float = 0.0,
    *,
    warmup_calls: int = 1,
) -> Timing:
    """:func:`time_calls` as a :class:`Timing` (the repeats and their statistics)."""
    times, iters = time_calls(fn, device, repeats, run_ms, warmup_ms, warmup_calls=warmup_calls)
    return Timing(tuple(times), iters)


def time_cpu(fn: Callable[[], object], reps: int, warmup_ms: float = 100.0) -> Timing:
    """``reps`` single calls on the CPU (:func:`cpu_times`), as a :class:`Timing`."""
    return Timing(tuple(cpu_times(fn, reps, warmup_ms)[0]))


def time_cuda(fn: Callable[[], object], reps: int | None) -> Timing:
    """do_bench's calls (:func:`cuda_times`): about ``reps`` calls, or do_bench's default 100 ms for
    ``None``, as a :class:`Timing`."""
    return Timing(tuple(cuda_times(fn, reps)))
