"""Triton kernels (Triton and torch only: nothing here imports timm or the rest of the package)."""

from ._common import (
    ENT_MIN,
    ENT_RENYI_DIRECT,
    ENT_RENYI_LOG1P,
    ENT_SHANNON,
    ENT_SUPPORT,
    entropy_mode,
    is_interpreting,
)
from .attention_colnorm import attention_column_power_sum
from .attention_entropy_bwd import attention_entropy_bwd
from .attention_entropy_fwd import attention_entropy_fwd

__all__ = [
    "ENT_MIN",
    "ENT_RENYI_DIRECT",
    "ENT_RENYI_LOG1P",
    "ENT_SHANNON",
    "ENT_SUPPORT",
    "attention_column_power_sum",
    "attention_entropy_bwd",
    "attention_entropy_fwd",
    "entropy_mode",
    "is_interpreting",
]
