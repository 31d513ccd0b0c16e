"""Column ℓ_n norms of the softmax attention matrix (the Col-Ln token-pruning criterion).

Col-Ln ("Rényi Entropy: A New Token Pruning Metric for Vision Transformers", Su, Zhang & Zhang)
scores token j by the column-wise ℓ_n norm of the attention matrix of each head,

    c_j = (Σ_i p_ij^n)^{1/n},   p_i = softmax(q_i kᵀ · scale),

averaged over heads, with the order n a parameter (the paper shows n = 1…4); n = ∞ gives max_i p_ij.
A column needs the final softmax normalizer of every row, so this is a second pass after the
attention forward: it recomputes P tile by tile from the forward's log-sum-exp and never
materializes the (B, H, N, M) matrix (:func:`renyi_prune.kernels.attention_column_power_sum`).

:func:`attention_column_norm` validates and dispatches like :func:`renyi_prune.attention_with_entropy`
(:func:`renyi_prune.ops.uses_triton`): CUDA, or CPU under ``TRITON_INTERPRET=1`` → the Triton kernel;
otherwise, and for fp64, :func:`attention_column_norm_reference`, the eager ground truth.

The Triton pass is the PyTorch custom operator ``renyi_prune::attention_column_power_sum``
(:data:`COLUMN_OP_NAME`; ``torch.library.custom_op`` with a fake implementation, no autograd: the norms
are a ranking score), as the attention op is: ``torch.compile(fullgraph=True)`` traces it as one node,
and ``torch.jit.trace``-based tools such as fvcore see it by name (:func:`column_pass_flop_handle`
counts it as its q·kᵀ recomputation).
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

import torch

from ._validate import check_head_reduce, check_qkv, check_scale, is_real
from .kernels import attention_column_power_sum, is_interpreting
from .kernels.attention_colnorm import alloc_column_sums
from .ops import check_head_dim, uses_triton
from .reference import probs_from_logits

__all__ = [
    "COLUMN_OP_NAME",
    "attention_column_norm",
    "attention_column_norm_reference",
    "column_pass_flop_handle",
]

COLUMN_OP_NAME = "renyi_prune::attention_column_power_sum"
# Logit elements (B·H·chunk·M) per chunk when the log-sum-exp is computed here: 2^24 fp32 = 64 MiB.
LSE_CHUNK_ELEMENTS = 1 << 24


@torch.library.custom_op(COLUMN_OP_NAME, mutates_args=())
def _column_power_sum(
    q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float, order: float
) -> torch.Tensor:
    """(B, H, M) fp32 Σ_i p_ij^n (order ∞: max_i p_ij) from q (B, H, N, D), k (B, H, M, D) and the
    (B, H, N) fp32 lse: :func:`renyi_prune.kernels.attention_column_power_sum`."""
    return attention_column_power_sum(q, k, lse, scale, order)


@_column_power_sum.register_fake
def _column_power_sum_fake(q, k, lse, scale, order):
    return alloc_column_sums(q, k)  # the launcher's own allocation: one place for shape and dtype


@_column_power_sum.register_kernel("cpu")
def _column_power_sum_cpu(q, k, lse, scale, order):
    # the Triton pass under the interpreter; else (e.g. a torch.export program made on a GPU, run on a
    # CPU machine) the eager power sums, so exported programs run on any device
    if is_interpreting():
        return attention_column_power_sum(q, k, lse, scale, order)
    return _eager_power_sums(q, k, lse, scale, order).float()


def column_pass_flop_handle(inputs: list[Any], outputs: list[Any]) -> Number:
    """fvcore op handle of :data:`COLUMN_OP_NAME`: B·H·N·M·D multiply-adds (fvcore's FLOP unit), the
    q·kᵀ the column pass recomputes from the (q, k) inputs' shapes; the exponentials are not counted.

    Example:
        >>> import torch
        >>> g = torch._C.Graph()
        >>> q, k = g.addInput(), g.addInput()  # the traced node's inputs: q (B, H, N, D), k (B, H, M, D)
        >>> _ = q.setType(torch._C.TensorType.create_from_tensor(torch.empty(2, 3, 5, 16)))
        >>> _ = k.setType(torch._C.TensorType.create_from_tensor(torch.empty(2, 3, 7, 16)))
        >>> column_pass_flop_handle([q, k], [])  # 2 · 3 · 5 · 7 · 16
        3360
    """
    from fvcore.nn.jit_handles import get_shape

    (*batch, n, d), m = get_shape(inputs[0]), get_shape(inputs[1])[-2]
    return math.prod(batch) * n * m * d


def attention_column_norm(
    q: torch.Tensor,
    k: torch.Tensor,
    order: float = 1.0,
    scale: float | None = None,
    lse: torch.Tensor | None = None,
    head_reduce: str = "mean",
) -> torch.Tensor:
    """Column ℓ_n norm (Σ_i p_ij^n)^{1/n} of the softmax attention of every head (Col-Ln).

    Source: "Rényi Entropy: A New Token Pruning Metric for Vision Transformers" (Su, Zhang & Zhang),
    the Col-Ln criterion: p = softmax(q kᵀ · scale) row-wise, token j scored by the ℓ_n norm of
    column j, averaged over heads. Order 1 is the column sum (the attention token j receives in
    total); larger n weighs the largest entries more; n = ∞ is max_i p_ij.

    Args:
        q: queries (B, H, N, D); fp16, bf16, fp32 (Triton) or fp64 (eager reference). Any strides,
            e.g. timm's ``qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)`` views.
        k: keys (B, H, M, D), same dtype and device as ``q``.
        order: the norm's order n > 0 (real, not only integers), ``math.inf`` for the column max.
        scale: logit scale; ``None`` → D ** -0.5. Must be the scale the ``lse`` was computed with.
        lse: optional (B, H, N) natural log-sum-exp of each row's scaled logits, log Σ_j e^{q_i·k_j·scale},
            as the attention forward returns it (``attention_with_entropy(..., return_lse=True)``);
            fp32 (fp32 or fp64 for fp64 inputs), same device. Pass it: that is what makes this one
            extra pass. If ``None`` it is computed here with ``torch.logsumexp`` over query chunks
            of ``LSE_CHUNK_ELEMENTS`` // (B·H·M) rows (at least one), in fp32, so the temporary
            logits take O(B·H·chunk·M) memory, never (B, H, N, M) at once.
        head_reduce: ``"mean"`` → norms averaged over heads, (B, M); ``"none"`` → (B, H, M).

    Returns:
        Column norms, (B, M) or (B, H, M), fp32 (fp64 for fp64 inputs); in [0, N^{1/n}] (order 1:
        each head's columns sum to N). No gradient on any path (a ranking score).

    Raises:
        TypeError: q or k is not a tensor or has a non-float dtype, ``order`` is not a real number,
            ``lse`` is not a tensor.
        ValueError: wrong rank, mismatched shapes/devices/dtypes, head dim outside [16, 128] on the
            Triton path, order ≤ 0 or NaN, bad ``scale`` or ``head_reduce``, ``lse`` of the wrong
            shape, dtype or device.

    Example:
        >>> import torch
        >>> from renyi_prune.column_norm import attention_column_norm
        >>> q, k = torch.randn(2, 2, 4, 17, 32).unbind(0)
        >>> attention_column_norm(q, k, order=2.0).shape
        torch.Size([2, 17])
        >>> col_sums = attention_column_norm(q, k, order=1.0, head_reduce="none")  # (B, H, M)
        >>> torch.allclose(col_sums.sum(-1), torch.full((2, 4), 17.0))  # Σ_j Σ_i p_ij = N
        True
    """
    check_qkv(q, k, k)
    order = _check_order(order)
    check_head_reduce(head_reduce)
    scale = check_scale(scale, q.shape[-1])
    if lse is not None:
        _check_lse(lse, q)

    if not uses_triton(q):
        with torch.no_grad():
            return attention_column_norm_reference(q, k, order, scale, head_reduce, lse=lse)

    check_head_dim(q.shape[-1])
    with torch.no_grad():
        if lse is None:
            lse = _chunked_lse(q, k, scale)
        sums = _column_power_sum(q, k, lse.float(), scale, order)
        norms = sums if (order == 1.0 or math.isinf(order)) else sums.pow(1.0 / order)
        return norms.mean(dim=1) if head_reduce == "mean" else norms


def attention_column_norm_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    order: float = 1.0,
    scale: float | None = None,
    head_reduce: str = "mean",
    lse: torch.Tensor | None = None,
) -> torch.Tensor:
    """EAGER REFERENCE (ground truth, CPU/fp64 fallback): Col-Ln column norms from a materialized P.

    Builds the whole (B, H, N, M) attention matrix and applies the definition literally:
    (Σ_i p_ij^n)^{1/n}, max_i p_ij for n = ∞ (Col-Ln, Su, Zhang & Zhang, "Rényi Entropy: A New Token
    Pruning Metric for Vision Transformers"). Slow and memory-hungry on purpose: it is what the
    Triton pass is tested against. Pass fp64 inputs for an fp64 ground truth.

    Args:
        q: queries (B, H, N, D); k: keys (B, H, M, D); any float dtype.
        order: n > 0 or ``math.inf``.
        scale: logit scale; ``None`` → D ** -0.5.
        head_reduce: ``"mean"`` → (B, M) averaged over heads; ``"none"`` → (B, H, M).
        lse: optional (B, H, N) log-sum-exp (else computed here); P = exp(logits − lse), what the
            Triton pass computes.

    Returns:
        Column norms in the compute dtype: fp64 for fp64 inputs, else fp32. A row of P with no
        attendable key (all logits −inf) contributes 0 to every column, as in SDPA.

    Raises:
        TypeError / ValueError: as :func:`attention_column_norm`.

    Example:
        >>> import torch
        >>> from renyi_prune.column_norm import attention_column_norm_reference
        >>> q, k = torch.randn(2, 1, 2, 5, 16, dtype=torch.float64).unbind(0)
        >>> norms = attention_column_norm_reference(q, k, order=1.0, head_reduce="none")
        >>> norms.shape, torch.allclose(norms.sum(-1), torch.full((1, 2), 5.0, dtype=torch.float64))
        (torch.Size([1, 2, 5]), True)
    """
    check_qkv(q, k, k)
    order = _check_order(order)
    check_head_reduce(head_reduce)
    scale = check_scale(scale, q.shape[-1])
    sums = _eager_power_sums(q, k, lse, scale, order)
    norms = sums if math.isinf(order) else sums ** (1.0 / order)
    return norms.mean(dim=1) if head_reduce == "mean" else norms


def _eager_power_sums(
    q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor | None, scale: float, order: float
) -> torch.Tensor:
    """(B, H, M) Σ_i p_ij^n (max_i p_ij for n = ∞) from a materialized P, fp64 for fp64 inputs else fp32."""
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    with torch.autocast(q.device.type, enabled=False):  # the compute dtype, also under AMP
        logits = (q.to(compute) @ k.to(compute).transpose(-2, -1)) * scale
    p, _ = probs_from_logits(logits, None if lse is None else lse.to(compute))
    if math.isinf(order):
        return p.amax(dim=-2) if p.shape[-2] else p.new_zeros(p.shape[:-2] + p.shape[-1:])
    return (p**order).sum(dim=-2)


def _chunked_lse(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, H, N) fp32 log Σ_j exp(q_i·k_j·scale), over query chunks of O(LSE_CHUNK_ELEMENTS) logits."""
    B, H, N, _ = q.shape
    M = k.shape[2]
    kt = k.float().transpose(-2, -1)
    chunk = max(1, LSE_CHUNK_ELEMENTS // max(1, B * H * M))
    with torch.autocast(q.device.type, enabled=False):  # fp32 logits, also under AMP
        parts = [
            torch.logsumexp((q[:, :, i : i + chunk].float() @ kt) * scale, dim=-1) for i in range(0, N, chunk)
        ]
    return torch.cat(parts, dim=-1) if parts else q.new_empty((B, H, 0), dtype=torch.float32)


def _check_order(order: float) -> float:
    if not is_real(order):
        raise TypeError(f"order must be a real number, got {order!r} of type {type(order).__name__}")
    order = float(order)
    if math.isnan(order) or order <= 0:
        raise ValueError(f"column-norm order n must be > 0 (math.inf allowed), got {order!r}")
    return order


def _check_lse(lse: torch.Tensor, q: torch.Tensor) -> None:
    if not isinstance(lse, torch.Tensor):
        raise TypeError(f"lse must be a torch.Tensor or None, got {type(lse).__name__}")
    expected = tuple(q.shape[:3])
    if tuple(lse.shape) != expected:
        raise ValueError(f"lse must have shape (B, H, N) = {expected}, got {tuple(lse.shape)}")
    allowed = (torch.float32, torch.float64) if q.dtype == torch.float64 else (torch.float32,)
    if lse.dtype not in allowed:
        raise ValueError(f"lse must be float32 (or float64 for float64 inputs), got {lse.dtype}")
    if lse.device != q.device:
        raise ValueError(f"lse must be on the device of q ({q.device}), got {lse.device}")
