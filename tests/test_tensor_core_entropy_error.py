"""The measurement behind keeping the Shannon sum on the FP pipe (benchmarks/tensor_core_entropy_error.py)."""

import importlib.util
from pathlib import Path

import torch

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tensor_core_entropy_error.py"


def _module():
    spec = importlib.util.spec_from_file_location("tensor_core_entropy_error", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fp32_sum_meets_the_bf16_tolerance_and_a_bf16_tensor_core_sum_does_not(tol):
    module = _module()
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(2, 2, 6, 197, 64, generator=g) * 3.0).bfloat16().unbind(0)
    errors = module.entropy_errors(q, k)
    bound = tol[torch.bfloat16]["ent"]
    assert errors["fp32 FFMA (the kernel)"].max() < bound / 4
    assert errors["tensor core, P in bf16, l from rounded P"].max() > 2 * bound
    assert errors["tensor core, P in bf16, l from fp32 P"].max() > 10 * bound


def test_script_writes_the_table(tmp_path):
    out = tmp_path / "table.md"
    assert _module().main(["--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("fp32 FFMA (the kernel)") == 3 and "torch " in text
