"""How to prune: the one configuration type that :func:`renyi_prune.patch`, the demo, training, the
benchmarks and the studies share.

A :class:`PruneConfig` names a registered criterion (:func:`renyi_prune.available_criteria`) with its
parameters, the keep rate(s), the Rényi order(s) α, the pruning blocks and EViT's token fusion. It is
checked when made (criterion names, parameter names and defaults come from the criterion registry), so
that a bad setting fails before any model is touched; only what needs the model (block indices
within its depth, a CLS token for fusion) is checked by :func:`renyi_prune.patch`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._io import jsonable
from ._validate import check_alpha, check_flag, check_keep_rate, check_schedule, per_block
from .criteria import get_criterion

__all__ = ["DEFAULT_PRUNE_BLOCKS", "FUSION_SUFFIX", "PruneConfig", "format_alpha"]

#: The paper's pruning blocks 4, 7, 10 as 0-based indices (Aizawa & Igaue, arXiv 2604.03803, Sec. 3).
DEFAULT_PRUNE_BLOCKS = (3, 6, 9)
#: Appended to a criterion name for EViT's inattentive-token fusion, e.g. ``"evit+fusion"``.
FUSION_SUFFIX = "+fusion"


@dataclass(frozen=True)
class PruneConfig:
    """How a ViT prunes its patch tokens: criterion, keep rate(s), α(s), pruning blocks, fusion.

    Attributes:
        criterion: a registered criterion name (``renyi``, ``shannon``, ``evit``, ``colln``,
            ``headvar``, ``headmad``, ``random``, or one added by :func:`renyi_prune.register_criterion`).
        keep_rate: r in (0, 1], the fraction of the current patch tokens each pruning block keeps
            (k = ceil(r · (n − prefix))); one value, or one per pruning block in block order (a tuple).
        alpha: Rényi order α ≥ 0 (``math.inf`` allowed) for criteria with an ``alpha`` parameter; one
            value or one per pruning block; ``None`` = the criterion's default.
        prune_blocks: 0-based block indices, sorted on construction (default 3, 6, 9: the paper's
            blocks 4, 7, 10).
        fuse_pruned: merge each block's pruned patches into one token weighted by CLS attention
            (EViT's inattentive-token fusion, Liang et al., ICLR 2022).
        params: the criterion's other parameters (e.g. ``{"order": 3}`` for ``colln``, ``{"seed": 1}``
            for ``random``, ``{"backend": "eager"}`` for ``renyi``), a read-only mapping; only names
            the criterion declares are accepted.

    Raises:
        TypeError: a value of the wrong type (a block index that is not an int, a non-bool
            ``fuse_pruned``, a non-number keep rate or α), named in the message.
        ValueError: unknown criterion or parameter, α for a criterion without one, keep rate outside
            (0, 1], α < 0 or NaN, negative or repeated block index, no block, a schedule whose length
            is not the number of pruning blocks, or a value the criterion's own check rejects.

    Example:
        >>> import math
        >>> from renyi_prune import PruneConfig
        >>> c = PruneConfig(keep_rate=0.5, alpha=math.inf)
        >>> c.label, c.prune_blocks, dict(c.criterion_params)
        ('renyi α=∞ r=0.5', (3, 6, 9), {'alpha': inf, 'backend': 'auto'})
        >>> PruneConfig.from_name("evit+fusion", keep_rate=[0.7, 0.5, 0.3]).label
        'evit+fusion r=0.7/0.5/0.3'
        >>> PruneConfig("colln", params={"order": 4}).replace(keep_rate=0.9).label
        'colln order=4 r=0.9'
        >>> PruneConfig("evit", alpha=2.0)
        Traceback (most recent call last):
        ...
        ValueError: criterion 'evit' takes no alpha (got alpha=2.0)
    """

    criterion: str = "renyi"
    keep_rate: float | tuple[float, ...] = 0.7
    alpha: float | tuple[float, ...] | None = None
    prune_blocks: tuple[int, ...] = DEFAULT_PRUNE_BLOCKS
    fuse_pruned: bool = False
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        crit = get_criterion(self.criterion)
        blocks = _check_prune_blocks(self.prune_blocks)
        n = len(blocks)
        params = dict(self.params)
        if "alpha" in params:
            raise ValueError("give alpha as PruneConfig(alpha=...), not in params")
        unknown = set(params) - set(crit.params)
        if unknown:
            raise ValueError(
                f"criterion {crit.name!r} has no parameter(s) {sorted(unknown)}; "
                f"its parameters: {sorted(crit.params)}"
            )
        if self.alpha is not None and "alpha" not in crit.params:
            raise ValueError(f"criterion {crit.name!r} takes no alpha (got alpha={self.alpha!r})")
        values = {
            "prune_blocks": blocks,
            "keep_rate": check_schedule("keep_rate", self.keep_rate, n, check_keep_rate),
            "alpha": None if self.alpha is None else check_schedule("alpha", self.alpha, n, check_alpha),
            "fuse_pruned": check_flag("fuse_pruned", self.fuse_pruned),
            "params": MappingProxyType(params),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        crit.required(self.criterion_params)  # the criterion's own check of its parameter values

    @classmethod
    def from_name(cls, name: str, **fields: Any) -> PruneConfig:
        """A config from a criterion name, optionally with the fusion suffix (``"evit+fusion"``).

        Raises:
            ValueError: unknown criterion (the message lists the registered ones), or ``name`` ends
                in ``+fusion`` while ``fuse_pruned=False`` is passed.
        """
        if name.endswith(FUSION_SUFFIX):
            if fields.get("fuse_pruned", True) is not True:
                raise ValueError(f"{name!r} asks for fusion, but fuse_pruned={fields['fuse_pruned']!r}")
            fields["fuse_pruned"] = True
            name = name[: -len(FUSION_SUFFIX)]
        return cls(name, **fields)

    @property
    def name(self) -> str:
        """The criterion name with the fusion suffix, e.g. ``"evit+fusion"``; :meth:`from_name` reads it."""
        return self.criterion + (FUSION_SUFFIX if self.fuse_pruned else "")

    @property
    def criterion_params(self) -> Mapping[str, Any]:
        """All parameters of the criterion: its registered defaults, then :attr:`params`, then α (the
        first block's α when α is a schedule; :attr:`alphas` has one per block)."""
        merged = {**get_criterion(self.criterion).params, **self.params}
        if self.alpha is not None:
            merged["alpha"] = self.alphas[0]
        return MappingProxyType(merged)

    @property
    def block_params(self) -> tuple[Mapping[str, Any], ...]:
        """The criterion's parameters for each pruning block, in block order: :attr:`criterion_params`
        with that block's α (criteria with one). :func:`renyi_prune.patch` gives them to the
        criterion's ``setup`` hook (:meth:`renyi_prune.Criterion.block_params`).

        Example:
            >>> from renyi_prune import PruneConfig
            >>> [p["alpha"] for p in PruneConfig(alpha=(1.0, 2.0), prune_blocks=(3, 6)).block_params]
            [1.0, 2.0]
        """
        merged = {**get_criterion(self.criterion).params, **self.params}
        if "alpha" not in merged:
            return tuple(MappingProxyType(merged) for _ in self.prune_blocks)
        return tuple(MappingProxyType({**merged, "alpha": a}) for a in self.alphas)

    @property
    def keep_rates(self) -> tuple[float, ...]:
        """One keep rate per pruning block."""
        return per_block(self.keep_rate, len(self.prune_blocks))

    @property
    def alphas(self) -> tuple[float | None, ...]:
        """One α per pruning block (the criterion's default when unset; ``None`` if it has no α)."""
        alpha = get_criterion(self.criterion).params.get("alpha") if self.alpha is None else self.alpha
        return per_block(alpha, len(self.prune_blocks))

    @property
    def label(self) -> str:
        """One short line for logs and tables: name, α (criteria with one), other parameters, keep rate(s)."""
        text = self.name
        default = get_criterion(self.criterion).params
        if "alpha" in default:
            text += f" α={_fmt(default['alpha'] if self.alpha is None else self.alpha)}"
        text += "".join(f" {k}={_fmt(v)}" for k, v in self.params.items())
        return f"{text} r={_fmt(self.keep_rate)}"

    def replace(self, **changes: Any) -> PruneConfig:
        """A copy with ``changes`` (checked like a new config), e.g. ``config.replace(keep_rate=0.5)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists, α = ∞ as ``"inf"``); :meth:`from_dict` inverts it."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return jsonable({**fields, "params": dict(self.params)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruneConfig:
        """The config :meth:`to_dict` wrote (unknown keys raise ``TypeError``, as the constructor does)."""
        fields = {k: _from_json(v) for k, v in data.items() if k != "params"}
        fields["params"] = {k: _from_json(v) for k, v in data.get("params", {}).items()}
        return cls(**fields)


def _check_prune_blocks(prune_blocks: Any) -> tuple[int, ...]:
    """Sorted block indices: ints (Python or NumPy) ≥ 0, at least one, none repeated."""
    if isinstance(prune_blocks, (str, bytes)) or not isinstance(prune_blocks, Iterable):
        raise TypeError(f"prune_blocks must be an iterable of int block indices, got {prune_blocks!r}")
    indices = []
    for i in prune_blocks:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"prune block index {i!r} is not an int (it is a {type(i).__name__})")
        if i < 0:
            raise ValueError(f"prune block index {int(i)} is negative")
        indices.append(int(i))
    if not indices:
        raise ValueError("prune_blocks is empty: name at least one block (or do not patch the model)")
    if len(set(indices)) != len(indices):
        raise ValueError(f"prune_blocks has repeated indices: {indices}")
    return tuple(sorted(indices))


def format_alpha(alpha: float | None, *, style: str = "label") -> str:
    """α (or any order or rate) as the project writes it: ``f"{alpha:g}"``, α = ∞ as ``"∞"`` in labels and
    tables (``style="label"``) or as ``"inf"`` in file names, CSV cells and JSON-like text
    (``style="file"``); ``None`` (no α) as ``"–"``.

    Example:
        >>> import math
        >>> format_alpha(2.0), format_alpha(0.5), format_alpha(math.inf), format_alpha(math.inf, style="file")
        ('2', '0.5', '∞', 'inf')
        >>> format_alpha(None)
        '–'
    """
    if style not in ("label", "file"):
        raise ValueError(f"style must be 'label' or 'file', got {style!r}")
    if alpha is None:
        return "–"
    if alpha == math.inf:
        return "∞" if style == "label" else "inf"
    return f"{alpha:g}"


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return format_alpha(value)
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return math.inf if value == "inf" else value
