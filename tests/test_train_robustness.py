"""``renyi-prune train`` / ``eval`` when things go wrong: one run per output folder (a lock), output paths
checked before any data is read, errors that say what is wrong with a checkpoint, truthful messages on
resume and Ctrl-C, and checkpoints that remember where their data is (tiny models, random data, CPU)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import timm
import torch

import renyi_prune.train as train_mod
import renyi_prune.train.run as train_run
from renyi_prune import _io
from renyi_prune.cli import main
from renyi_prune.data import write_fake_fashion_mnist
from renyi_prune.train import parse_train_args, train

pytestmark = pytest.mark.usefixtures("one_torch_thread", "eager", "no_real_fashion_mnist")

LOCK = ".renyi-prune.lock"
TINY_MODEL = ["--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=14", "embed_dim=8", "depth=2",
              "num_heads=1", "--img-size", "28"]  # fmt: skip
RUNTIME = ["--batch-size", "4", "--no-progress", "--device", "cpu", "--amp", "none", "--workers", "0"]
PLAIN = ["--mixup", "0", "--cutmix", "0", "--reprob", "0", "--drop-path", "0", "--warmup-epochs", "0"]


def _argv(data: Path | None, out: Path, *extra: str) -> list[str]:
    source = [] if data is None else ["--dataset", "fashion-mnist", "--data", str(data)]
    return ["train", *source, *TINY_MODEL, *RUNTIME, *PLAIN, "--output", str(out), *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 1-epoch run, started in its work folder with relative --data and --output paths."""
    work = tmp_path_factory.mktemp("work")
    write_fake_fashion_mnist(work / "data", train_images=8, val_images=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "0")
        mp.chdir(work)
        assert main(_argv(Path("data"), Path("run"), "--epochs", "1")) == 0
    return work


# --------------------------------------------------------------------------------------------------------
# one run per output folder
# --------------------------------------------------------------------------------------------------------


def test_a_second_run_into_a_busy_folder_is_refused(data, tmp_path, monkeypatch, capsys, cli_error_line):
    out = tmp_path / "run"
    real = train_run.train_one_epoch
    inside, release = threading.Event(), threading.Event()
    first: dict = {}

    def held_open(*args, **kwargs):  # the first run waits inside its first epoch
        if threading.current_thread() is worker:
            inside.set()
            release.wait(60)
        return real(*args, **kwargs)

    def first_run():
        try:
            first["result"] = train(parse_train_args(_argv(data, out, "--epochs", "1", "--lr", "1e-3")[1:]))
        except BaseException as err:  # reported by the assertion below
            first["error"] = err

    monkeypatch.setattr(train_run, "train_one_epoch", held_open)
    worker = threading.Thread(target=first_run)
    worker.start()
    try:
        assert inside.wait(60), first
        capsys.readouterr()
        code = main(_argv(data, out, "--epochs", "1", "--lr", "5e-3"))
        line = cli_error_line()
    finally:
        release.set()
        worker.join(60)
    assert code == 2
    assert line.startswith(f"renyi-prune train: error: output folder {out} is in use by renyi-prune train ")
    assert f"pid {os.getpid()} on {socket.gethostname()}" in line
    assert "error" not in first, first
    # the folder holds the first run's files only, and no lock once it ended
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "config.json", "metrics.jsonl"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(folder: Path, pid: int, host: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    lock.write_text(json.dumps({"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00",
                                "command": "renyi-prune train"}))  # fmt: skip
    return lock


def test_a_stale_lock_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "run"
    lock = _write_lock(out, _dead_pid(), socket.gethostname())
    with pytest.warns(RuntimeWarning, match="stale lock"):
        assert main(_argv(data, out, "--epochs", "1")) == 0
    assert not lock.exists()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "config.json", "metrics.jsonl"]


def test_a_lock_of_another_host_or_a_live_process_is_respected(data, tmp_path, cli_error_line):
    for pid, host in ((_dead_pid(), "elsewhere.example"), (os.getppid(), socket.gethostname())):
        out = tmp_path / f"run-{host}"
        lock = _write_lock(out, pid, host)
        before = lock.read_bytes()
        assert main(_argv(data, out, "--epochs", "1")) == 2
        line = cli_error_line()
        assert f"output folder {out} is in use by renyi-prune train (pid {pid} on {host}" in line, line
        assert f"delete {lock}" in line
        assert lock.read_bytes() == before and sorted(p.name for p in out.iterdir()) == [LOCK]


@pytest.mark.parametrize("ending", ["normal", "failure", "interrupt"])
def test_the_lock_is_held_during_the_run_and_removed_after_it(ending, data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real = train_run.train_one_epoch
    seen = []

    def epoch(*args, **kwargs):
        seen.append(json.loads((out / LOCK).read_text()))
        if ending == "failure":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if ending == "interrupt":
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_run, "train_one_epoch", epoch)
    code = main(_argv(data, out, "--epochs", "1"))
    assert code == {"normal": 0, "failure": 1, "interrupt": 130}[ending]
    assert seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert seen[0]["command"] == "renyi-prune train" and seen[0]["started"]
    assert not (out / LOCK).exists()


def test_output_lock_api(tmp_path):
    folder = tmp_path / "a" / "b"
    with _io.locked_folder(folder, "renyi-prune demo") as path:
        assert path == folder and (folder / LOCK).is_file()
        busy = f"output folder {folder} is in use by renyi-prune demo"
        with pytest.raises(_io.OutputFolderError, match=busy):
            with _io.locked_folder(folder, "renyi-prune train"):
                pass
        (folder / "report.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["report.json"]
    # a lock that cannot be read (e.g. a crash while writing it) is respected, with the way out
    (folder / LOCK).write_text("")
    with pytest.raises(_io.OutputFolderError, match=f"an unknown run .*delete {folder / LOCK}"):
        with _io.locked_folder(folder, "renyi-prune train"):
            pass
    # a folder the run created and left empty is removed again, with the parents it created
    with pytest.raises(ValueError, match="boom"):
        with _io.locked_folder(tmp_path / "c" / "d", "renyi-prune demo"):
            raise ValueError("boom")
    assert not (tmp_path / "c").exists()


def test_resume_into_a_folder_of_another_run_is_refused(finished, data, tmp_path, capsys, cli_error_line):
    other = tmp_path / "other"
    assert main(_argv(data, other, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    capsys.readouterr()
    ckpt = finished / "run" / "checkpoint.pth"
    assert main(_argv(data, other, "--epochs", "2", "--resume", str(ckpt))) == 2
    assert f"argument --output: {other} already holds a run" in cli_error_line()
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before


# --------------------------------------------------------------------------------------------------------
# output paths are checked before anything is loaded
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_data(monkeypatch):
    """Loading data fails the test: every output check must come first."""

    def too_late(*args, **kwargs):
        raise AssertionError("the data was loaded before the output path was checked")

    monkeypatch.setattr(train_mod.loaders, "build_datasets", too_late)


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only for this process, also for root (who may write to a chmod 555 folder)."""
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        p = Path(os.fsdecode(path)).absolute()
        return p == folder or folder in p.parents

    def guarded_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_output_parent_that_is_a_file_fails_before_the_data(tmp_path, no_data, cli_error_line):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert main(_argv(tmp_path, a_file / "run", "--epochs", "1")) == 2
    line = cli_error_line()
    assert line.startswith("renyi-prune train: error: ") and f"{a_file} is a file, not a folder" in line, line


def test_read_only_output_fails_before_the_data(tmp_path, monkeypatch, no_data, cli_error_line):
    folder = tmp_path / "read-only"
    folder.mkdir()
    _read_only(monkeypatch, folder)
    for out in (folder, folder / "run"):
        assert main(_argv(tmp_path, out, "--epochs", "1")) == 2
        line = cli_error_line()
        assert line.startswith("renyi-prune train: error: ") and f"cannot write in {folder}" in line, line
    argv = ["eval", "--checkpoint", __file__, *TINY_MODEL, "--output", str(folder / "eval.json")]
    assert main(argv) == 2
    line = cli_error_line()
    assert line.startswith("renyi-prune eval: error: ") and f"cannot write in {folder}" in line, line
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------------------------------------
# errors that say what is wrong with a checkpoint or weights file
# --------------------------------------------------------------------------------------------------------


def _options_with(option: str, path: Path, data: Path, out: Path) -> list[str]:
    if option == "--resume":
        return _argv(data, out, "--epochs", "2", "--resume", str(path))
    if option == "train --checkpoint":
        return _argv(data, out, "--epochs", "1", "--checkpoint", str(path))
    source = ["--data", str(data), "--dataset", "fashion-mnist"]
    return ["eval", "--checkpoint", str(path), "--no-progress", *source]


@pytest.mark.parametrize("option", ["--resume", "train --checkpoint", "eval --checkpoint"])
def test_a_truncated_checkpoint_is_reported_as_truncated(option, finished, data, tmp_path, cli_error_line):
    whole = (finished / "run" / "checkpoint.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(_options_with(option, cut, data, tmp_path / "run")) == 2
    line = cli_error_line()
    assert f"corrupt or truncated file: {cut}" in line, line
    assert "not from renyi-prune train" not in line and "not a checkpoint written" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--resume", "train --checkpoint", "eval --checkpoint"])
def test_an_empty_weights_file_is_reported_as_empty(option, data, tmp_path, cli_error_line):
    empty = tmp_path / "empty.pth"
    empty.touch()
    assert main(_options_with(option, empty, data, tmp_path / "run")) == 2
    assert f"empty file (0 bytes): {empty}" in cli_error_line()


def test_weights_with_python_objects_get_advice_the_user_can_follow(data, tmp_path, cli_error_line):
    model = timm.create_model("vit_tiny_patch16_224", patch_size=14, embed_dim=8, depth=2, num_heads=1,
                              img_size=28, num_classes=10)  # fmt: skip
    path = tmp_path / "with-objects.pth"
    torch.save({"state_dict": model.state_dict(), "where": pathlib.PurePosixPath("/x")}, path)
    source = ["--data", str(data), "--dataset", "fashion-mnist"]
    evaluating = ["eval", "--checkpoint", str(path), *TINY_MODEL, *source]
    for argv in (evaluating, _argv(data, tmp_path / "run", "--checkpoint", str(path))):
        assert main(argv) == 2
        line = cli_error_line()
        assert "weights_only" not in line, line  # no torch.load option: the command has none to set
        assert f"{path} holds Python objects besides tensors (pathlib.PurePosixPath)" in line, line
        assert "torch.save" in line and "state dict" in line


# --------------------------------------------------------------------------------------------------------
# truthful messages: resume, Ctrl-C
# --------------------------------------------------------------------------------------------------------


def test_resuming_a_finished_run_says_nothing_was_trained(finished, data, tmp_path, capsys):
    run = finished / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for out in (tmp_path / "new", run):
        ckpt = run / "checkpoint.pth"
        assert main(_argv(data, out, "--epochs", "1", "--resume", str(ckpt))) == 0
        said = capsys.readouterr().out
        assert f"nothing to train: {ckpt} already holds epoch 1 of --epochs 1" in said, said
        assert "wrote" not in said
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_ctrl_c_says_which_epoch_the_checkpoint_holds(data, tmp_path, monkeypatch, cli_error_line):
    real = train_run.train_one_epoch
    calls = []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_run, "train_one_epoch", interrupted_in_epoch_2)
    out = tmp_path / "run"
    assert main(_argv(data, out, "--epochs", "3")) == 130
    ckpt = out / "checkpoint.pth"
    assert cli_error_line() == (
        f"renyi-prune train: interrupted; epoch 2/3 did not complete; {ckpt} holds epoch 1 (continue with "
        f"--resume {ckpt})"
    )
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1


# --------------------------------------------------------------------------------------------------------
# checkpoints remember where their data is
# --------------------------------------------------------------------------------------------------------


def test_the_checkpoint_stores_the_absolute_data_path(finished, tmp_path, monkeypatch, capsys):
    ckpt = finished / "run" / "checkpoint.pth"
    assert torch.load(ckpt, weights_only=True)["dataset"]["data"] == str((finished / "data").resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative --data of the run means nothing here
    result = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--no-progress", "--output", str(result)]) == 0
    assert json.loads(result.read_text())["images"] == 4


def test_resume_from_another_folder_reads_the_checkpoints_data(finished, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    monkeypatch.chdir(tmp_path)
    argv = _argv(None, run, "--epochs", "2", "--resume", str(run / "checkpoint.pth"))
    with pytest.warns(UserWarning, match="options differ") as warned:
        assert main(argv) == 0, capsys.readouterr().err
    # the data options come from the checkpoint: only the one option changed on purpose differs
    assert [str(w.message).rsplit(": ", 1)[-1] for w in warned if "options differ" in str(w.message)] == [
        "epochs 1 -> 2"
    ]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["data"] == str((finished / "data").resolve()) and config["val_images"] == 4
