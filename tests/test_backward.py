"""Backward of the fused op vs autograd through the fp64 eager reference; training and torch.compile."""

import math

import pytest
import timm
import torch

import renyi_prune
from renyi_prune import attention_with_entropy, attention_with_entropy_reference

# gradient tolerance per input dtype, relative to the largest reference gradient (GPU half paths round
# P and dS to the input dtype before their matmuls, as every flash backward does)
GRAD_TOL = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def qkv_leaf(device):
    """``qkv_leaf(B, H, N, D, dtype=float32, scale=1.0, seed=0)``: a (B, N, 3, H, D) leaf, test device."""

    def qkv_leaf(B, H, N, D, dtype=torch.float32, scale=1.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        return (
            (torch.randn(B, N, 3, H, D, generator=g) * scale)
            .to(device=device, dtype=dtype)
            .requires_grad_(True)
        )

    return qkv_leaf


def split(qkv):
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # timm's strided q, k, v views


def grads(qkv, alpha, entropy_grad, reference, seed=1):
    """d/d(qkv) of <out, G_out> (+ <entropy, G_ent> when entropy_grad), per-head entropy."""
    leaf = (
        qkv.detach().double().requires_grad_(True) if reference else qkv.detach().clone().requires_grad_(True)
    )
    q, k, v = split(leaf)
    if reference:
        out, ent, _ = attention_with_entropy_reference(q, k, v, alpha, head_reduce="none")
    else:
        out, ent = attention_with_entropy(q, k, v, alpha, head_reduce="none", entropy_grad=entropy_grad)
    g = torch.Generator().manual_seed(seed)
    loss = (out.double() * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)).sum()
    if entropy_grad:
        loss = (
            loss
            + (ent.double() * torch.randn(ent.shape, generator=g, dtype=torch.float64).to(out.device)).sum()
        )
    loss.backward()
    return leaf.grad.double()


def check_grads(qkv, alpha, entropy_grad):
    got = grads(qkv, alpha, entropy_grad, reference=False)
    ref = grads(qkv, alpha, entropy_grad, reference=True)
    tol = GRAD_TOL[qkv.dtype] * ref.abs().max().item()
    torch.testing.assert_close(got, ref, atol=tol, rtol=GRAD_TOL[qkv.dtype])


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, math.inf])
@pytest.mark.parametrize("entropy_grad", [False, True])
def test_grads_all_alphas(alpha, entropy_grad, qkv_leaf):
    check_grads(qkv_leaf(2, 3, 197, 64), alpha, entropy_grad)


@pytest.mark.parametrize("N, D", [(1, 16), (17, 40), (139, 64), (197, 128), (69, 24), (98, 80)])
def test_grads_shapes(N, D, qkv_leaf):
    check_grads(qkv_leaf(1, 2, N, D, seed=N), 1.0, entropy_grad=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_grads_half_dtypes(dtype, qkv_leaf):
    check_grads(qkv_leaf(2, 2, 139, 64, dtype=dtype), 2.0, entropy_grad=True)


@pytest.mark.parametrize("alpha", [0.0, 1.0 - 1e-6, 1.0 + 1e-6, 5.0])
def test_entropy_grads_other_orders(alpha, qkv_leaf):
    """α → 1 from either side gives the Shannon gradient; α = 0 has none; large α stays finite."""
    check_grads(qkv_leaf(1, 2, 100, 32, scale=1.5), alpha, entropy_grad=True)


def test_peaked_rows_grads_finite(qkv_leaf):
    qkv = qkv_leaf(1, 2, 120, 64, scale=5.0)
    for alpha in (0.5, 1.0, 2.0, math.inf):
        got = grads(qkv, alpha, True, reference=False)
        assert torch.isfinite(got).all()


def test_entropy_has_no_grad_by_default(qkv_leaf):
    q, k, v = split(qkv_leaf(1, 2, 20, 16))
    out, ent = attention_with_entropy(q, k, v)
    assert out.requires_grad and not ent.requires_grad
    out, ent = attention_with_entropy(q, k, v, entropy_grad=True)
    assert ent.requires_grad


def test_backward_is_deterministic(qkv_leaf):
    qkv = qkv_leaf(2, 3, 197, 64, dtype=torch.float16)
    a = grads(qkv, 2.0, True, reference=False)
    b = grads(qkv, 2.0, True, reference=False)
    assert torch.equal(a, b)


def test_every_gradient_element_is_written(nan_empty, qkv_leaf):
    """Outputs come from torch.empty, NaN-filled here: no element may stay unwritten."""
    for N in (1, 77):
        got = grads(qkv_leaf(1, 2, N, 24), 1.0, True, reference=False)
        assert not got.isnan().any()


def test_backward_op_fake_impl_is_consistent(qkv_leaf):
    from renyi_prune.kernels.attention_entropy_fwd import attention_entropy_fwd
    from renyi_prune.ops import _fused_bwd

    q, k, v = (t.detach().contiguous() for t in split(qkv_leaf(1, 2, 17, 16)))
    out, lse, ent, argmax = attention_entropy_fwd(q, k, v, 0.25, 1.0)
    args = (torch.randn_like(out), torch.randn_like(ent), q, k, v, out, lse, ent, argmax, 0.25, 1.0)
    torch.library.opcheck(_fused_bwd, args, test_utils=("test_schema", "test_faketensor"))


# --- a pruned DeiT trains ------------------------------------------------------------------------------


def train_step(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), {
        n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.fixture(scope="module")
def tiny_vit(device):
    torch.manual_seed(0)
    # DeiT-tiny layout (3 heads, D = 64) at 64 px: 16 patches, so the interpreter stays quick
    model = timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10)
    with torch.no_grad():  # peaked attention, as a trained ViT has: entropies far apart, no near-ties
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model.to(device).train()


def test_pruned_training_step_matches_eager(tiny_vit, monkeypatch, assert_same_choices, cut_gap, device):
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)).to(device)
    y = torch.tensor([1, 2, 3, 4], device=device)
    renyi_prune.patch(tiny_vit, keep_rate=0.5, alpha=2.0, prune_blocks=(3, 6, 9))
    try:
        loss, g = train_step(tiny_vit, x, y)  # Triton forward + backward (interpreter on CPU)
        kept = renyi_prune.kept_token_indices(tiny_vit)
        scores = renyi_prune.token_scores(tiny_vit)
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        model_cpu = tiny_vit.cpu()
        loss_ref, g_ref = train_step(model_cpu, x.cpu(), y.cpu())  # eager reference path
        kept_ref = renyi_prune.kept_token_indices(model_cpu)
    finally:
        renyi_prune.unpatch(tiny_vit.to(device))
    # the paths round differently, so equal kept sets are asserted only where the scores leave a margin
    # at the cut far above fp32 rounding (a property of this input, the same on every machine)
    for i in kept:
        assert cut_gap(scores[i], kept[i].shape[1] - 1, "lowest") > 1e-4, f"near-tie at block {i}: new seed"
    assert assert_same_choices(kept, kept_ref, scores, "lowest")
    torch.testing.assert_close(loss.cpu(), loss_ref, atol=1e-5, rtol=1e-5)
    assert g.keys() == g_ref.keys() and len(g) > 0
    for name in g:
        torch.testing.assert_close(g[name].cpu(), g_ref[name], atol=1e-4, rtol=1e-3, msg=name)


def test_pruned_training_lowers_the_loss(tiny_vit, device):
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3)).to(device)
    y = torch.arange(4, device=device)
    renyi_prune.patch(tiny_vit, keep_rate=0.5)
    opt = torch.optim.SGD(tiny_vit.parameters(), lr=0.05)
    losses = []
    try:
        for _ in range(4):
            loss, _ = train_step(tiny_vit, x, y)
            opt.step()
            losses.append(loss.item())
    finally:
        renyi_prune.unpatch(tiny_vit)
    assert losses[-1] < losses[0]


def test_torch_compile_fullgraph_patched_model(device):
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10).to(device).train()
    renyi_prune.patch(model, keep_rate=0.5, alpha=2.0)
    x = torch.randn(2, 3, 64, 64).to(device)
    eager_out = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager" if device == "cpu" else "inductor", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager_out, atol=1e-4, rtol=1e-4)
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert [t.shape[1] for t in renyi_prune.kept_token_indices(model).values()] == [9, 5, 3]
