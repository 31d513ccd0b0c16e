"""``renyi`` and ``shannon``: keep the patches with the lowest head-mean Rényi attention entropy.

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803), Defs. 2–3:
H_α(i) = log(Σ_j p_ij^α)/(1 − α) of token i's attention row, averaged over heads; low entropy =
focused attention = important. From the fused kernel, in the same pass as the attention.

``backend="eager"`` computes the same scores from the materialized attention matrix instead (the
paper's own implementation), for speed comparisons. α and the backend reach the attention pass
through the criteria's ``attention`` hook; α = 0 warns when a model is patched (``setup``).
"""

import warnings

from ..ops import BACKENDS
from .base import Criterion, register_criterion


def _entropy(attention_pass, params):
    return attention_pass.entropy


def _check(params):
    if params["backend"] not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {params['backend']!r}")


def _warn_alpha_zero(params, context):
    """The block's params unchanged; warns when α = 0, which makes every token tie."""
    if params["alpha"] == 0:
        warnings.warn(
            f"renyi_prune.patch: alpha=0 at pruning block {context.index} gives every token the same "
            "Rényi entropy (log N), so pruning keeps the first patches by position",
            stacklevel=2,
        )
    return params


def _renyi_pass(params):
    return {"alpha": params["alpha"], "backend": params["backend"]}


def _shannon_pass(params):
    return {"alpha": 1.0, "backend": params["backend"]}


register_criterion(
    Criterion(
        "renyi",
        keep="lowest",
        needs=frozenset({"entropy"}),
        score=_entropy,
        params={"alpha": 1.0, "backend": "auto"},
        check=_check,
        setup=_warn_alpha_zero,
        attention=_renyi_pass,
        description="head-mean Rényi attention entropy H_α, lowest kept (arXiv 2604.03803)",
    )
)
register_criterion(
    Criterion(
        "shannon",
        keep="lowest",
        needs=frozenset({"entropy"}),
        score=_entropy,
        params={"backend": "auto"},
        check=_check,
        attention=_shannon_pass,
        description="head-mean Shannon attention entropy (renyi with alpha=1)",
    )
)
