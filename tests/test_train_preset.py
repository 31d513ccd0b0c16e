"""``renyi-prune train --preset``, the start-up summary with its time estimate, the warnings for settings
that cannot work as intended, the validation subset, and ``--img-size`` checked against the patch size.

The real ``--preset cpu-quick`` run takes minutes; here it runs shrunk (8 random images, 1 epoch). Tiny
models, random data, CPU, eager attention."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch

from renyi_prune import PruneConfig
from renyi_prune.cli import build_parser, main
from renyi_prune.train import (
    PRESETS,
    TrainConfig,
    TrainConfigWarning,
    config_to_argv,
    parse_train_args,
    train,
)
from renyi_prune.train.cli import one_line_warnings, train_config
from renyi_prune.train.summary import StepTimes, config_warnings, estimate_seconds, time_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread", "eager", "no_real_fashion_mnist")

TINY = {"model": "vit_tiny_patch16_224", "model_kwargs": {"patch_size": 14, "embed_dim": 16, "depth": 2,
        "num_heads": 1}, "img_size": 28}  # fmt: skip
QUIET = {"mixup": 0.0, "cutmix": 0.0, "reprob": 0.0, "warmup_epochs": 0.0}


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(**TINY, **QUIET, dataset="fashion-mnist", data=data, output=out, batch_size=4,
                       epochs=1, workers=0, device="cpu", amp="none", progress=False)  # fmt: skip
    return base.replace(**changes)


def _summary(out: str) -> dict[str, str]:
    """The summary's lines (after their first word) by their first word (model, data, pruning, ...)."""
    lines = out.split("renyi-prune train: ", 1)[1].splitlines()[1:]
    return dict(line.split(None, 1) for line in lines if line.startswith("  "))


# --------------------------------------------------------------------------------------------------------
# --preset
# --------------------------------------------------------------------------------------------------------


def test_the_preset_parses_to_its_config() -> None:
    config = parse_train_args(["--preset", "cpu-quick"])
    assert config == TrainConfig.from_preset("cpu-quick")
    assert (config.model, config.img_size, config.dataset) == ("vit_tiny_patch16_224", 28, "fashion-mnist")
    assert config.model_kwargs == {"patch_size": 4, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 2.0}
    assert config.prune == PruneConfig("renyi", keep_rate=0.7, alpha=2.0)
    assert config.warmup_epochs < config.epochs and config.max_val_images == 2000
    assert (config.mixup, config.cutmix, config.reprob) == (0.0, 0.0, 0.0)
    assert config_warnings(config) == []  # the preset itself is warned about nothing
    assert parse_train_args(config_to_argv(config)) == config  # and its command line builds it too
    assert list(PRESETS) == ["cpu-quick"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "cpu-quick", "--epochs", "1", "--keep-rate", "0.5"],
        ["--epochs", "1", "--keep-rate", "0.5", "--preset", "cpu-quick"],  # before --preset too
    ],
)
def test_options_given_override_the_preset(argv) -> None:
    config = parse_train_args(argv)
    assert config.epochs == 1 and config.prune == PruneConfig("renyi", keep_rate=0.5, alpha=2.0)
    assert config.img_size == 28 and config.max_train_images == 15_000  # the rest is the preset's


def test_an_option_given_at_its_default_still_overrides_the_preset() -> None:
    config = parse_train_args(["--preset", "cpu-quick", "--epochs", "100", "--mixup", "0.8"])
    assert (config.epochs, config.mixup) == (100, 0.8)


def test_preset_values_tied_to_an_option_given_are_dropped(tmp_path) -> None:
    evit = parse_train_args(["--preset", "cpu-quick", "--criterion", "evit"])
    assert evit.prune.label == "evit r=0.7"  # the preset's α belongs to its criterion
    folder = parse_train_args(["--preset", "cpu-quick", "--data", str(tmp_path)])
    assert folder.dataset is None and folder.data == tmp_path  # an ImageFolder, not Fashion-MNIST
    other = parse_train_args(["--preset", "cpu-quick", "--model", "deit_tiny_patch16_224"])
    assert other.model_kwargs == {} and other.img_size == 28


def test_the_preset_through_the_renyi_prune_command() -> None:
    args = build_parser().parse_args(["train", "--preset", "cpu-quick", "--epochs", "2"])
    assert train_config(args) == TrainConfig.from_preset("cpu-quick", epochs=2)


def test_an_unknown_preset_is_refused(cli_error_line) -> None:
    assert main(["train", "--preset", "gpu-slow"]) == 2
    assert "argument --preset: invalid choice: 'gpu-slow'" in cli_error_line()
    with pytest.raises(ValueError, match="unknown preset 'gpu-slow'; choose from cpu-quick"):
        TrainConfig.from_preset("gpu-slow")


def test_from_preset_overrides_fields() -> None:
    config = TrainConfig.from_preset("cpu-quick", epochs=1, prune=None)
    assert config.epochs == 1 and config.prune is None and config.lr == 2e-3
    assert TrainConfig.from_preset("cpu-quick").model_kwargs is not PRESETS["cpu-quick"]["model_kwargs"]


def test_the_preset_runs_shrunk_and_prints_its_summary(data, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--preset", "cpu-quick", "--data", str(data), "--dataset", "fashion-mnist",
            "--max-train-images", "8", "--batch-size", "4", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--output", str(out)]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainConfigWarning)  # the preset warns about nothing
        assert main(argv) == 0
    said = capsys.readouterr().out
    summary = _summary(said)
    assert said.startswith(f"renyi-prune train: {out}\n")
    assert summary["model"].startswith(
        "vit_tiny_patch16_224 (patch_size=4 embed_dim=64 num_heads=4 mlp_ratio=2.0): 0."
    )
    assert "from scratch; 28 px, 49 patches + 1 token, 10 classes" in summary["model"]
    assert summary["data"] == (
        "fashion-mnist: 8 training images (2 steps of 4 = 8 images per epoch), 4 validation images"
    )
    assert summary["pruning"] == "renyi α=2 r=0.7 at blocks 3, 6, 9 (0-based)"
    assert "Mixup off, CutMix off, RandomErasing off" in summary["augment"]
    assert summary["optimize"].startswith("1 epoch, adamw lr 2.00e-03 (0.5 warm-up epochs")
    assert summary["runtime"].startswith("cpu, 1 thread, AMP none, 0 loader workers")
    assert " for 1 epoch: training " in summary["estimate"]
    assert said.index("estimate") < said.index("epoch 1/1")  # before the first step
    assert json.loads((out / "config.json").read_text())["train_images"] == 8


# --------------------------------------------------------------------------------------------------------
# the start-up summary and its estimate
# --------------------------------------------------------------------------------------------------------


def test_the_summary_of_an_unpruned_run_with_a_validation_subset(data, tmp_path, capsys) -> None:
    result = train(_config(data, tmp_path / "run", max_val_images=2, max_train_images=4))
    summary = _summary(capsys.readouterr().out)
    assert summary["pruning"] == "none (unpruned; --keep-rate R prunes)"
    assert summary["data"] == (
        "fashion-mnist: 4 of 8 training images (1 step of 4 = 4 images per epoch), 2 of 4 validation images"
    )
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (record["train_images"], record["val_images"]) == (4, 2)  # the validation subset is used
    assert result["last"]["epoch"] == 1


def test_the_summary_names_the_keep_rate_warmup(data, tmp_path, capsys) -> None:
    prune = PruneConfig(keep_rate=0.5, prune_blocks=[1])
    train(_config(data, tmp_path / "run", epochs=2, prune=prune, keep_rate_warmup_epochs=1))
    summary = _summary(capsys.readouterr().out)
    assert summary["pruning"] == (
        "renyi α=1 r=0.5 at blocks 1 (0-based); keep rate from 1 to the target over 1 epoch"
    )
    assert " for 2 epochs: " in summary["estimate"]


def test_timing_steps_leaves_the_model_and_random_streams_as_they_were(data) -> None:
    import timm

    from renyi_prune import patch
    from renyi_prune.data import DataConfig, build_datasets, build_transform

    model = timm.create_model(TINY["model"], num_classes=10, img_size=28, **TINY["model_kwargs"])
    patch(model, PruneConfig("random", keep_rate=0.5, prune_blocks=(1,), params={"seed": 0}))
    model.eval()
    splits, _ = build_datasets("fashion-mnist", data)
    normalize = DataConfig(img_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)
    splits["train"].transform = build_transform(normalize, True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    times = time_steps(model, splits["train"], 4, torch.device("cpu"), None)
    assert times.images == 4 and min(times.data, times.train, times.forward) > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_long_estimate_on_a_cpu_points_to_the_preset(data, tmp_path, monkeypatch, capsys) -> None:
    import renyi_prune.train.run as train_run

    slow = StepTimes(data=0.0, train=3000.0, forward=10.0, images=8)  # seconds per image
    monkeypatch.setattr(train_run, "time_steps", lambda *args, **kwargs: slow)
    train(_config(data, tmp_path / "run", epochs=2))
    said = capsys.readouterr().out
    # 2 epochs x 2 steps x 4 images x 3000 s, and 2 x 4 validation images x 10 s
    assert "estimate  ~13.4 h for 2 epochs: training ~13.3 h, validation ~80 s" in said
    assert "on a CPU, --preset cpu-quick trains a small ViT in minutes" in said
    quick = TrainConfig.from_preset("cpu-quick", data=data, output=tmp_path / "quick", max_train_images=8,
                                    batch_size=4, epochs=2, progress=False)  # fmt: skip
    train(quick)
    said = capsys.readouterr().out
    assert "estimate  ~" in said and "--preset cpu-quick trains" not in said  # it is that preset already


def test_the_estimate_adds_training_and_validation() -> None:
    times = StepTimes(data=0.01, train=0.1, forward=0.02, images=8)
    assert estimate_seconds(times, steps=10, batch_size=4, workers=0, val_images=100, epochs=3) == (
        pytest.approx(3 * 10 * 4 * 0.11),
        pytest.approx(3 * 100 * 0.03),
    )
    # loader workers read while the model computes: a step takes the longer of the two
    train_s, _ = estimate_seconds(times, steps=10, batch_size=4, workers=2, val_images=0, epochs=1)
    assert train_s == pytest.approx(10 * 4 * 0.1)


# --------------------------------------------------------------------------------------------------------
# warnings for settings that cannot work as intended
# --------------------------------------------------------------------------------------------------------


def test_a_warmup_as_long_as_the_run_is_warned_about(data, tmp_path, capsys) -> None:
    with pytest.warns(TrainConfigWarning, match=r"--warmup-epochs 5 >= --epochs 3: the learning rate is"):
        train(_config(data, tmp_path / "run", epochs=3, warmup_epochs=5, stop_after_epoch=1))
    assert not [m for m in config_warnings(_config(data, tmp_path, epochs=3, warmup_epochs=0.5))]
    assert not config_warnings(_config(data, tmp_path, epochs=3, warmup_epochs=5, sched="none"))


def test_a_keep_rate_warmup_as_long_as_the_run_is_warned_about(data, tmp_path) -> None:
    prune = PruneConfig(keep_rate=0.5, prune_blocks=[1])
    late = _config(data, tmp_path, epochs=2, prune=prune, keep_rate_start_epoch=1, keep_rate_warmup_epochs=1)
    (message,) = config_warnings(late)
    assert message.startswith("--keep-rate-start-epoch 1 + --keep-rate-warmup-epochs 1 >= --epochs 2: the ")
    assert "never reaches its target 0.5" in message
    assert not config_warnings(late.replace(keep_rate_start_epoch=0.5, keep_rate_warmup_epochs=1))


def test_heavy_augmentation_on_a_short_run_from_scratch_is_warned_about(data, tmp_path) -> None:
    short = _config(data, tmp_path, epochs=3, mixup=0.8, reprob=0.25)
    (message,) = config_warnings(short)
    assert message.startswith("Mixup, RandomErasing on a from-scratch run of 3 epochs: ")
    assert "--mixup 0 --cutmix 0 --reprob 0" in message
    assert not config_warnings(short.replace(epochs=10))  # a long run
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert not config_warnings(short.replace(checkpoint=weights))  # fine-tuning
    assert not config_warnings(short.replace(pretrained=True))


def test_validation_that_costs_more_than_training_is_warned_about(data, tmp_path, monkeypatch) -> None:
    import renyi_prune.train.run as train_run

    slow_eval = StepTimes(data=0.0, train=0.001, forward=1.0, images=4)  # seconds per image
    monkeypatch.setattr(train_run, "time_steps", lambda *args, **kwargs: slow_eval)
    with pytest.warns(TrainConfigWarning, match=r"validating on all 4 images after every epoch is estimated"):
        train(_config(data, tmp_path / "all"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainConfigWarning)  # a subset was asked for: nothing to say
        train(_config(data, tmp_path / "subset", max_val_images=4))


def test_the_command_shows_a_warning_in_one_line() -> None:
    with one_line_warnings():
        ours = warnings.formatwarning("--warmup-epochs 5 >= --epochs 3: ...", TrainConfigWarning, "x.py", 1)
        other = warnings.formatwarning("stale lock", RuntimeWarning, "x.py", 7)
    assert ours == "renyi-prune train: warning: --warmup-epochs 5 >= --epochs 3: ...\n"
    assert other.startswith("x.py:7: RuntimeWarning: stale lock")
    assert warnings.formatwarning("m", TrainConfigWarning, "x.py", 1).startswith("x.py:1: ")  # restored


# --------------------------------------------------------------------------------------------------------
# --img-size and the patch size
# --------------------------------------------------------------------------------------------------------


def test_an_img_size_that_is_not_a_multiple_of_the_patch_size_is_refused(data, tmp_path, cli_error_line):
    argv = ["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=7", "embed_dim=16",
            "depth=2", "num_heads=1", "--img-size", "30", "--data", str(data), "--dataset", "fashion-mnist",
            "--batch-size", "4", "--epochs", "1", "--no-progress", "--device", "cpu", "--warmup-epochs", "0",
            "--mixup", "0", "--cutmix", "0", "--reprob", "0", "--output", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    assert cli_error_line() == (
        "renyi-prune train: error: argument --img-size: 30 is not a multiple of the model's patch size 7 "
        "(e.g. 28 or 35)"
    )
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_the_default_patch_size_is_checked_too(data, tmp_path) -> None:
    from renyi_prune._argtypes import UsageError

    config = _config(data, tmp_path, model_kwargs={"embed_dim": 16, "depth": 2, "num_heads": 1}, img_size=40)
    with pytest.raises(UsageError, match=r"--img-size: 40 is not a multiple of the model's patch size 16 "):
        train(config)


def test_train_config_applies_the_preset_to_a_namespace_once() -> None:
    parser = argparse.ArgumentParser()
    from renyi_prune.train import add_train_arguments

    add_train_arguments(parser)
    args = parser.parse_args(["--preset", "cpu-quick", "--lr", "1e-3"])
    assert args.given_options == {"preset", "lr"} and args.epochs == 100  # the namespace is left as parsed
    assert train_config(args).epochs == 3 and train_config(args).lr == 1e-3
