"""benchmarks/gpu_quick.py (``run_gpu.sh --quick``): budget line, stage files, time-outs, ``--plan``.

One ``--smoke`` run (CPU, Triton interpreter, ~15 s on an idle 2-core CPU) of the stages ``tests``,
``kernel-fwd`` (forced to time out) and ``e2e`` checks what a run writes; the plans run nothing.
"""

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_quick.py"
BUDGET = re.compile(r"^budget: (?P<items>.+) = (?P<total>\d+)s of (?P<cap>\d+)s cap")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _budget(stdout: str) -> tuple[dict[str, int], int, int]:
    """(stage → seconds, total, cap) of the budget line, which must be the first line of stdout."""
    first = stdout.splitlines()[0]
    m = BUDGET.match(first)
    assert m, f"first stdout line is not the budget line: {first!r}"
    items = dict(item.rsplit(" ", 1) for item in m["items"].split(" + "))
    return {k: int(v.rstrip("s")) for k, v in items.items()}, int(m["total"]), int(m["cap"])


def test_smoke_run_records_a_timed_out_stage_and_keeps_the_others(tmp_path):
    out = tmp_path / "quick"
    # the other stages get generous timeouts: their smoke budgets assume an idle CPU, not a loaded suite
    limits = ["--stage-timeout", "kernel-fwd=1", "--stage-timeout", "tests=200", "--stage-timeout", "e2e=200"]
    res = _run("--smoke", str(out), "--stages", "tests", "kernel-fwd", "e2e", *limits, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr  # one stage timed out

    items, total, cap = _budget(res.stdout)
    assert list(items) == ["plan", "tests", "kernel-fwd", "e2e"]
    assert sum(items.values()) == total <= cap == 480

    env = json.loads((out / "environment.json").read_text())
    for key in ("device", "torch", "triton", "timm", "cuda", "git_commit", "date", "stages", "budget_line"):
        assert key in env
    assert env["smoke"] is True and env["budget_line"] == res.stdout.splitlines()[0]
    assert [s["name"] for s in env["stages"]] == list(items)[1:]

    with open(out / "stages.csv", newline="") as f:
        rows = {r["stage"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["tests", "kernel-fwd", "e2e"]
    assert rows["kernel-fwd"]["status"] == "timed out" and rows["kernel-fwd"]["rc"] == ""
    assert rows["tests"]["status"] == rows["e2e"]["status"] == "ok", rows
    assert {int(r["budget_s"]) for r in rows.values()} <= set(items.values())
    assert float(rows["kernel-fwd"]["timeout_s"]) == 1.0

    # the stage before the time-out kept its files, the stages after it ran
    assert (out / "tests.xml").stat().st_size > 0 and (out / "tests.log").exists()
    assert len((out / "e2e.csv").read_text().splitlines()) >= 2 and (out / "e2e.log").exists()
    assert not (out / "kernel_fwd.csv").exists()
    assert "timed out" in res.stdout.splitlines()[-2]  # the summary: one line per stage


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_quick", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def _plan(capsys, *args: str) -> str:
    """``gpu_quick.py --plan ARGS`` in this process (cheap: torch and the package are imported)."""
    assert _load_script().main(["--plan", *args]) == 0
    return capsys.readouterr().out


def test_plan_prints_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    printed = _plan(capsys, "--smoke", str(out), "--stages", "kernel-fwd", "e2e")
    items, total, _ = _budget(printed)
    assert list(items) == ["plan", "kernel-fwd", "e2e"] and sum(items.values()) == total
    assert "bench_kernel.py --smoke" in printed and "bench_e2e.py --smoke" in printed
    assert not out.exists()


def test_gpu_plan_fits_the_cap_and_reduces_work_when_it_would_not(capsys):
    stages = ["--stages", "kernel-fwd", "kernel-fwdbwd", "e2e"]  # "tests" would collect the test files
    printed = _plan(capsys, "--device", "cuda", *stages)
    items, total, cap = _budget(printed)
    assert sum(items.values()) == total <= cap == 480
    assert "reductions to fit the cap: none" in printed
    assert "--seq 197 577 1025 --alpha 1 2 inf" in printed

    printed = _plan(capsys, "--device", "cuda", *stages, "--cap-s", "150")
    items, total, cap = _budget(printed)
    assert cap == 150 and sum(items.values()) == total
    assert "reductions to fit the cap: e2e --repeats 5" in printed
