"""The reversible timm patch: pruning semantics, criteria, prefix tokens, unsupported models."""

import math

import pytest
import torch

import renyi_prune
from renyi_prune import attention_with_entropy_reference
from renyi_prune.pruning import num_kept, select_tokens


@pytest.fixture(scope="module")
def deit_tiny(timm_model):
    return timm_model("deit_tiny_patch16_224")


@pytest.fixture(scope="module")
def images(device):
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)


def block_inputs(model, x, upto):
    """Token sequence entering block ``upto`` of an unpatched model."""
    with torch.no_grad():
        t = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for blk in model.blocks[:upto]:
            t = blk(t)
    return t


def reference_scores(model, tokens, block, alpha):
    """Head-mean Rényi entropy of each token's attention row, from the materialized attention."""
    attn = model.blocks[block].attn
    B, N, C = tokens.shape
    qkv = (
        attn.qkv(model.blocks[block].norm1(tokens))
        .reshape(B, N, 3, attn.num_heads, -1)
        .permute(2, 0, 3, 1, 4)
    )
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return attention_with_entropy_reference(q.double(), k.double(), v.double(), alpha, attn.scale)[1]


def test_keep_rate_one_gives_unpatched_logits(deit_tiny, images):
    with torch.no_grad():
        ref = deit_tiny(images)
        renyi_prune.patch(deit_tiny, keep_rate=1.0, prune_blocks=range(12))
        out = deit_tiny(images)
        renyi_prune.unpatch(deit_tiny)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("alpha", [1.0, 2.0, math.inf])
def test_kept_tokens_are_lowest_entropy(deit_tiny, images, alpha):
    renyi_prune.patch(deit_tiny, keep_rate=0.5, alpha=alpha)
    with torch.no_grad():
        deit_tiny(images)
    kept = renyi_prune.kept_token_indices(deit_tiny)
    scores = renyi_prune.token_scores(deit_tiny)
    renyi_prune.unpatch(deit_tiny)
    assert [t.shape[1] for t in kept.values()] == [1 + 98, 1 + 49, 1 + 25]
    # first pruning block: its input is the unpruned sequence, so compare with the reference directly
    tokens = block_inputs(deit_tiny, images, 3)
    ref = reference_scores(deit_tiny, tokens, 3, alpha)
    torch.testing.assert_close(scores[3].double(), ref, atol=1e-4, rtol=1e-4)
    expected = torch.argsort(ref[:, 1:], dim=1, stable=True)[:, :98].sort(1).values + 1
    got = kept[3][:, 1:]
    # allow disagreement only where reference scores are within fp32 noise of the cut
    for b in range(images.shape[0]):
        diff = set(got[b].tolist()) ^ set(expected[b].tolist())
        cut = ref[b, 1:].sort().values[97]
        assert all(abs(ref[b, i].item() - cut.item()) < 1e-5 for i in diff)
    # later blocks keep positions that were kept before, and kept positions are strictly ascending
    assert set(kept[6][0].tolist()) <= set(kept[3][0].tolist())
    assert set(kept[9][0].tolist()) <= set(kept[6][0].tolist())
    for idx in kept.values():
        assert (idx[:, 0] == 0).all() and (idx[:, 1:].diff(dim=1) > 0).all()


def test_evit_keeps_highest_cls_attention(deit_tiny, images, assert_same_choices):
    renyi_prune.patch(deit_tiny, keep_rate=0.7, criterion="evit")
    with torch.no_grad():
        deit_tiny(images)
    kept = renyi_prune.kept_token_indices(deit_tiny)[3]
    renyi_prune.unpatch(deit_tiny)
    tokens = block_inputs(deit_tiny, images, 3)
    attn = deit_tiny.blocks[3].attn
    B, N, C = tokens.shape
    qkv = (
        attn.qkv(deit_tiny.blocks[3].norm1(tokens))
        .reshape(B, N, 3, attn.num_heads, -1)
        .permute(2, 0, 3, 1, 4)
    )
    p = renyi_prune.attention_probs(qkv[0].double(), qkv[1].double(), attn.scale)
    cls = p[:, :, 0].mean(1)  # (B, N): the fp64 CLS attention each token receives
    k = num_kept(197, 1, 0.7)
    expected = torch.argsort(-cls[:, 1:], dim=1, stable=True)[:, :k].sort(1).values + 1
    expected = torch.cat([torch.zeros_like(expected[:, :1]), expected], dim=1)
    # fp32 vs fp64: the same tokens up to near-ties at the cut
    assert_same_choices({3: expected}, {3: kept}, {3: cls}, "highest", atol=1e-6)


def test_unpatch_restores_exactly(images, timm_model):
    model = timm_model("deit_tiny_patch16_224")
    before = {i: dict(blk.__dict__) for i, blk in enumerate(model.blocks)}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(images)
        renyi_prune.patch(model, keep_rate=0.5)
        assert renyi_prune.is_patched(model)
        pruned = model(images)
        renyi_prune.patch(model, keep_rate=0.7, criterion="evit")  # re-patching replaces the patch
        renyi_prune.unpatch(model)
        after = model(images)
    assert not renyi_prune.is_patched(model)
    assert not torch.allclose(pruned, ref)
    assert torch.equal(after, ref)
    assert {i: dict(blk.__dict__) for i, blk in enumerate(model.blocks)} == before
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_distilled_prefix_tokens_always_kept(device, timm_model):
    model = timm_model("deit_small_distilled_patch16_224")
    assert model.num_prefix_tokens == 2
    x = torch.randn(1, 3, 224, 224).to(device)
    renyi_prune.patch(model, keep_rate=0.3, alpha=2.0)
    with torch.no_grad():
        out = model(x)
    kept = renyi_prune.kept_token_indices(model)
    assert out.shape == (1, 1000)
    for idx in kept.values():
        assert idx[0, :2].tolist() == [0, 1] and (idx[0, 2:] >= 2).all()
    assert [t.shape[1] for t in kept.values()] == [2 + 59, 2 + 18, 2 + 6]


def test_layerscale_dinov2_and_qk_norm(device, timm_model):
    """LayerScale (ls1/ls2) and q_norm/k_norm are applied by the pruning block: keep_rate=1 is exact."""
    for model in (
        timm_model("vit_small_patch14_dinov2", img_size=56, init_values=0.5),
        timm_model("vit_tiny_patch16_224", img_size=64, qk_norm=True),
    ):
        x = torch.randn(1, 3, *model.patch_embed.img_size).to(device)
        with torch.no_grad():
            ref = model(x)
            renyi_prune.patch(model, keep_rate=1.0, prune_blocks=[0, 5])
            out = model(x)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_select_tokens_ties_and_nan():
    score = torch.tensor([[9.0, 1.0, 1.0, float("nan"), 0.5, 1.0]])
    assert select_tokens(score, 1, 3, "lowest").tolist() == [[0, 1, 2, 4]]
    assert select_tokens(score, 1, 3, "highest").tolist() == [[0, 1, 2, 5]]
    assert select_tokens(score, 1, 5, "highest").tolist() == [[0, 1, 2, 3, 4, 5]]


def test_alpha_zero_warns(deit_tiny):
    with pytest.warns(UserWarning, match="alpha=0"):
        renyi_prune.patch(deit_tiny, alpha=0.0)
    renyi_prune.unpatch(deit_tiny)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("deit_tiny_patch16_224", {}),
        ("deit_small_patch16_224", {}),
        ("deit_base_patch16_224", {}),
        ("deit_small_distilled_patch16_224", {}),
        ("vit_small_patch14_dinov2", {"img_size": 224}),
    ],
)
def test_supported_timm_models_prune(name, kwargs, device, timm_model):
    model = timm_model(name, **kwargs)
    x = torch.randn(1, 3, 224, 224).to(device)
    npt = model.num_prefix_tokens
    n = model.patch_embed.num_patches
    renyi_prune.patch(model, keep_rate=0.5, alpha=2.0)
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()
    counts = [t.shape[1] - npt for t in renyi_prune.kept_token_indices(model).values()]
    expected = []
    for _ in range(3):
        n = num_kept(n + npt, npt, 0.5)
        expected.append(n)
    assert counts == expected
