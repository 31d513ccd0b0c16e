"""Smoke tests of the end-to-end benchmark, renyi_prune.bench.e2e (deit_tiny at 64 px, batch 2, CPU)."""

import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import renyi_prune
from renyi_prune._argtypes import UsageError
from renyi_prune.bench import _common
from renyi_prune.bench import e2e as bench

HAS_MPL = importlib.util.find_spec("matplotlib") is not None
HAS_FVCORE = importlib.util.find_spec("fvcore") is not None
SMOKE_TOKENS = 1 + (64 // 16) ** 2  # deit_tiny at 64 px: CLS + 16 patches
PRUNED = [c for c in bench.DEFAULT_CONFIGS if c != "unpruned"]
FAST = ["--smoke", "--quiet", "--no-gflops", "--no-plot"]
THREE_CONFIGS = ["--configs", "unpruned", "evit", "renyi"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread on CPU: after the Triton interpreter has run in this process (other test
    modules), torch's spin-waiting OpenMP workers can make every small parallel op ~10x slower on a
    2-core VM (see benchmarks/README.md); the tiny smoke shapes gain nothing from threads anyway."""
    if torch.cuda.is_available():
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _kept(n: int, r: float, blocks: int = 3, fusion: bool = False) -> list[int]:
    """Tokens kept per pruning block (CLS included), from renyi_prune.num_kept."""
    out = []
    for _ in range(blocks):
        kept = 1 + renyi_prune.num_kept(n, 1, r)
        out.append(kept)
        n = kept + fusion
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One full smoke run (all configurations, GFLOPs, plot). On CPU the renyi configs take the eager
    path (TRITON_INTERPRET=0: the op reads it per call); the interpreted kernel is covered below."""
    out = tmp_path_factory.mktemp("e2e") / "res" / "e2e.csv"
    with pytest.MonkeyPatch.context() as mp:
        if not torch.cuda.is_available():
            mp.setenv("TRITON_INTERPRET", "0")
        assert bench.main(["--smoke", "--quiet", "--out", str(out)]) == 0
    return out, _read(out)


def test_smoke_rows(smoke):
    out, rows = smoke
    assert list(rows[0]) == bench.CSV_COLUMNS
    got = sorted((r["config"], float(r["keep_rate"])) for r in rows)
    assert got == sorted([("unpruned", 1.0)] + [(c, r) for c in PRUNED for r in bench.SMOKE["keep_rates"]])
    for r in rows:
        assert r["error"] == "" and r["model"] == "deit_tiny_patch16_224" and r["img_size"] == "64"
        for col in ("device", "torch", "triton", "timm", "git_commit", "date"):
            assert r[col], col
        assert r["batch"] == "2" and r["dtype"] == ("bf16" if torch.cuda.is_available() else "fp32")
        assert r["compile"] == "off" and r["prune_blocks"] == "3 6 9"
        ips = [float(r[c]) for c in ("images_per_s", "images_per_s_p20", "images_per_s_p80")]
        assert all(math.isfinite(v) and v > 0 for v in ips), r
        assert ips[1] <= ips[0] <= ips[2]
        assert float(r["images_per_s"]) == pytest.approx(2e3 / float(r["ms_per_batch"]), rel=1e-4)
        assert r["repeats"] == "1" and r["x_random"] == ""  # no random config in the default set
        assert r["timing"] == ("sequential" if torch.cuda.is_available() else "round-robin")
        assert r["fusion"] == str(r["config"] == "evit+fusion")
        assert r["alpha"] == ("1" if r["config"].startswith("renyi") else "")

    by = {(r["config"], float(r["keep_rate"])): r for r in rows}
    base = float(by["unpruned", 1.0]["images_per_s"])
    assert float(by["unpruned", 1.0]["speedup_vs_unpruned"]) == 1.0
    assert by["unpruned", 1.0]["x_evit"] == "" and by["unpruned", 1.0]["tokens_kept"] == ""
    assert by["renyi-eager", 0.5]["backend"] == "eager" and by["renyi-eager", 0.5]["impl"] == "eager"
    assert by["renyi", 0.5]["backend"] == "auto"
    for rate in bench.SMOKE["keep_rates"]:
        evit = float(by["evit", rate]["images_per_s"])
        assert float(by["evit", rate]["x_evit"]) == 1.0
        for c in PRUNED:
            r = by[c, rate]
            ips = float(r["images_per_s"])
            assert float(r["speedup_vs_unpruned"]) == pytest.approx(ips / base, rel=1e-4)
            assert float(r["x_evit"]) == pytest.approx(ips / evit, rel=1e-4)
            want = _kept(SMOKE_TOKENS, rate, fusion=c == "evit+fusion")
            assert [int(t) for t in r["tokens_kept"].split()] == want
            assert float(r["guard_rel_err"]) < 1e-4  # evit+fusion: evit without fusion at r = 1
    if HAS_FVCORE:
        g = {k: float(r["gflops"]) for k, r in by.items()}
        assert g["evit", 0.5] < g["evit", 0.7] < g["unpruned", 1.0]
        assert g["renyi", 0.7] == pytest.approx(g["renyi-eager", 0.7], rel=1e-6)
    else:
        assert all(r["gflops"] == "" for r in rows)


def test_smoke_png_and_no_temp_files(smoke):
    out, _ = smoke
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == (["e2e.csv", "e2e.png"] if HAS_MPL else ["e2e.csv"])
    if HAS_MPL:
        assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_renyi_on_the_fused_kernel(tmp_path):
    """On CUDA, or on CPU under TRITON_INTERPRET=1 (set by the root conftest), the renyi config runs the
    Triton kernel and passes the guard against the unpatched model."""
    out = tmp_path / "e.csv"
    argv = [*FAST, "--configs", "renyi", "--keep-rates", "0.5", "--out", str(out)]
    assert bench.main(argv) == 0
    (row,) = _read(out)
    from renyi_prune.ops import uses_triton

    q = torch.empty(1, 1, 1, 64, device="cuda" if torch.cuda.is_available() else "cpu")
    if uses_triton(q):
        assert row["impl"] == ("triton" if torch.cuda.is_available() else "triton-interpreter")
    assert float(row["guard_rel_err"]) < 1e-3
    assert row["speedup_vs_unpruned"] == "" and row["x_evit"] == ""  # no unpruned / evit rows to compare


def test_wrong_attention_aborts_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """A fused op 1% off makes the patched model at keep rate 1 differ from the unpatched one."""
    import renyi_prune.criteria.base as base

    orig = base.attention_with_entropy

    def wrong(*args, **kwargs):
        out, *rest = orig(*args, **kwargs)
        return (out * 1.01, *rest)

    monkeypatch.setattr(base, "attention_with_entropy", wrong)
    out = tmp_path / "e.csv"
    assert bench.main([*FAST, "--configs", "unpruned", "renyi", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "CORRECTNESS CHECK FAILED" in err and "renyi at keep_rate=1.0" in err
    assert not list(tmp_path.iterdir())


def test_wrong_token_count_aborts(tmp_path, monkeypatch, capsys):
    """A patched model that keeps one token more than num_kept says is caught at the first keep rate."""
    forward = sys.modules["renyi_prune.pruning.forward"]  # where the pruning forward looks num_kept up
    real = forward.num_kept
    monkeypatch.setattr(forward, "num_kept", lambda n, p, r: min(real(n, p, r) + 1, n - p))
    out = tmp_path / "e.csv"
    assert bench.main([*FAST, "--configs", "evit", "--out", str(out)]) == 1
    assert "kept [" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_oom_row_and_no_matplotlib(tmp_path, monkeypatch):
    real = bench._bench_rate

    def oom_for_renyi(model, config, *args, **kwargs):
        if config.name == "renyi":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")
        return real(model, config, *args, **kwargs)

    monkeypatch.setattr(bench, "_bench_rate", oom_for_renyi)
    monkeypatch.setattr(_common, "new_figure", lambda **kw: None)  # as if matplotlib were missing
    out = tmp_path / "e.csv"
    argv = ["--smoke", "--quiet", "--no-gflops", *THREE_CONFIGS, "--keep-rates", "0.5"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    by = {r["config"]: r for r in _read(out)}
    assert by["renyi"]["error"].startswith("OOM") and by["renyi"]["images_per_s"] == ""
    assert by["renyi"]["speedup_vs_unpruned"] == "" and by["renyi"]["x_evit"] == ""
    assert by["evit"]["error"] == "" and float(by["evit"]["x_evit"]) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]  # no PNG without matplotlib


class _FakeDynamoError(Exception):
    pass


_FakeDynamoError.__module__ = "torch._dynamo.exc"


def _fake_compile(monkeypatch, calls, wrap=lambda logits: logits, fail_for=()):
    """torch.compile replaced by an eager wrapper: records its kwargs, optionally alters the logits or
    fails (like dynamo) for models patched with a criterion in ``fail_for``."""

    def compile_(model, **kwargs):
        calls.append(kwargs)
        crit = [s.criterion.name for b in model.blocks if (s := b.__dict__.get("_renyi_prune")) is not None]
        if crit and crit[0] in fail_for:
            raise _FakeDynamoError("graph break in a fake compiler")
        return lambda x: wrap(model(x))

    monkeypatch.setattr(torch, "compile", compile_)


def test_compile_rows(tmp_path, monkeypatch):
    calls, resets = [], []
    _fake_compile(monkeypatch, calls, fail_for=("renyi",))
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    out = tmp_path / "c.csv"
    argv = [*FAST, "--compile", *THREE_CONFIGS, "--keep-rates", "0.5", "--out", str(out)]
    assert bench.main(argv) == 0
    assert all(kw == {"fullgraph": True} for kw in calls)
    # unpruned: 1 (guard, reused for timing); evit: guard + r=0.5; renyi: its guard fails
    assert len(calls) == 4 and resets
    by = {r["config"]: r for r in _read(out)}
    assert {r["compile"] for r in by.values()} == {"default"}
    assert float(by["unpruned"]["speedup_vs_unpruned"]) == 1.0 and float(by["evit"]["x_evit"]) == 1.0
    assert float(by["unpruned"]["guard_rel_err"]) == 0.0  # compiled unpruned vs eager
    assert by["renyi"]["error"].startswith("compile failed: _FakeDynamoError")


def test_wrong_compiled_model_aborts(tmp_path, monkeypatch, capsys):
    _fake_compile(monkeypatch, [], wrap=lambda logits: logits * 1.01)
    out = tmp_path / "c.csv"
    assert bench.main([*FAST, "--compile", "--configs", "evit", "--out", str(out)]) == 1
    assert "compiled at keep_rate=1.0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_round_robin_timing_pairs_the_ratios(monkeypatch):
    """On the CPU each round times every checked (config, keep rate) once, in an order rotated by one per
    round; images/s are the median round, ratios the median of per-round ratios (here a drift that
    changes with every timed call makes them differ from the ratio of medians)."""
    from renyi_prune.bench import _e2e_rounds

    base_ms = {"unpruned": 40.0, "evit": 20.0, "random": 25.0, "renyi": 21.0}
    drift = [1.0, 1.3, 0.9, 1.7, 1.1, 0.8, 1.5, 1.2, 1.0, 1.9, 0.7, 1.4]  # per timed call
    calls, current = [], []
    real_apply = _e2e_rounds.apply_config

    def apply(model, config, *args):
        current[:] = [config.name]
        return real_apply(model, config, *args)

    def fake_timer(fn, device, reps, run_ms, warmup_ms, *, warmup_calls):
        assert reps == 1 and warmup_calls == 0
        calls.append(current[0])
        return [base_ms[current[0]] * drift[len(calls) - 1]], 1

    monkeypatch.setattr(_e2e_rounds, "apply_config", apply)
    monkeypatch.setattr(_e2e_rounds, "time_model", fake_timer)
    s = bench.Settings(models=["test_vit"], configs=list(base_ms), keep_rates=[0.5], img_size=32,
                       prune_blocks=[1, 3, 5], batch=2, gflops=False, device="cpu", repeats=3,
                       verbose=False)  # fmt: skip
    rows = {r["config"]: r for r in bench.run_benchmark(s)}
    order = ["unpruned", "evit", "random", "renyi"]
    assert calls == order + order[1:] + order[:1] + order[2:] + order[:2]
    ms = {name: [base_ms[name] * d for d, c in zip(drift, calls, strict=True) if c == name] for name in order}
    for name, r in rows.items():
        assert r["timing"] == "round-robin" and r["repeats"] == 3
        assert r["images_per_s"] == pytest.approx(2e3 / sorted(ms[name])[1])
        for col, ref in (("speedup_vs_unpruned", "unpruned"), ("x_evit", "evit"), ("x_random", "random")):
            if name == "unpruned" and col != "speedup_vs_unpruned":
                assert math.isnan(r[col])
                continue
            paired = sorted(a / b for a, b in zip(ms[ref], ms[name], strict=True))[1]
            assert r[col] == pytest.approx(paired)
    assert rows["renyi"]["x_evit"] != pytest.approx(
        rows["renyi"]["images_per_s"] / rows["evit"]["images_per_s"]
    )
    assert bench.cpu_target_summary([dict(rows["renyi"], model="deit_small_patch16_224", keep_rate=0.7)])


def test_several_alphas_give_one_row_each(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the CPU path: fast
    out = tmp_path / "e.csv"
    argv = [
        *FAST,
        "--configs",
        "evit",
        "renyi",
        "--keep-rates",
        "0.5",
        "--alpha",
        "1",
        "inf",
        "--out",
        str(out),
    ]
    assert bench.main(argv) == 0
    rows = _read(out)
    assert [(r["config"], r["alpha"]) for r in rows] == [("evit", ""), ("renyi", "1"), ("renyi", "inf")]
    assert all(float(r["x_evit"]) > 0 and r["tokens_kept"] == rows[0]["tokens_kept"] for r in rows)


def test_interleave_option():
    parse = bench.build_parser().parse_args
    assert parse([]).interleave is None and parse(["--no-interleave"]).interleave is False
    s = bench.settings_from_args(parse(["--interleave", "--compile"]), "cpu")
    with pytest.raises(UsageError, match="--interleave: not with --compile"):
        bench.check_settings(s)


def test_options_and_helpers():
    args = bench.build_parser().parse_args([])
    s = bench.settings_from_args(args, "cuda")  # the GPU defaults (no CUDA needed to compute them)
    assert list(s.models) == list(bench.DEFAULT_MODELS) and list(s.configs) == list(bench.DEFAULT_CONFIGS)
    assert list(s.keep_rates) == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    assert s.batch == 256 and s.alpha == [1.0] and s.img_size is None and not s.compile
    s = bench.settings_from_args(args, "cpu")  # CPU-sized: DeiT-S, batch 32, r = 0.7 0.5, same configs
    assert list(s.models) == ["deit_small_patch16_224"] and list(s.configs) == list(bench.DEFAULT_CONFIGS)
    assert s.batch == 32 and list(s.keep_rates) == [0.7, 0.5] and s.repeats is None
    assert bench.CPU_TIMING["repeats"] == 5 and bench.CUDA_TIMING["repeats"] == 10
    args = bench.build_parser().parse_args(["--batch", "4", "--models", "test_vit"])
    s = bench.settings_from_args(args, "cpu")
    assert s.batch == 4 and list(s.models) == ["test_vit"]
    s = bench.settings_from_args(bench.build_parser().parse_args(["--smoke", "--batch", "4"]), "cpu")
    assert s.batch == 4 and s.img_size == 64 and s.repeats == 1 and list(s.keep_rates) == [0.7, 0.5]
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--keep-rates", "0"])
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--configs", "bogus"])
    assert bench.build_parser().parse_args(["--configs", "colln+fusion"]).configs == ["colln+fusion"]

    slug = bench.device_slug("cpu")
    assert bench.default_out_path("cpu") == bench.RESULTS_DIR / slug / "e2e.csv"
    assert not bench.RESULTS_DIR.is_absolute()  # relative to the current directory, not the package
    assert bench.default_out_path("cpu", compile=True, img_size=384).name == "e2e_384px_compile.csv"
    assert bench.RESULTS_DIR not in bench.default_out_path("cpu", smoke=True).parents
    assert bench.expected_tokens(197, 1, 0.7, 3, False) == [139, 98, 69]  # patch()'s docstring example
    assert bench.expected_tokens(197, 1, 0.7, 3, True) == _kept(197, 0.7, fusion=True)
    assert bench.logit_tolerance(torch.bfloat16, "cpu", noise_rel=0.1) == pytest.approx(0.2)
    assert bench.logit_tolerance(torch.float32, "cpu") == bench.LOGIT_TOL[torch.float32]
    with pytest.raises(bench.CorrectnessError, match="non-finite"):
        bench.compare_logits(torch.tensor([1.0, math.nan]), torch.ones(2), 1e-4, "x")
    times, iters = bench.time_model(lambda: None, "cpu", reps=3, run_ms=1.0, warmup_ms=0.0)
    assert len(times) == 3 and iters >= 1


def test_run_gpu_script_stages():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "run_gpu.sh"
    assert os.access(script, os.X_OK)
    env = dict(os.environ, DRY_RUN="1", PYTHON="python3")
    res = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    stages = [line.split("]")[0][5:] for line in res.stderr.splitlines() if line.startswith("=== [")]
    benchmarks = [s for s in stages if s != "readme"]  # a final README update may follow the benchmarks
    assert benchmarks == ["kernel-fwd", "kernel-fwdbwd", "e2e", "e2e-384", "e2e-compile"]
    assert "bench_e2e.py --compile" in res.stderr and "--mode fwdbwd" in res.stderr
    res = subprocess.run([str(script), "nope"], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "unknown stage" in res.stderr
