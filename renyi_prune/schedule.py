"""Keep-rate warm-up for fine-tuning with pruning (EViT's schedule).

EViT (Liang et al., ICLR 2022) fine-tunes with the keep rate held at 1 for the first epochs and then
lowered to the target along a half cosine; pruning from the first step with a low keep rate hurts
accuracy. :func:`keep_rate_warmup` gives the keep rate for a step; pass it to
:func:`renyi_prune.set_keep_rate` each step (or epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._validate import check_int, check_keep_rate

__all__ = ["keep_rate_warmup"]


def keep_rate_warmup(
    step: int,
    target: float | Sequence[float],
    ramp_steps: int,
    start_step: int = 0,
    initial: float = 1.0,
) -> float | list[float]:
    """Keep rate at ``step``: ``initial`` until ``start_step``, then a half cosine down to ``target``.

    r(step) = target + (initial − target) · (1 + cos(π t)) / 2 with t = (step − start_step) / ramp_steps
    clipped to [0, 1]. Steps may be iterations or epochs (any unit, used consistently).

    Args:
        step: current step (≥ 0).
        target: final keep rate in (0, 1], or one per pruning block (then a list is returned).
        ramp_steps: length of the cosine ramp (> 0).
        start_step: steps at ``initial`` before the ramp (≥ 0).
        initial: keep rate before the ramp (default 1.0 = no pruning).

    Returns:
        The keep rate (float), or a list matching ``target``.

    Raises:
        TypeError: a step count that is not an int, a keep rate that is not a number.
        ValueError: negative steps, ``ramp_steps`` ≤ 0, or a keep rate outside (0, 1].

    Example:
        >>> from renyi_prune import keep_rate_warmup
        >>> [round(keep_rate_warmup(s, 0.5, ramp_steps=4, start_step=2), 3) for s in range(8)]
        [1.0, 1.0, 1.0, 0.927, 0.75, 0.573, 0.5, 0.5]
    """
    check_int("step", step, 0)
    check_int("start_step", start_step, 0)
    check_int("ramp_steps", ramp_steps, 1)
    is_schedule = isinstance(target, (list, tuple))
    targets = [check_keep_rate(r, "target keep rate") for r in (target if is_schedule else [target])]
    initial = check_keep_rate(initial, "initial keep rate")
    t = min(max((step - start_step) / ramp_steps, 0.0), 1.0)
    weight = (1.0 + math.cos(math.pi * t)) / 2.0
    rates = [r + (initial - r) * weight for r in targets]
    return rates if is_schedule else rates[0]
