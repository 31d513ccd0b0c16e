"""``evit``: keep the patches the CLS token attends to most (head mean).

EViT, Liang et al., "Not All Patches are What You Need: Expediting Vision Transformers via Token
Reorganizations", ICLR 2022. Only the CLS row of the attention matrix is formed, (B, H, 1, N); the
attention output comes from ``scaled_dot_product_attention``.
"""

from .base import Criterion, register_criterion

register_criterion(
    Criterion(
        "evit",
        keep="highest",
        needs=frozenset({"cls_attn"}),
        score=lambda attention_pass, params: attention_pass.cls_attn.mean(dim=1),
        description="CLS attention averaged over heads, highest kept (EViT, Liang et al., ICLR 2022)",
    )
)
