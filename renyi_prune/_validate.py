"""Argument checks shared by the public entry points (op, reference, column norm, patch, schedule).

Each check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a value out of
range, and names the offending value in the message. No torch ops run here beyond reading metadata.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HEAD_REDUCTIONS = ("mean", "none")


def type_path(value: Any) -> str:
    """The module path and name of ``value``'s class, for error messages: two classes may share a name
    (timm's ``vision_transformer.Block`` and ``beit.Block``).

    Example:
        >>> from collections import OrderedDict
        >>> type_path(OrderedDict()), type_path(None)
        ('collections.OrderedDict', 'None')
    """
    if value is None:
        return "None"
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def is_real(value: Any) -> bool:
    """A Python int/float (bools excluded: ``True`` is not a keep rate)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q (B, H, N, D), k and v (B, H, M, D): tensors of one float dtype, on one device."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have shape (B, H, N, D), got rank {t.dim()} shape {tuple(t.shape)}"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be fp16, bf16, fp32 or fp64, got {t.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"q (B, H, N, D) = {tuple(q.shape)} does not match k/v (B, H, M, D) = {tuple(k.shape)}"
        )
    if q.shape[3] == 0:
        raise ValueError(f"head dim D must be >= 1, got q of shape {tuple(q.shape)}")
    if k.shape[2] == 0 and q.shape[2] > 0:
        raise ValueError(
            f"k/v have no keys (M=0, shape {tuple(k.shape)}): softmax over an empty row is undefined"
        )


def check_alpha(alpha: Any) -> float:
    """Rényi order α: a real number ≥ 0, ``math.inf`` allowed, not NaN."""
    if not is_real(alpha):
        raise TypeError(f"alpha must be a real number, got {alpha!r} of type {type(alpha).__name__}")
    alpha = float(alpha)
    if math.isnan(alpha) or alpha < 0:
        raise ValueError(f"Rényi order alpha must be >= 0 (math.inf allowed), got {alpha!r}")
    return alpha


def check_head_reduce(head_reduce: Any) -> None:
    if head_reduce not in HEAD_REDUCTIONS:
        raise ValueError(f"head_reduce must be 'mean' or 'none', got {head_reduce!r}")


def check_scale(scale: Any, head_dim: int) -> float:
    """The logit scale: a finite real number, or ``None`` for ``head_dim ** -0.5``."""
    if scale is None:
        return head_dim**-0.5
    if not is_real(scale):
        raise TypeError(f"scale must be a real number or None, got {scale!r} of type {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return float(scale)


def check_flag(name: str, flag: Any) -> bool:
    if not isinstance(flag, bool):
        raise TypeError(f"{name} must be a bool, got {flag!r}")
    return flag


def check_keep_rate(keep_rate: Any, name: str = "keep_rate") -> float:
    """A keep rate r in (0, 1]."""
    if not is_real(keep_rate):
        kind = type(keep_rate).__name__
        raise TypeError(f"{name} must be a number in (0, 1], got {keep_rate!r} of type {kind}")
    if not 0 < keep_rate <= 1:  # also False for NaN
        raise ValueError(f"{name} must be in (0, 1], got {keep_rate!r}")
    return float(keep_rate)


def check_int(name: str, value: Any, minimum: int) -> int:
    """An int (bools excluded) ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_schedule(name: str, value: Any, n: int, check: Callable[[Any], Any]) -> Any:
    """A ``check``-ed scalar, or a tuple of ``n`` checked values (one per pruning block) from a list/tuple.

    Raises:
        ValueError: a list/tuple whose length is not ``n`` (and whatever ``check`` raises).
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} schedule {list(value)} has {len(value)} values for {n} pruning blocks")
        return tuple(check(v) for v in value)
    return check(value)


def per_block(value: Any, n: int) -> tuple[Any, ...]:
    """One value per pruning block: a tuple as it is, a scalar repeated ``n`` times."""
    return tuple(value) if isinstance(value, tuple) else (value,) * n
