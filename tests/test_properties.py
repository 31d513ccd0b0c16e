"""Property-based tests (hypothesis): the Triton path agrees with the reference over random shapes,
Rényi orders and dtypes; entropies obey the inequalities every Rényi entropy obeys."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from renyi_prune import attention_with_entropy, attention_with_entropy_reference

SETTINGS = settings(max_examples=25)  # deterministic: the profile in tests/conftest.py
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@st.composite
def attention_inputs(draw):
    B = draw(st.integers(1, 2))
    H = draw(st.integers(1, 3))
    N = draw(st.integers(1, 150))
    D = draw(st.sampled_from([16, 24, 32, 48, 64]))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.floats(0.1, 3.0))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    qkv = (torch.randn(B, N, 3, H, D, generator=g) * scale).to(dtype)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


alphas = st.one_of(
    st.sampled_from([0.0, 1.0, math.inf, 1.0 - 1e-6, 1.0 + 1e-6]),
    st.floats(0.05, 8.0, allow_nan=False),
)


@SETTINGS
@given(qkv=attention_inputs(), alpha=alphas)
def test_triton_matches_reference(qkv, alpha, tol):
    q, k, v = qkv
    out, ent = attention_with_entropy(q, k, v, alpha=alpha, head_reduce="none")
    r_out, r_ent, _ = attention_with_entropy_reference(
        q.double(), k.double(), v.double(), alpha, head_reduce="none"
    )
    bound = tol[q.dtype]
    logit_scale = max(
        1.0, ((q.double() @ k.double().transpose(-2, -1)) * q.shape[-1] ** -0.5).abs().max().item() / 10
    )
    torch.testing.assert_close(out.double(), r_out, atol=bound["out"] * logit_scale, rtol=bound["out"])
    torch.testing.assert_close(ent.double(), r_ent, atol=bound["ent"] * logit_scale, rtol=bound["ent"])


@SETTINGS
@given(qkv=attention_inputs(), a=st.floats(0.0, 6.0), b=st.floats(0.0, 6.0))
def test_renyi_entropy_bounds_and_monotonicity(qkv, a, b):
    """0 ≤ H_∞ ≤ H_β ≤ H_α ≤ H_0 = log N for α ≤ β."""
    q, k, v = qkv
    lo, hi = sorted((a, b))
    N = q.shape[2]
    h_lo = attention_with_entropy(q, k, v, alpha=lo, head_reduce="none")[1]
    h_hi = attention_with_entropy(q, k, v, alpha=hi, head_reduce="none")[1]
    h_inf = attention_with_entropy(q, k, v, alpha=math.inf, head_reduce="none")[1]
    eps = 1e-4 * max(1.0, math.log(N))
    assert (h_inf >= -eps).all()
    assert (h_hi >= h_inf - eps).all() and (h_lo >= h_hi - eps).all()
    assert (h_lo <= math.log(N) + eps).all()


@settings(max_examples=10)
@given(qkv=attention_inputs(), alpha=alphas, perm_seed=st.integers(0, 1000))
def test_a_samples_entropy_does_not_depend_on_its_batch(qkv, alpha, perm_seed):
    """Same bits for a sample whatever other samples share its batch, and in whatever order."""
    q, k, v = qkv
    extra = tuple(torch.randn_like(t, dtype=torch.float32).to(t.dtype) for t in (q, k, v))
    big = [torch.cat([t, e]) for t, e in zip((q, k, v), extra, strict=True)]
    perm = torch.randperm(big[0].shape[0], generator=torch.Generator().manual_seed(perm_seed))
    out_alone, ent_alone = attention_with_entropy(q, k, v, alpha=alpha)
    out_big, ent_big = attention_with_entropy(*(t[perm] for t in big), alpha=alpha)
    inverse = torch.argsort(perm)[: q.shape[0]]
    assert torch.equal(ent_big[inverse], ent_alone) and torch.equal(out_big[inverse], out_alone)
