"""``renyi`` and ``shannon``: keep the patches with the lowest head-mean Rényi attention entropy.

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803), Defs. 2–3:
H_α(i) = log(Σ_j p_ij^α)/(1 − α) of token i's attention row, averaged over heads; low entropy =
focused attention = important. From the fused kernel, in the same pass as the attention.

``backend="eager"`` computes the same scores from the materialized attention matrix instead (the
paper's own implementation), for speed comparisons.
"""

from ..ops import BACKENDS
from .base import Criterion, register_criterion


def _entropy(attention_pass, params):
    return attention_pass.entropy


def _check(params):
    if params["backend"] not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {params['backend']!r}")


register_criterion(
    Criterion(
        "renyi",
        keep="lowest",
        needs=frozenset({"entropy"}),
        score=_entropy,
        params={"alpha": 1.0, "backend": "auto"},
        check=_check,
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
        description="head-mean Shannon attention entropy (renyi with alpha=1)",
    )
)
