"""The public op: dispatch and the eager CPU path (its argument checks are in test_validation.py)."""

import math
import os
import threading

import pytest
import torch

from renyi_prune import attention_with_entropy, attention_with_entropy_reference, renyi_entropy
from renyi_prune.reference import attention_probs


def test_eager_cpu_path_without_interpreter(monkeypatch, timm_qkv):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = (t.cpu() for t in timm_qkv(2, 3, 33, 16, device="cpu"))
    out, ent = attention_with_entropy(q, k, v, alpha=2.0)
    r_out, r_ent, _ = attention_with_entropy_reference(q, k, v, 2.0)
    # the CPU path (renyi_prune.cpu_attention), not the reference's arithmetic: equal to rounding
    torch.testing.assert_close(out, r_out, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(ent, r_ent, atol=2e-5, rtol=2e-5)
    # the eager path is differentiable
    q.requires_grad_(True)
    attention_with_entropy(q, k, v)[0].sum().backward()
    assert q.grad is not None


def test_triton_and_eager_paths_agree(monkeypatch, timm_qkv):
    q, k, v = timm_qkv(2, 3, 50, 32, device="cpu")
    fused = attention_with_entropy(q, k, v, alpha=0.5)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    eager = attention_with_entropy(q, k, v, alpha=0.5)
    torch.testing.assert_close(fused[0], eager[0], atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(fused[1], eager[1], atol=2e-5, rtol=2e-5)


def test_fp64_uses_reference(timm_qkv):
    q, k, v = (t.double() for t in timm_qkv(1, 2, 20, 16))
    out, ent = attention_with_entropy(q, k, v)
    assert out.dtype == ent.dtype == torch.float64


def test_empty_batch(timm_qkv):
    q, k, v = timm_qkv(0, 2, 20, 16)
    out, ent = attention_with_entropy(q, k, v)
    assert out.shape == (0, 2, 20, 16) and ent.shape == (0, 20)


def test_reference_matches_textbook_definitions():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    shannon = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert renyi_entropy(p, 1.0).item() == pytest.approx(shannon)
    assert renyi_entropy(p, 2.0).item() == pytest.approx(-math.log(0.25 + 2 * 0.0625))
    assert renyi_entropy(p, math.inf).item() == pytest.approx(-math.log(0.5))
    assert renyi_entropy(p, 0.0).item() == pytest.approx(math.log(3))
    q, k = torch.randn(2, 1, 1, 5, 8, dtype=torch.float64).unbind(0)
    torch.testing.assert_close(attention_probs(q, k).sum(-1), torch.ones(1, 1, 5, dtype=torch.float64))


def test_backend_choice(monkeypatch, timm_qkv):
    q, k, v = timm_qkv(1, 2, 20, 16, device="cpu")
    fused = attention_with_entropy(q, k, v, backend="triton")  # interpreter on CPU
    eager = attention_with_entropy(q, k, v, backend="eager")
    torch.testing.assert_close(fused, eager, atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="backend"):
        attention_with_entropy(q, k, v, backend="cuda")
    with pytest.raises(ValueError, match="backend='triton'"):
        attention_with_entropy(q.double(), k.double(), v.double(), backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="backend='triton'"):
        attention_with_entropy(q, k, v, backend="triton")


def test_eager_on_cpu_is_a_context_not_the_environment(timm_qkv):
    """eager_on_cpu() leaves os.environ alone, nests, restores on exit (also after an error), and holds for
    its own thread only."""
    from renyi_prune.kernels import is_interpreting
    from renyi_prune.ops import eager_on_cpu, uses_triton

    if not is_interpreting():
        pytest.skip("CPU tensors take the Triton path only under TRITON_INTERPRET=1")
    q, k, v = timm_qkv(1, 2, 20, 16, device="cpu")
    env = dict(os.environ)

    def in_thread(fn):
        seen = []
        t = threading.Thread(target=lambda: seen.append(fn()))
        t.start()
        t.join()
        return seen[0]

    assert uses_triton(q)
    with eager_on_cpu():
        assert dict(os.environ) == env and not uses_triton(q)
        with eager_on_cpu():
            assert not uses_triton(q)
        assert not uses_triton(q)  # the inner exit restored the outer block's value, not the default
        assert in_thread(lambda: uses_triton(q))  # another thread keeps its own path
        out, ent = attention_with_entropy(q, k, v, alpha=2.0)
        r_out, r_ent, _ = attention_with_entropy_reference(q, k, v, 2.0)
        torch.testing.assert_close(out, r_out, atol=2e-5, rtol=2e-5)  # the CPU path: equal to rounding
        torch.testing.assert_close(ent, r_ent, atol=2e-5, rtol=2e-5)
        with pytest.raises(ValueError, match="eager_on_cpu"):
            attention_with_entropy(q, k, v, backend="triton")
    assert uses_triton(q) and dict(os.environ) == env

    def eager_in_thread():
        with eager_on_cpu():
            return uses_triton(q)

    assert in_thread(eager_in_thread) is False and uses_triton(q)  # ... and its block stays in it
    with pytest.raises(RuntimeError, match="boom"), eager_on_cpu():
        raise RuntimeError("boom")
    assert uses_triton(q)
