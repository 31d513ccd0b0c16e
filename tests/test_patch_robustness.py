"""A patched model in the rest of PyTorch and timm: gradient checkpointing, copies and pickles, threads,
timm's other entry points (forward_intermediates, ...), keep rates on models without a CLS token, and
argument types (issue 11)."""

import copy
import io
import math
import pickle
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch
from timm.layers import set_reentrant_ckpt, use_reentrant_ckpt
from timm.models.vision_transformer import VisionTransformer
from timm.utils import ModelEmaV3

import renyi_prune
from renyi_prune.ops import eager_on_cpu
from renyi_prune.pruning import num_kept

CRITERIA = ["renyi", "shannon", "evit", "colln", "headvar", "headmad", "random"]
PRUNE = (1, 2)


def token_stream(model, x):
    """The tokens after every block of ``model`` (patched or not), run block by block."""
    t = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    outs = []
    for blk in model.blocks:
        t = blk(t)
        outs.append(t)
    return outs


# --- 7. gradient checkpointing ---------------------------------------------------------------------------


def training_step(model, x, y):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    generators = [g.get_state() for g in renyi_prune.pruning_generators(model)]
    return grads, renyi_prune.kept_token_indices(model), generators


def with_and_without_checkpointing(model, x, y, **patch_kwargs):
    results = []
    with eager_on_cpu():  # the decisions are under test, not the kernels: no interpreter on CPU
        for checkpointing in (False, True):
            renyi_prune.patch(model, keep_rate=0.5, prune_blocks=PRUNE, **patch_kwargs)  # generators restart
            model.set_grad_checkpointing(checkpointing)
            results.append(training_step(model, x, y))
    return results


def assert_same_step(plain, checkpointed):
    (grads, kept, generators), (grads_ckpt, kept_ckpt, generators_ckpt) = plain, checkpointed
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert kept.keys() == kept_ckpt.keys()
    assert all(torch.equal(kept[i], kept_ckpt[i]) for i in kept)  # the forward's decision, not a redraw
    assert all(torch.equal(a, b) for a, b in zip(generators, generators_ckpt, strict=True))  # one draw


@pytest.mark.parametrize(
    "criterion, fuse_pruned", [(c, False) for c in CRITERIA] + [("random", True), ("evit", True)]
)
def test_gradient_checkpointing_gives_the_same_gradients(criterion, fuse_pruned, device, images32, vit32):
    model = vit32().train()
    x, y = images32(4), torch.tensor([1, 2, 3, 4], device=device)
    plain, checkpointed = with_and_without_checkpointing(
        model, x, y, criterion=criterion, fuse_pruned=fuse_pruned
    )
    assert_same_step(plain, checkpointed)


def test_reentrant_checkpointing_replays_the_random_draw(device, images32, vit32):
    model = vit32().train()
    x, y = images32(4), torch.tensor([1, 2, 3, 4], device=device)
    before = use_reentrant_ckpt()
    set_reentrant_ckpt(True)
    try:
        plain, checkpointed = with_and_without_checkpointing(model, x, y, criterion="random")
    finally:
        set_reentrant_ckpt(before)
    assert_same_step(plain, checkpointed)


def test_a_checkpointed_region_spanning_blocks(device, images32, vit32):
    """A region that starts before a pruning block: deterministic criteria recompute the same decision;
    ``random`` cannot find its draw again and says so instead of training on a different one."""
    x, y = images32(4), torch.tensor([1, 2, 3, 4], device=device)

    def step(model, checkpointed):
        model.zero_grad(set_to_none=True)
        if checkpointed:
            feats = torch.utils.checkpoint.checkpoint(model.forward_features, x, use_reentrant=False)
        else:
            feats = model.forward_features(x)
        torch.nn.functional.cross_entropy(model.forward_head(feats), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    model = renyi_prune.patch(vit32().train(), keep_rate=0.5, prune_blocks=PRUNE, criterion="evit")
    plain, checkpointed = step(model, False), step(model, True)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
    model = renyi_prune.patch(model, keep_rate=0.5, prune_blocks=PRUNE, criterion="random")
    with pytest.raises(RuntimeError, match="random.*checkpoint"):
        step(model, True)


# --- 8. copies, pickles, EMA ---------------------------------------------------------------------------


def _torch_save_load(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "torch.save": _torch_save_load,
    "ModelEmaV3": lambda m: ModelEmaV3(m).module,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("criterion, fuse_pruned", [("random", False), ("evit", True)])
def test_a_copy_prunes_like_the_original(how, criterion, fuse_pruned, images32, vit32):
    model = renyi_prune.patch(
        vit32(), keep_rate=0.5, prune_blocks=PRUNE, criterion=criterion, fuse_pruned=fuse_pruned
    )
    x = images32()
    with torch.no_grad():
        model(images32(3, seed=7))  # the generators of `random` move on; the copy continues from here
        clone = COPIES[how](model)
        out, out_clone = model(x), clone(x)
    kept, kept_clone = renyi_prune.kept_token_indices(model), renyi_prune.kept_token_indices(clone)
    assert kept.keys() == kept_clone.keys()
    assert all(torch.equal(kept[i], kept_clone[i]) for i in kept)
    torch.testing.assert_close(out_clone, out, atol=1e-6, rtol=1e-6)
    # the copy's patched methods run the copy, not the original
    assert clone.blocks[1].forward.args[0] is clone.blocks[1] and clone.forward_intermediates.args[0] is clone
    renyi_prune.unpatch(clone)
    assert not renyi_prune.is_patched(clone) and renyi_prune.is_patched(model)
    assert all("forward" not in blk.__dict__ for blk in clone.blocks)
    assert "forward_intermediates" not in clone.__dict__


def test_a_copy_carries_no_record_of_the_original_forward(images32, vit32):
    model = renyi_prune.patch(vit32(), keep_rate=0.5, prune_blocks=PRUNE, criterion="evit")
    with torch.no_grad():
        model(images32())
    clone = copy.deepcopy(model)
    with pytest.raises(ValueError, match="has not run yet"):
        renyi_prune.kept_token_indices(clone)
    assert renyi_prune.kept_token_indices(model)[1].shape == (2, 9)


# --- 9. keep rates, models without a CLS token ------------------------------------------------------------


def test_num_kept_rounds_as_documented():
    assert num_kept(1, 0, 1e-10) == 1  # ceil(1e-10 · 1) = 1
    assert num_kept(197, 1, 1e-10) == 1
    assert num_kept(141, 1, 0.7) == 98  # 0.7 · 140 = 98.00000000000001 in binary
    assert num_kept(1, 1, 0.5) == 0  # no patch, nothing to keep
    for rate in (0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0):
        for patches in range(1, 600):  # the rate's decimal value, exactly
            expected = math.ceil(Fraction(repr(rate)) * patches)
            assert num_kept(patches + 1, 1, rate) == expected, (rate, patches)


def test_model_without_prefix_tokens_keeps_a_patch_at_tiny_keep_rates(images32, vit32):
    model = vit32(class_token=False, global_pool="avg")
    assert model.num_prefix_tokens == 0
    renyi_prune.patch(model, keep_rate=1e-10, prune_blocks=PRUNE, criterion="random")
    with torch.no_grad():
        out = model(images32())
    assert torch.isfinite(out).all()
    assert [idx.shape for idx in renyi_prune.kept_token_indices(model).values()] == [(2, 1), (2, 1)]


# --- 10. threads -------------------------------------------------------------------------------------------


def test_each_thread_reads_its_own_last_forward(images32, vit32):
    model = renyi_prune.patch(
        vit32(), keep_rate=[0.5, 0.7], prune_blocks=PRUNE, criterion="evit", fuse_pruned=True
    )
    inputs = [images32(2, seed=1), images32(5, seed=2)]
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each forward then computes the same bits in any thread
    try:
        expected = []
        for x in inputs:
            with torch.no_grad():
                model(x)
            expected.append((renyi_prune.kept_token_indices(model), renyi_prune.token_scores(model)))
        errors = []
        start = threading.Barrier(len(inputs))

        def work(t):
            start.wait()
            for _ in range(60):
                try:
                    with torch.no_grad():
                        model(inputs[t])
                    kept, scores = renyi_prune.kept_token_indices(model), renyi_prune.token_scores(model)
                except Exception as e:  # noqa: BLE001 - a mixed record raises size errors; report them
                    errors.append(f"thread {t}: {type(e).__name__}: {e}")
                    return
                kept_ref, scores_ref = expected[t]
                if not all(torch.equal(kept[i], kept_ref[i]) for i in kept_ref) or not all(
                    torch.equal(scores[i], scores_ref[i]) for i in scores_ref
                ):
                    errors.append(f"thread {t}: another forward's record")
                    return

        threads = [threading.Thread(target=work, args=(t,)) for t in range(len(inputs))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        torch.set_num_threads(num_threads)
    assert not errors, errors


# --- 11. timm's other entry points -------------------------------------------------------------------------


MODELS = {
    "registers": dict(reg_tokens=2),  # CLS + 2 registers
    "no_prefix": dict(class_token=False, global_pool="avg"),
}


@pytest.fixture(scope="module")
def patched(vit32):
    """``patched(kind, fuse_pruned=False)``: a tiny ViT of ``MODELS[kind]``, patched at keep rate 0.5."""

    def patched(kind, fuse_pruned=False):
        model = vit32(**MODELS[kind])
        if fuse_pruned:
            kwargs = dict(criterion="evit", fuse_pruned=True)
        elif kind == "registers":
            kwargs = dict(criterion="headvar")
        else:  # deterministic, as the tests rerun the blocks; no CLS token
            kwargs = dict(criterion="renyi", backend="eager")
        return renyi_prune.patch(model, keep_rate=0.5, prune_blocks=PRUNE, **kwargs)

    return patched


def _token_origins(model, kept):
    """Original position of every token after each block (−1: a fused token), from kept_token_indices."""
    n = model.num_prefix_tokens + model.patch_embed.num_patches
    origin = torch.arange(n, device=next(model.parameters()).device).expand(2, -1)
    out = []
    for i in range(len(model.blocks)):
        if i in kept:
            fused = model.blocks[i]._renyi_prune.fuse_pruned
            origin = torch.cat([kept[i], torch.full_like(kept[i][:, :1], -1)], 1) if fused else kept[i]
        out.append(origin)
    return out


@pytest.mark.parametrize(
    "kind, fuse_pruned", [("registers", False), ("registers", True), ("no_prefix", False)]
)
def test_forward_intermediates_put_kept_tokens_back_in_the_grid(kind, fuse_pruned, patched, device, images32):
    model = patched(kind, fuse_pruned)
    npt = model.num_prefix_tokens
    x = images32()
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, indices=[0, 1, 2, 3], return_prefix_tokens=True)
        kept = renyi_prune.kept_token_indices(model)
        tokens = token_stream(model, x)  # the same computation, block by block
    assert len(inter) == 4
    torch.testing.assert_close(final, model.norm(tokens[-1]))
    for i, (item, origin) in enumerate(zip(inter, _token_origins(model, kept), strict=True)):
        grid, prefix = item if npt else (item, None)  # timm pairs them only when there are prefix tokens
        assert grid.shape == (2, 64, 4, 4), i
        if npt:
            torch.testing.assert_close(prefix, tokens[i][:, :npt])
        flat = grid.flatten(2).transpose(1, 2)  # (B, 16 patches, C) in raster order
        for b in range(2):
            patches = origin[b, npt:] - npt  # the grid cell of each current patch token; fused: < 0
            real = patches >= 0
            torch.testing.assert_close(flat[b, patches[real]], tokens[i][b, npt:][real])
            empty = torch.ones(16, dtype=torch.bool, device=device)
            empty[patches[real]] = False
            assert (flat[b, empty] == 0).all()  # pruned cells are zero
            assert int(empty.sum()) == (0 if i < 1 else 16 - int(real.sum()))


def test_intermediates_before_the_first_pruning_block_are_timms(patched, images32, vit32):
    model = patched("registers")
    reference = vit32(**MODELS["registers"])
    x = images32()
    with torch.no_grad():
        got = model.forward_intermediates(x, indices=[0], intermediates_only=True)
        ref = reference.forward_intermediates(x, indices=[0], intermediates_only=True)
    torch.testing.assert_close(got, ref)


def test_every_intermediates_format_and_get_intermediate_layers(patched, images32):
    model = patched("registers", fuse_pruned=True)
    x = images32()
    with torch.no_grad():
        nlc = model.forward_intermediates(x, indices=2, output_fmt="NLC", intermediates_only=True, norm=True)
        nchw = model.forward_intermediates(x, indices=2, intermediates_only=True, norm=True)
        as_dict = model.forward_intermediates(x, indices=[3, 1], output_dict=True, return_prefix_tokens=True)
        layers = model.get_intermediate_layers(x, n=2, reshape=True, return_prefix_tokens=True, norm=True)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
    assert [t.shape for t in nlc] == [(2, 16, 64)] * 2
    for a, b in zip(nlc, nchw, strict=True):
        torch.testing.assert_close(b, a.transpose(1, 2).reshape(2, 64, 4, 4))
    assert [t.shape for t in as_dict["image_intermediates"]] == [(2, 64, 4, 4)] * 2
    assert [t.shape for t in as_dict["image_intermediates_prefix"]] == [(2, 3, 64)] * 2
    # the final features are the pruned sequence: prefix, the patches block 2 kept, its fused token
    assert as_dict["image_features"].shape[1] == 3 + num_kept(3 + 8 + 1, 3, 0.5) + 1
    for (grid, prefix), ref in zip(layers, nchw, strict=True):
        torch.testing.assert_close(grid, ref)
        assert prefix.shape == (2, 3, 64)
    assert early[0].shape == (2, 64, 4, 4) and int((early[0].flatten(2) != 0).any(1).sum()) == 2 * 8
    with pytest.raises(ValueError, match="'NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_intermediates_that_cannot_be_placed_on_the_grid_raise(device, images32, vit32):
    model = renyi_prune.patch(vit32(patch_drop_rate=0.5).train(), keep_rate=0.5, prune_blocks=PRUNE)
    with pytest.raises(ValueError, match="8 patch tokens entered pruning block 1, not the 16"):
        model.forward_intermediates(images32(), indices=[2])

    class OtherSignature(VisionTransformer):
        def forward_intermediates(self, x, layers=None):
            return super().forward_intermediates(x, indices=layers)

    torch.manual_seed(0)
    other = OtherSignature(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2).to(device)
    renyi_prune.patch(other, prune_blocks=PRUNE)
    with pytest.raises(NotImplementedError, match="OtherSignature.forward_intermediates"):
        other.forward_intermediates(images32(), layers=[2])
    renyi_prune.unpatch(other)
    assert other.forward_intermediates(images32(), layers=[0])[1][0].shape == (2, 64, 4, 4)


@pytest.mark.parametrize("kind", list(MODELS))
def test_forward_features_and_forward_head_run_on_the_kept_tokens(kind, patched, images32):
    model = patched(kind)
    x = images32()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        pre = model.forward_head(feats, pre_logits=True)
    kept = renyi_prune.kept_token_indices(model)
    assert feats.shape == (2, kept[2].shape[1], 64)
    assert logits.shape == (2, 10) and pre.shape == (2, 64) and torch.isfinite(logits).all()


def test_unpatch_restores_the_model_and_instance_methods(vit32):
    model = vit32()
    model_dict = dict(model.__dict__)
    before = {i: dict(blk.__dict__) for i, blk in enumerate(model.blocks)}
    renyi_prune.patch(model, prune_blocks=PRUNE)
    assert "forward_intermediates" in model.__dict__
    renyi_prune.unpatch(model)
    assert dict(model.__dict__) == model_dict
    assert {i: dict(blk.__dict__) for i, blk in enumerate(model.blocks)} == before


# --- 12. argument types, instance forwards, readers -------------------------------------------------------


@pytest.mark.parametrize("blocks", [np.arange(1, 3), [np.int64(1), np.int64(2)], (np.int32(2), 1)])
def test_prune_blocks_as_numpy_integers(blocks, images32, vit32):
    model = renyi_prune.patch(vit32(), keep_rate=0.5, prune_blocks=blocks, criterion="evit")
    with torch.no_grad():
        model(images32())
    kept = renyi_prune.kept_token_indices(model)
    assert list(kept) == [1, 2] and all(type(i) is int for i in kept)


@pytest.mark.parametrize(
    "kwargs, img_size",
    [({}, 40), ({}, (32, 24)), ({"dynamic_img_size": True}, 36)],  # fixed size; not a patch multiple
)
def test_count_flops_names_an_img_size_the_model_cannot_take(kwargs, img_size, vit32):
    model = vit32(**kwargs)
    with pytest.raises(ValueError, match=f"img_size={img_size!r}".replace("(", r"\(").replace(")", r"\)")):
        renyi_prune.count_flops(model, img_size=img_size)
    assert renyi_prune.count_flops(model, img_size=32) > 0


def test_patch_keeps_and_unpatch_restores_a_users_block_forward(images32, vit32):
    model = vit32()
    calls = []
    timm_forward = model.blocks[1].forward

    def wrapper(x, *args, **kwargs):
        calls.append(x.shape)
        return timm_forward(x, *args, **kwargs)

    model.blocks[1].forward = wrapper
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=PRUNE, criterion="evit")
    with torch.no_grad():
        model(images32())
    assert renyi_prune.kept_token_indices(model)[1].shape == (2, 9)  # block 1 prunes
    renyi_prune.patch(model, keep_rate=0.7, prune_blocks=PRUNE, criterion="evit")  # re-patching keeps it
    renyi_prune.unpatch(model)
    assert model.blocks[1].forward is wrapper
    with torch.no_grad():
        model(images32())
    assert calls == [(2, 17, 64)]
    assert "forward" not in model.blocks[2].__dict__
