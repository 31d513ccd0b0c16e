"""The criterion interface: one attention pass, then a score per token.

A pruning block runs :func:`run_attention`, which computes the block's attention output and only the
statistics the criterion declares in :attr:`Criterion.needs`; the criterion's ``score`` turns them
into one number per token, and :attr:`Criterion.keep` says which end survives.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F

from ..ops import attention_with_entropy

# the public names are re-exported (and listed in __all__) by renyi_prune.criteria

#: Statistics a criterion may ask of the attention pass.
NEEDS = frozenset({"entropy", "lse", "cls_attn"})


@dataclass(frozen=True)
class AttentionPass:
    """What a pruning block's attention pass produced; fields the criterion did not ask for are None.

    Made by :func:`run_attention`; a :class:`Criterion`'s ``score`` reads it.

    Example:
        >>> import torch
        >>> from renyi_prune import AttentionPass, get_criterion
        >>> q, k, v = torch.randn(3, 1, 2, 5, 16).unbind(0)
        >>> a = AttentionPass(q, k, scale=0.25, out=v, cls_attn=torch.softmax(torch.randn(1, 2, 5), -1))
        >>> get_criterion("evit").score(a, {}).shape  # head-mean CLS attention, one score per token
        torch.Size([1, 5])

    Attributes:
        q, k: queries and keys (B, H, N, D) after ``q_norm/k_norm``.
        scale: the logit scale.
        out: attention output (B, H, N, D).
        entropy: head-mean Rényi attention entropy (B, N), nats (``needs`` "entropy").
        lse: per-row log-sum-exp of the scaled logits (B, H, N) fp32 (``needs`` "lse").
        cls_attn: attention of the CLS token (token 0) to every token, per head, (B, H, N) fp32
            (``needs`` "cls_attn").
    """

    q: torch.Tensor
    k: torch.Tensor
    scale: float
    out: torch.Tensor
    entropy: torch.Tensor | None = None
    lse: torch.Tensor | None = None
    cls_attn: torch.Tensor | None = None


ScoreFn = Callable[[AttentionPass, Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class BlockContext:
    """Where a criterion's parameters are set up: one pruning block of one model.

    Attributes:
        index: the block's 0-based index in the model.
        device: the device of the model's parameters (e.g. for a ``torch.Generator``).

    Example:
        >>> import torch
        >>> from renyi_prune import BlockContext, get_criterion
        >>> params = get_criterion("random").block_params({"seed": 0}, BlockContext(3, torch.device("cpu")))
        >>> params["generator"].initial_seed()
        3
    """

    index: int
    device: torch.device


@dataclass(frozen=True)
class Criterion:
    """A token-importance criterion.

    Attributes:
        name: registry name, e.g. ``"renyi"``.
        keep: ``"lowest"`` or ``"highest"``: which scores survive pruning.
        needs: statistics of the attention pass the score uses (a subset of :data:`NEEDS`), or a
            function of the criterion's params returning that subset; the pass computes nothing
            else (no entropy → the SDPA path, no N×N matrix ever). See :meth:`required`.
        score: ``score(attention_pass, params) -> (B, N)``, one value per token of the block.
        params: the criterion's parameters and their defaults (e.g. ``{"alpha": 1.0}``); a
            ``patch(..., **kwargs)`` may override them, and only these names are accepted.
        description: one line with the source (paper).
        check: optional ``check(params)`` raising TypeError/ValueError (naming the value) for bad
            parameter values, so that :func:`renyi_prune.patch` fails at patch time, not in the
            first forward.
        setup: optional ``setup(params, context) -> params`` run once per pruning block when a model
            is patched (:class:`BlockContext`: block index, device), returning the parameters that
            block's ``score`` receives, e.g. ``random`` adds a ``torch.Generator`` seeded with
            ``seed + index``. Default: the params unchanged. See :meth:`block_params`.
        attention: optional ``attention(params) -> kwargs`` of :func:`run_attention` beyond
            ``needs`` (``alpha``, ``backend``), e.g. ``renyi`` passes its α. Default: none (α = 1,
            ``backend="auto"``). See :meth:`attention_kwargs`.
        deterministic: whether ``score`` gives the same result when run again on the same input; a
            criterion that draws random numbers is not, so a gradient checkpoint whose region starts
            before its block cannot replay the draw (:func:`renyi_prune.patch` raises then).

    A criterion is immutable; copies of a patched model share it, and pickles refer to it by name
    (so a pickled model needs the criterion registered where it is unpickled).

    Example:
        >>> from renyi_prune import Criterion
        >>> c = Criterion("cls_max", keep="highest", needs={"cls_attn"},
        ...               score=lambda attention_pass, params: attention_pass.cls_attn.amax(dim=1))
        >>> sorted(c.required(c.params))
        ['cls_attn']
        >>> Criterion("bad", keep="middle", needs=(), score=c.score)
        Traceback (most recent call last):
        ...
        ValueError: Criterion.keep must be 'lowest' or 'highest', got 'middle'
    """

    name: str
    keep: str
    needs: frozenset[str] | Callable[[Mapping[str, Any]], frozenset[str]]
    score: ScoreFn
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[Mapping[str, Any]], None] | None = None
    setup: Callable[[Mapping[str, Any], BlockContext], Mapping[str, Any]] | None = None
    attention: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Criterion.name must be a non-empty str, got {self.name!r}")
        if not callable(self.score):
            raise TypeError(f"Criterion.score must be callable, got {self.score!r}")
        for hook in ("check", "setup", "attention"):
            if getattr(self, hook) is not None and not callable(getattr(self, hook)):
                raise TypeError(f"Criterion.{hook} must be callable or None, got {getattr(self, hook)!r}")
        if not isinstance(self.deterministic, bool):
            raise TypeError(f"Criterion.deterministic must be a bool, got {self.deterministic!r}")
        if self.keep not in ("lowest", "highest"):
            raise ValueError(f"Criterion.keep must be 'lowest' or 'highest', got {self.keep!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if not callable(self.needs):
            object.__setattr__(self, "needs", frozenset(self.needs))
        self.required(self.params)

    def __reduce__(self) -> tuple[Callable[[str], Criterion], tuple[str]]:
        """Pickled by its registry name (its ``score`` may be a lambda): unpickling looks the name up.

        Raises:
            pickle.PicklingError: this object is not the one registered under its name.
        """
        if _REGISTRY.get(self.name) is not self:
            raise pickle.PicklingError(
                f"criterion {self.name!r} is not the registered one; register it (register_criterion) "
                "before pickling a model patched with it"
            )
        return get_criterion, (self.name,)

    def __copy__(self) -> Criterion:
        return self  # immutable: copies (copy.deepcopy of a patched model, timm's ModelEma) share it

    def __deepcopy__(self, memo: dict[int, Any]) -> Criterion:
        return self

    def required(self, params: Mapping[str, Any]) -> frozenset[str]:
        """The statistics the attention pass must compute for these params (checked first).

        Raises:
            TypeError / ValueError: a bad parameter value (from :attr:`check`), or needs outside
                :data:`NEEDS`.
        """
        if self.check is not None:
            self.check(params)
        needs = frozenset(self.needs(params) if callable(self.needs) else self.needs)
        if not needs <= NEEDS:
            raise ValueError(
                f"criterion {self.name!r} needs {sorted(needs - NEEDS)}, not among {sorted(NEEDS)}"
            )
        return needs

    def block_params(self, params: Mapping[str, Any], context: BlockContext) -> dict[str, Any]:
        """The parameters one pruning block's ``score`` receives (from :attr:`setup`, else ``params``).

        Example:
            >>> import torch
            >>> from renyi_prune.criteria import BlockContext, get_criterion
            >>> p = get_criterion("random").block_params({"seed": 3}, BlockContext(2, torch.device("cpu")))
            >>> p["generator"].initial_seed()  # seed + block index
            5
        """
        return dict(params if self.setup is None else self.setup(params, context))

    def attention_kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of :func:`run_attention` for these params (from :attr:`attention`).

        Example:
            >>> from renyi_prune import get_criterion
            >>> get_criterion("renyi").attention_kwargs({"alpha": 2.0, "backend": "auto"})
            {'alpha': 2.0, 'backend': 'auto'}
            >>> get_criterion("evit").attention_kwargs({})
            {}
        """
        return {} if self.attention is None else dict(self.attention(params))


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    """Add ``criterion`` to the registry under ``criterion.name`` (replacing any earlier one).

    Raises:
        TypeError: ``criterion`` is not a :class:`Criterion`.

    Example:
        >>> from renyi_prune import Criterion, available_criteria, get_criterion, register_criterion
        >>> evit = get_criterion("evit")
        >>> _ = register_criterion(Criterion("cls_max", "highest", evit.needs,
        ...                                  lambda a, params: a.cls_attn.amax(dim=1)))
        >>> "cls_max" in available_criteria()
        True
        >>> _ = unregister_criterion("cls_max")
    """
    if not isinstance(criterion, Criterion):
        raise TypeError(f"register_criterion takes a Criterion, got {type(criterion).__name__}")
    _REGISTRY[criterion.name] = criterion
    return criterion


def unregister_criterion(name: str) -> Criterion:
    """Remove the criterion called ``name`` from the registry and return it.

    Patched models keep the criterion object they were patched with.

    Raises:
        ValueError: unknown name.

    Example:
        >>> from renyi_prune import available_criteria, register_criterion, unregister_criterion
        >>> c = unregister_criterion("random")
        >>> "random" in available_criteria()
        False
        >>> _ = register_criterion(c)
    """
    criterion = get_criterion(name)
    del _REGISTRY[name]
    return criterion


def get_criterion(name: str) -> Criterion:
    """The registered criterion called ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).

    Example:
        >>> from renyi_prune import get_criterion
        >>> c = get_criterion("renyi")
        >>> c.keep, sorted(c.needs), dict(c.params)
        ('lowest', ['entropy'], {'alpha': 1.0, 'backend': 'auto'})
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown criterion {name!r}; available: {available_criteria()}") from None


def available_criteria() -> list[str]:
    """Names of the registered criteria, sorted.

    Example:
        >>> from renyi_prune import available_criteria
        >>> {"renyi", "shannon", "evit", "colln", "headvar", "headmad", "random"} <= set(available_criteria())
        True
    """
    return sorted(_REGISTRY)


def run_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    needs: frozenset[str],
    alpha: float = 1.0,
    backend: str = "auto",
) -> AttentionPass:
    """Attention output plus exactly the statistics in ``needs``.

    Entropy → the fused Triton kernel with Rényi order ``alpha`` (lse comes free with it); lse
    alone → the same kernel in its cheapest mode; otherwise ``scaled_dot_product_attention``.
    ``cls_attn`` forms only the CLS row of P, (B, H, 1, N).

    Args:
        q, k, v: (B, H, N, D).
        scale: logit scale.
        needs: subset of :data:`NEEDS`.
        alpha: Rényi order for the entropy.
        backend: for the fused op (``"auto"``, ``"triton"``, ``"eager"``; see
            :func:`renyi_prune.attention_with_entropy`).

    Raises:
        TypeError / ValueError: bad inputs, as :func:`renyi_prune.attention_with_entropy`.

    Example:
        >>> import torch
        >>> from renyi_prune.criteria import run_attention
        >>> q, k, v = torch.randn(3, 1, 2, 9, 16).unbind(0)
        >>> a = run_attention(q, k, v, scale=0.25, needs=frozenset({"entropy", "cls_attn"}), alpha=2.0)
        >>> a.out.shape, a.entropy.shape, a.lse.shape, a.cls_attn.shape
        (torch.Size([1, 2, 9, 16]), torch.Size([1, 9]), torch.Size([1, 2, 9]), torch.Size([1, 2, 9]))
    """
    entropy = lse = cls_attn = None
    if "entropy" in needs:
        out, entropy, lse = attention_with_entropy(
            q, k, v, alpha=alpha, scale=scale, return_lse=True, backend=backend
        )
    elif "lse" in needs:
        # α = 0 is the kernel's cheapest mode: H_0 = log N needs no running sum beyond the softmax's
        out, _, lse = attention_with_entropy(
            q, k, v, alpha=0.0, scale=scale, return_lse=True, backend=backend
        )
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    if "cls_attn" in needs:
        with torch.autocast(q.device.type, enabled=False):  # fp32 scores, also under AMP
            logits = (q[:, :, :1].float() @ k.float().transpose(-2, -1)) * scale
            cls_attn = torch.softmax(logits, dim=-1)[:, :, 0].detach()
    return AttentionPass(q=q, k=k, scale=scale, out=out, entropy=entropy, lse=lse, cls_attn=cls_attn)
