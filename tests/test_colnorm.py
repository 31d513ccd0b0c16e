"""Col-Ln column norms: the Triton column pass vs the fp64 eager reference (interpreter on CPU)."""

import math

import pytest
import torch

import renyi_prune.column_norm as column_norm_mod
from renyi_prune.column_norm import attention_column_norm, attention_column_norm_reference
from renyi_prune.kernels import attention_column_power_sum, attention_entropy_fwd
from renyi_prune.ops import uses_triton

ORDERS = [1.0, 2.0, 3.0, 4.0, math.inf]


def forward_lse(q, k, scale=None):
    """(B, H, N) fp32 log-sum-exp from the fused forward kernel (k doubles as v: the output is unused)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return attention_entropy_fwd(q, k, k, scale, 1.0)[1]


def reference(q, k, order, scale=None):
    return attention_column_norm_reference(q.double(), k.double(), order, scale, head_reduce="none")


@pytest.fixture(scope="module")
def check(tol):
    """``check(q, k, order, lse=None, scale=None, tol_factor=1.0)``: the column pass vs the fp64 reference."""

    def check(q, k, order, lse=None, scale=None, tol_factor=1.0):
        got = attention_column_norm(q, k, order=order, scale=scale, lse=lse, head_reduce="none")
        want = reference(q, k, order, scale)
        rtol = tol[q.dtype]["lse"] * tol_factor
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got.double(), want, rtol=rtol, atol=rtol * 1e-2, msg=f"order {order}")
        return got

    return check


def test_kernel_runs_on_this_machine(timm_qkv):
    q, _, _ = timm_qkv(1, 1, 4, 16)
    assert uses_triton(q), "tests must exercise the Triton kernel (GPU or TRITON_INTERPRET=1)"


@pytest.mark.parametrize("N", [1, 17, 197])
@pytest.mark.parametrize("D", [16, 40, 64])
def test_shapes_and_orders_with_forward_lse(N, D, check, timm_qkv):
    q, k, _ = timm_qkv(1, 2, N, D, seed=N * 1000 + D)
    lse = forward_lse(q, k)
    for order in ORDERS:
        check(q, k, order, lse=lse)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes(dtype, check, timm_qkv):
    q, k, _ = timm_qkv(2, 2, 197, 64, dtype=dtype)
    lse = forward_lse(q, k)
    for order in ORDERS:
        check(q, k, order, lse=lse)


def test_non_integer_orders_and_lse_computed_here(check, timm_qkv):
    q, k, _ = timm_qkv(1, 3, 150, 32, seed=3)
    for order in (0.5, 1.5, 2.5, 7.0):
        check(q, k, order)  # lse=None: chunked torch.logsumexp


def test_forward_lse_and_internal_lse_agree(timm_qkv):
    q, k, _ = timm_qkv(2, 2, 197, 40, seed=5)
    lse = forward_lse(q, k)
    for order in (1.0, 3.0, math.inf):
        a = attention_column_norm(q, k, order=order, lse=lse, head_reduce="none")
        b = attention_column_norm(q, k, order=order, head_reduce="none")
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_chunked_lse_matches_logsumexp(monkeypatch, timm_qkv):
    q, k, _ = timm_qkv(2, 3, 45, 16, seed=7)
    full = torch.logsumexp((q.float() @ k.float().transpose(-2, -1)) * 0.25, dim=-1)
    monkeypatch.setattr(column_norm_mod, "LSE_CHUNK_ELEMENTS", 2 * 3 * 45 * 4)  # 4 rows a chunk: 12 chunks
    torch.testing.assert_close(column_norm_mod._chunked_lse(q, k, 0.25), full, rtol=0, atol=1e-6)


def test_cross_attention_shapes(check, timm_qkv):
    """k may have another token count M than q: output is over the M keys."""
    for N, M in ((17, 150), (150, 17)):
        q, _, _ = timm_qkv(1, 2, N, 32, seed=N)
        _, k, _ = timm_qkv(1, 2, M, 32, seed=M + 1)
        for order in (1.0, 2.0, math.inf):
            got = check(q, k, order, lse=forward_lse(q, k))
            assert got.shape == (1, 2, M)


def test_peaked_rows(check, timm_qkv):
    """Logits ~100: rows near one-hot, p^4 down to underflow; no overflow, no NaN."""
    q, k, _ = timm_qkv(1, 2, 197, 64, scale=5.0)
    logits = (q.double() @ k.double().transpose(-2, -1)) * 64**-0.5
    assert logits.abs().max() > 90
    lse = forward_lse(q, k)
    # logits of ~100 in fp32 carry ~1e-5 absolute error, n times that in log p^n: looser tolerance
    for order in ORDERS:
        got = check(q, k, order, lse=lse, tol_factor=20)
        assert torch.isfinite(got).all()


def test_strided_and_contiguous_inputs_agree_bitwise(timm_qkv):
    q, k, _ = timm_qkv(2, 3, 70, 32)
    assert not q.is_contiguous() and not k.is_contiguous()
    lse = forward_lse(q, k)
    for order in (2.0, math.inf):
        a = attention_column_power_sum(q, k, lse, 32**-0.5, order)
        b = attention_column_power_sum(q.contiguous(), k.contiguous(), lse, 32**-0.5, order)
        assert torch.equal(a, b)
        # a head-dim-major layout (stride_d ≠ 1) too
        q2 = q.contiguous().transpose(2, 3).contiguous().transpose(2, 3)
        k2 = k.contiguous().transpose(2, 3).contiguous().transpose(2, 3)
        assert q2.stride(-1) != 1
        assert torch.equal(attention_column_power_sum(q2, k2, lse, 32**-0.5, order), a)


def test_order_one_is_column_sum_of_p(timm_qkv):
    q, k, _ = timm_qkv(2, 3, 97, 24, seed=11)
    col = attention_column_norm(q, k, order=1.0, lse=forward_lse(q, k), head_reduce="none")
    p = torch.softmax((q.double() @ k.double().transpose(-2, -1)) * 24**-0.5, dim=-1)
    torch.testing.assert_close(col.double(), p.sum(dim=-2), rtol=2e-5, atol=1e-7)
    # every row of P sums to 1, so each head's column sums add up to N
    torch.testing.assert_close(
        col.double().sum(-1), torch.full((2, 3), 97.0, dtype=torch.float64), rtol=1e-5, atol=0
    )


def test_head_mean_matches_per_head(timm_qkv):
    q, k, _ = timm_qkv(2, 3, 50, 32)
    lse = forward_lse(q, k)
    mean = attention_column_norm(q, k, order=2.0, lse=lse)
    per_head = attention_column_norm(q, k, order=2.0, lse=lse, head_reduce="none")
    assert mean.shape == (2, 50) and per_head.shape == (2, 3, 50)
    torch.testing.assert_close(mean, per_head.mean(1))


def test_deterministic_bits(timm_qkv):
    q, k, _ = timm_qkv(2, 6, 197, 64, dtype=torch.float16)
    lse = forward_lse(q, k)
    for order in (2.0, math.inf):
        a = attention_column_norm(q, k, order=order, lse=lse)
        b = attention_column_norm(q, k, order=order, lse=lse)
        assert torch.equal(a, b)


def test_every_output_element_is_written(nan_empty, timm_qkv):
    """Outputs come from torch.empty, NaN-filled here: no element may stay unwritten."""
    q, k, _ = timm_qkv(2, 2, 77, 24)  # 77 keys: a partial key tile
    lse = forward_lse(q, k)
    assert not lse.isnan().any()
    for order in (1.0, 2.5, math.inf):
        sums = attention_column_power_sum(q, k, lse, 24**-0.5, order)
        assert sums.shape == (2, 2, 77) and not sums.isnan().any()
        assert not attention_column_norm(q, k, order=order).isnan().any()


def test_empty_sizes(timm_qkv):
    q, k, _ = timm_qkv(1, 2, 5, 16)
    assert attention_column_power_sum(q, k[:, :, :0], forward_lse(q, k), 0.25, 2.0).shape == (1, 2, 0)
    no_rows = attention_column_power_sum(q[:, :, :0], k, torch.empty(1, 2, 0), 0.25, math.inf)
    assert torch.equal(no_rows, torch.zeros(1, 2, 5))


def test_no_gradient(timm_qkv):
    q, k, _ = timm_qkv(1, 2, 17, 16)
    q = q.detach().requires_grad_(True)
    assert not attention_column_norm(q, k, order=2.0).requires_grad


def test_eager_path_matches_triton(monkeypatch, timm_qkv):
    q, k, _ = timm_qkv(1, 2, 60, 32, seed=2)
    lse = forward_lse(q, k)
    triton_out = attention_column_norm(q, k, order=3.0, lse=lse)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not uses_triton(q)
    eager = attention_column_norm(q, k, order=3.0, lse=lse)
    eager_own_lse = attention_column_norm(q, k, order=3.0)
    assert eager.dtype == torch.float32
    torch.testing.assert_close(eager, triton_out, rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(eager_own_lse, triton_out, rtol=2e-5, atol=1e-7)
    # the eager path has no head-dim limit
    q8, k8, _ = timm_qkv(1, 2, 10, 8)
    assert attention_column_norm(q8, k8).shape == (1, 10)


def test_fp64_uses_reference(timm_qkv):
    q, k, _ = timm_qkv(1, 2, 30, 16, dtype=torch.float64)
    assert not uses_triton(q)
    lse = torch.logsumexp((q @ k.transpose(-2, -1)) * 0.25, dim=-1)
    got = attention_column_norm(q, k, order=2.0, lse=lse, head_reduce="none")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference(q, k, 2.0), rtol=1e-12, atol=0)


# --- the column pass as a custom op --------------------------------------------------------------------


def test_column_op_is_a_custom_op_with_a_consistent_fake(timm_qkv):
    """``renyi_prune::attention_column_power_sum``: schema and fake implementation agree with the kernel."""
    q, k, _ = (t.detach().contiguous() for t in timm_qkv(1, 2, 17, 16))
    lse = forward_lse(q, k)
    op = torch.ops.renyi_prune.attention_column_power_sum
    torch.library.opcheck(op, (q, k, lse, 0.25, 2.0), test_utils=("test_schema", "test_faketensor"))
    from torch._subclasses.fake_tensor import FakeTensorMode

    k9 = k[:, :, :9]  # M = 9 keys for N = 17 queries
    with FakeTensorMode() as mode:
        fq, fk = mode.from_tensor(q), mode.from_tensor(k9)
        fake = op(fq, fk, mode.from_tensor(lse), 0.25, math.inf)
    assert fake.shape == (1, 2, 9) and fake.dtype == torch.float32 and fake.device == q.device


def test_torch_compile_fullgraph_traces_the_column_pass(timm_qkv):
    """The Triton path compiles into one graph (the op is opaque to Dynamo) and gives the eager bits."""
    q, k, _ = timm_qkv(1, 2, 33, 16, seed=5)
    lse = forward_lse(q, k)

    def both(q, k, lse):
        return attention_column_norm(q, k, order=2.0, lse=lse), attention_column_norm(q, k, order=math.inf)

    torch._dynamo.reset()
    compiled = torch.compile(both, backend="eager", fullgraph=True)
    got, want = compiled(q, k, lse), both(q, k, lse)
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    assert got[0].shape == (1, 33) and got[0].dtype == torch.float32
