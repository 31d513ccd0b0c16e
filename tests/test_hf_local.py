"""``renyi-prune demo`` and ``renyi-prune eval`` on a ``transformers`` model saved in a local folder
(``--model FOLDER``, loaded offline with ``from_pretrained``): tiny random-weight models written with
``save_pretrained`` into a temporary folder, and the errors (a folder without config.json, a model type no
pruning adapter supports, transformers missing)."""

from __future__ import annotations

import json
import sys

import pytest

transformers = pytest.importorskip("transformers")

from renyi_prune.cli import main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: 12 layers (the demo prunes at blocks 4, 7, 10), width 32, 32 px in 8 px patches: 16 patches + CLS.
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=12, num_attention_heads=2,
            intermediate_size=64, num_labels=10)  # fmt: skip
QUICK = ["--keep-rates", "0.5", "--alphas", "1", "--no-progress", "--max-images", "2", "--repeats", "1"]


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory):
    """A random ViTForImageClassification saved with save_pretrained, with a preprocessor_config.json."""
    folder = tmp_path_factory.mktemp("vit")
    transformers.ViTForImageClassification(transformers.ViTConfig(**TINY)).save_pretrained(folder)
    transformers.ViTImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(
        folder
    )
    return folder


def test_demo_on_transformers_folder(vit_folder, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # eager CPU path: the kernel paths are test_demo's
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--model", str(vit_folder), "--criteria", "renyi", "evit", *QUICK]
    assert main(argv) == 0
    for name in ("entropy_heatmaps.png", "kept_patches.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    report = json.loads((out / "report.json").read_text())
    model = report["model"]
    assert model["name"] == "ViTForImageClassification"
    assert model["source"] == f"transformers folder {vit_folder.resolve()}"
    shape = (model["img_size"], model["num_patches"], model["num_prefix_tokens"], model["depth"])
    assert shape == (32, 16, 1, 12)
    assert model["normalization"]["mean"] == [0.5] * 3 and model["normalization"]["std"] == [0.25] * 3
    assert model["normalization"]["source"].endswith("preprocessor_config.json")
    rows = {r["label"]: r for r in report["results"]}
    assert list(rows) == ["unpruned", "renyi α=1 r=0.5", "evit r=0.5"]
    assert rows["unpruned"]["cls_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    for label in ("renyi α=1 r=0.5", "evit r=0.5"):
        assert rows[label]["patch_tokens_kept"] == [8, 4, 2]
        assert rows[label]["gflops"] < rows["unpruned"]["gflops"]
    assert len(report["mean_entropy_per_block"]) == 12
    assert "transformers folder" in (out / "report.md").read_text()


def test_demo_folder_without_preprocessor_uses_imagenet(tmp_path) -> None:
    from renyi_prune.train.model import IMAGENET_MEAN, load_transformers_model

    folder = tmp_path / "dinov2"
    config = transformers.Dinov2Config(**{**TINY, "num_hidden_layers": 2})
    transformers.Dinov2Model(config).save_pretrained(folder)
    model, size, prep = load_transformers_model(folder)
    assert type(model).__name__ == "Dinov2Model" and size == 32
    assert prep["mean"] == IMAGENET_MEAN and prep["source"] == "ImageNet defaults"


def test_folder_without_config_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["demo", "--out", str(tmp_path / "out"), "--model", str(empty), *QUICK]) == 1
    err = capsys.readouterr().err
    assert f"model folder {empty} holds no config.json" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unsupported_model_type(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "resnet"
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=10)
    transformers.ResNetForImageClassification(config).save_pretrained(folder)
    assert main(["demo", "--out", str(tmp_path / "out"), "--model", str(folder), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "unsupported model ResNetForImageClassification; supported families:" in err
    assert "transformers ViT/DeiT" in err


def test_transformers_missing(vit_folder, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    assert main(["demo", "--out", str(tmp_path / "out"), "--model", str(vit_folder), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "pip install renyi-prune[hf]" in err and str(vit_folder) in err
    assert main(["eval", "--model", str(vit_folder), "--device", "cpu"]) == 1
    assert "pip install renyi-prune[hf]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fake_fashion_mnist(tmp_path_factory: pytest.TempPathFactory):
    from renyi_prune.data import write_fake_fashion_mnist

    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train_images=1, val_images=8)


def _eval_argv(model, data, *more: str) -> list[str]:
    return ["eval", "--model", str(model), "--data", str(data), "--dataset", "fashion-mnist", "--batch-size",
            "8", "--device", "cpu", "--no-progress", *more]  # fmt: skip


def test_eval_on_transformers_folder(vit_folder, fake_fashion_mnist, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "eval.json"
    pruning = ["--keep-rate", "0.5", "--alpha", "2"]
    assert main(_eval_argv(vit_folder, fake_fashion_mnist, *pruning, "--output", str(out))) == 0
    assert capsys.readouterr().out.startswith("renyi α=2 r=0.5: top1 ")
    r = json.loads(out.read_text())
    assert r["images"] == 8 and 0 <= r["top1"] <= r["top5"] <= 100 and r["gflops"] > 0
    assert r["label"] == "renyi α=2 r=0.5" and r["pruning"]["keep_rate"] == 0.5 and r["pruning"]["alpha"] == 2
    assert (r["model"], r["img_size"], r["checkpoint"]) == (str(vit_folder.resolve()), 32, None)
    assert r["normalization"]["mean"] == [0.5] * 3  # the folder's preprocessor_config.json
    # unpruned: more GFLOPs
    assert main(_eval_argv(vit_folder, fake_fashion_mnist, "--output", str(out))) == 0
    unpruned = json.loads(out.read_text())
    assert unpruned["label"] == "unpruned" and unpruned["pruning"] is None
    assert unpruned["gflops"] > r["gflops"]


def test_eval_errors(vit_folder, fake_fashion_mnist, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (_eval_argv(empty, fake_fashion_mnist), f"model folder {empty} holds no config.json"),
        (_eval_argv(vit_folder, fake_fashion_mnist, "--checkpoint", __file__), "brings its own"),
        (_eval_argv(vit_folder, fake_fashion_mnist, "--img-size", "64"), "takes 32 px"),
        (_eval_argv(vit_folder, fake_fashion_mnist, "--num-classes", "5"), "has 10 labels"),
        (["eval", "--model", "deit_tiny_patch16_224"], "required: --checkpoint (unless --model is a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_eval_unsupported_model_type(fake_fashion_mnist, tmp_path, capsys) -> None:
    folder = tmp_path / "resnet"
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=10)
    transformers.ResNetForImageClassification(config).save_pretrained(folder)
    assert main(_eval_argv(folder, fake_fashion_mnist)) == 2
    err = capsys.readouterr().err
    assert "unsupported model ResNetForImageClassification; supported families:" in err
