"""Where the commands write (issue 16 part 3): under the current directory, ``--out`` or (``--smoke``) the
temp dir, never into the package's checkout, so that ``benchmarks/readme_tables.py --check`` and
tests/test_readme.py stay green after running the documented commands.

Every run here starts from an empty temporary current directory and checks that nothing under the
repository's ``benchmarks/results/`` (the committed results the README is generated from) appeared,
disappeared or changed (names and mtimes), nor under a ``bench-results/`` in the checkout's root.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest
import torch

from renyi_prune.bench import _common
from renyi_prune.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SLUG = _common.device_slug("cpu")
# timm's 6-block test ViT at 32 px, unpruned and EViT at r = 0.5, one image, one timed run: a real
# (non-smoke) CPU run of the end-to-end benchmark in about a second
TINY_E2E = ["bench", "e2e", "--device", "cpu", "--models", "test_vit", "--img-size", "32",
            "--prune-blocks", "1", "3", "5", "--configs", "unpruned", "evit", "--keep-rates", "0.5",
            "--batch", "1", "--repeats", "1", "--no-gflops", "--no-plot"]  # fmt: skip
TINY_KERNEL = ["bench", "kernel", "--device", "cpu", "--providers", "sdpa", "eager", "--seq", "16", "--batch",
               "1", "--heads", "1", "--head-dim", "8", "--reps", "1", "--no-plot"]  # fmt: skip


def _listing(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its mtime (ns); ``{}`` if ``root`` does not exist."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty current directory; smoke outputs under it too (``_common.SMOKE_DIR``, not the shared
    temp dir). On exit: the checkout's committed results and root are as they were."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(_common, "SMOKE_DIR", tmp_path / "smoke")
    results, local = _listing(RESULTS), _listing(REPO / "bench-results")
    yield work
    assert _listing(RESULTS) == results, "a command wrote into benchmarks/results/ of the checkout"
    assert _listing(REPO / "bench-results") == local, "a command wrote into the checkout's root"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny shapes gain nothing from threads (see tests/test_bench_e2e.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_tiny_cpu_e2e_writes_under_cwd(cwd):
    code, out, err = _run(TINY_E2E)
    assert code == 0, err
    assert _files(cwd) == [f"bench-results/{SLUG}/e2e_32px.csv"]
    assert f"wrote bench-results/{SLUG}/e2e_32px.csv" in out
    assert "[bench-e2e] estimated run time on this CPU: about " in err  # printed before the run
    assert err.index("estimated run time") < err.index("test_vit img_size=32x32")
    rows = list(csv.DictReader((cwd / "bench-results" / SLUG / "e2e_32px.csv").open(newline="")))
    assert [(r["config"], r["keep_rate"]) for r in rows] == [("unpruned", "1"), ("evit", "0.5")]
    # labelled with the CPU model and the thread count (issue 15 part 4)
    threads = str(torch.get_num_threads())
    assert {(r["cpu_model"], r["threads"]) for r in rows} == {(_common.cpu_model(), threads)}
    assert rows[0]["device"].endswith(f" ({_common.cpu_model()}, {threads} threads)")  # cpu[-interpreter]


def test_out_and_kernel_default(cwd):
    code, out, err = _run([*TINY_E2E, "--out", "mine/e2e.csv", "--quiet"])
    assert code == 0, err
    assert err == "" and _files(cwd) == ["mine/e2e.csv"]
    code, out, err = _run(TINY_KERNEL)
    assert code == 0, err
    assert "[bench] estimated run time on this CPU: about " in err
    assert _files(cwd) == [f"bench-results/{SLUG}/kernel_fwd.csv", "mine/e2e.csv"]


def test_smoke_runs_write_to_the_smoke_dir(cwd):
    """The documented smoke commands (with the figure: matplotlib, if installed, writes the PNG)."""
    code, _, err = _run(["bench", "kernel", "--smoke", "--device", "cpu", "--quiet"])
    assert code == 0, err
    code, _, err = _run(["bench", "e2e", "--smoke", "--device", "cpu", "--quiet"])
    assert code == 0, err
    assert _files(cwd) == []
    written = {Path(f).name for f in _files(_common.SMOKE_DIR)}
    assert {"kernel_fwd.csv", "e2e.csv"} <= written
    assert all(f.startswith(f"{SLUG}/") for f in _files(_common.SMOKE_DIR))


def test_static_report_writes_under_cwd(cwd, monkeypatch):
    """``bench static`` (its compiles stubbed: they need minutes) writes ./bench-results/static/."""
    from renyi_prune.bench.static import cli

    monkeypatch.setattr(cli, "compile_cases", lambda cases, jobs, progress: [])
    code, out, err = _run(["bench", "static", "--arch", "sm_90", "--kernels", "fwd", "--quiet"])
    assert _files(cwd) and all(f.startswith("bench-results/static/") for f in _files(cwd)), (out, err)


def test_default_outputs_are_relative_to_cwd():
    """demo, probe, train and the accuracy study default to folders of the current directory."""
    parser = build_parser()
    assert not parser.parse_args(["demo"]).out.is_absolute()
    assert not parser.parse_args(["probe"]).out.is_absolute()
    assert not parser.parse_args(["train"]).output.is_absolute()
    from renyi_prune.studies.accuracy import RESULTS_DIR

    assert RESULTS_DIR.as_posix() == "bench-results/accuracy"
    assert _common.RESULTS_DIR.as_posix() == "bench-results"
