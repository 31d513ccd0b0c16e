"""End-to-end test of ``renyi-prune demo``, of its argument errors and of its failures (an empty
checkpoint, no images, an output folder under a file: one error line, no output folder left behind).

The demo runs twice on 2 real photos at one keep rate, at 112 px (8 × 8 patches of 14 px: the
interpreter's cost grows with the token count; the default 224 px is the same code):

* ``demo_run``: Rényi (α = 1), EViT and Col-Ln, as the environment has it. Under ``TRITON_INTERPRET=1``
  (set by conftest.py when there is no GPU) the Rényi pruning blocks, the entropy maps and the Col-Ln
  column pass run the Triton kernels on the CPU interpreter, so this checks the kernel paths end to
  end (and that GFLOPs counting copes with them);
* ``demo_all_run``: every criterion of the demo (the default ``--criteria``) on the eager CPU path
  (``TRITON_INTERPRET=0``, fast).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from renyi_prune import PruneConfig, get_criterion
from renyi_prune.cli import build_parser, main
from renyi_prune.demo import criterion_names

DEMO_CRITERIA = criterion_names()

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ["--keep-rates", "0.5", "--alphas", "1", "--no-progress", "--max-images", "2", "--repeats", "1",
         "--img-size", "112"]  # fmt: skip
ALL_LABELS = ["unpruned", "renyi α=1 r=0.5"] + [
    f"{name} r=0.5" for name in ("colln", "evit", "evit+fusion", "headmad", "headvar", "random")
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, object]:
    out = tmp_path_factory.mktemp("demo")
    interpret = os.environ.get("TRITON_INTERPRET")
    code = main(["demo", "--out", str(out), "--criteria", "renyi", "evit", "colln", *QUICK])
    assert os.environ.get("TRITON_INTERPRET") == interpret  # GFLOPs counting restores it
    return code, out


@pytest.fixture(scope="module")
def demo_all_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, object]:
    out = tmp_path_factory.mktemp("demo_all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "0")  # eager CPU path (the ops read it at each call)
        return main(["demo", "--out", str(out), *QUICK]), out


@pytest.mark.slow
def test_demo_writes_outputs(demo_run) -> None:
    code, out = demo_run
    assert code == 0
    for name in ("entropy_heatmaps.png", "kept_patches.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 20_000, name  # a real figure, not an empty canvas
    assert re.search(r"^\| unpruned +\|", (out / "report.md").read_text(), re.M)
    assert not list(out.glob("*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_demo_report_values(demo_run) -> None:
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["results"]}
    assert list(rows) == ["unpruned", "renyi α=1 r=0.5", "colln r=0.5", "evit r=0.5"]
    assert report["images"] == ["astronaut", "chelsea"]
    assert report["model"]["num_patches"] == 64 and report["model"]["num_prefix_tokens"] == 1
    assert [b + 1 for b in report["prune_blocks"]] == [4, 7, 10]
    base = rows["unpruned"]
    assert base["patch_tokens_kept"] == [64, 64, 64]
    assert base["cls_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    for label in ("renyi α=1 r=0.5", "evit r=0.5", "colln r=0.5"):
        row = rows[label]
        assert row["patch_tokens_kept"] == [32, 16, 8]
        assert row["gflops"] < base["gflops"]
        assert 0.0 < row["cls_cosine_min"] <= row["cls_cosine_mean"] <= 1.0001
    for row in rows.values():
        assert row["images_per_s"] > 0 and math.isfinite(row["images_per_s"])
    assert rows["renyi α=1 r=0.5"]["alpha"] == 1.0
    # 12 blocks of entropies in nats, each between 0 and log(65 keys)
    assert len(report["mean_entropy_per_block"]) == 12
    assert all(0.0 < e < math.log(65) for e in report["mean_entropy_per_block"])
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") == "1":
        assert "CPU interpreter" in report["renyi_attention_path"]  # the kernel path ran end to end
    assert report["kept_figure_configs"] == ["renyi α=1 r=0.5", "colln r=0.5", "evit r=0.5"]
    assert list(report["criteria"]) == ["renyi", "colln", "evit"]
    assert rows["renyi α=1 r=0.5"]["prune_config"] == PruneConfig(keep_rate=0.5, alpha=1.0).to_dict()


@pytest.mark.slow
def test_demo_all_criteria(demo_all_run) -> None:
    code, out = demo_all_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["renyi_attention_path"].startswith("eager") or torch.cuda.is_available()
    rows = {r["label"]: r for r in report["results"]}
    assert list(rows) == ALL_LABELS
    assert report["kept_figure_configs"] == ALL_LABELS[1:]  # Rényi α=1 first, one row per criterion
    assert list(report["criteria"]) == list(DEMO_CRITERIA)
    base = rows["unpruned"]
    for label, row in rows.items():
        assert row["images_per_s"] > 0 and math.isfinite(row["images_per_s"]), label
        if label == "unpruned":
            continue
        fused = row["criterion"] == "evit+fusion"
        assert row["fused_token"] is fused, label
        # k = ceil(0.5 · patch tokens in): 64 → 32; with fusion 32 + 1 fused → 17 → 17 + 1 → 9
        assert row["patch_tokens_kept"] == ([32, 17, 9] if fused else [32, 16, 8]), label
        assert row["gflops"] < base["gflops"], label
        assert 0.0 < row["cls_cosine_min"] <= row["cls_cosine_mean"] <= 1.0001, label
    assert rows["evit+fusion r=0.5"]["patch_criterion"] == "evit"
    assert rows["colln r=0.5"]["criterion_params"] == {"order": 2.0}
    assert rows["headmad r=0.5"]["criterion_params"] == {"source": "cls"}
    assert rows["random r=0.5"]["criterion_params"] == {"seed": 0}
    # fvcore's counts: the same token counts give the same GFLOPs up to the criterion's own products
    gflops = {label.split(" ")[0]: row["gflops"] for label, row in rows.items()}
    assert gflops["renyi"] == gflops["random"]  # both: the two matmuls of attention only
    assert gflops["evit"] == gflops["headvar"] == gflops["headmad"]  # + the CLS row q₀·kᵀ
    assert 0 < gflops["evit"] - gflops["renyi"] < 1e-3
    assert gflops["colln"] - gflops["renyi"] > 0.0015  # + the column pass's q·kᵀ (≈ 0.0021 at 112 px)
    assert gflops["evit+fusion"] > gflops["evit"]  # one more token in later blocks
    md = (out / "report.md").read_text()
    for name in DEMO_CRITERIA:
        assert get_criterion(name.split("+")[0]).description in md, name
    assert re.search(r"\| 32\+1/17\+1/9\+1 +\|", md)
    assert PruneConfig.from_dict(rows["evit+fusion r=0.5"]["prune_config"]).name == "evit+fusion"
    assert (out / "kept_patches.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--keep-rates", "1.5"], "keep rate must be in (0, 1]"),
        (["demo", "--keep-rates", "0"], "keep rate must be in (0, 1]"),
        (["demo", "--alphas", "-1"], "alpha must be >= 0"),
        (["demo", "--alphas", "nan"], "alpha must be >= 0"),
        (["demo", "--alphas", "two"], "not a number"),
        (
            ["demo", "--criteria", "bogus"],
            "unknown criterion 'bogus'; choose from renyi, colln, evit, evit+fusion",
        ),
        (["demo", "--criteria", "shannon"], "unknown criterion 'shannon' (it is renyi at α = 1"),
        (["demo", "--criteria"], "expected at least one argument"),
        (["demo", "--images", "/nonexistent/renyi-prune-images"], "folder not found"),
        (["demo", "--model", "vit_small_patch16_224", "--checkpoint", "/nonexistent.pth"], "file not found"),
        (["demo", "--checkpoint", __file__], "--checkpoint needs --model"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_runtime_failure_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["demo", "--out", str(tmp_path / "out"), "--images", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("renyi-prune demo failed: no images found")
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_criteria_option() -> None:
    from renyi_prune import available_criteria
    from renyi_prune.demo import build_configs, label

    assert set(DEMO_CRITERIA) == {*available_criteria(), "evit+fusion"} - {"shannon"}  # from the registry
    parser = build_parser()
    assert parser.parse_args(["demo"]).criteria == list(DEMO_CRITERIA)
    assert parser.parse_args(["demo", "--criteria", "random", "evit+fusion"]).criteria == [
        "random",
        "evit+fusion",
    ]
    # rows follow the demo's order, duplicates dropped; α only for renyi
    labels = [label(c) for c in build_configs([0.5], [1, 2], ["random", "evit+fusion", "renyi", "random"])]
    assert labels == ["unpruned", "renyi α=1 r=0.5", "renyi α=2 r=0.5", "evit+fusion r=0.5", "random r=0.5"]
    assert [label(c) for c in build_configs([0.5], [], ["evit"])] == ["unpruned", "evit r=0.5"]
    with pytest.raises(ValueError, match="unknown criterion 'bogus'"):
        build_configs([0.5], [1], ["bogus"])
    with pytest.raises(ValueError, match="at least one alpha"):
        build_configs([0.5], [], ["renyi"])


def test_kept_mask_skips_fused_token() -> None:
    from renyi_prune import kept_patch_mask  # what the demo's figure draws

    mask = kept_patch_mask(torch.tensor([0, 1, -1, 4]), 1, (2, 2))  # CLS, patches 0 and 3, a fused token
    assert mask.tolist() == [[[True, False], [False, True]]]


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--keep-rates" in out and "--criteria" in out


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from renyi_prune import _io

    target = tmp_path / "report.json"
    _io.atomic_write_bytes(target, b"old")
    assert target.read_bytes() == b"old" and (target.stat().st_mode & 0o777) == 0o644

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


# --- failures: a checkpoint that is no weights file, no images, an output folder under a file -------------

TINY_MODEL = "vit_tiny_patch16_224"


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "red.png")
    return folder


def test_demo_with_an_empty_checkpoint_says_so(photos, tmp_path, cli_error_line):
    empty = tmp_path / "empty.pth"
    empty.touch()
    out = tmp_path / "out"
    argv = ["demo", "--model", TINY_MODEL, "--checkpoint", str(empty), "--images", str(photos)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    assert cli_error_line() == f"renyi-prune demo: error: empty file (0 bytes): {empty}"
    assert not out.exists()


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
