"""Exported patched models run anywhere: ONNX in onnxruntime, and ``torch.export`` programs made where the
Triton path ran (the fused custom ops in the graph) on a CPU machine with no Triton driver; the custom
ops' CPU implementations against the reference."""

import math

import pytest
import timm
import torch

import renyi_prune
from renyi_prune.kernels import is_interpreting
from renyi_prune.ops import eager_on_cpu
from renyi_prune.reference import attention_with_entropy_reference


@pytest.fixture(scope="module")
def deit():
    """A random DeiT-Tiny at 64 px: 16 patches + CLS, pruned 16 → 12 → 9 → 7 at keep rate 0.7."""
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", num_classes=10, img_size=64).eval()


@pytest.fixture
def patched(deit):
    """``deit`` patched with a config; unpatched after the test."""
    yield lambda config: renyi_prune.patch(deit, config)
    renyi_prune.unpatch(deit)


def _images(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _check_same(got, expected, scores, keep, assert_same_choices) -> None:
    """Logits within 1e-4; kept tokens equal up to near-ties of the scores (other arithmetic)."""
    torch.testing.assert_close(torch.as_tensor(got[0]), expected[0], atol=1e-4, rtol=1e-4)
    blocks = sorted(scores)
    kept_got = {b: torch.as_tensor(t) for b, t in zip(blocks, got[1:], strict=True)}
    kept_expected = dict(zip(blocks, expected[1:], strict=True))
    assert assert_same_choices(kept_expected, kept_got, scores, keep, prefix=1, atol=1e-4)


@pytest.mark.parametrize("name, params", [("renyi", {"alpha": 2.0}), ("evit+fusion", {})])
def test_onnx_export_runs_in_onnxruntime(patched, tmp_path, assert_same_choices, name, params):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    config = renyi_prune.PruneConfig.from_name(name, keep_rate=0.7, **params)
    model = renyi_prune.WithKeptTokens(patched(config)).eval()
    batch = torch.export.Dim("batch")
    with eager_on_cpu(), torch.no_grad():  # the CPU path: plain aten ops, all of which ONNX has
        program = torch.onnx.export(model, (_images(2, 0),), dynamo=True, dynamic_shapes=({0: batch},))
        program.save(tmp_path / "model.onnx")
        x = _images(3, 1)  # another batch size than the export's
        expected = model(x)
        scores = renyi_prune.token_scores(model.model)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert len(got) == 1 + len(config.prune_blocks)
    keep = renyi_prune.get_criterion(config.criterion).keep
    _check_same(got, expected, scores, keep, assert_same_choices)


@pytest.mark.skipif(not is_interpreting(), reason="needs the interpreter to trace the Triton path on CPU")
def test_program_exported_on_triton_path_runs_without_triton(patched, monkeypatch, assert_same_choices):
    model = renyi_prune.WithKeptTokens(patched(renyi_prune.PruneConfig(keep_rate=0.7, alpha=math.inf)))
    x = _images(2, 2)
    program = torch.export.export(model, (x,))  # traced where the fused op runs: it is in the graph
    assert "renyi_prune.attention_with_entropy_fwd" in str(program.graph)
    with eager_on_cpu(), torch.no_grad():
        expected = model(x)
        scores = renyi_prune.token_scores(model.model)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # a CPU machine: Triton has no driver here
    with torch.no_grad():
        got = program.module()(x)
    _check_same(got, expected, scores, "lowest", assert_same_choices)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, math.inf])
def test_fused_op_cpu_implementation(monkeypatch, alpha):
    """Without the interpreter the fused custom op runs the CPU path: outputs, per-head entropy, lse and
    gradients (with the entropy term) as the fp64 reference."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 9, 16, generator=g).requires_grad_(True) for _ in range(3))
    scale = 16**-0.5
    out, lse, ent, argmax = torch.ops.renyi_prune.attention_with_entropy_fwd(q, k, v, scale, alpha, True)
    assert argmax.shape == ((2, 2, 9) if math.isinf(alpha) else (0,))
    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref_out, ref_ent, ref_lse = attention_with_entropy_reference(q64, k64, v64, alpha, scale, "none")
    for got, ref in ((out, ref_out), (ent, ref_ent), (lse, ref_lse)):
        torch.testing.assert_close(got.double(), ref, atol=2e-5, rtol=2e-5)
    dout, dent = torch.randn_like(out), torch.randn_like(ent)
    grads = torch.autograd.grad((out * dout).sum() + (ent * dent).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref_out * dout).sum() + (ref_ent * dent).sum(), (q64, k64, v64))
    for got, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("order", [1.0, 2.5, math.inf])
def test_column_op_cpu_implementation(monkeypatch, order):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(2, 2, 3, 7, 16, generator=g).unbind(0)
    lse = torch.logsumexp((q @ k.transpose(-2, -1)) * 0.25, dim=-1)
    sums = torch.ops.renyi_prune.attention_column_power_sum(q, k, lse, 0.25, order)
    norms = renyi_prune.column_norm.attention_column_norm_reference(
        q.double(), k.double(), order, 0.25, "none", lse=lse.double()
    )
    expected = norms if math.isinf(order) else norms**order
    assert sums.dtype == torch.float32 and sums.shape == (2, 3, 7)
    torch.testing.assert_close(sums.double(), expected, atol=1e-5, rtol=1e-5)


def test_kept_patch_mask_and_with_kept_tokens_errors():
    kept = torch.tensor([[0, 1, 2, -1], [0, 4, 3, 2]])
    mask = renyi_prune.kept_patch_mask(kept, num_prefix_tokens=1, grid_size=(2, 2))
    assert mask.tolist() == [[[True, True], [False, False]], [[False, True], [True, True]]]
    with pytest.raises(ValueError, match="beyond the 2×2 grid"):
        renyi_prune.kept_patch_mask(torch.tensor([0, 5]), 1, (2, 2))
    with pytest.raises(ValueError, match="not patched"):
        renyi_prune.WithKeptTokens(torch.nn.Linear(2, 2))
