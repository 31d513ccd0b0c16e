"""End-to-end test of ``renyi-prune demo`` and of the CLI's argument errors.

The demo runs on 2 real photos with one Rényi and one EViT configuration. Under ``TRITON_INTERPRET=1``
(set by conftest.py when there is no GPU) the Rényi pruning blocks and the entropy maps run the Triton
kernel on the CPU interpreter, so this also checks the kernel path end to end.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from renyi_prune.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, object]:
    out = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--out", str(out), "--keep-rates", "0.5", "--alphas", "1", "--no-progress",
            "--max-images", "2", "--repeats", "1"]  # fmt: skip
    return main(argv), out


@pytest.mark.slow
def test_demo_writes_outputs(demo_run) -> None:
    code, out = demo_run
    assert code == 0
    for name in ("entropy_heatmaps.png", "kept_patches.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 20_000, name  # a real figure, not an empty canvas
    assert "| unpruned |" in (out / "report.md").read_text()
    assert not list(out.glob("*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_demo_report_values(demo_run) -> None:
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["results"]}
    assert list(rows) == ["unpruned", "renyi α=1 r=0.5", "evit r=0.5"]
    assert report["images"] == ["astronaut", "chelsea"]
    assert report["model"]["num_patches"] == 256 and report["model"]["num_prefix_tokens"] == 1
    assert [b + 1 for b in report["prune_blocks"]] == [4, 7, 10]
    base = rows["unpruned"]
    assert base["patch_tokens_kept"] == [256, 256, 256]
    assert base["cls_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    for label in ("renyi α=1 r=0.5", "evit r=0.5"):
        row = rows[label]
        assert row["patch_tokens_kept"] == [128, 64, 32]
        assert row["gflops"] < base["gflops"]
        assert 0.0 < row["cls_cosine_min"] <= row["cls_cosine_mean"] <= 1.0001
    for row in rows.values():
        assert row["images_per_s"] > 0 and math.isfinite(row["images_per_s"])
    assert rows["renyi α=1 r=0.5"]["alpha"] == 1.0
    # 12 blocks of entropies in nats, each between 0 and log(257 keys)
    assert len(report["mean_entropy_per_block"]) == 12
    assert all(0.0 < e < math.log(257) for e in report["mean_entropy_per_block"])
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") == "1":
        assert "CPU interpreter" in report["renyi_attention_path"]  # the kernel path ran end to end
    assert report["kept_figure_configs"] == ["renyi α=1 r=0.5", "evit r=0.5"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--keep-rates", "1.5"], "keep rate must be in (0, 1]"),
        (["demo", "--keep-rates", "0"], "keep rate must be in (0, 1]"),
        (["demo", "--alphas", "-1"], "alpha must be >= 0"),
        (["demo", "--alphas", "nan"], "alpha must be >= 0"),
        (["demo", "--alphas", "two"], "not a number"),
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


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    assert "--keep-rates" in capsys.readouterr().out


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
