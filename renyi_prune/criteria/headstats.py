"""``headvar`` and ``headmad``: keep the patches whose received attention differs most across heads.

"Patch Pruning Strategy Based on Robust Statistical Measures of Attention Weight Diversity in Vision
Transformers" (Igaue & Aizawa, ACPR 2025): the diversity across heads of the attention a patch
receives — variance (``headvar``) or median absolute deviation (``headmad``, robust to one outlying
head) — highest kept.

The abstract does not pin down which attention entries; ``source`` chooses:

* ``"cls"`` (default): a_h(j) = attention of the CLS token to token j in head h (the CLS row of P,
  (B, H, 1, N), no N×N matrix);
* ``"column"``: a_h(j) = mean over queries of column j of P in head h, i.e. (1/N) Σ_i p_ij, from the
  Col-Ln second pass with order 1.

Variance is the population variance over heads (divide by H). The median is the lower median for an
even number of heads (``torch.median``), for both medians of the MAD.
"""

from ..column_norm import attention_column_norm
from .base import Criterion, register_criterion


def _check(params):
    if params["source"] not in ("cls", "column"):
        raise ValueError(f"source must be 'cls' or 'column', got {params['source']!r}")


def _needs(params):
    return frozenset({"cls_attn"} if params["source"] == "cls" else {"lse"})


def _head_attention(attention_pass, params):
    """(B, H, N): attention each token receives in each head."""
    p = attention_pass
    if params["source"] == "cls":
        return p.cls_attn
    cols = attention_column_norm(p.q, p.k, order=1.0, scale=p.scale, lse=p.lse, head_reduce="none")
    return cols / p.q.shape[2]


def _head_variance(attention_pass, params):
    return _head_attention(attention_pass, params).var(dim=1, unbiased=False)


def _head_mad(attention_pass, params):
    a = _head_attention(attention_pass, params)
    median = a.median(dim=1, keepdim=True).values
    return (a - median).abs().median(dim=1).values


for _name, _score, _what in (("headvar", _head_variance, "variance"), ("headmad", _head_mad, "MAD")):
    register_criterion(
        Criterion(
            _name,
            keep="highest",
            needs=_needs,
            score=_score,
            params={"source": "cls"},
            check=_check,
            description=f"{_what} across heads of the attention a patch receives (Igaue & Aizawa, ACPR 2025)",
        )
    )
