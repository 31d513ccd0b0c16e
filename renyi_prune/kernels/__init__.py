"""Triton kernels (Triton and torch only: nothing here imports timm or the rest of the package)."""

from .attention_entropy_fwd import (
    ENT_MIN,
    ENT_NONE,
    ENT_RENYI_DIRECT,
    ENT_RENYI_LOG1P,
    ENT_SHANNON,
    ENT_SUPPORT,
    attention_entropy_fwd,
    entropy_mode,
    is_interpreting,
)

__all__ = [
    "ENT_MIN",
    "ENT_NONE",
    "ENT_RENYI_DIRECT",
    "ENT_RENYI_LOG1P",
    "ENT_SHANNON",
    "ENT_SUPPORT",
    "attention_entropy_fwd",
    "entropy_mode",
    "is_interpreting",
]
