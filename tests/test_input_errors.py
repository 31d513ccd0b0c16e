"""Errors that name the file and say what is wrong with it: images that do not decode (ImageFolder, the
demo's --images), weights files that are empty, truncated or hold more than tensors (the demo and
:func:`renyi_prune.pretrained.load_model`), and demo runs that fail leave no output folder behind.
Fast: nothing here runs a model."""

from __future__ import annotations

import io
import pathlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from renyi_prune.cli import main
from renyi_prune.data import image_folder
from renyi_prune.images import load_image_dir
from renyi_prune.pretrained import load_model

MODEL = "vit_tiny_patch16_224"


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "red.png")
    return folder


# --------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------


def test_a_corrupt_image_in_an_image_folder_is_named(tmp_path):
    (tmp_path / "val" / "cat").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "val" / "cat" / "a.png")
    bad = _truncated_png(tmp_path / "val" / "dog" / "b.png")
    ds = image_folder(tmp_path, "val")
    assert ds[0][1] == 0  # the good image loads
    with pytest.raises(OSError, match="cannot read image") as info:
        ds[1]
    assert str(bad) in str(info.value)


def test_a_corrupt_image_in_the_demo_folder_is_named(photos):
    bad = _truncated_png(photos / "broken.png")
    with pytest.raises(OSError, match="cannot read image") as info:
        load_image_dir(photos)
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------------------------------------
# weights files
# --------------------------------------------------------------------------------------------------------


def test_load_model_names_what_is_wrong_with_the_weights_file(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(ValueError, match=f"empty file \\(0 bytes\\): {empty}"):
        load_model(MODEL, checkpoint=empty)
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"corrupt or truncated file: {cut}"):
        load_model(MODEL, checkpoint=cut)
    objects = tmp_path / "objects.pth"
    state = timm.create_model(MODEL).state_dict()
    torch.save({"model": state, "where": pathlib.PurePosixPath("/x")}, objects)
    with pytest.raises(ValueError) as info:
        load_model(MODEL, checkpoint=objects)
    message = str(info.value)
    assert "weights_only" not in message and "(pathlib.PurePosixPath)" in message and "torch.save" in message


def test_demo_with_an_empty_checkpoint_says_so(photos, tmp_path, cli_error_line):
    empty = tmp_path / "empty.pth"
    empty.touch()
    out = tmp_path / "out"
    argv = ["demo", "--model", MODEL, "--checkpoint", str(empty), "--images", str(photos), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    assert cli_error_line() == f"renyi-prune demo: error: empty file (0 bytes): {empty}"
    assert not out.exists()


# --------------------------------------------------------------------------------------------------------
# the demo's output folder
# --------------------------------------------------------------------------------------------------------


def test_a_failed_demo_leaves_no_output_folder(tmp_path, cli_error_line):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "new" / "out"
    assert main(["demo", "--out", str(out), "--images", str(tmp_path / "empty"), "--no-progress"]) == 1
    assert cli_error_line().startswith("renyi-prune demo failed: no images found")
    assert not (tmp_path / "new").exists()
    # an existing folder stays, with what it held
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(kept), "--images", str(tmp_path / "empty"), "--no-progress"]) == 1
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_demo_output_under_a_file_fails_at_start(photos, tmp_path, cli_error_line):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert main(["demo", "--out", str(a_file / "out"), "--images", str(photos), "--no-progress"]) == 2
    line = cli_error_line()
    assert line.startswith("renyi-prune demo: error: ") and f"{a_file} is a file, not a folder" in line, line
