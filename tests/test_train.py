"""``renyi-prune train`` / ``eval`` (renyi_prune.train, renyi_prune.data) and the accuracy-study smoke run.

CPU, tiny real Fashion-MNIST subsets and a 12-block ViT of width 32 (2 heads of 16, 16 patches of 7 px),
on the eager attention path (``TRITON_INTERPRET=0``) except ``test_training_step_through_triton_kernels``,
which runs one step through the Triton kernels (the interpreter on CPU, the compiled kernels on a GPU).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import timm
import torch

from renyi_prune import Criterion, available_criteria, register_criterion, unregister_criterion
from renyi_prune.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    DatasetNotFoundError,
    FashionMNIST,
    build_datasets,
    fashion_mnist_dir,
    read_idx,
    subset,
)
from renyi_prune.train import (
    CHECKPOINT_FORMAT,
    METRIC_FIELDS,
    add_train_arguments,
    evaluate_checkpoint,
    parse_eval_args,
    parse_train_args,
    run_eval,
    run_train,
    train,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
HAS_FMNIST = all(
    (fashion_mnist_dir() / f"{stem}.gz").is_file() or (fashion_mnist_dir() / stem).is_file()
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
)
needs_fmnist = pytest.mark.skipif(
    not HAS_FMNIST, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
)

TINY = [
    "--model",
    "vit_tiny_patch16_224",
    "--model-kwargs",
    "patch_size=7",
    "embed_dim=32",
    "num_heads=2",
    "mlp_ratio=1.0",
    "--img-size",
    "28",
    "--no-progress",
    "--amp",
    "none",
    "--workers",
    "0",
    "--device",
    "cpu",
]
PLAIN = [
    "--mixup",
    "0",
    "--cutmix",
    "0",
    "--reprob",
    "0",
    "--drop-path",
    "0",
    "--smoothing",
    "0",
    "--warmup-epochs",
    "0",
]


def _train(tmp: Path, *extra: str) -> dict:
    return train(parse_train_args([*TINY, "--output", str(tmp), *extra]))


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory) -> dict:
    """One tiny run fine-tuned with Rényi pruning (keep rate 0.5), shared by the eval tests."""
    out = tmp_path_factory.mktemp("pruned")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "0")
        return _train(
            out,
            *PLAIN,
            "--max-train-images",
            "128",
            "--max-val-images",
            "128",
            "--batch-size",
            "32",
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--keep-rate",
            "0.5",
            "--alpha",
            "2",
        )


def _criterion_choices() -> list[str]:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return sorted(next(a.choices for a in parser._actions if a.dest == "criterion"))


def test_criteria_names_match_the_registry() -> None:
    assert _criterion_choices() == sorted(available_criteria())
    # a criterion registered later is offered too: the names come from the registry, not from a copy
    register_criterion(
        Criterion(
            "test-clsmax",
            keep="highest",
            needs=frozenset({"cls_attn"}),
            score=lambda attention_pass, params: attention_pass.cls_attn.amax(dim=1),
        )
    )
    try:
        assert "test-clsmax" in _criterion_choices()
    finally:
        unregister_criterion("test-clsmax")
    assert "test-clsmax" not in _criterion_choices()


# --------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------


@needs_fmnist
def test_fashion_mnist_dataset() -> None:
    train_set, val_set = FashionMNIST(split="train"), FashionMNIST(split="test")
    assert (len(train_set), len(val_set)) == (60000, 10000)
    image, label = train_set[0]
    assert image.mode == "RGB" and image.size == (28, 28)
    assert label == 9  # the first training image is an ankle boot
    r, g, b = image.split()
    assert r.tobytes() == g.tobytes() == b.tobytes()
    assert sorted(set(val_set.targets.tolist())) == list(range(len(FASHION_MNIST_CLASSES)))
    small = subset(train_set, 100)
    assert len(small) == 100 and small.indices == subset(train_set, 100).indices  # fixed subset


def test_read_idx_rejects_truncated_files(tmp_path) -> None:
    good = tmp_path / "x-idx1-ubyte.gz"
    with gzip.open(good, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert read_idx(good).tolist() == [1, 2, 3]
    bad = tmp_path / "y-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)
    (tmp_path / "z").write_bytes(b"not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "z")


def test_missing_dataset_gives_the_install_hint(tmp_path, monkeypatch, eager) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        run_train(parse_train_args([*TINY, "--output", str(tmp_path / "out"), "--epochs", "1"]))
    assert str(tmp_path) in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetNotFoundError, match="DIR/train"):
        build_datasets("imagefolder", tmp_path)


def test_imagefolder_training(tmp_path, eager) -> None:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog")):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(4):
                pixels = (torch.rand(20, 24, 3, generator=gen) * 120 + 120 * c).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "data" / split / name / f"{i}.png")
    result = _train(
        tmp_path / "out",
        *PLAIN,
        "--data",
        str(tmp_path / "data"),
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--keep-rate",
        "0.5",
        "--criterion",
        "evit",
        "--fuse-pruned",
    )
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["dataset"] == "imagefolder" and config["classes"] == ["cat", "dog"]
    assert config["model_config"]["num_classes"] == 2
    model_mean = timm.create_model("vit_tiny_patch16_224", pretrained=False).pretrained_cfg["mean"]
    assert config["data_config"]["mean"] == pytest.approx(
        list(model_mean)
    )  # the model's, not Fashion-MNIST's
    assert result["last"]["epoch"] == 1 and 0 <= result["last"]["top1"] <= 100


# --------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------


@needs_fmnist
def test_training_lowers_the_loss_and_writes_its_files(tmp_path, eager) -> None:
    out = tmp_path / "run"
    result = _train(
        out,
        *PLAIN,
        "--max-train-images",
        "256",
        "--max-val-images",
        "128",
        "--batch-size",
        "32",
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--keep-rate",
        "0.7",
        "--criterion",
        "renyi",
    )
    history = result["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(set(line) == set(METRIC_FIELDS) for line in lines)
    last = lines[-1]
    assert last["keep_rate"] == 0.7 and last["num_updates"] == 4 * 256 // 32
    assert 0 < last["gflops"] < 0.01 and last["train_images_per_s"] > 0 and last["eval_images_per_s"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["pruning"]["criterion"] == "renyi" and config["train_images"] == 256
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["epoch"] == 4
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


@needs_fmnist
def test_resume_continues_identically(tmp_path, eager) -> None:
    # every random stream of the loop: crops/flips/erasing in a loader worker, Mixup/CutMix (NumPy), drop
    # path (torch), the random criterion's generator, and a keep rate that changes every step
    opts = [
        "--max-train-images",
        "96",
        "--max-val-images",
        "64",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--warmup-epochs",
        "1",
        "--drop-path",
        "0.1",
        "--workers",
        "1",
        "--keep-rate",
        "0.5",
        "--criterion",
        "random",
        "--keep-rate-warmup-epochs",
        "2",
        "--seed",
        "3",
    ]
    whole = _train(tmp_path / "whole", *opts)
    first = _train(tmp_path / "split", *opts, "--stop-after-epoch", "1")
    assert [r["epoch"] for r in first["history"]] == [1]
    resumed = _train(tmp_path / "split", *opts, "--resume", str(tmp_path / "split" / "checkpoint.pth"))

    a = torch.load(tmp_path / "whole" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    stable = (
        "epoch",
        "num_updates",
        "train_loss",
        "lr",
        "top1",
        "top5",
        "eval_loss",
        "train_keep_rate",
        "gflops",
    )
    assert [{k: r[k] for k in stable} for r in whole["history"]] == [
        {k: r[k] for k in stable} for r in resumed["history"]
    ]
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@needs_fmnist
def test_training_step_through_triton_kernels(tmp_path, monkeypatch) -> None:
    """One step with Rényi pruning on the fused op's Triton path (CPU: interpreter), forward + backward."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    result = _train(
        tmp_path,
        *PLAIN,
        "--max-train-images",
        "8",
        "--max-val-images",
        "8",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--keep-rate",
        "0.5",
        "--alpha",
        "inf",
    )
    assert math.isfinite(result["last"]["train_loss"]) and result["last"]["num_updates"] == 1


def test_usage_errors(tmp_path, eager) -> None:
    from renyi_prune.cli import UsageError

    def fails(match: str, *argv: str) -> None:
        with pytest.raises(UsageError, match=match):
            _train(tmp_path / "out", *argv)

    fails("--alpha is for --criterion renyi", "--keep-rate", "0.5", "--criterion", "evit", "--alpha", "2")
    fails("need.*--keep-rate", "--fuse-pruned")
    fails("even batch", "--batch-size", "7")
    fails("not a checkpoint", "--resume", str(Path(__file__)))
    fails("beyond --epochs", "--epochs", "2", "--stop-after-epoch", "3")
    if HAS_FMNIST:
        fails("fewer than --batch-size", *PLAIN, "--max-train-images", "10", "--batch-size", "16")
    with pytest.raises(SystemExit):
        parse_train_args([*TINY, "--keep-rate", "1.5"])
    with pytest.raises(UsageError, match="prune block index 20"):
        _train(
            tmp_path / "out",
            *PLAIN,
            "--max-train-images",
            "16",
            "--batch-size",
            "16",
            "--keep-rate",
            "0.5",
            "--prune-blocks",
            "3",
            "20",
        )


# --------------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------------


@needs_fmnist
def test_eval_at_keep_rate_one_equals_the_unpatched_model(pruned_run, tmp_path, eager) -> None:
    ckpt = pruned_run["output"] / "checkpoint.pth"
    common = ["--checkpoint", str(ckpt), "--max-val-images", "128", "--no-progress", "--amp", "none"]
    plain = evaluate_checkpoint(parse_eval_args([*common, "--no-prune"]))
    assert plain["pruning"] is None
    for criterion in ("renyi", "evit", "colln"):
        full = evaluate_checkpoint(parse_eval_args([*common, "--keep-rate", "1.0", "--criterion", criterion]))
        assert full["pruning"]["keep_rate"] == 1.0
        assert (full["top1"], full["top5"], full["images"]) == (plain["top1"], plain["top5"], plain["images"])
        assert full["loss"] == pytest.approx(plain["loss"], abs=1e-5)
        assert full["gflops"] == pytest.approx(plain["gflops"], rel=1e-6)


@needs_fmnist
def test_eval_defaults_to_the_checkpoints_pruning(pruned_run, tmp_path, eager, capsys) -> None:
    ckpt = pruned_run["output"] / "checkpoint.pth"
    out = tmp_path / "eval.json"
    assert (
        run_eval(
            parse_eval_args(
                [
                    "--checkpoint",
                    str(ckpt),
                    "--max-val-images",
                    "128",
                    "--batch-size",
                    "32",
                    "--no-progress",
                    "--output",
                    str(out),
                ]
            )
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["pruning"]["keep_rate"] == 0.5 and result["pruning"]["alpha"] == 2.0
    # the eval of the trained run's last epoch used the same model, data and pruning
    assert result["top1"] == pruned_run["last"]["top1"]
    assert result["gflops"] == pytest.approx(pruned_run["last"]["gflops"])
    assert "renyi α=2 r=0.5: top1" in capsys.readouterr().out


@needs_fmnist
def test_eval_of_a_plain_state_dict_needs_model(pruned_run, tmp_path, eager) -> None:
    from renyi_prune.cli import UsageError

    state = torch.load(pruned_run["output"] / "checkpoint.pth", weights_only=True)["model"]
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(UsageError, match="name its --model"):
        evaluate_checkpoint(parse_eval_args(["--checkpoint", str(tmp_path / "weights.pth")]))
    argv = [
        "--checkpoint",
        str(tmp_path / "weights.pth"),
        *TINY[:7],
        "--img-size",
        "28",
        "--max-val-images",
        "64",
        "--no-progress",
    ]
    result = evaluate_checkpoint(parse_eval_args(argv))
    assert result["pruning"] is None and result["images"] == 64
    with pytest.raises(UsageError, match="classifier head.weight"):
        evaluate_checkpoint(parse_eval_args([*argv, "--num-classes", "12"]))
    with pytest.raises(UsageError, match="10"):
        evaluate_checkpoint(parse_eval_args([*argv, "--num-classes", "5"]))
    with pytest.raises(UsageError, match="--no-prune contradicts"):
        evaluate_checkpoint(parse_eval_args([*argv, "--no-prune", "--keep-rate", "0.5"]))


# --------------------------------------------------------------------------------------------------------
# the accuracy study
# --------------------------------------------------------------------------------------------------------


@needs_fmnist
def test_accuracy_study_smoke(tmp_path, eager, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("accuracy_study", REPO / "benchmarks" / "accuracy_study.py")
    study = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, study)  # dataclasses look their module up
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what the script sets; restored afterwards
    spec.loader.exec_module(study)
    out = tmp_path / "smoke"
    assert study.main(["--smoke", "--out", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {
        "runs.csv",
        "summary.csv",
        "results.md",
        "accuracy_vs_gflops.png",
        "config.json",
        "environment.json",
    }
    cfg = study.CONFIGS["smoke"]
    runs = (out / "runs.csv").read_text().splitlines()
    n_jobs = 1 + len(cfg.variants) * len(cfg.keep_rates)
    assert len(runs) == 1 + n_jobs * (1 + len(cfg.seeds))
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + n_jobs
    md = (out / "results.md").read_text()
    assert "Smoke run" in md and "| evit+fusion |" in md and "renyi α=inf" in md
    assert (out / "accuracy_vs_gflops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["name"] == "smoke" and config["commands"]["base"][:2] == ["renyi-prune", "train"]
    env = json.loads((out / "environment.json").read_text())
    assert {"device", "torch", "timm", "date", "git_commit", "wall_time_s"} <= set(env)
    # the report can be re-rendered from the saved runs alone, to the same summary
    before = (out / "summary.csv").read_text(), md
    assert study.main(["--rerender", str(out)]) == 0
    assert ((out / "summary.csv").read_text(), (out / "results.md").read_text()) == before
