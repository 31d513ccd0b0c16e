"""``colln``: keep the patches with the largest column ℓ_n norm of the attention matrix.

Col-Ln, from "Rényi Entropy: A New Token Pruning Metric for Vision Transformers" (Su, Zhang &
Zhang): token j scores (Σ_i p_ij^n)^{1/n}, averaged over heads, order n a parameter (the paper shows
n = 1…4). Columns need every row's final normalizer, so this is a second Triton pass that recomputes
P tiles from the log-sum-exp saved by the fused forward (:mod:`renyi_prune.column_norm`), never a
materialized matrix.
"""

from ..column_norm import _check_order, attention_column_norm
from .base import Criterion, register_criterion


def _column_norm(attention_pass, params):
    p = attention_pass
    return attention_column_norm(p.q, p.k, order=params["order"], scale=p.scale, lse=p.lse)


register_criterion(
    Criterion(
        "colln",
        keep="highest",
        needs=frozenset({"lse"}),
        score=_column_norm,
        params={"order": 2.0},
        check=lambda params: _check_order(params["order"]),
        description="head-mean column l_n norm of the attention matrix, highest kept (Col-Ln, Su et al.)",
    )
)
