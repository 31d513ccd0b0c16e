"""Issue 14: Hugging Face transformers ViT, DeiT and DINOv2 (with registers) prune through the adapter seam
(renyi_prune/adapters/hf_vit.py), with tiny random-weight models (width 32, 3 layers, 32 px, 16 patches)."""

from __future__ import annotations

import copy
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import renyi_prune
from renyi_prune import num_kept

T = pytest.importorskip("transformers")

COMMON = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8)
VIT = dict(COMMON, intermediate_size=64)
DINO = dict(COMMON, layerscale_value=0.5)
# class name → (config, prefix tokens)
MODELS = {
    "ViTModel": (lambda: T.ViTConfig(**VIT), 1),
    "ViTForImageClassification": (lambda: T.ViTConfig(**VIT, num_labels=5), 1),
    "DeiTModel": (lambda: T.DeiTConfig(**VIT), 2),
    "DeiTForImageClassification": (lambda: T.DeiTConfig(**VIT, num_labels=5), 2),
    "DeiTForImageClassificationWithTeacher": (lambda: T.DeiTConfig(**VIT, num_labels=5), 2),
    "Dinov2Model": (lambda: T.Dinov2Config(**DINO), 1),
    "Dinov2ForImageClassification": (lambda: T.Dinov2Config(**DINO, num_labels=5), 1),
    "Dinov2WithRegistersModel": (lambda: T.Dinov2WithRegistersConfig(**DINO, num_register_tokens=3), 4),
    "Dinov2WithRegistersForImageClassification": (
        lambda: T.Dinov2WithRegistersConfig(**DINO, num_register_tokens=3, num_labels=5),
        4,
    ),
}


@pytest.fixture(scope="module")
def make(device):
    """``make(name, **config)``: the transformers model ``name`` of ``MODELS``, random weights (seed 0),
    in eval mode on the test device."""

    def make(name, **config):
        torch.manual_seed(0)
        cfg = MODELS[name][0]()
        for key, value in config.items():
            setattr(cfg, key, value)
        return getattr(T, name)(cfg).eval().to(device)

    return make


def result(output):
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.parametrize("name", list(MODELS))
def test_keep_rate_one_is_the_unpatched_model_and_unpatch_restores_it(name, images32, make):
    model, x = make(name), images32()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = result(model(x))
        assert renyi_prune.adapter_for(model).num_prefix_tokens(model) == MODELS[name][1]
        renyi_prune.patch(model, keep_rate=1.0, prune_blocks=(0, 1, 2))
        torch.testing.assert_close(result(model(x)), ref, atol=1e-5, rtol=1e-5)
        renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1,), criterion="evit")
        out = result(model(x))
        assert out.shape == ref.shape if "For" in name else out.shape[1] < ref.shape[1]
        renyi_prune.unpatch(model)
        assert all("forward" not in layer.__dict__ for layer in renyi_prune.adapter_for(model).blocks(model))
        assert model.state_dict().keys() == state.keys()
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert torch.equal(result(model(x)), ref)  # the same code path as before the patch: bit for bit


def _reference_scores(block, x, alpha):
    """Head-mean Rényi entropy H_α (B, N) of the layer's softmax attention, in float64, from its input."""
    attn = block.attention
    norm = getattr(block, "layernorm_before", None) or block.norm1
    h = norm(x).double()

    def heads(proj):
        w, b = proj.weight.double(), proj.bias.double()
        return (h @ w.T + b).unflatten(-1, (attn.num_attention_heads, attn.head_dim)).transpose(1, 2)

    p = torch.softmax(heads(attn.q_proj) @ heads(attn.k_proj).transpose(-1, -2) * attn.scaling, dim=-1)
    return (torch.log((p**alpha).sum(-1)) / (1 - alpha)).mean(dim=1)


@pytest.mark.parametrize(
    "name", ["ViTForImageClassification", "DeiTForImageClassificationWithTeacher", "Dinov2WithRegistersModel"]
)
def test_kept_tokens_are_the_lowest_entropy_patches_and_prefix_tokens_stay(
    name, assert_same_choices, images32, make
):
    model, x = make(name), images32()
    npt = MODELS[name][1]
    renyi_prune.patch(model, keep_rate=0.5, alpha=2.0, prune_blocks=(1, 2))
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        blocks = renyi_prune.adapter_for(model).blocks(model)
        kept, scores = renyi_prune.kept_token_indices(model), renyi_prune.token_scores(model)
        ref_kept, ref_scores, origins, n = {}, {}, None, 16
        for i in (1, 2):
            ref = _reference_scores(blocks[i], out.hidden_states[i], 2.0)  # hidden_states[i]: layer i's input
            torch.testing.assert_close(scores[i].double().cpu(), ref.cpu(), atol=1e-4, rtol=1e-4)
            n = num_kept(npt + n, npt, 0.5)
            best = npt + ref[:, npt:].argsort(dim=1)[:, :n].cpu()  # the n lowest-entropy patches
            local = torch.cat([torch.arange(npt).expand(2, -1), best], dim=1)
            ref_kept[i] = local if origins is None else origins.gather(1, local)
            ref_scores[i], origins = ref, kept[i].cpu()
            assert (kept[i][:, :npt] == torch.arange(npt, device=kept[i].device)).all()  # prefix first
            assert kept[i].shape == (2, npt + n) and (kept[i][:, npt:] >= npt).all()
    assert_same_choices(ref_kept, kept, ref_scores, "lowest", prefix=npt, atol=1e-4)
    # output_hidden_states: each layer's actual tokens (embeddings, layer 0, pruned layer 1, layer 2)
    assert [h.shape[1] for h in out.hidden_states] == [npt + 16, npt + 16, npt + 8, npt + 4]


@pytest.mark.parametrize(
    "name", ["Dinov2ForImageClassification", "Dinov2WithRegistersForImageClassification"]
)
@pytest.mark.parametrize("fuse", [False, True])
def test_dinov2_classifier_pools_the_kept_patch_tokens(name, fuse, images32, make):
    model, x = make(name), images32()
    npt = MODELS[name][1]
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1,), criterion="evit", fuse_pruned=fuse)
    with torch.no_grad():
        logits = model(x).logits
        seq = model.base_model(x).last_hidden_state  # the same (deterministic) choice
        assert seq.shape[1] == npt + 8 + fuse
        expected = model.classifier(torch.cat([seq[:, 0], seq[:, npt:].mean(dim=1)], dim=1))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_flops_keep_rate_schedule_and_fusion(images32, make):
    model = make("ViTForImageClassification")
    dense = renyi_prune.count_flops(model, img_size=32)
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1, 2))
    assert renyi_prune.count_flops(model, img_size=32) < dense
    renyi_prune.set_keep_rate(model, [1.0, 0.25])
    with torch.no_grad():
        model(images32())
    assert {i: t.shape[1] for i, t in renyi_prune.kept_token_indices(model).items()} == {1: 17, 2: 5}
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1,), fuse_pruned=True)
    with torch.no_grad():
        hidden = model(images32(), output_hidden_states=True).hidden_states
    assert [h.shape[1] for h in hidden] == [17, 17, 1 + 8 + 1, 10]


def test_what_pruning_cannot_honour_raises_naming_it(images32, make):
    model, x = make("ViTForImageClassification"), images32()
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1,))
    padding = torch.ones(2, 17, dtype=torch.bool)
    padding[1, -1] = False
    with pytest.raises(NotImplementedError, match="attention_mask that hides tokens"):
        model(x, attention_mask=padding)
    with torch.no_grad():  # a mask that hides nothing is fine (later layers get it cut to their tokens)
        ref = model(x).logits
        torch.testing.assert_close(model(x, attention_mask=torch.zeros(2, 1, 17, 17)).logits, ref)
    with pytest.raises(NotImplementedError, match="output_attentions=True"):
        model(x, output_attentions=True)
    model.set_attn_implementation("eager")  # transformers allows config.output_attentions only there
    model.config.output_attentions = True  # as a config default, too
    with pytest.raises(NotImplementedError, match="output_attentions=True"):
        model(x)
    model.config.output_attentions = False
    with pytest.raises(NotImplementedError, match=r"\['head_mask'\]"):
        model(x, head_mask=torch.ones(2))
    model.train()
    model.base_model.layers[1].attention.attention_dropout = 0.1
    with pytest.raises(NotImplementedError, match="attention_dropout=0.1 in training"):
        model(x)
    model.eval()
    with torch.no_grad():
        model(x)  # attention dropout is off in eval
    renyi_prune.patch(model, prune_blocks=(0,))  # so that no layer of the model's own runs first
    model.config._attn_implementation = "my_kernel"  # e.g. one registered with AttentionInterface
    with pytest.raises(NotImplementedError, match="attn_implementation='my_kernel'"), torch.no_grad():
        model(x)
    with pytest.raises(ValueError, match="attn_implementation='my_kernel'"):
        renyi_prune.patch(model, prune_blocks=(1,))
    model.config._attn_implementation = "eager"
    renyi_prune.patch(model, prune_blocks=(1,))  # eager and sdpa are fine


def test_unsupported_models_and_layers_are_named(make):
    cfg = T.ViTConfig(**VIT)
    with pytest.raises(TypeError, match="unsupported model ViTForMaskedImageModeling; supported families"):
        renyi_prune.patch(T.ViTForMaskedImageModeling(cfg))
    model = make("ViTModel")
    model.layers[2] = torch.nn.Identity()
    with pytest.raises(TypeError, match=r"model.base_model.layers\[2\] is torch.nn.modules.linear.Identity"):
        renyi_prune.patch(model, prune_blocks=(2,))
    with pytest.raises(ValueError, match="prune block index 3 is out of range"):
        renyi_prune.patch(model, prune_blocks=(3,))


def test_empty_batch_and_bad_inputs(images32, make):
    model = make("ViTForImageClassification")
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(0, 1, 2))  # transformers' own layers fail at B = 0
    with torch.no_grad():
        assert model(images32(batch=0)).logits.shape == (0, 5)
    assert renyi_prune.kept_token_indices(model)[2].shape == (0, 1 + 2)
    with pytest.raises(ValueError, match=r"Input image size \(40\*32\)"):  # the model's own checks still run
        model(torch.randn(1, 3, 40, 32))
    with pytest.raises(NotImplementedError, match=r"attention_mask \(1, 9\) for 9 tokens"):
        model.base_model.layers[1](torch.randn(1, 9, 32), torch.ones(1, 9))


def test_compiled_training_step_fullgraph(device, images32, make):
    model = make("ViTForImageClassification", num_hidden_layers=2).train()
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(0,), alpha=2.0)
    x, labels = images32(), torch.tensor([0, 3]).to(device)
    eager = model(x).logits
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x, labels=labels)
    out.loss.backward()
    torch.testing.assert_close(out.logits, eager, atol=1e-4, rtol=1e-4)
    assert model.base_model.layers[0].attention.q_proj.weight.grad is not None
    assert [t.shape[1] for t in renyi_prune.kept_token_indices(model).values()] == [9]


def test_gradient_checkpointing_reuses_the_forward_choice(images32, make):
    model, x = make("ViTForImageClassification").train(), images32()
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1, 2))
    model(x).logits.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing_enable()  # transformers 5: non-reentrant torch.utils.checkpoint
    calls = []
    layer = model.base_model.layers[1]
    checkpoint = layer._gradient_checkpointing_func
    layer._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or checkpoint(*a, **k)
    model(x).logits.sum().backward()
    assert calls == [1]  # the pruning layer is checkpointed, as transformers' own layers are
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-5)


def test_renyi_prune_imports_without_transformers():
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "import timm, renyi_prune\n"
        "vit = timm.create_model('deit_tiny_patch16_224', img_size=32, depth=2)\n"
        "assert renyi_prune.adapter_for(vit).family == 'timm VisionTransformer'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_readme_example_runs(capsys):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Hugging Face `transformers` models", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "torch.Size([2, 10])" and lines[2] == "torch.Size([2, 8])"
    assert lines[1] == "[17, 17, 17, 17, 13, 13, 13, 10, 10, 10, 8, 8, 8]"


def test_copies_prune_alike_and_unpatch_takes_every_layer_forward_off(images32, make):
    model, x = make("ViTForImageClassification"), images32()
    renyi_prune.patch(model, keep_rate=0.5, prune_blocks=(1,))
    # the pruning layer, and the layer after it (which cuts the mask to its tokens), have a forward
    assert ["forward" in layer.__dict__ for layer in model.vit.layers] == [False, True, True]
    copied = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(copied(x).logits, model(x).logits)
    for m in (model, copied):
        renyi_prune.unpatch(m)
        assert not any("forward" in layer.__dict__ for layer in m.vit.layers)
