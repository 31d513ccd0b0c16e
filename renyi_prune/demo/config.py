"""The rows of the demo's comparison: the unpruned model (``None``) and one
:class:`renyi_prune.PruneConfig` per criterion, keep rate and (for Rényi) α.

The criteria come from the registry (:func:`renyi_prune.available_criteria`), each with its registered
default parameters (``colln`` order 2, ``headvar``/``headmad`` source ``cls``, ``random`` seed 0), plus
EViT with its own token fusion (``evit+fusion``, :attr:`renyi_prune.PruneConfig.name`). ``shannon`` is
left out: it is ``renyi`` at α = 1, which the demo compares already (``--alphas 1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..config import DEFAULT_PRUNE_BLOCKS, FUSION_SUFFIX, PruneConfig
from ..criteria import available_criteria, get_criterion

__all__ = [
    "DEFAULT_REPEATS",
    "FUSED_CRITERIA",
    "SAME_AS_RENYI",
    "build_configs",
    "check_criteria",
    "criterion_names",
    "describe",
    "label",
]

#: Criteria the demo also compares with EViT's inattentive-token fusion (Liang et al., ICLR 2022).
FUSED_CRITERIA = ("evit",)
#: Registered criteria the demo leaves out because its ``renyi`` rows cover them (``shannon`` = α 1).
SAME_AS_RENYI = ("shannon",)
#: Timed forward passes per configuration (``run_demo(repeats=...)``, ``--repeats``): 5 rather than 3. On a
#: loaded 2-core VM (20 rounds of 4 configurations, resampled), the 10-90 % range of a per-round speed-up
#: narrowed by up to a fifth from 3 to 5 passes (evit r = 0.5: 0.93-2.65x to 0.99-2.27x), for an estimated
#: 20 s more on an idle 2-core machine; the report shows the spread (IQR) of the passes either way.
DEFAULT_REPEATS = 5


def criterion_names() -> list[str]:
    """The demo's ``--criteria`` names, in report order: ``renyi`` first, then every other registered
    criterion (sorted), each of :data:`FUSED_CRITERIA` followed by its ``+fusion`` variant.

    Example:
        >>> from renyi_prune.demo import criterion_names
        >>> criterion_names()[:4]
        ['renyi', 'colln', 'evit', 'evit+fusion']
        >>> "shannon" in criterion_names()
        False
    """
    names = ["renyi"]
    for name in available_criteria():
        if name not in ("renyi", *SAME_AS_RENYI):
            names += [name, name + FUSION_SUFFIX] if name in FUSED_CRITERIA else [name]
    return names


def describe(name: str) -> str:
    """One line for a demo criterion: the registry's description, its default parameters, the fusion.

    Raises:
        ValueError: ``name`` is not a registered criterion (with or without ``+fusion``).

    Example:
        >>> from renyi_prune.demo import describe
        >>> describe("colln").endswith("; order=2.0")
        True
        >>> describe("evit+fusion").endswith("(EViT fusion)")
        True
    """
    config = PruneConfig.from_name(name)
    crit = get_criterion(config.criterion)
    text = crit.description
    settings = ", ".join(f"{k}={v!r}" for k, v in crit.params.items() if k not in ("alpha", "backend"))
    if settings:
        text += f"; {settings}"
    if config.fuse_pruned:
        text += "; pruned patches fused into one extra token weighted by CLS attention (EViT fusion)"
    return text


def check_criteria(criteria: Iterable[str] | str) -> list[str]:
    """The requested demo criteria, deduplicated, in :func:`criterion_names` order.

    Raises:
        ValueError: none given, or a name that is not one of :func:`criterion_names` (the message
            names it and lists the choices).

    Example:
        >>> from renyi_prune.demo import check_criteria
        >>> check_criteria(["random", "renyi", "random"])
        ['renyi', 'random']
    """
    names = [criteria] if isinstance(criteria, str) else list(criteria)
    choices = criterion_names()
    for name in names:
        if name not in choices:
            hint = " (it is renyi at α = 1: use --alphas 1)" if name in SAME_AS_RENYI else ""
            raise ValueError(f"unknown criterion {name!r}{hint}; choose from {', '.join(choices)}")
    if not names:
        raise ValueError(f"need at least one criterion (from {', '.join(choices)})")
    return [name for name in choices if name in names]


def label(config: PruneConfig | None) -> str:
    """The row's name in the report: ``"unpruned"`` or :attr:`PruneConfig.label` (``"renyi α=2 r=0.5"``).

    Example:
        >>> from renyi_prune import PruneConfig
        >>> from renyi_prune.demo import label
        >>> label(None), label(PruneConfig.from_name("evit+fusion", keep_rate=0.5))
        ('unpruned', 'evit+fusion r=0.5')
    """
    return "unpruned" if config is None else config.label


def build_configs(
    keep_rates: Sequence[float],
    alphas: Sequence[float],
    criteria: Iterable[str] | None = None,
    prune_blocks: Sequence[int] = DEFAULT_PRUNE_BLOCKS,
) -> list[PruneConfig | None]:
    """Unpruned (``None``), then for each keep rate: Rényi with every α, then the other criteria (in
    :func:`criterion_names` order, only those in ``criteria``; default: all).

    Raises:
        ValueError: no keep rate, no α while ``renyi`` is requested, a keep rate outside (0, 1], an α
            that is negative or NaN, a bad pruning block, or an unknown / no criterion.

    Example:
        >>> import math
        >>> from renyi_prune.demo import build_configs, label
        >>> configs = build_configs([0.7, 0.5], [1.0, math.inf], criteria=["evit", "renyi"])
        >>> len(configs)  # unpruned + 2 keep rates x (2 alphas + evit)
        7
        >>> [label(c) for c in configs[:4]]
        ['unpruned', 'renyi α=1 r=0.7', 'renyi α=∞ r=0.7', 'evit r=0.7']
        >>> build_configs([1.5], [1.0])
        Traceback (most recent call last):
            ...
        ValueError: keep_rate must be in (0, 1], got 1.5
    """
    keep_rates, alphas = [float(r) for r in keep_rates], [float(a) for a in alphas]
    criteria = check_criteria(criterion_names() if criteria is None else criteria)
    if not keep_rates:
        raise ValueError("need at least one keep rate")
    if "renyi" in criteria and not alphas:
        raise ValueError("need at least one alpha for the renyi criterion")
    for a in alphas:  # checked even when renyi is not compared
        PruneConfig(alpha=a)
    configs: list[PruneConfig | None] = [None]
    for r in dict.fromkeys(keep_rates):
        for name in criteria:
            common = {"keep_rate": r, "prune_blocks": tuple(prune_blocks)}
            if name == "renyi":
                configs += [PruneConfig("renyi", alpha=a, **common) for a in dict.fromkeys(alphas)]
            else:
                configs.append(PruneConfig.from_name(name, **common))
    return configs
