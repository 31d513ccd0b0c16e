"""README.md's generated tables (benchmarks/readme_tables.py): in sync with benchmarks/results/ and the
FLOPs counter, and rendered correctly from benchmark and accuracy-study outputs."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest

from renyi_prune.bench import e2e as bench_e2e
from renyi_prune.bench import kernel as bench_kernel

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "readme_tables.py"
STUDY = REPO / "benchmarks" / "results" / "accuracy" / "cpu-vit12-d64"


def _load_script():
    spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # main() runs only under __main__
    return mod


rt = _load_script()


def _lines(text: str) -> list[str]:
    """``text``'s lines, Markdown table rows with their cells stripped (pandas pads them to the column
    width): ``|  a   | b |`` → ``| a | b |``."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") and line.endswith("|"):
            line = "| " + " | ".join(cell.strip() for cell in line[1:-1].split("|")) + " |"
        out.append(line)
    return out


GPU = dict(device="NVIDIA H100 80GB HBM3", torch="2.11.0+cu130", triton="3.6.0", git_commit="abc1234")


def _kernel_rows(
    date: str, device: str = GPU["device"], mode: str = "fwd", fused_ms: float = 0.5
) -> list[dict]:
    common = dict(GPU, device=device, date=date, mode=mode, dtype="bf16", alpha=1.0, B=256, H=6, N=197, D=64)
    nan = math.nan
    rows = [
        dict(common, provider="fused", impl="triton", ms_median=fused_ms, tflops=100.0, peak_mem_MiB=12.5,
             x_sdpa=fused_ms / 0.45, x_eager=fused_ms / 2.0, out_max_abs_err=1e-3, ent_max_abs_err=1e-4),
        dict(common, provider="sdpa", impl="torch-sdpa", ms_median=0.45, tflops=111.0, peak_mem_MiB=10.0,
             x_sdpa=1.0, x_eager=0.225),
        dict(common, provider="eager", impl="torch-eager", ms_median=2.0, tflops=25.0, peak_mem_MiB=400.0,
             x_sdpa=2.0 / 0.45, x_eager=1.0),
        dict(common, provider="eager", impl="torch-eager", N=1025, B=16, ms_median=nan,
             error="OOM: CUDA out of memory"),
    ]  # fmt: skip
    return rows


def _e2e_rows(date: str) -> list[dict]:
    common = dict(GPU, timm="1.0.31", date=date, model="deit_small_patch16_224", img_size=224, batch=256,
                  dtype="bf16", compile="off", prune_blocks="3 6 9")  # fmt: skip
    rate = bench_e2e.TARGET["keep_rate"]
    return [
        dict(common, config="unpruned", impl="sdpa", keep_rate=1.0, images_per_s=1000.0,
             speedup_vs_unpruned=1.0),
        dict(common, config="evit", impl="sdpa", keep_rate=rate, images_per_s=1900.0, speedup_vs_unpruned=1.9,
             x_evit=1.0),
        dict(common, config="renyi", impl="triton", keep_rate=rate, images_per_s=1950.0,
             speedup_vs_unpruned=1.95, x_evit=1950 / 1900),
        dict(common, config="renyi-eager", impl="eager", keep_rate=rate, images_per_s=math.nan,
             error="OOM: CUDA out of memory"),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the committed README


@pytest.mark.slow
def test_readme_in_sync():
    """README.md's generated blocks equal what benchmarks/readme_tables.py renders now (FLOPs included)."""
    diff = rt.readme_diff()
    assert not diff, "README.md is out of date; run `python benchmarks/readme_tables.py`:\n" + diff


def test_file_names_match_the_benchmarks():
    names = {k.filename for k in rt.BENCH_KINDS}
    assert {bench_kernel.default_out_path(m, "cpu").name for m in bench_kernel.MODES} <= names
    assert bench_e2e.default_out_path("cpu").name in names
    assert bench_e2e.default_out_path("cpu", compile=True).name in names
    assert bench_e2e.default_out_path("cpu", img_size=384).name in names


# --------------------------------------------------------------------------------------------------
# rendering synthetic results


def test_no_results(tmp_path):
    text = rt.render_results(tmp_path, tmp_path)
    assert rt.NO_GPU_BENCHMARK in text
    assert "No accuracy study has been run yet" in text
    assert "|" not in text  # no table


def test_kernel_and_e2e_tables(tmp_path):
    slug = tmp_path / "nvidia-h100-80gb-hbm3"
    bench_kernel.write_csv(_kernel_rows("2026-12-01T10:00:00+00:00"), slug / "kernel_fwd.csv")
    # older GPU run and newer CPU run: neither is the latest GPU result
    bench_kernel.write_csv(
        _kernel_rows("2026-11-01T10:00:00+00:00", fused_ms=9.0), tmp_path / "old" / "kernel_fwd.csv"
    )
    cpu_rows = _kernel_rows("2026-12-24T10:00:00+00:00", device="cpu (x86_64)", fused_ms=8.0)
    bench_kernel.write_csv(cpu_rows, tmp_path / "cpu-x86_64" / "kernel_fwd.csv")
    bench_e2e.write_csv(_e2e_rows("2026-12-01T11:00:00+00:00"), slug / "e2e.csv")
    (slug / "e2e.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    text = rt.render_results(tmp_path, tmp_path)
    lines = _lines(text)
    assert rt.NO_GPU_BENCHMARK not in text
    assert "#### Kernel, forward" in lines
    assert (
        "**NVIDIA H100 80GB HBM3** · torch 2.11.0+cu130 · triton 3.6.0 · commit `abc1234` "
        "· 2026-12-01 10:00 UTC · [full results](nvidia-h100-80gb-hbm3/kernel_fwd.csv)" in lines
    )
    assert (
        "| B × H × N × D | dtype | α | fused ms | SDPA ms | eager ms | fused / SDPA | fused / eager "
        "| fused TFLOP/s | fused peak MiB |" in lines
    )
    assert "| 256 × 6 × 197 × 64 | bf16 | 1 | 0.5 | 0.45 | 2 | 1.11× | 0.25× | 100 | 12.5 |" in lines
    assert "| 16 × 6 × 1025 × 64 | bf16 | 1 |  |  | OOM | – | – | – | – |" in lines
    assert "No `kernel_fwdbwd.csv` result yet." in lines
    assert "No `e2e_compile.csv` result yet." in lines

    assert "#### End to end (paper Table 3, speed)" in lines
    assert any(
        line.endswith(
            "· [full results](nvidia-h100-80gb-hbm3/e2e.csv) ([plot](nvidia-h100-80gb-hbm3/e2e.png))"
        )
        for line in lines
    )
    r = f"r = {bench_e2e.TARGET['keep_rate']:g}"
    assert f"| model | config (attention) | unpruned | {r} |" in lines
    assert "| deit_small_patch16_224 | unpruned (sdpa) | 1000 |  |" in lines
    assert "| deit_small_patch16_224 | evit (sdpa) |  | 1900 (1.90×) |" in lines
    assert "| deit_small_patch16_224 | renyi (triton) |  | 1950 (1.95×) |" in lines
    assert "| deit_small_patch16_224 | renyi-eager (eager) |  | OOM |" in lines
    assert any(line.startswith("Target (deit_small_patch16_224") and "**met**" in line for line in lines)


def test_e2e_smoke_run_renders(tmp_path, monkeypatch):
    """A real (CPU smoke) e2e CSV renders: one row per configuration, one column per keep rate."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # eager CPU path: fast
    out = tmp_path / "cpu-x86_64" / "e2e.csv"
    argv = ["--smoke", "--quiet", "--no-gflops", "--no-plot", "--configs", "unpruned", "evit", "renyi"]
    assert bench_e2e.main([*argv, "--out", str(out)]) == 0
    lines = _lines(rt.render_results(tmp_path, tmp_path))
    model = bench_e2e.SMOKE["models"][0]
    rates = " | ".join(f"r = {r:g}" for r in bench_e2e.SMOKE["keep_rates"])
    assert f"| model | config (attention) | unpruned | {rates} |" in lines
    rows = [line for line in lines if line.startswith(f"| {model} |")]
    assert [row.split(" | ")[1] for row in rows] == [
        "unpruned (sdpa)",
        "evit (sdpa)",
        "renyi (cpu)",
    ]
    assert rows[0].split(" | ")[2].isdigit()  # images/s of the unpruned model
    assert all(row.endswith("×) |") for row in rows[1:])  # pruned: images/s (speed-up) at every keep rate
    assert rt.NO_GPU_BENCHMARK in lines and "#### End to end (paper Table 3, speed), on a CPU" in lines
    assert "No `kernel_fwd.csv` result yet." not in lines  # no GPU run: only the CPU result is shown


def _copy_study(dst: Path, name: str, date: str | None = None) -> Path:
    folder = dst / rt.ACCURACY_DIR / name
    shutil.copytree(STUDY, folder)
    if date is not None:
        env = json.loads((folder / "environment.json").read_text())
        (folder / "environment.json").write_text(json.dumps(dict(env, date=date)))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["name"] = name
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_accuracy_table(tmp_path):
    _copy_study(tmp_path, "older", "2026-01-01T00:00:00+00:00")
    _copy_study(tmp_path, "newer", "2026-02-01T00:00:00+00:00")
    (tmp_path / rt.ACCURACY_DIR / "incomplete").mkdir()  # no files: not a study
    lines = _lines(rt.render_results(tmp_path, tmp_path))
    assert rt.NO_GPU_BENCHMARK in lines
    assert lines[lines.index("#### Accuracy") + 2].startswith("Study `newer`. CPU-sized")
    assert any(
        line.endswith(" · 2026-02-01 00:00 UTC · [full results](accuracy/newer/results.md)") for line in lines
    )
    assert "| criterion | unpruned | r = 0.9 | r = 0.7 | r = 0.5 | r = 0.3 |" in lines
    assert "| unpruned | 76.72 ± 0.18 |  |  |  |  |" in lines
    assert "| renyi α=3 |  | 74.80 ± 0.14 | 71.85 ± 0.64 | 66.43 ± 1.10 | 60.42 ± 2.72 |" in lines
    # every pruned row shows the cells of the study's own results.md (its first table)
    report = _lines((STUDY / "results.md").read_text().split("\n\n## ")[1])
    pruned = [line for line in report if line.startswith("| ") and " ± " in line and "unpruned" not in line]
    assert len(pruned) == 10
    for line in pruned:
        name, cells = line.split(" | ", 1)
        assert f"{name} |  | {cells}" in lines
    assert (
        "| GFLOPs per image | 0.0241 | 0.0211–0.0219 | 0.0159–0.0165 | 0.0123–0.0126 | 0.00985–0.0102 |"
        in lines
    )
    assert "Other studies: [`older`](accuracy/older/results.md)." in lines


# --------------------------------------------------------------------------------------------------
# the command line


def test_check_and_rewrite(tmp_path, capsys):
    readme = tmp_path / "README.md"
    start, end = rt.MARKERS["results"]
    fstart, fend = rt.MARKERS["flops"]
    readme.write_text(f"# x\n\n{fstart}\nhand-typed 4.61\n{fend}\n\ntext\n{start}\nold\n{end}\ntail\n")
    results = tmp_path / "results"
    _copy_study(results, "study")
    argv = ["--readme", str(readme), "--results", str(results), "--no-flops"]

    assert rt.main(["--check", *argv]) == 1
    err = capsys.readouterr().err
    assert (
        "out of date" in err and "-old" in err and re.search(r"^\+\| criterion +\| unpruned +\|", err, re.M)
    )

    assert rt.main(argv) == 0
    text = readme.read_text()
    assert text.startswith(f"# x\n\n{fstart}\nhand-typed 4.61\n{fend}\n\ntext\n{start}\n<!-- generated by")
    assert text.endswith(f"\n{end}\ntail\n")
    assert "[full results](results/accuracy/study/results.md)" in text
    assert not [p.name for p in tmp_path.iterdir() if p.name not in ("README.md", "results")]  # no temp file
    assert rt.main(["--check", *argv]) == 0


def test_flops_block_from_table():
    table = {
        "unpruned": 4.6083,
        **{label: {r: r * 4.0 for r in rt.FLOPS_KEEP_RATES} for label, _ in rt.FLOPS_ROWS},
    }
    lines = _lines(rt.render_flops(table))
    assert "**4.61** unpruned" in lines[2]
    label = rt.FLOPS_ROWS[0][0]
    assert f"| {label} | " + " | ".join(f"{4.0 * r:.2f}" for r in rt.FLOPS_KEEP_RATES) + " |" in lines


def test_missing_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert rt.main(["--readme", str(readme), "--results", str(tmp_path), "--no-flops"]) == 2
    assert "results:start" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n"
