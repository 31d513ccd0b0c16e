"""Compile the fused kernel for Hopper (sm_90) without a GPU, with Triton's bundled ptxas.

The interpreter checks the kernel's arithmetic, not that Triton can lower it for a real GPU (e.g.
dot precisions, constexpr use, shared-memory budget). This compiles every dtype × entropy mode to a
cubin in a subprocess (the test process has TRITON_INTERPRET=1 set, which makes kernels
interpreter-only).
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from renyi_prune.kernels.attention_entropy_fwd import _attn_entropy_fwd_kernel as kernel

    PTR = {"Q", "K", "V", "Out"}
    STATS = {"Lse", "Ent"}
    FLOATS = {"qk_scale_log2", "alpha", "beta_ln2", "beta"}
    CONSTS = {"MODE", "UPCAST", "INPUT_PRECISION", "BLOCK_M", "BLOCK_N", "BLOCK_D"}

    def signature(dtype):
        def kind(name):
            if name in PTR:
                return "*" + dtype
            if name in STATS:
                return "*fp32"
            if name in FLOATS:
                return "fp32"
            return "constexpr" if name in CONSTS else "i32"
        return {name: kind(name) for name in kernel.arg_names}

    for dtype, upcast, precision in [("fp16", 0, "tf32"), ("bf16", 0, "tf32"), ("fp32", 1, "ieee")]:
        for mode in (1, 2, 3, 4, 5):
            consts = dict(MODE=mode, UPCAST=upcast, INPUT_PRECISION=precision, BLOCK_M=128, BLOCK_N=64,
                          BLOCK_D=128 if dtype == "fp32" else 64)
            src = ASTSource(fn=kernel, signature=signature(dtype), constexprs=consts)
            options = {"num_warps": 8, "num_stages": 2}
            compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
            assert compiled.asm["cubin"], (dtype, mode)
            assert compiled.metadata.shared <= 227 * 1024, (dtype, mode, compiled.metadata.shared)
    print("compiled OK")
    """
)


def test_fused_kernel_compiles_for_sm90():
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip("Triton's bundled ptxas is not available")
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "compiled OK" in res.stdout, res.stderr[-4000:]
