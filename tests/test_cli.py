"""The ``renyi-prune`` command: every subcommand is registered and reachable; bad arguments give one line
``renyi-prune <command>: error: ...`` and exit code 2; a failure during a run says what failed, exits
non-zero and leaves no output file that looks complete (tiny models, random data, CPU, seconds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from renyi_prune.cli import COMMANDS, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(data: Path) -> list[str]:
    """Options of a ViT of 2 blocks of width 8 (4 patches of 14 px) on ``data``, no augmentation."""
    return [
        "--dataset", "fashion-mnist", "--data", str(data), "--model", "vit_tiny_patch16_224",
        "--model-kwargs", "patch_size=14", "embed_dim=8", "depth=2", "num_heads=1", "--img-size", "28",
        "--batch-size", "4", "--no-progress", "--device", "cpu", "--amp", "none", "--workers", "0",
    ]  # fmt: skip


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    plain = ["--mixup", "0", "--cutmix", "0", "--reprob", "0", "--drop-path", "0", "--warmup-epochs", "0"]
    return ["train", *_tiny(data), *plain, "--output", str(out), *extra]


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------------


def test_commands_registered(capsys):
    assert set(COMMANDS) == {"demo", "bench", "train", "eval", "probe"}
    helps = (
        ["--help"],
        ["bench", "--help"],
        ["bench", "e2e", "--help"],
        ["bench", "kernel", "--help"],
        ["train", "--help"],
        ["eval", "--help"],
    )
    for argv in helps:
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kernel" in out and "--keep-rate-warmup-epochs" in out and "--no-prune" in out


def test_bench_e2e_smoke_through_the_cli(tmp_path, eager):
    out = tmp_path / "e2e.csv"
    argv = ["bench", "e2e", "--smoke", "--configs", "unpruned", "evit", "renyi", "--keep-rates", "0.5"]
    assert main([*argv, "--out", str(out), "--no-plot", "--quiet", "--no-gflops"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["config"] for r in rows} == {"unpruned", "evit", "renyi"}


def test_bench_needs_a_benchmark_name(capsys):
    assert main(["bench"]) == 2
    assert "BENCHMARK" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# bad arguments: one line, exit code 2
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--keep-rate", "1.5"], "argument --keep-rate: keep rate must be in (0, 1], got 1.5"),
        (["train", "--keep-rate", "0.5", "0"], "keep rate must be in (0, 1], got 0"),
        (["eval", "--checkpoint", __file__, "--keep-rate", "-0.5"], "keep rate must be in (0, 1], got -0.5"),
        (["train", "--alpha", "-1"], "argument --alpha: Rényi order alpha must be >= 0 or inf, got -1"),
        (["train", "--alpha", "nan"], "alpha must be >= 0 or inf, got nan"),
        (["train", "--epochs", "-3"], "argument --epochs: must be >= 1, got -3"),
        (["train", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["train", "--workers", "-1"], "argument --workers: must be >= 0, got -1"),
        (["train", "--max-train-images", "0"], "must be >= 1, got 0"),
        (["train", "--prune-blocks", "-1"], "argument --prune-blocks: must be >= 0, got -1"),
        (["train", "--hflip", "1.5"], "argument --hflip: must be in [0, 1], got 1.5"),
        (["train", "--lr=-1e-3"], "argument --lr: must be a finite number >= 0, got -1e-3"),
        (["train", "--crop-pct", "1.2"], "argument --crop-pct: value must be in (0, 1], got 1.2"),
        (["train", "--data", "/nonexistent/rp-data"], "--data: folder not found: /nonexistent/rp-data"),
        (["train", "--criterion", "bogus"], "argument --criterion: invalid choice: 'bogus'"),
        (["train", "--device", "gpu"], "argument --device: not a torch device: 'gpu'"),
        (["train", "--model-kwargs", "depth"], "expected KEY=VALUE, got 'depth'"),
        (["train", "--keep-rates", "0.5"], "unrecognized arguments: --keep-rates 0.5"),
        (["bench", "e2e", "--sdpa", "off"], "unrecognized arguments: --sdpa off"),
        (["bench", "e2e", "--mode", "x"], "unrecognized arguments: --mode x"),  # no abbreviated --models
        (["eval"], "required: --checkpoint"),
        (["eval", "--checkpoint", "/nonexistent.pth"], "--checkpoint: file not found: /nonexistent.pth"),
        (["demo", "--max-images", "0"], "argument --max-images: must be >= 1, got 0"),
        (["demo", "--repeats", "-2"], "argument --repeats: must be >= 1, got -2"),
        (["demo", "--criteria", "shannon"], "unknown criterion 'shannon'"),
        (["bench", "kernel", "--batch", "0"], "argument --batch: must be >= 1, got 0"),
        (["bench", "kernel", "--seq", "-5"], "argument --seq: must be >= 1, got -5"),
        (["bench", "kernel", "--reps", "0"], "argument --reps: must be >= 1, got 0"),
        (["bench", "kernel", "--alpha", "nan"], "alpha must be >= 0 or inf, got nan"),
        (["bench", "kernel", "--providers", "flash"], "invalid choice: 'flash'"),
        (["bench", "e2e", "--keep-rates", "1.5"], "--keep-rates: keep rate must be in (0, 1], got 1.5"),
        (["bench", "e2e", "--repeats", "-1"], "argument --repeats: must be >= 1, got -1"),
        (["bench", "e2e", "--run-ms", "-1"], "argument --run-ms: must be a finite number >= 0, got -1"),
        (["bench", "e2e", "--prune-blocks", "-3"], "argument --prune-blocks: must be >= 0, got -3"),
        (["bench", "e2e", "--configs", "tome"], "argument --configs: invalid choice: 'tome'"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(argv, message, cli_error_line):
    assert main(argv) == 2
    line = cli_error_line()
    command = " ".join(argv[:2] if argv[0] == "bench" else argv[:1])
    assert line.startswith(f"renyi-prune {command}: error: "), line
    assert message in line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "deit_nano"], "argument --model: unknown timm model 'deit_nano'"),
        (["--keep-rate", "0.5", "--prune-blocks", "1", "9"], "prune block index 9 is out of range"),
        (["--keep-rate", "0.5", "--alpha", "1", "2", "3", "--prune-blocks", "1"], "alpha"),
        (["--keep-rate", "0.5", "--criterion", "evit", "--alpha", "2"], "--alpha is for --criterion renyi"),
        (["--fuse-pruned"], "--fuse-pruned need(s) --keep-rate"),
        (["--batch-size", "3"], "--batch-size 3: Mixup/CutMix need an even batch"),
        (["--epochs", "2", "--stop-after-epoch", "3"], "--stop-after-epoch 3 is beyond --epochs 2"),
        (["--resume", __file__], "not a checkpoint written by renyi-prune train"),
        (["--scale", "0.9", "0.5"], "argument --scale: need 0 < MIN <= MAX"),
    ],
)
def test_train_options_that_do_not_fit(extra, message, data, tmp_path, eager, cli_error_line):
    out = tmp_path / "run"
    argv = ["train", *_tiny(data), "--output", str(out), *extra]
    assert main(argv) == 2
    line = cli_error_line()
    assert line.startswith("renyi-prune train: error: ") and message in line, line
    assert not out.exists() or _left_behind(out) == []


def test_missing_or_empty_data_folder(tmp_path, cli_error_line):
    (tmp_path / "empty").mkdir()
    argv = ["train", *_tiny(tmp_path / "empty"), "--output", str(tmp_path / "run")]
    assert main(argv) == 2
    line = cli_error_line()
    assert line.startswith(f"renyi-prune train: error: argument --data {tmp_path / 'empty'}: Fashion-MNIST")
    assert main(["train", "--dataset", "imagefolder", "--output", str(tmp_path / "run")]) == 2
    assert "--dataset imagefolder needs --data DIR" in cli_error_line()
    assert not (tmp_path / "run").exists()


def test_output_paths_must_fit(data, tmp_path, capsys, eager, cli_error_line):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert main(_train_argv(data, a_file)) == 2
    assert f"argument --output: exists and is not a folder: {a_file}" in cli_error_line()
    assert main(["demo", "--out", str(a_file)]) == 2
    assert "argument --out: exists and is not a folder" in cli_error_line()
    assert main(["eval", "--checkpoint", __file__, "--output", str(tmp_path)]) == 2
    assert f"argument --output: is a folder, not a file: {tmp_path}" in cli_error_line()
    assert main(["bench", "kernel", "--out", str(a_file / "k.csv")]) == 2
    assert "a parent of" in cli_error_line()
    # a new run must not mix its files with an earlier run's checkpoint (continue that one with --resume)
    out = tmp_path / "run"
    assert main(_train_argv(data, out, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(_train_argv(data, out, "--epochs", "1", "--lr", "1e-2")) == 2
    assert (
        "already holds a run (checkpoint.pth, metrics.jsonl); continue it with --resume" in cli_error_line()
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bench_options_that_do_not_fit(tmp_path, cli_error_line):
    out = tmp_path / "x.csv"
    assert main(["bench", "kernel", "--smoke", "--batch", "1", "2", "--seq", "17", "--out", str(out)]) == 2
    assert cli_error_line().startswith(
        "renyi-prune bench kernel: error: argument --batch: takes 1 value or one per --seq value (1), got 2"
    )
    assert main(["bench", "e2e", "--smoke", "--models", "deit_nano", "--out", str(out)]) == 2
    line = cli_error_line()
    assert "renyi-prune bench e2e: error: argument --models: unknown timm model(s) deit_nano" in line
    assert main(["bench", "e2e", "--smoke", "--prune-blocks", "3", "20", "--out", str(out)]) == 2
    line = cli_error_line()
    assert "argument --prune-blocks: block 20 is beyond deit_tiny_patch16_224's 12 blocks" in line
    assert main(["bench", "e2e", "--smoke", "--prune-blocks", "3", "3", "--out", str(out)]) == 2
    assert "repeated block indices [3, 3]" in cli_error_line()
    if not torch.cuda.is_available():
        for bench in ("kernel", "e2e"):
            assert main(["bench", bench, "--device", "cuda", "--out", str(out)]) == 2
            assert "argument --device: cuda, but CUDA is not available" in cli_error_line()
    assert not out.exists() and _left_behind(tmp_path) == []


def test_bench_scripts_report_bad_values_in_one_line(cli_error_line):
    from renyi_prune.bench import e2e, kernel

    assert kernel.main(["--batch", "-1"]) == 2
    assert "error: argument --batch: must be >= 1, got -1" in cli_error_line()
    assert e2e.main(["--smoke", "--models", "deit_nano"]) == 2
    assert "error: argument --models: unknown timm model(s) deit_nano" in cli_error_line()


# --------------------------------------------------------------------------------------------------------
# failures during a run: what failed, exit code != 0, no complete-looking output
# --------------------------------------------------------------------------------------------------------


def test_training_failing_mid_run_keeps_the_last_complete_epoch(data, tmp_path, monkeypatch, capsys, eager):
    import renyi_prune.train.run as train_run

    real = train_run.train_one_epoch
    calls = []

    def fail_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_run, "train_one_epoch", fail_in_epoch_2)
    out = tmp_path / "run"
    assert main(_train_argv(data, out, "--epochs", "3")) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    ckpt = out / "checkpoint.pth"
    assert captured.err.strip() == (
        "renyi-prune train failed: CUDA error: an illegal memory access was encountered; epoch 2/3 did not "
        f"complete; {ckpt} holds epoch 1 (continue with --resume {ckpt})"
    )
    assert _left_behind(out) == ["checkpoint.pth", "config.json", "metrics.jsonl"]  # no temporary files
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    # what the message says works
    monkeypatch.setattr(train_run, "train_one_epoch", real)
    assert main(_train_argv(data, out, "--epochs", "3", "--resume", str(ckpt))) == 0
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize("failure", ["disk full", "interrupt"])
def test_torn_checkpoint_write_leaves_no_checkpoint(
    failure, data, tmp_path, monkeypatch, eager, cli_error_line
):
    real_save = torch.save

    def save_half(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)  # a torn write
        if failure == "interrupt":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half)
    out = tmp_path / "run"
    code = main(_train_argv(data, out, "--epochs", "1"))
    line = cli_error_line()
    if failure == "interrupt":
        assert code == 130
        assert line == "renyi-prune train: interrupted; epoch 1/1 did not complete; no checkpoint was written"
    else:
        assert code == 1
        assert line == (
            "renyi-prune train failed: [Errno 28] No space left on device; epoch 1/1 did not complete; no "
            "checkpoint was written"
        )
    assert _left_behind(out) == ["config.json"]  # the options, and no checkpoint or metrics


def test_eval_failure_writes_no_result(data, tmp_path, monkeypatch, capsys, eager, cli_error_line):
    import renyi_prune.train.evaluation as train_eval

    out = tmp_path / "run"
    assert main(_train_argv(data, out, "--epochs", "1")) == 0
    capsys.readouterr()
    result = tmp_path / "eval" / "result.json"
    argv = ["eval", "--checkpoint", str(out / "checkpoint.pth"), "--no-progress", "--output", str(result)]

    def broken_counter(*args, **kwargs):
        raise KeyError("aten::scaled_dot_product_attention")

    monkeypatch.setattr(train_eval, "count_gflops", broken_counter)
    assert main(argv) == 1
    assert cli_error_line() == "renyi-prune eval failed: KeyError: 'aten::scaled_dot_product_attention'"
    assert not (tmp_path / "eval").exists() or _left_behind(tmp_path / "eval") == []
    monkeypatch.undo()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert main(argv) == 0
    assert json.loads(result.read_text())["images"] == 4
    with pytest.raises(KeyError):  # --traceback: the exception itself
        monkeypatch.setattr(train_eval, "count_gflops", broken_counter)
        main(["--traceback", *argv])


def test_benchmark_failures_write_no_csv(tmp_path, monkeypatch, eager, cli_error_line):
    from renyi_prune.bench import e2e, kernel

    def fail(*args, **kwargs):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")

    out = tmp_path / "k.csv"
    monkeypatch.setattr(kernel, "time_cpu", fail)
    argv = ["bench", "kernel", "--smoke", "--providers", "sdpa", "--device=cpu", "--quiet", "--out", str(out)]
    assert main(argv) == 1
    assert cli_error_line() == "renyi-prune bench kernel failed: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"
    monkeypatch.setattr(e2e, "_bench_rate", fail)
    argv = ["bench", "e2e", "--smoke", "--configs", "evit", "--no-gflops", "--quiet", "--out", str(out)]
    assert main(argv) == 1
    assert cli_error_line().startswith("renyi-prune bench e2e failed: cuDNN error")
    assert _left_behind(tmp_path) == []
