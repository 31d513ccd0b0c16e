"""``renyi_prune.train`` as a library and on timm's utilities: ``train(TrainConfig)`` with a
``PruneConfig``, the command line of a config (``config_to_argv``) and back, checkpoints that timm reads
(``timm.create_model(checkpoint_path=...)``, ``timm.models.resume_checkpoint``), mixed precision with
timm's ``NativeScaler`` (fp16) or bf16 autocast on the CPU, and ``torchrun`` with two CPU processes (gloo).
Tiny models, random data, CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from renyi_prune import PruneConfig
from renyi_prune.train import (
    CHECKPOINT_FORMAT,
    EvalConfig,
    TrainConfig,
    config_to_argv,
    evaluate_checkpoint,
    parse_train_args,
    train,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "eager", "no_real_fashion_mnist")

REPO = Path(__file__).resolve().parents[1]
KWARGS = {"patch_size": 14, "embed_dim": 16, "depth": 2, "num_heads": 1}


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        dataset="fashion-mnist",
        data=data,
        output=out,
        model="vit_tiny_patch16_224",
        model_kwargs=KWARGS,
        img_size=28,
        batch_size=4,
        epochs=1,
        workers=0,
        device="cpu",
        amp="none",
        progress=False,
        mixup=0.0,
        cutmix=0.0,
        reprob=0.0,
        drop_path=0.0,
        warmup_epochs=0.0,
    )
    return base.replace(**changes)


def test_config_to_argv_and_back(data, tmp_path) -> None:
    (tmp_path / "w.pth").write_bytes(b"x")
    config = _config(
        data,
        tmp_path / "run",
        checkpoint=tmp_path / "w.pth",
        mean=(0.5, 0.5, 0.5),
        scale=(0.5, 1.0),
        opt_betas=(0.9, 0.99),
        clip_grad=1.0,
        aa="rand-m9-mstd0.5",
        keep_rate_warmup_epochs=0.5,
        model_kwargs={**KWARGS, "act_layer": "gelu", "class_token": True, "qk_norm": "True"},
        prune=PruneConfig("colln", keep_rate=(0.7, 0.5), prune_blocks=(0, 1), params={"order": 3.0}),
    )
    argv = config_to_argv(config)
    assert argv[:2] == ["--dataset", "fashion-mnist"] and "--no-progress" in argv
    assert parse_train_args(argv) == config
    for prune in (None, PruneConfig.from_name("evit+fusion", keep_rate=0.5), PruneConfig(alpha=float("inf"))):
        other = config.replace(prune=prune, keep_rate_warmup_epochs=0.0)
        assert parse_train_args(config_to_argv(other)) == other
    assert config_to_argv(TrainConfig()) == []
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config.replace(
        data=data.resolve(), output=(tmp_path / "run").resolve(), checkpoint=(tmp_path / "w.pth").resolve()
    )
    with pytest.raises(TypeError, match="prune must be a renyi_prune.PruneConfig"):
        TrainConfig(prune={"keep_rate": 0.5})


def test_train_with_a_prune_config_and_a_keep_rate_warmup(data, tmp_path, capsys) -> None:
    prune = PruneConfig("random", keep_rate=(0.5, 0.5), prune_blocks=(0, 1), params={"seed": 2})
    config = _config(data, tmp_path / "run", epochs=2, prune=prune, keep_rate_warmup_epochs=1.0)
    result = train(config)
    history = result["history"]
    # half cosine from 1 to 0.5 over the first epoch (2 updates): 0.75 after its first update, then 0.5
    assert [list(r["train_keep_rate"]) for r in history] == [[pytest.approx(0.75)] * 2, [0.5, 0.5]]
    assert [list(r["keep_rate"]) for r in history] == [[0.5, 0.5]] * 2
    assert result["config"]["pruning"] == prune.to_dict()
    assert result["config"]["args"]["keep_rate_warmup_epochs"] == 1.0
    assert "keep 0.5/0.5" in capsys.readouterr().out  # the per-epoch line shows the evaluation keep rate
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["epoch"] == 2
    assert ckpt["arch"] == "vit_tiny_patch16_224"
    assert PruneConfig.from_dict(ckpt["pruning"]) == prune
    # eval reads the pruning back from the checkpoint, as a PruneConfig
    ev = evaluate_checkpoint(EvalConfig(tmp_path / "run" / "checkpoint.pth", progress=False))
    assert ev["pruning"] == prune.to_dict() and ev["label"] == prune.label and ev["images"] == 4
    with pytest.raises(Exception, match="need.*--keep-rate"):
        train(_config(data, tmp_path / "other", keep_rate_warmup_epochs=1.0))


def test_timm_reads_the_checkpoint(data, tmp_path) -> None:
    from timm.models import resume_checkpoint
    from timm.optim import create_optimizer_v2

    train(_config(data, tmp_path / "run", epochs=2, stop_after_epoch=1))
    path = tmp_path / "run" / "checkpoint.pth"
    saved = torch.load(path, weights_only=True)
    model = timm.create_model(
        "vit_tiny_patch16_224", img_size=28, num_classes=10, checkpoint_path=str(path), **KWARGS
    )
    assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())
    optimizer = create_optimizer_v2(model, "adamw", weight_decay=0.05)  # as the run's: two param groups
    assert resume_checkpoint(model, str(path), optimizer=optimizer, log_info=False) == 1  # the next epoch
    assert optimizer.state_dict()["state"].keys() == saved["optimizer"]["state"].keys()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(amp, data, tmp_path) -> None:
    config = _config(data, tmp_path / "run", amp=amp, epochs=2, lr=1e-3)
    first = train(config.replace(stop_after_epoch=1))
    assert first["config"]["amp"] == {"bf16": "bfloat16", "fp16": "float16"}[amp]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert ("amp_scaler" in ckpt) == (amp == "fp16")  # timm.utils.NativeScaler's state, under its key
    resumed = train(config.replace(resume=tmp_path / "run" / "checkpoint.pth"))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in resumed["history"])


@pytest.mark.slow
def test_torchrun_two_cpu_processes(data, tmp_path) -> None:
    """``torchrun --nproc-per-node 2``: gloo process group, DistributedSampler, sharded validation, rank 0
    writes; the validation covers every image exactly once."""
    out = tmp_path / "run"
    argv = ["train", *config_to_argv(_config(data, out, batch_size=2, epochs=1))]
    code = "import sys; from renyi_prune.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "TRITON_INTERPRET": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*torchrun, "--no-python", sys.executable, "-c", code, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["environment"]["world_size"] == 2 and config["total_batch_size"] == 4
    (line,) = (out / "metrics.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["num_updates"] == 2 and record["top1"] in {0.0, 25.0, 50.0, 75.0, 100.0}
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert len(ckpt["rng"]) == 2  # one RNG state per process
    assert done.stdout.count("epoch 1/1") == 1  # rank 0 prints
