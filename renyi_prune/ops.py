"""Public op: softmax attention that also returns each query row's Rényi attention entropy.

``attention_with_entropy`` validates its inputs and dispatches:

* CUDA tensors → the fused Triton kernel (:mod:`renyi_prune.kernels`), one pass, no (B, H, N, N)
  tensor;
* CPU tensors with ``TRITON_INTERPRET=1`` → the same Triton kernel on Triton's CPU interpreter
  (this is how CI tests the kernel), except inside :func:`eager_on_cpu` (a context variable: per
  thread and task, no environment change);
* other CPU tensors (fp16/bf16/fp32, ``backend="auto"``) → :mod:`renyi_prune.cpu_attention`: the
  entropy from the softmax the output needs (no log P), same results as the reference;
* otherwise (fp64 anywhere, or ``backend="eager"``) → the eager reference :mod:`renyi_prune.reference`.

The Triton path is registered as the PyTorch custom operator
``renyi_prune::attention_with_entropy_fwd`` (``torch.library.custom_op`` with a fake
implementation), so ``torch.jit.trace``-based tools such as fvcore see it as one node by name. Its
CPU implementation runs the CPU path when the interpreter is off, so a program traced where the
Triton path ran (``torch.export`` on a GPU) runs on a CPU machine too.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from ._validate import FLOAT_DTYPES, check_alpha, check_flag, check_head_reduce, check_qkv, check_scale
from .cpu_attention import attention_with_entropy_cpu, attention_with_entropy_cpu_backward
from .kernels import attention_entropy_bwd, attention_entropy_fwd, is_interpreting
from .kernels._common import empty_bnhd
from .kernels.attention_entropy_fwd import alloc_fwd_outputs
from .reference import attention_with_entropy_reference

__all__ = [
    "attention_with_entropy",
    "uses_triton",
    "eager_on_cpu",
    "BACKENDS",
    "FUSED_OP_NAME",
    "MIN_HEAD_DIM",
    "MAX_HEAD_DIM",
]

FUSED_OP_NAME = "renyi_prune::attention_with_entropy_fwd"
FUSED_BWD_OP_NAME = "renyi_prune::attention_with_entropy_bwd"
MIN_HEAD_DIM = 16
MAX_HEAD_DIM = 128
_TRITON_DTYPES = FLOAT_DTYPES[:3]  # fp64 runs on the eager reference


@torch.library.custom_op(FUSED_OP_NAME, mutates_args=())
def _fused_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    alpha: float,
    entropy_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """out (B, H, N, D), lse (B, H, N), per-head entropy (B, H, N), argmax (B, H, N) int32 (min-entropy
    with ``entropy_grad``: what its gradient needs) or (0,)."""
    return attention_entropy_fwd(q, k, v, scale, alpha, entropy_grad)


@_fused_fwd.register_fake
def _fused_fwd_fake(q, k, v, scale, alpha, entropy_grad):
    # the launcher's own allocation: one place for shapes and layout
    return alloc_fwd_outputs(q, alpha, entropy_grad)


_Tensor = torch.Tensor


@torch.library.custom_op(FUSED_BWD_OP_NAME, mutates_args=())
def _fused_bwd(
    dout: _Tensor, grad_ent: _Tensor | None, q: _Tensor, k: _Tensor, v: _Tensor,
    out: _Tensor, lse: _Tensor, ent: _Tensor, argmax: _Tensor, scale: float, alpha: float,
) -> tuple[_Tensor, _Tensor, _Tensor]:  # fmt: skip
    """dq, dk, dv of the fused op (entropy term included when ``grad_ent`` is given)."""
    return attention_entropy_bwd(dout, grad_ent, q, k, v, out, lse, ent, argmax, scale, alpha)


@_fused_bwd.register_fake
def _fused_bwd_fake(dout, grad_ent, q, k, v, out, lse, ent, argmax, scale, alpha):
    return empty_bnhd(q), empty_bnhd(q, k.shape[2]), empty_bnhd(q, v.shape[2])  # as the launcher allocates


def _fused_setup_context(ctx, inputs, output) -> None:
    q, k, v, scale, alpha, entropy_grad = inputs
    out, lse, ent, argmax = output
    ctx.save_for_backward(q, k, v, out, lse, ent, argmax)
    ctx.scale, ctx.alpha, ctx.entropy_grad = scale, alpha, entropy_grad
    ctx.mark_non_differentiable(lse, argmax)


def _fused_backward(ctx, dout, dlse, dent, dargmax):
    q, k, v, out, lse, ent, argmax = ctx.saved_tensors
    grad_ent = dent.float() if ctx.entropy_grad and dent is not None else None
    dq, dk, dv = _fused_bwd(dout, grad_ent, q, k, v, out, lse, ent, argmax, ctx.scale, ctx.alpha)
    return dq, dk, dv, None, None, None


_fused_fwd.register_autograd(_fused_backward, setup_context=_fused_setup_context)


# CPU implementations of the two ops. A CPU tensor reaches them under the interpreter (the Triton
# kernels, as the tests run them) or in a program traced where the Triton path ran, e.g. a
# ``torch.export`` program made on a GPU and run on a CPU machine: then the CPU path computes the same
# outputs (no Triton driver needed), so an exported program runs on any device.


@_fused_fwd.register_kernel("cpu")
def _fused_fwd_cpu(q, k, v, scale, alpha, entropy_grad):
    if is_interpreting():
        return attention_entropy_fwd(q, k, v, scale, alpha, entropy_grad)
    out, lse, ent, argmax = alloc_fwd_outputs(q, alpha, entropy_grad)  # the kernel's shapes and layout
    for dst, src in zip((out, ent, lse), _eager(q, k, v, alpha, scale, "none", "auto"), strict=True):
        dst.copy_(src)
    if argmax.numel():  # min-entropy with entropy_grad: the argmax its gradient needs (fp32 logits)
        with torch.autocast("cpu", enabled=False):
            argmax.copy_((q.float() @ k.float().transpose(-2, -1)).argmax(dim=-1))
    return out, lse, ent, argmax


@_fused_bwd.register_kernel("cpu")
def _fused_bwd_cpu(dout, grad_ent, q, k, v, out, lse, ent, argmax, scale, alpha):
    if is_interpreting():
        return attention_entropy_bwd(dout, grad_ent, q, k, v, out, lse, ent, argmax, scale, alpha)
    return attention_with_entropy_cpu_backward(dout, grad_ent, q, k, v, out, ent, argmax, scale, alpha)


BACKENDS = ("auto", "triton", "eager")

# Set by eager_on_cpu(): CPU tensors take the eager CPU path even under the interpreter. A context
# variable, so each thread (and asyncio task) has its own value and nothing global is mutated.
_EAGER_ON_CPU: contextvars.ContextVar[bool] = contextvars.ContextVar("eager_on_cpu", default=False)


@torch.compiler.assume_constant_result
def _eager_on_cpu_requested() -> bool:
    """Whether the caller is inside :func:`eager_on_cpu`. Dynamo cannot trace ``ContextVar.get``, so under
    ``torch.compile`` the value is read once when the graph is traced and taken as a constant (the
    interpreter flag, an environment variable, is not guarded either)."""
    return _EAGER_ON_CPU.get()


def uses_triton(q: torch.Tensor, backend: str = "auto") -> bool:
    """Whether :func:`attention_with_entropy` runs the Triton kernel for a tensor like ``q``.

    ``backend="auto"``: on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (outside :func:`eager_on_cpu`),
    for fp16/bf16/fp32; ``"eager"``: never; ``"triton"``: always (raises ValueError where Triton cannot
    run: a CPU tensor without the interpreter or inside :func:`eager_on_cpu`, or fp64).

    Raises:
        ValueError: unknown ``backend``, or ``"triton"`` where Triton cannot run (names why).

    Example:
        >>> import torch
        >>> from renyi_prune.ops import uses_triton
        >>> q = torch.zeros(1, 2, 4, 16)  # CPU: Triton only under TRITON_INTERPRET=1, as in the tests
        >>> uses_triton(q, "eager"), uses_triton(q.double())  # fp64 always runs the eager reference
        (False, False)
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cpu = q.device.type == "cpu" and is_interpreting() and not _eager_on_cpu_requested()
    possible = q.dtype in _TRITON_DTYPES and (q.is_cuda or on_cpu)
    if backend == "triton" and not possible:
        raise ValueError(
            f"backend='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU, outside eager_on_cpu()) of "
            f"dtype fp16/bf16/fp32, got {q.dtype} on {q.device}"
        )
    return possible and backend != "eager"


@contextlib.contextmanager
def eager_on_cpu() -> Iterator[None]:
    """Within: CPU tensors take the eager CPU path (:mod:`renyi_prune.cpu_attention`) even under
    ``TRITON_INTERPRET=1``.

    For CPU work that needs no kernel test, e.g. a demo or FLOP counting in a process where the
    interpreter is on. It sets a context variable that :func:`uses_triton` reads at each call, not the
    environment: it holds for the calling thread (or asyncio task) only, other threads keep their own
    path, blocks nest, and the previous value comes back on exit (also after an exception). CUDA
    tensors are unaffected. Under ``torch.compile`` the path is fixed when the graph is traced.

    Example:
        >>> import os, torch
        >>> from renyi_prune.ops import eager_on_cpu, uses_triton
        >>> env = dict(os.environ)
        >>> with eager_on_cpu():
        ...     uses_triton(torch.zeros(1, 1, 4, 16)), dict(os.environ) == env
        (False, True)
    """
    token = _EAGER_ON_CPU.set(True)
    try:
        yield
    finally:
        _EAGER_ON_CPU.reset(token)


def attention_with_entropy(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: float = 1.0,
    scale: float | None = None,
    head_reduce: str = "mean",
    entropy_grad: bool = False,
    return_lse: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax attention and the Rényi attention entropy of every query row, in one pass.

    p_i = softmax(q_i K^T · scale) (Def. 1 of "Rényi Attention Entropy for Patch Pruning",
    Aizawa & Igaue, arXiv 2604.03803), out_i = p_i V, and H_α(i) = log(Σ_j p_ij^α) / (1 − α)
    (Def. 3; α = 1 is the Shannon entropy −Σ_j p_ij log p_ij of Def. 2, α = ∞ the min-entropy
    −log max_j p_ij, α = 0 the log of the support size, i.e. log M). Lower entropy = more focused
    attention; the paper keeps the lowest-entropy patches.

    Args:
        q: queries (B, H, N, D); fp16, bf16, fp32 (Triton) or fp64 (eager reference). Any strides,
            e.g. the views timm makes with ``qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``.
        k, v: keys and values (B, H, M, D), same dtype and device as ``q``.
        alpha: Rényi order α ≥ 0, ``math.inf`` allowed.
        scale: logit scale; ``None`` → D ** -0.5.
        head_reduce: ``"mean"`` → entropy averaged over heads, (B, N); ``"none"`` → (B, H, N).
        entropy_grad: if False (default) the entropy carries no gradient (it only ranks tokens); if
            True, gradients flow from it into q and k, e.g. for an attention-entropy regularizer
            (entropy collapse, Zhai et al., ICML 2023), using the analytic derivative
            ∂H/∂s_j = −p_j (log p_j + H) (Shannon), α/(1−α)·(p_j^α/Σ_k p_k^α − p_j) (Rényi),
            p_j − 1[j = argmax] (min-entropy, a subgradient), 0 (α = 0), s the scaled logits.
        backend: ``"auto"`` (Triton where it can run, see above), ``"triton"`` (error if it
            cannot), or ``"eager"`` (the reference on any device: materializes P, like the paper's
            code; for comparisons and benchmarks).
        return_lse: also return the per-row log-sum-exp of the scaled logits, (B, H, N), fp32
            (fp64 for fp64 inputs), no gradient: what a second pass over P needs (e.g. Col-Ln).

    Returns:
        ``(out, entropy)``: out (B, H, N, D) in the dtype of ``q`` (on the Triton path its memory is
        laid out as (B, N, H, D), so ``out.transpose(1, 2).reshape(B, N, H * D)`` is a view);
        entropy in nats, fp32 (fp64 for fp64 inputs); with ``return_lse``, ``(out, entropy, lse)``.

    Gradients: ``out`` is differentiable with respect to q, k, v on every path (Triton backward
    kernels on CUDA and under the interpreter, autograd through the CPU path or the reference otherwise).

    Raises:
        TypeError: q, k or v is not a tensor or has a non-float dtype; ``alpha`` or ``scale`` is not
            a number; ``entropy_grad``/``return_lse`` is not a bool.
        ValueError: wrong rank, mismatched shapes/devices/dtypes, D = 0, no keys (M = 0) for N > 0,
            head dim outside [16, 128] on the Triton path, α < 0 or NaN, non-finite ``scale``, bad
            ``head_reduce`` or ``backend`` (or ``backend="triton"`` where Triton cannot run).

    fp64 inputs run on the eager reference (the Triton kernels compute in fp32: an fp64 request
    gets an fp64 answer rather than a silently rounded one); B = 0 or N = 0 returns empty results.
    Non-finite inputs follow ``scaled_dot_product_attention``'s math backend (see the README's
    "NaN and Inf" section): NaN/Inf propagate to the rows they touch, and a row's entropy is NaN
    when its attention probabilities are.

    Example:
        >>> import torch, renyi_prune
        >>> q, k, v = torch.randn(3, 2, 4, 17, 32).unbind(0)
        >>> out, ent = renyi_prune.attention_with_entropy(q, k, v, alpha=2.0)
        >>> out.shape, ent.shape
        (torch.Size([2, 4, 17, 32]), torch.Size([2, 17]))

        An attention-entropy regularizer (gradients reach q and k through the entropy):

        >>> _ = q.requires_grad_(True)
        >>> out, ent = renyi_prune.attention_with_entropy(q, k, v, entropy_grad=True)
        >>> loss = out.square().mean() - 0.01 * ent.mean()  # penalize entropy collapse
        >>> loss.backward()
        >>> q.grad.shape
        torch.Size([2, 4, 17, 32])
    """
    check_qkv(q, k, v)
    alpha = check_alpha(alpha)
    check_head_reduce(head_reduce)
    check_flag("entropy_grad", entropy_grad)
    check_flag("return_lse", return_lse)
    scale = check_scale(scale, q.shape[-1])

    if not uses_triton(q, backend):
        out, ent, lse = _eager(q, k, v, alpha, scale, head_reduce, backend)
        ent = ent if entropy_grad else ent.detach()
        return (out, ent, lse.detach()) if return_lse else (out, ent)

    check_head_dim(q.shape[-1])
    out, lse, ent, _ = _fused_fwd(q, k, v, scale, alpha, entropy_grad)
    if not entropy_grad:
        ent = ent.detach()
    if head_reduce == "mean":
        ent = ent.mean(dim=1)  # fixed-order reduction: the same bits on every run
    return (out, ent, lse) if return_lse else (out, ent)


def uses_cpu_path(q: torch.Tensor, backend: str = "auto") -> bool:
    """Whether a non-Triton call runs :mod:`renyi_prune.cpu_attention` (CPU, fp16/bf16/fp32, not
    ``backend="eager"``) rather than the eager reference. ``backend`` is assumed valid."""
    return q.device.type == "cpu" and q.dtype in _TRITON_DTYPES and backend != "eager"


def _eager(q, k, v, alpha, scale, head_reduce, backend):
    """(out, entropy, lse) off the Triton path: the CPU implementation, or the reference."""
    if uses_cpu_path(q, backend):
        return attention_with_entropy_cpu(q, k, v, alpha, scale, head_reduce)
    return attention_with_entropy_reference(q, k, v, alpha, scale, head_reduce)


def check_head_dim(D: int) -> None:
    """Head dims the Triton kernels support: ``MIN_HEAD_DIM`` ≤ D ≤ ``MAX_HEAD_DIM``."""
    if not MIN_HEAD_DIM <= D <= MAX_HEAD_DIM:
        raise ValueError(
            f"head dim D={D} is outside the Triton kernel's supported range [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}]"
        )
