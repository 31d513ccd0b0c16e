"""Smoke tests of the kernel benchmark, renyi_prune.bench.kernel, and its thin script
benchmarks/bench_kernel.py (tiny shapes; Triton interpreter on CPU, real kernel on GPU)."""

import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from renyi_prune.bench import kernel as bench

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_kernel.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_kernel_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # its body runs only under __main__
    return mod


# The fused provider must run the Triton kernel: on CUDA, or on CPU with TRITON_INTERPRET=1 set before
# renyi_prune was imported (the root conftest.py does that). Otherwise run the script in a subprocess.
IN_PROCESS = torch.cuda.is_available() or bench.is_interpreting()


def _run_smoke(out: Path, *extra: str) -> None:
    argv = ["--smoke", "--quiet", "--out", str(out), *extra]
    if IN_PROCESS:
        assert bench.main(argv) == 0
    else:
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=pythonpath)
        subprocess.run([sys.executable, str(SCRIPT), *argv], check=True, env=env, timeout=120)


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_csv(tmp_path):
    out = tmp_path / "sub" / "k.csv"
    _run_smoke(out)
    rows = _read(out)
    assert list(rows[0]) == bench.CSV_COLUMNS
    left = [p.name for p in out.parent.iterdir() if p.name not in ("k.csv", "k.png")]
    assert not left, f"temp files left behind: {left}"
    if importlib.util.find_spec("matplotlib") is not None:
        png = out.with_suffix(".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    shapes = {(2, 2, n, 32) for n in bench.SMOKE["seq"]}
    got = {(r["provider"], int(r["B"]), int(r["H"]), int(r["N"]), int(r["D"])) for r in rows}
    assert got == {(p, *s) for p in bench.PROVIDERS for s in shapes}
    assert len(rows) == len(got)

    by_shape = {}
    for r in rows:
        assert r["error"] == "" and r["mode"] == "fwd"
        assert r["dtype"] == "fp32" and float(r["alpha"]) == 1.0
        ms = [float(r[c]) for c in ("ms_median", "ms_p20", "ms_p80")]
        assert all(math.isfinite(t) and t > 0 for t in ms), r
        assert ms[1] <= ms[0] <= ms[2]
        flops = 4 * int(r["B"]) * int(r["H"]) * int(r["N"]) ** 2 * int(r["D"])
        assert float(r["tflops"]) == pytest.approx(flops / (ms[0] * 1e-3) / 1e12, rel=1e-4)
        if torch.cuda.is_available():
            assert float(r["peak_mem_MiB"]) >= 0
        else:
            assert r["peak_mem_MiB"] == ""  # not measured on CPU
        by_shape.setdefault(int(r["N"]), {})[r["provider"]] = r

    for prov in by_shape.values():
        sdpa_ms = float(prov["sdpa"]["ms_median"])
        eager_ms = float(prov["eager"]["ms_median"])
        assert float(prov["sdpa"]["x_sdpa"]) == 1.0
        assert float(prov["eager"]["x_eager"]) == 1.0
        for r in prov.values():
            ms = float(r["ms_median"])
            assert float(r["x_sdpa"]) == pytest.approx(ms / sdpa_ms, rel=1e-4)
            assert float(r["x_eager"]) == pytest.approx(ms / eager_ms, rel=1e-4)
        fused = prov["fused"]
        assert fused["impl"] == ("triton" if torch.cuda.is_available() else "triton-interpreter")
        assert 0 <= float(fused["out_max_abs_err"]) < 1e-3
        assert 0 <= float(fused["ent_max_abs_err"]) < 1e-3


def test_fwdbwd_smoke_csv(tmp_path):
    out = tmp_path / "kbwd.csv"
    _run_smoke(out, "--mode", "fwdbwd")
    rows = _read(out)
    assert list(rows[0]) == bench.CSV_COLUMNS

    shapes = {(2, 2, n, 32) for n in bench.SMOKE["seq"]}
    got = {(r["provider"], int(r["B"]), int(r["H"]), int(r["N"]), int(r["D"])) for r in rows}
    assert got == {(p, *s) for p in bench.PROVIDERS for s in shapes}
    assert len(rows) == len(got)
    for r in rows:
        assert r["mode"] == "fwdbwd" and r["error"] == ""
        ms = [float(r[c]) for c in ("ms_median", "ms_p20", "ms_p80")]
        assert all(math.isfinite(t) and t > 0 for t in ms), r
        # forward 4·B·H·N²·D plus backward at 2.5× forward (FlashAttention's convention)
        flops = 3.5 * 4 * int(r["B"]) * int(r["H"]) * int(r["N"]) ** 2 * int(r["D"])
        assert float(r["tflops"]) == pytest.approx(flops / (ms[0] * 1e-3) / 1e12, rel=1e-4)
        if r["provider"] == "sdpa":
            assert float(r["x_sdpa"]) == 1.0
        if r["provider"] == "eager":
            assert float(r["x_eager"]) == 1.0
        if r["provider"] == "fused":
            assert r["impl"] == ("triton" if torch.cuda.is_available() else "triton-interpreter")
            assert 0 <= float(r["out_max_abs_err"]) < 1e-3  # the forward guard still runs


def test_fwdbwd_grad_guard_and_options():
    """The fwdbwd guard's returned error is tiny for the real op; mode, FLOPs and output path options."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    leaf = bench.make_qkv_leaf(2, 2, 17, 32, torch.float32, dev)
    assert leaf.requires_grad and leaf.is_leaf
    q, k, v = bench.split_qkv(leaf)
    assert q.stride() == (17 * 3 * 2 * 32, 32, 3 * 2 * 32, 1)  # timm's strided views
    torch.testing.assert_close(
        torch.stack(bench.split_qkv(leaf.detach())),
        torch.stack(bench.make_qkv(2, 2, 17, 32, torch.float32, dev)),
    )
    g = bench.make_grad_out(2, 2, 17, 32, torch.float32, dev)
    assert g.shape == (2, 2, 17, 32) and g.transpose(1, 2).is_contiguous()  # timm's (B, N, H, D) layout
    step = bench.make_fwdbwd_provider("fused", leaf, g, 1.0)
    assert bench.check_fused_grad(leaf, g, step) < bench.GRAD_TOL[torch.float32]
    assert leaf.grad is None  # autograd.grad: nothing accumulated

    assert bench.attention_flops(2, 3, 5, 7, "fwdbwd") == 3.5 * bench.attention_flops(2, 3, 5, 7)
    assert bench.build_parser().parse_args([]).mode == "fwd"
    assert bench.build_parser().parse_args(["--mode", "fwdbwd"]).mode == "fwdbwd"
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--mode", "bwd"])
    with pytest.raises(ValueError, match="mode"):
        bench.run_benchmark(
            [(1, 1, 4, 16)], [torch.float32], [1.0], ["sdpa"], reps=1, verbose=False, mode="bwd"
        )
    slug = bench.device_slug("cpu")
    assert bench.default_out_path("fwd", "cpu") == bench.RESULTS_DIR / slug / "kernel_fwd.csv"
    assert bench.default_out_path("fwdbwd", "cpu") == bench.RESULTS_DIR / slug / "kernel_fwdbwd.csv"
    assert bench.RESULTS_DIR not in bench.default_out_path("fwdbwd", "cpu", smoke=True).parents
    # GPU defaults unchanged; CPU-sized batches and fp32 on the CPU
    args = bench.build_parser().parse_args([])
    assert bench.resolve_shapes(args) == [(256, 6, 197, 64), (64, 6, 577, 64), (16, 6, 1025, 64)]
    assert bench.resolve_shapes(args, cpu=True) == [(8, 6, 197, 64), (2, 6, 577, 64), (1, 6, 1025, 64)]
    assert bench.default_dtypes(args) == ["bf16"] and bench.default_dtypes(args, cpu=True) == ["fp32"]
    assert bench.resolve_shapes(bench.build_parser().parse_args(["--batch", "3"]), cpu=True)[0][0] == 3


class _WrongGrad(torch.autograd.Function):
    """Identity forward, backward scaled by 1.01: a correct forward with a wrong gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * 1.01


def test_wrong_gradient_aborts_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """A fused op whose forward is right but whose backward is 1% off aborts the fwdbwd run."""
    import renyi_prune

    orig = renyi_prune.attention_with_entropy

    def wrong_backward(*args, **kwargs):
        out, ent = orig(*args, **kwargs)
        return _WrongGrad.apply(out), ent

    monkeypatch.setattr(renyi_prune, "attention_with_entropy", wrong_backward)
    out = tmp_path / "k.csv"
    argv = ["--mode", "fwdbwd", "--smoke", "--quiet", "--seq", "17", "--providers", "fused", "sdpa"]
    assert bench.main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "CORRECTNESS CHECK FAILED" in err and "dq differs from SDPA's" in err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "how, match",
    [("nan_grad", "non-finite"), ("wrong_out", "output of the fwd\\+bwd step"), ("wrong_dv", "dv differs")],
)
def test_wrong_fwdbwd_step_aborts(monkeypatch, how, match):
    def wrong(step):
        def f():
            out, dqkv = step()
            if how == "nan_grad":
                return out, dqkv * math.nan
            if how == "wrong_dv":  # 0.1 % off in dv alone: checked against dv's own scale
                return out, torch.cat([dqkv[:, :, :2], dqkv[:, :, 2:] * 1.001], dim=2)
            return out + 0.05, dqkv

        return f

    _patch_provider(monkeypatch, "fused", wrong, "make_fwdbwd_provider")
    with pytest.raises(bench.CorrectnessError, match=match):
        bench.run_benchmark(
            [(2, 2, 17, 32)], [torch.float32], [1.0], ["fused"], reps=1, verbose=False, mode="fwdbwd"
        )


def _patch_provider(monkeypatch, name, wrap, factory="make_provider"):
    """Wrap provider ``name``'s callable; ``factory`` is make_provider (fwd) or make_fwdbwd_provider."""
    orig = getattr(bench, factory)

    def make(p, *args):
        fn = orig(p, *args)
        return wrap(fn) if p == name else fn

    monkeypatch.setattr(bench, factory, make)


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])  # fwdbwd keeps the forward guard
def test_wrong_kernel_aborts_and_writes_nothing(tmp_path, monkeypatch, capsys, mode):
    def wrong(fn):
        def f():
            out, ent = fn()
            return out + 0.05, ent

        return f

    _patch_provider(monkeypatch, "fused", wrong)
    out = tmp_path / "k.csv"
    argv = ["--smoke", "--quiet", "--seq", "17", "--providers", "fused", "sdpa", "--out", str(out)]
    assert bench.main([*argv, "--mode", mode]) == 1
    err = capsys.readouterr().err
    assert "CORRECTNESS CHECK FAILED" in err and "output differs from SDPA" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_wrong_entropy_aborts(monkeypatch):
    def wrong(fn):
        def f():
            out, ent = fn()
            return out, ent * 1.01

        return f

    _patch_provider(monkeypatch, "fused", wrong)
    with pytest.raises(bench.CorrectnessError, match="entropy"):
        bench.run_benchmark([(2, 2, 17, 32)], [torch.float32], [2.0], ["fused"], reps=1, verbose=False)


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_oom_gives_error_row(monkeypatch, mode):
    def oom(fn):
        def f():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")

        return f

    _patch_provider(monkeypatch, "eager", oom, "make_provider" if mode == "fwd" else "make_fwdbwd_provider")
    rows = bench.run_benchmark(
        [(2, 2, 17, 32)], [torch.float32], [1.0], ["sdpa", "eager"], reps=1, verbose=False, mode=mode
    )
    sdpa, eager = rows
    assert sdpa["mode"] == eager["mode"] == mode
    assert eager["provider"] == "eager" and eager["error"].startswith("OOM")
    assert math.isnan(eager["ms_median"]) and math.isnan(sdpa["x_eager"])
    assert sdpa["error"] == "" and sdpa["x_sdpa"] == 1.0


def test_default_shapes_and_options():
    args = bench.build_parser().parse_args([])
    assert bench.resolve_shapes(args) == [(256, 6, 197, 64), (64, 6, 577, 64), (16, 6, 1025, 64)]
    args = bench.build_parser().parse_args(["--seq", "197", "577", "--batch", "8", "--heads", "12"])
    assert bench.resolve_shapes(args) == [(8, 12, 197, 64), (8, 12, 577, 64)]
    args = bench.build_parser().parse_args(["--alpha", "inf", "2"])
    assert args.alpha == [math.inf, 2.0]
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--alpha", "-1"])


def test_no_plot_and_plot_without_matplotlib(tmp_path, monkeypatch):
    rows = bench.run_benchmark([(1, 2, 17, 32)], [torch.float32], [1.0], ["sdpa"], reps=1, verbose=False)
    if importlib.util.find_spec("matplotlib") is not None:
        assert bench.write_plot(rows, tmp_path / "a.png") and (tmp_path / "a.png").stat().st_size > 0
    from renyi_prune.bench import _common

    monkeypatch.setattr(_common, "new_figure", lambda **kw: None)  # as if matplotlib were missing
    assert not bench.write_plot(rows, tmp_path / "b.png") and not (tmp_path / "b.png").exists()
    out = tmp_path / "k.csv"
    argv = ["--smoke", "--quiet", "--providers", "sdpa", "--seq", "17", "--out", str(out), "--no-plot"]
    monkeypatch.undo()  # matplotlib back: --no-plot alone must keep the PNG away
    assert bench.main(argv) == 0
    assert out.exists() and not out.with_suffix(".png").exists()


def test_script_sets_interpreter_only_for_cpu_smoke(monkeypatch):
    script = _load_script()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not script._wants_interpreter([])
    assert script._wants_interpreter(["--smoke", "--device", "cpu"])
    assert script._wants_interpreter(["--smoke"]) == (not torch.cuda.is_available())
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not script._wants_interpreter(["--smoke", "--device", "cpu"])  # an explicit choice wins
