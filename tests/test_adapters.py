"""The model-adapter seam (issue 13): adapter_for and the registry, register-token ViTs through the timm
adapter, and a second model family (Hugging Face-style layers that take hidden_states and return
tuples) pruned by the same engine through its own adapter."""

import pathlib

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import renyi_prune
from renyi_prune import num_kept
from renyi_prune.adapters import (
    AttentionInputs,
    ModelAdapter,
    adapter_for,
    register_adapter,
    unregister_adapter,
)
from renyi_prune.adapters.timm_vit import TimmViTAdapter

# --- the timm adapter: register tokens are prefix tokens ------------------------------------------------

REGISTER_MODELS = {
    # CLS + 4 registers (LayerScale), 16 patches of 14 px
    "vit_small_patch14_reg4_dinov2": dict(img_size=56, depth=4),
    # 4 registers, no CLS token (global average pooling), 16 patches of 16 px
    "vit_base_patch16_reg4_gap_256": dict(img_size=64, depth=4),
}


@pytest.fixture(scope="module")
def register_vit(timm_model, device):
    """``register_vit(name)`` → a register-token ViT of ``REGISTER_MODELS`` and a batch of 2 images for it."""

    def register_vit(name):
        model = timm_model(name, **REGISTER_MODELS[name])
        x = torch.randn(2, 3, *model.patch_embed.img_size, generator=torch.Generator().manual_seed(1))
        return model, x.to(device)

    return register_vit


@pytest.mark.parametrize("name", list(REGISTER_MODELS))
@pytest.mark.parametrize("criterion", ["renyi", "random"])
def test_register_tokens_are_never_pruned(name, criterion, register_vit):
    model, x = register_vit(name)
    npt = model.num_prefix_tokens
    assert model.num_reg_tokens == 4 and npt == 4 + (model.cls_token is not None)
    assert adapter_for(model).num_prefix_tokens(model) == npt
    renyi_prune.patch(model, keep_rate=0.3, prune_blocks=(1, 2, 3), criterion=criterion)
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()
    kept = renyi_prune.kept_token_indices(model)
    n = 16
    for idx in kept.values():
        n = num_kept(npt + n, npt, 0.3)
        assert idx.shape == (2, npt + n)
        assert (idx[:, :npt] == torch.arange(npt, device=idx.device)).all()  # every prefix token, first
        assert (idx[:, npt:] >= npt).all()  # then patches only


@pytest.mark.parametrize("name", list(REGISTER_MODELS))
def test_register_token_vit_at_keep_rate_one_is_the_unpatched_model(name, register_vit):
    model, x = register_vit(name)
    with torch.no_grad():
        ref = model(x)
        renyi_prune.patch(model, keep_rate=1.0, prune_blocks=(0, 1, 2, 3))
        out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_adapter_for_picks_by_type(timm_model):
    timm_adapter = adapter_for(timm_model("deit_tiny_patch16_224", img_size=32))
    assert timm_adapter.family == "timm VisionTransformer"
    distilled = timm_model("deit_tiny_distilled_patch16_224", img_size=32)
    assert adapter_for(distilled) is timm_adapter  # a subclass
    assert "timm VisionTransformer" in renyi_prune.available_adapters()


def test_the_engine_never_names_a_criterion_parameter():
    """Criterion knowledge (α, backend, seeds and generators) lives in the criteria's hooks."""
    source = pathlib.Path(renyi_prune.pruning.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text()
        for name in ("alpha", "backend", "seed", "generator"):
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path.name, name)


# --- a second family through its own adapter ----------------------------------------------------------------


class ToySelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dense = nn.Linear(dim, dim)

    def split(self, t):
        B, N, C = t.shape
        return t.reshape(B, N, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, h):
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.dense(out.transpose(1, 2).flatten(2))


class ToyLayer(nn.Module):
    """Laid out like a Hugging Face ViT layer: hidden_states in, a tuple out, layernorm_before/after."""

    def __init__(self, dim, heads):
        super().__init__()
        self.layernorm_before, self.layernorm_after = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = ToySelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.layer_scale = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, hidden_states, head_mask=None, output_attentions=False):
        h = hidden_states + self.layer_scale * self.attention(self.layernorm_before(hidden_states))
        return (h + self.mlp(self.layernorm_after(h)),)


class ToyViT(nn.Module):
    def __init__(self, dim=32, heads=2, depth=3, patches=16):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.embed = nn.Linear(3, dim)
        self.layer = nn.ModuleList(ToyLayer(dim, heads) for _ in range(depth))

    def forward(self, x):  # x: (B, patches, 3)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)
        for layer in self.layer:
            h = layer(h, None, False)[0]
        return h[:, 0]


class ToyAdapter(ModelAdapter):
    family = "toy HF-style ViT"

    def __init__(self):
        self.gathered = []

    def handles(self, model):
        return isinstance(model, ToyViT)

    def blocks(self, model):
        return list(model.layer)

    def block_path(self, index):
        return f"model.layer[{index}]"

    def num_prefix_tokens(self, model):
        return 1

    def check_block(self, block, where):
        if not isinstance(block, ToyLayer):
            raise TypeError(f"{where} is {type(block).__name__}")

    def block_input(self, block, hidden_states, head_mask=None, output_attentions=False):
        if head_mask is not None or output_attentions:
            raise NotImplementedError("head_mask / output_attentions")
        return hidden_states

    def attention_inputs(self, block, x):
        attn, h = block.attention, block.layernorm_before(x)
        q, k, v = attn.split(attn.query(h)), attn.split(attn.key(h)), attn.split(attn.value(h))
        return AttentionInputs(q, k, v, q.shape[-1] ** -0.5)

    def attention_residual(self, block, x, out):
        return x + block.layer_scale * block.attention.dense(out.transpose(1, 2).flatten(2))

    def mlp_residual(self, block, h):
        return h + block.mlp(block.layernorm_after(h))

    def block_output(self, block, h, *args, **kwargs):
        return (h,)

    def gather_token_state(self, block, keep, fused):
        self.gathered.append((keep.shape, fused))


@pytest.fixture
def toy_adapter():
    adapter = register_adapter(ToyAdapter())
    yield adapter
    unregister_adapter(adapter.family)


def test_a_second_family_prunes_through_its_adapter(toy_adapter, device):
    torch.manual_seed(0)
    model = ToyViT().eval().to(device)
    x = torch.randn(2, 16, 3).to(device)
    assert adapter_for(model) is toy_adapter
    with torch.no_grad():
        ref = model(x)
        renyi_prune.patch(model, keep_rate=1.0, prune_blocks=(0, 2), criterion="evit", fuse_pruned=True)
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)
        renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1, 2), alpha=2.0)
        out = model(x)
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    kept = renyi_prune.kept_token_indices(model)
    assert [t.shape for t in kept.values()] == [(2, 1 + 8), (2, 1 + 4)]
    assert toy_adapter.gathered[-2:] == [((2, 9), False), ((2, 5), False)]
    with pytest.raises(NotImplementedError, match="head_mask"):
        model.layer[1](torch.randn(1, 17, 32).to(device), torch.ones(2))
    renyi_prune.unpatch(model)
    assert all("forward" not in layer.__dict__ for layer in model.layer)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)


def test_a_family_is_unsupported_once_its_adapter_is_gone(toy_adapter):
    unregister_adapter(toy_adapter.family)
    try:
        with pytest.raises(TypeError, match="unsupported model ToyViT; supported families"):
            renyi_prune.patch(ToyViT())
    finally:
        register_adapter(toy_adapter)


def test_a_later_registration_wins():
    class Custom(VisionTransformer):
        pass

    class CustomAdapter(TimmViTAdapter):
        family = "custom ViT"

        def handles(self, model):
            return isinstance(model, Custom)

    adapter = register_adapter(CustomAdapter())
    try:
        custom = Custom(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
        assert adapter_for(custom) is adapter
        assert renyi_prune.available_adapters()[0] == "custom ViT"
        assert adapter_for(
            VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
        ).family == ("timm VisionTransformer")
    finally:
        unregister_adapter("custom ViT")
