"""Every criterion against a straightforward eager computation on the materialized attention."""

import math

import pytest
import torch

import renyi_prune
from renyi_prune import attention_probs, renyi_entropy
from renyi_prune.criteria import (
    AttentionPass,
    Criterion,
    get_criterion,
    register_criterion,
    run_attention,
    unregister_criterion,
)
from renyi_prune.pruning import num_kept


@pytest.fixture(scope="module")
def deit_tiny(timm_model):
    return timm_model("deit_tiny_patch16_224")


@pytest.fixture(scope="module")
def images(device):
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)


def block3_probs(model, x):
    """P (B, H, N, N) fp64 of block 3 of the unpatched model, from its input tokens."""
    with torch.no_grad():
        t = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for blk in model.blocks[:3]:
            t = blk(t)
        attn = model.blocks[3].attn
        B, N, _ = t.shape
        qkv = attn.qkv(model.blocks[3].norm1(t)).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        return attention_probs(q.double(), k.double(), attn.scale)


def head_median(a):
    return a.median(dim=1).values  # lower median, as torch (and the criterion) use


def head_mad(a):
    return (a - head_median(a).unsqueeze(1)).abs().median(1).values


EAGER = {  # criterion, params → eager score (B, N) from P (B, H, N, N)
    ("renyi", 2.0): lambda p: renyi_entropy(p, 2.0).mean(1),
    ("renyi", math.inf): lambda p: renyi_entropy(p, math.inf).mean(1),
    ("shannon", None): lambda p: renyi_entropy(p, 1.0).mean(1),
    ("evit", None): lambda p: p[:, :, 0].mean(1),
    ("colln", 2.0): lambda p: (p**2).sum(-2).sqrt().mean(1),
    ("colln", 3.0): lambda p: (p**3).sum(-2).pow(1 / 3).mean(1),
    ("headvar", "cls"): lambda p: p[:, :, 0].var(1, unbiased=False),
    ("headmad", "cls"): lambda p: head_mad(p[:, :, 0]),
    ("headvar", "column"): lambda p: p.mean(-2).var(1, unbiased=False),
    ("headmad", "column"): lambda p: head_mad(p.mean(-2)),
}
PARAM_NAME = {"renyi": "alpha", "colln": "order", "headvar": "source", "headmad": "source"}


@pytest.mark.parametrize("name, param", list(EAGER))
def test_criterion_keeps_what_the_eager_score_keeps(deit_tiny, images, name, param, assert_same_choices):
    kwargs = {PARAM_NAME[name]: param} if name in PARAM_NAME else {}
    renyi_prune.patch(deit_tiny, keep_rate=0.5, criterion=name, **kwargs)
    try:
        with torch.no_grad():
            deit_tiny(images)
        kept = renyi_prune.kept_token_indices(deit_tiny)[3]
        score = renyi_prune.token_scores(deit_tiny)[3]
    finally:
        renyi_prune.unpatch(deit_tiny)
    ref = EAGER[(name, param)](block3_probs(deit_tiny, images))
    torch.testing.assert_close(score.double(), ref, atol=1e-5, rtol=1e-4)
    keep = get_criterion(name).keep
    k = num_kept(197, 1, 0.5)
    ranked = torch.argsort(ref[:, 1:] if keep == "lowest" else -ref[:, 1:], dim=1, stable=True)
    expected = torch.cat([torch.zeros_like(ranked[:, :1]), ranked[:, :k].sort(1).values + 1], dim=1)
    # disagreement only where reference scores tie within fp32 noise
    assert_same_choices({3: expected}, {3: kept.cpu()}, {3: ref}, keep, atol=1e-6)


def test_random_criterion_is_seeded(deit_tiny, images):
    def kept(seed):
        renyi_prune.patch(deit_tiny, keep_rate=0.5, criterion="random", seed=seed)
        with torch.no_grad():
            deit_tiny(images)
        out = renyi_prune.kept_token_indices(deit_tiny)
        renyi_prune.unpatch(deit_tiny)
        return out

    a, b, c = kept(0), kept(0), kept(1)
    assert all(torch.equal(a[i], b[i]) for i in a)
    assert not torch.equal(a[3], c[3])
    assert [t.shape[1] for t in a.values()] == [99, 50, 26]


@pytest.mark.parametrize("criterion", ["renyi", "evit", "colln", "headvar", "headmad", "random", "shannon"])
def test_prefix_tokens_never_pruned(criterion, device, timm_model):
    model = timm_model("deit_small_distilled_patch16_224")
    renyi_prune.patch(model, keep_rate=0.3, criterion=criterion)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224).to(device))
    for idx in renyi_prune.kept_token_indices(model).values():
        assert idx[0, :2].tolist() == [0, 1] and (idx[0, 2:] >= 2).all()


def test_attention_pass_computes_only_what_is_needed(monkeypatch):
    import renyi_prune.criteria.base as base

    q, k, v = torch.randn(3, 1, 2, 10, 16).unbind(0)
    calls = []
    real = base.attention_with_entropy
    monkeypatch.setattr(base, "attention_with_entropy", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    p = run_attention(q, k, v, 0.25, frozenset({"cls_attn"}))
    assert not calls and p.entropy is None and p.lse is None and p.cls_attn.shape == (1, 2, 10)
    p = run_attention(q, k, v, 0.25, frozenset({"entropy"}))
    assert calls and p.cls_attn is None and p.entropy.shape == (1, 10)
    torch.testing.assert_close(p.out, torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25))
    expected = {"evit": {"cls_attn"}, "renyi": {"entropy"}, "colln": {"lse"}, "random": set()}
    for name, needs in expected.items():
        crit = get_criterion(name)
        assert crit.required(crit.params) == needs
    assert get_criterion("headvar").required({"source": "column"}) == {"lse"}


# --- token fusion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_rate, gflops", [(0.7, 3.04), (0.5, 2.31), (0.3, 1.82)])
def test_fusion_flops_match_evit_column(keep_rate, gflops, timm_model):
    model = timm_model("deit_small_patch16_224")
    renyi_prune.patch(model, keep_rate=keep_rate, criterion="evit", fuse_pruned=True)
    assert renyi_prune.count_flops(model) == pytest.approx(gflops, abs=0.01)


def test_fused_token_is_cls_weighted_sum_of_pruned_tokens(device, timm_model):
    """With the MLP branch silenced (ls2 = 0) a pruning block outputs kept tokens + the fused token."""
    model = timm_model("vit_small_patch14_dinov2", img_size=56, init_values=0.5)
    blk = model.blocks[3]
    blk.ls2.gamma.data.zero_()
    x = torch.randn(2, 17, model.embed_dim).to(device)
    with torch.no_grad():
        attn = blk.attn
        y = x + blk.ls1(attn(blk.norm1(x)))  # the block's tokens after the attention residual
        renyi_prune.patch(model, keep_rate=0.5, criterion="renyi", fuse_pruned=True, prune_blocks=[3])
        out = blk(x)
        keep = renyi_prune.kept_token_indices(model)[3]
        qkv = attn.qkv(blk.norm1(x)).reshape(2, 17, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        cls = attention_probs(qkv[0].double(), qkv[1].double(), attn.scale)[:, :, 0].mean(1)
    assert out.shape == (2, 1 + 8 + 1, model.embed_dim)
    for b in range(2):
        pruned = sorted(set(range(1, 17)) - set(keep[b].tolist()))
        expected = (y[b, pruned].double() * cls[b, pruned].unsqueeze(-1)).sum(0)
        torch.testing.assert_close(out[b, :-1], y[b, keep[b]], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[b, -1].double(), expected, atol=1e-5, rtol=1e-5)


def test_fused_token_takes_part_in_later_blocks(deit_tiny, images):
    renyi_prune.patch(deit_tiny, keep_rate=[0.7, 0.5, 0.5], criterion="evit", fuse_pruned=True)
    try:
        with torch.no_grad():
            out = deit_tiny(images)
        kept = renyi_prune.kept_token_indices(deit_tiny)
        scores = renyi_prune.token_scores(deit_tiny)
    finally:
        renyi_prune.unpatch(deit_tiny)
    assert torch.isfinite(out).all()
    n_in = 197
    for i, rate in zip((3, 6, 9), (0.7, 0.5, 0.5), strict=True):
        assert scores[i].shape[1] == n_in  # after block 3 the fused token is scored like any token
        assert kept[i].shape[1] == 1 + num_kept(n_in, 1, rate)
        n_in = kept[i].shape[1] + 1  # kept tokens plus the new fused token
    later = torch.cat([kept[6], kept[9]], dim=1)
    assert ((later == -1) | (later >= 0)).all()  # −1 marks a re-kept fused token, never a bad index


# --- schedules ------------------------------------------------------------------------------------------


def test_per_block_schedules(deit_tiny, images):
    renyi_prune.patch(deit_tiny, keep_rate=[0.9, 0.7, 0.5], alpha=[1.0, 2.0, math.inf])
    states = [blk._renyi_prune for blk in deit_tiny.blocks if "_renyi_prune" in blk.__dict__]
    assert [s.params["alpha"] for s in states] == [1.0, 2.0, math.inf]
    with torch.no_grad():
        deit_tiny(images)
    counts = [t.shape[1] - 1 for t in renyi_prune.kept_token_indices(deit_tiny).values()]
    assert counts == [num_kept(197, 1, 0.9), num_kept(1 + 177, 1, 0.7), num_kept(1 + 124, 1, 0.5)]
    renyi_prune.set_keep_rate(deit_tiny, 0.5)
    with torch.no_grad():
        deit_tiny(images)
    assert [t.shape[1] - 1 for t in renyi_prune.kept_token_indices(deit_tiny).values()] == [98, 49, 25]
    renyi_prune.unpatch(deit_tiny)


def test_keep_rate_warmup():
    from renyi_prune import keep_rate_warmup

    assert keep_rate_warmup(0, 0.5, ramp_steps=10) == 1.0
    assert keep_rate_warmup(5, 0.5, ramp_steps=10) == pytest.approx(0.75)
    assert keep_rate_warmup(10, 0.5, ramp_steps=10) == 0.5
    assert keep_rate_warmup(99, [0.7, 0.5], ramp_steps=10, start_step=3) == [0.7, 0.5]
    rates = [keep_rate_warmup(s, 0.3, ramp_steps=20, start_step=5) for s in range(30)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    with pytest.raises(ValueError, match="ramp_steps"):
        keep_rate_warmup(0, 0.5, ramp_steps=0)
    with pytest.raises(ValueError, match="target keep rate"):
        keep_rate_warmup(0, 1.5, ramp_steps=3)


def test_registering_a_criterion_is_one_object(device, timm_model):
    from renyi_prune.criteria import register_criterion
    from renyi_prune.criteria.base import _REGISTRY

    crit = Criterion(
        "norm_test", keep="highest", needs=frozenset(), score=lambda p, params: p.out.norm(dim=-1).mean(1)
    )
    register_criterion(crit)
    try:
        model = timm_model("deit_tiny_patch16_224")
        renyi_prune.patch(model, keep_rate=0.5, criterion="norm_test")
        with torch.no_grad():
            model(torch.randn(1, 3, 224, 224).to(device))
        assert renyi_prune.kept_token_indices(model)[3].shape == (1, 99)
    finally:
        _REGISTRY.pop("norm_test")
    with pytest.raises(ValueError, match="keep"):
        Criterion("bad", keep="middle", needs=frozenset(), score=lambda p, params: None)
    assert isinstance(AttentionPass(q=None, k=None, scale=1.0, out=None), AttentionPass)


@pytest.mark.parametrize("criterion", ["renyi", "evit", "colln", "headmad", "random"])
def test_empty_batch(deit_tiny, criterion, device):
    renyi_prune.patch(deit_tiny, keep_rate=0.5, criterion=criterion, fuse_pruned=criterion == "evit")
    try:
        with torch.no_grad():
            out = deit_tiny(torch.randn(0, 3, 224, 224).to(device))
    finally:
        renyi_prune.unpatch(deit_tiny)
    assert out.shape == (0, 1000)


def test_fusion_at_keep_rate_one_is_the_unpatched_model(deit_tiny, images):
    with torch.no_grad():
        ref = deit_tiny(images)
        renyi_prune.patch(deit_tiny, keep_rate=1.0, criterion="evit", fuse_pruned=True)
        out = deit_tiny(images)
        kept = renyi_prune.kept_token_indices(deit_tiny)
        renyi_prune.unpatch(deit_tiny)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert all((idx >= 0).all() and idx.shape[1] == 197 for idx in kept.values())


def test_cls_attention_is_fp32_under_autocast():
    q, k, v = torch.randn(3, 1, 2, 10, 16).unbind(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = run_attention(q, k, v, 0.25, frozenset({"cls_attn"}))
    assert p.cls_attn.dtype == torch.float32


def test_criteria_are_copied_and_pickled_by_name():
    import copy
    import pickle

    crit = get_criterion("colln")
    assert copy.copy(crit) is crit and copy.deepcopy(crit) is crit  # immutable: shared
    assert pickle.loads(pickle.dumps(crit)) is crit  # by registry name: lambdas need not pickle
    stray = Criterion("stray_test", "highest", frozenset(), lambda p, params: p.out.sum(-1).mean(1))
    with pytest.raises(pickle.PicklingError, match="'stray_test' is not the registered one"):
        pickle.dumps(stray)


def test_criterion_hooks_set_up_each_block_and_the_attention_pass(monkeypatch, device, timm_model):
    """A user's criterion says how to set up each block (setup) and run the attention (attention)."""
    import renyi_prune.pruning.forward as forward

    contexts, passes = [], []

    def setup(params, context):
        contexts.append((context.index, context.device.type, params["alpha"]))
        return {**params, "sign": -1.0 if context.index == 1 else 1.0}

    def recording_run_attention(*args, **kwargs):
        passes.append(kwargs)
        return run_attention(*args, **kwargs)

    crit = Criterion(
        "signed_entropy_test", keep="lowest", needs=frozenset({"entropy"}),
        score=lambda a, params: params["sign"] * a.entropy, params={"alpha": 1.0},
        setup=setup, attention=lambda params: {"alpha": 2 * params["alpha"]},
    )  # fmt: skip
    register_criterion(crit)
    monkeypatch.setattr(forward, "run_attention", recording_run_attention)
    try:
        model = timm_model("deit_tiny_patch16_224", img_size=64)
        renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1, 2), criterion=crit.name, alpha=[1.0, 3.0])
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64).to(device))
    finally:
        unregister_criterion(crit.name)
    assert contexts == [(1, torch.device(device).type, 1.0), (2, torch.device(device).type, 3.0)]
    assert [p["alpha"] for p in passes] == [2.0, 6.0]
    scores = renyi_prune.token_scores(model)
    assert (scores[1] <= 0).all() and (scores[2] >= 0).all()  # each block's own setup
