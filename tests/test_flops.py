"""fvcore FLOPs of pruned and unpruned models equal the paper's Table 3 (DeiT-S at 224 px)."""

import pytest
import timm
import torch

import renyi_prune
from renyi_prune.flops import attention_flop_handle


@pytest.fixture(scope="module")
def deit_small():
    return timm.create_model("deit_small_patch16_224", pretrained=False).eval()


def test_unpruned_deit_small(deit_small):
    assert deit_small.blocks[0].attn.fused_attn  # timm's SDPA path, which fvcore alone counts as 0
    assert renyi_prune.count_flops(deit_small) == pytest.approx(4.61, abs=0.01)


@pytest.mark.parametrize("keep_rate, gflops", [(0.7, 3.00), (0.5, 2.29), (0.3, 1.80)])
@pytest.mark.parametrize("criterion", ["renyi", "evit"])
def test_pruned_deit_small(deit_small, keep_rate, gflops, criterion):
    renyi_prune.patch(deit_small, keep_rate=keep_rate, criterion=criterion)
    try:
        assert renyi_prune.count_flops(deit_small) == pytest.approx(gflops, abs=0.01)
    finally:
        renyi_prune.unpatch(deit_small)


def test_fused_op_is_counted(deit_small, monkeypatch):
    """The Triton path is one custom-op node; the eager path is plain matmuls: both count the same."""
    renyi_prune.patch(deit_small, keep_rate=0.7)
    try:
        fused = renyi_prune.count_flops(deit_small)  # TRITON_INTERPRET=1 or CUDA: custom op node
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        eager = renyi_prune.count_flops(deit_small.cpu())
    finally:
        renyi_prune.unpatch(deit_small)
    assert fused == pytest.approx(eager, rel=1e-6)


def test_attention_handle_counts_two_matmuls():
    g = torch._C.Graph()
    vals = []
    for shape in [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)]:
        val = g.addInput()
        val.setType(torch._C.TensorType.create_from_tensor(torch.empty(shape)))
        vals.append(val)
    assert attention_flop_handle(vals, []) == 2 * 3 * 5 * 7 * (8 + 4)


def test_flop_counter_mode_sees_fused_ops():
    from torch.utils.flop_counter import FlopCounterMode

    B, H, N, D = 2, 3, 17, 16
    qkv = torch.randn(B, N, 3, H, D, requires_grad=True)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    with FlopCounterMode(display=False) as counter:
        out, _ = renyi_prune.attention_with_entropy(q, k, v)
        out.sum().backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.renyi_prune.attention_with_entropy_fwd] == 4 * B * H * N * N * D
    assert counts[torch.ops.renyi_prune.attention_with_entropy_bwd] == 8 * B * H * N * N * D


def test_flop_counter_mode_sees_the_column_pass():
    from torch.utils.flop_counter import FlopCounterMode

    B, H, N, D = 2, 3, 17, 16
    q, k = torch.randn(2, B, H, N, D).unbind(0)
    with FlopCounterMode(display=False) as counter:
        renyi_prune.attention_column_norm(q, k, order=2.0)
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.renyi_prune.attention_column_power_sum] == 2 * B * H * N * N * D


@pytest.mark.parametrize("criterion, params", [("colln", {}), ("headmad", {"source": "column"})])
def test_column_pass_criteria_are_counted(deit_small, criterion, params):
    """The Col-Ln pass is counted as its q·kᵀ recomputation (B·H·N·N·D per pruning block)."""
    renyi_prune.patch(deit_small, keep_rate=0.7, criterion=criterion, **params)
    try:
        gflops = renyi_prune.count_flops(deit_small)
    finally:
        renyi_prune.unpatch(deit_small)
    extra = sum(6 * n * n * 64 for n in (197, 139, 98)) / 1e9
    assert gflops == pytest.approx(3.00 + extra, abs=0.01)


def test_default_img_size_is_the_models_own():
    """Without img_size, count_flops counts at the size the model was built for (here a timm ViT at 96 px)."""
    vit = timm.create_model("vit_tiny_patch16_224", img_size=96)  # 36 patches, not 196
    assert renyi_prune.count_flops(vit) == renyi_prune.count_flops(vit, img_size=96)
    assert renyi_prune.count_flops(vit) < renyi_prune.count_flops(timm.create_model("vit_tiny_patch16_224"))
    with pytest.raises(ValueError, match="Sequential does not say its input size: pass img_size"):
        renyi_prune.count_flops(torch.nn.Sequential(torch.nn.Flatten()))
