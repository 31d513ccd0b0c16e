"""Compile the fused kernels (forward and backward) for Hopper (sm_90) without a GPU.

The interpreter checks the kernel's arithmetic, not that Triton can lower it for a real GPU (e.g.
dot precisions, constexpr use, shared-memory budget), with Triton's bundled ptxas. This compiles
each kernel, dtype and entropy mode at least once to a cubin, in a subprocess (the test process
has TRITON_INTERPRET=1 set, which makes kernels interpreter-only).
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
    from renyi_prune.kernels.attention_colnorm import _attn_colnorm_kernel
    from renyi_prune.kernels.attention_entropy_bwd import _bwd_dkdv_kernel, _bwd_dq_kernel
    from renyi_prune.kernels.attention_entropy_fwd import _attn_entropy_fwd_kernel

    PTR = {"Q", "K", "V", "Out", "DOut", "DQ", "DK", "DV"}
    STATS = {"Lse", "Ent", "Delta", "GEnt"}
    FLOATS = {"scale", "qk_scale_log2", "alpha", "beta_ln2", "beta"}
    CONSTS = {"MODE", "ENT_GRAD", "UPCAST", "INPUT_PRECISION", "BLOCK_M", "BLOCK_N", "BLOCK_D"}

    def signature(fn, dtype):
        def kind(name):
            if name in PTR:
                return "*" + dtype
            if name in STATS:
                return "*fp32"
            if name == "Argmax":
                return "*i32"
            if name in FLOATS:
                return "fp32"
            if name.startswith("stride_"):  # a tensor's (b, h, n, d) strides, passed as one tuple
                return ("i32",) * 4
            return "constexpr" if name in CONSTS else "i32"
        return {name: kind(name) for name in fn.arg_names}

    def compile_for_sm90(fn, dtype, consts, num_warps):
        consts = {name: val for name, val in consts.items() if name in fn.arg_names}
        src = ASTSource(fn=fn, signature=signature(fn, dtype), constexprs=consts)
        options = {"num_warps": num_warps, "num_stages": 2}
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
        assert compiled.asm["cubin"], (fn, dtype, consts)
        assert compiled.metadata.shared <= 227 * 1024, (fn, dtype, consts, compiled.metadata.shared)

    # (kernel, dtype, entropy modes, entropy gradient): every mode once, every dtype and kernel at least
    # once (each compile takes seconds, so not the whole product)
    CASES = [
        (_attn_entropy_fwd_kernel, "bf16", (1, 2, 3, 4, 5), 0),
        (_attn_entropy_fwd_kernel, "fp16", (4,), 0),
        (_attn_entropy_fwd_kernel, "fp32", (1,), 0),
        (_bwd_dkdv_kernel, "bf16", (2, 4), 1),
        (_bwd_dq_kernel, "bf16", (1, 5), 1),
        (_bwd_dkdv_kernel, "fp16", (1,), 0),
        (_bwd_dq_kernel, "fp32", (4,), 1),
        (_attn_colnorm_kernel, "fp32", (1,), 0),  # fp32: its output ("Out") is fp32 whatever the input
    ]
    PRECISION = {"fp16": (0, "tf32"), "bf16": (0, "tf32"), "fp32": (1, "ieee")}
    for fn, dtype, modes, ent_grad in CASES:
        upcast, precision = PRECISION[dtype]
        fwd = fn is _attn_entropy_fwd_kernel
        for mode in modes:
            consts = dict(MODE=mode, ENT_GRAD=ent_grad, UPCAST=upcast, INPUT_PRECISION=precision,
                          BLOCK_M=128 if fwd else 64, BLOCK_N=64, BLOCK_D=128 if dtype == "fp32" else 64)
            compile_for_sm90(fn, dtype, consts, 8 if fwd else 4)
    print("compiled OK")
    """
)


def test_fused_kernels_compile_for_sm90():
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip("Triton's bundled ptxas is not available")
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "compiled OK" in res.stdout, res.stderr[-4000:]
