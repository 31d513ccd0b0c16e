"""The CPU path (renyi_prune.cpu_attention) vs the fp64 eager reference: values, gradients, non-finite
rows, edge shapes, and the public op's dispatch to it on CPU."""

import math

import pytest
import torch

import renyi_prune
import renyi_prune.cpu_attention as cpu_attention
import renyi_prune.ops as ops
from renyi_prune import attention_with_entropy, attention_with_entropy_reference
from renyi_prune.cpu_attention import attention_with_entropy_cpu

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ALPHAS = [0.0, 0.5, 0.9, 1 - 1e-6, 1.0, 1 + 1e-6, 2.0, 3.0, 1e3, math.inf]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
B, H, N, M, D = 2, 3, 37, 41, 32


def _leaves(dtype=torch.float64, n=N, m=M, d=D, q_scale=3.0, seed=0):
    """Leaf buffers: q (B, n, H, d) and kv (B, m, 2, H, d), as timm lays them out."""
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, n, H, d, generator=g, dtype=torch.float64) * q_scale).to(dtype)
    kv = torch.randn(B, m, 2, H, d, generator=g, dtype=torch.float64).to(dtype)
    return q.requires_grad_(True), kv.requires_grad_(True)


def _views(q, kv):
    """q (B, H, n, d), k and v (B, H, m, d) as strided views of the leaves (timm's permute)."""
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
    return q.transpose(1, 2), k, v


def _qkv(*args, **kwargs):
    return tuple(t.detach() for t in _views(*_leaves(*args, **kwargs)))


def _reference64(q, k, v, alpha, head_reduce="none"):
    return attention_with_entropy_reference(q.double(), k.double(), v.double(), alpha, None, head_reduce)


def _assert_close(got, expected, tol):
    torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_fp64_reference(alpha, dtype, tol):
    q, k, v = _qkv(dtype)
    assert not q.is_contiguous() and not k.is_contiguous()
    out, ent, lse = attention_with_entropy_cpu(q, k, v, alpha, D**-0.5, "none")
    ref_out, ref_ent, ref_lse = _reference64(q, k, v, alpha)
    assert out.dtype == dtype and ent.dtype == lse.dtype == torch.float32
    assert ent.shape == lse.shape == (B, H, N) and out.shape == (B, H, N, D)
    _assert_close(out, ref_out, tol[dtype]["out"])
    _assert_close(ent, ref_ent, tol[dtype]["ent"])
    _assert_close(lse, ref_lse, tol[dtype]["lse"])


@pytest.mark.parametrize(
    "budget, chunks",
    [(2 * N * M, (2, N)), (5 * M, (1, 5)), (1, (1, 1))],
    ids=["two slices per chunk", "5 query rows per chunk", "one row per chunk"],
)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_chunks_match_fp64_reference(alpha, budget, chunks, monkeypatch, tol):
    """Chunks of (batch·head) slices, and of query rows when one slice's logits exceed the budget,
    give the reference's values (last chunks partial: B·H = 6 slices, N = 37 rows) and gradients."""
    monkeypatch.setattr(cpu_attention, "CHUNK_ELEMENTS", budget)
    assert cpu_attention._chunk_sizes(N, M) == chunks
    q, k, v = _qkv(torch.float32)
    out, ent, lse = attention_with_entropy_cpu(q, k, v, alpha, D**-0.5, "none")
    ref_out, ref_ent, ref_lse = _reference64(q, k, v, alpha)
    assert out.shape == (B, H, N, D) and ent.shape == lse.shape == (B, H, N)
    _assert_close(out, ref_out, tol[torch.float32]["out"])
    _assert_close(ent, ref_ent, tol[torch.float32]["ent"])
    _assert_close(lse, ref_lse, tol[torch.float32]["lse"])
    if alpha in (1.0, 2.0, math.inf):  # autograd through the chunks (torch.cat), fp64
        leaves = _leaves(torch.float64, n=6, m=7, d=8)
        monkeypatch.setattr(cpu_attention, "CHUNK_ELEMENTS", min(budget, 2 * 7))
        out, ent, _ = attention_with_entropy_cpu(*_views(*leaves), alpha, 8**-0.5, "mean")
        ref = attention_with_entropy_reference(*_views(*leaves), alpha, 8**-0.5, "mean")
        got = torch.autograd.grad(out.sum() + ent.sum(), leaves)
        expected = torch.autograd.grad(ref[0].sum() + ref[1].sum(), leaves)
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_peaked_and_flat_rows(alpha, tol):
    """Nearly one-hot rows (H_α ≈ 0, where lse − Σ p s cancels) and uniform rows (H_α = log M)."""
    q, k, v = _qkv(torch.float32, q_scale=40.0)
    q = torch.cat([q[:, :, :10], torch.zeros_like(q[:, :, :5])], dim=2)
    out, ent, lse = attention_with_entropy_cpu(q, k, v, alpha, D**-0.5, "none")
    ref_out, ref_ent, ref_lse = _reference64(q, k, v, alpha)
    _assert_close(ent, ref_ent, 5e-5)
    _assert_close(lse, ref_lse, tol[torch.float32]["lse"])
    _assert_close(out, ref_out, tol[torch.float32]["out"])
    torch.testing.assert_close(ent[:, :, 10:], torch.full_like(ent[:, :, 10:], math.log(M)))


def test_fast_path_is_taken_for_finite_inputs(monkeypatch):
    """The comparisons above exercise the fast path: the reference-rule fallback is not called."""

    def fail(*args):
        raise AssertionError("reference fallback used for finite inputs")

    monkeypatch.setattr(cpu_attention, "attention_with_entropy_reference", fail)
    for alpha in ALPHAS:
        attention_with_entropy_cpu(*_qkv(torch.float32), alpha, D**-0.5, "none")


@pytest.mark.parametrize("alpha", ALPHAS)
def test_grads_match_fp64_reference(alpha):
    """d/d(q, k, v) of random projections of out and of the per-head entropy, both in fp64."""
    got, ref = [], []
    for fn, grads in ((attention_with_entropy_cpu, got), (attention_with_entropy_reference, ref)):
        leaves = _leaves(torch.float64, n=6, m=7, d=8)
        out, ent, _ = fn(*_views(*leaves), alpha, 8**-0.5, "none")
        gen = torch.Generator().manual_seed(2)
        loss = (out * torch.randn(out.shape, generator=gen, dtype=torch.float64)).sum()
        if ent.requires_grad:
            loss = loss + (ent * torch.randn(ent.shape, generator=gen, dtype=torch.float64)).sum()
        grads.extend(torch.autograd.grad(loss, leaves))
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
        assert a.abs().max() > 0


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0, 1e3, math.inf])
def test_gradcheck(alpha):
    q, k, v = (t.contiguous().requires_grad_(True) for t in _qkv(torch.float64, n=4, m=5, d=4, q_scale=1.0))
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention_with_entropy_cpu(q, k, v, alpha, 0.5, "mean")[:2], (q, k, v)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 2.0, math.inf])
def test_grads_through_the_op_on_cpu(alpha, dtype):
    """Public op on CPU (eager path), timm-strided half inputs: grads of out and entropy vs fp64 reference."""
    leaves = _leaves(dtype, n=17, m=17, d=16, q_scale=1.0)
    leaves64 = tuple(t.detach().double().requires_grad_(True) for t in leaves)
    with ops.eager_on_cpu():
        out, ent = attention_with_entropy(*_views(*leaves), alpha, entropy_grad=True)
    out64, ent64, _ = attention_with_entropy_reference(*_views(*leaves64), alpha)
    g = torch.Generator().manual_seed(3)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ((out.double() * weights).sum() + ent.sum()).backward()
    ((out64 * weights).sum() + ent64.sum()).backward()
    tol = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    for leaf, leaf64 in zip(leaves, leaves64, strict=True):
        ref = leaf64.grad
        torch.testing.assert_close(leaf.grad.double(), ref, atol=tol * ref.abs().max().item(), rtol=tol)


def test_nonfinite_rows_as_the_reference(nonfinite_case, nonfinite_inputs):
    q, k, v = nonfinite_inputs(nonfinite_case)
    for alpha in ALPHAS:
        got = attention_with_entropy_cpu(q, k, v, alpha, q.shape[-1] ** -0.5, "none")
        ref = attention_with_entropy_reference(q, k, v, alpha, None, "none")
        for a, b in zip(got, ref, strict=True):
            assert torch.equal(a.isnan(), b.isnan()), (nonfinite_case, alpha)
            assert torch.equal(a.isinf(), b.isinf()), (nonfinite_case, alpha)
            _assert_close(a, b, 1e-5)
        assert torch.equal(got[1].isnan(), ~torch.isfinite(got[2]))


def test_huge_finite_inputs_take_the_reference_rules():
    """Finite q and k whose logits overflow: the careful path, with the reference's non-finite rows."""
    q, k, v = _qkv(torch.float32, q_scale=1e20)
    k = k * 1e20
    for alpha in (1.0, math.inf):
        got = attention_with_entropy_cpu(q, k, v, alpha, D**-0.5, "none")
        ref = attention_with_entropy_reference(q, k, v, alpha, None, "none")
        assert not torch.isfinite(ref[2]).all()
        for a, b in zip(got, ref, strict=True):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())


@pytest.mark.parametrize("shape", [(0, 2, 5, 7, 16), (2, 2, 1, 7, 16), (2, 2, 1, 1, 16), (2, 2, 0, 3, 16)])
@pytest.mark.parametrize("head_reduce", ["mean", "none"])
def test_edge_shapes(shape, head_reduce):
    b, h, n, m, d = shape
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, n, d, generator=g)
    k, v = torch.randn(2, b, h, m, d, generator=g).unbind(0)
    for alpha in (0.0, 1.0, 2.0, math.inf):
        got = attention_with_entropy_cpu(q, k, v, alpha, d**-0.5, head_reduce)
        ref = _reference64(q, k, v, alpha, head_reduce)
        for a, r in zip(got, ref, strict=True):
            assert a.shape == r.shape
            _assert_close(a, r, 2e-5)


def test_op_on_cpu_dispatches_to_the_cpu_path(monkeypatch, tol):
    """eager_on_cpu() and TRITON_INTERPRET=0 → the CPU path (fp16/bf16/fp32); backend='eager' and fp64 →
    the reference; results and detaching as the op documents."""
    calls = []

    def spy(*args):
        calls.append(args[3])
        return attention_with_entropy_cpu(*args)

    monkeypatch.setattr(ops, "attention_with_entropy_cpu", spy)
    q, k, v = _qkv(torch.float32)
    with ops.eager_on_cpu():
        out, ent, lse = attention_with_entropy(q, k, v, alpha=2.0, return_lse=True)
    assert calls == [2.0] and ent.shape == (B, N) and not lse.requires_grad
    ref = _reference64(q, k, v, 2.0, "mean")
    _assert_close(ent, ref[1], tol[torch.float32]["ent"])
    _assert_close(out, ref[0], tol[torch.float32]["out"])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    attention_with_entropy(q.half(), k.half(), v.half(), alpha=math.inf)
    assert calls == [2.0, math.inf]
    with ops.eager_on_cpu():
        attention_with_entropy(q, k, v, backend="eager")
        attention_with_entropy(q.double(), k.double(), v.double())
    assert calls == [2.0, math.inf]
    assert renyi_prune.attention_with_entropy is attention_with_entropy


def test_torch_compile_fullgraph_on_the_cpu_path():
    """The finiteness check does not break a fullgraph compile (it takes the reference-rule path there)."""
    q, k, v = _qkv(torch.float32)

    def fn(q, k, v):
        return attention_with_entropy(q, k, v, alpha=2.0, return_lse=True)

    torch._dynamo.reset()
    with ops.eager_on_cpu():  # read once when the graph is traced
        got = torch.compile(fn, backend="eager", fullgraph=True)(q, k, v)
    for a, r in zip(got, _reference64(q, k, v, 2.0, "mean"), strict=True):
        _assert_close(a, r, 2e-5)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0, math.inf])
def test_autocast_does_not_lower_the_precision(alpha):
    """Under torch.autocast (bf16 on CPU, a common inference setting) the op, the reference and the column
    pass compute in fp32 as documented: the same results as without autocast (integer α ≥ 2 once failed
    with a bf16 logit dtype)."""
    q, k, v = _qkv(torch.float32)
    calls = {
        "op": lambda: attention_with_entropy(q, k, v, alpha=alpha, head_reduce="none", return_lse=True),
        "reference": lambda: attention_with_entropy_reference(q, k, v, alpha, None, "none"),
        "column norm": lambda: (renyi_prune.attention_column_norm(q, k, order=2.0),),
        "probs": lambda: (renyi_prune.attention_probs(q, k),),
    }
    for name, call in calls.items():
        plain = call()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = call()
        for a, b in zip(amp, plain, strict=True):
            assert a.dtype == b.dtype, name
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
