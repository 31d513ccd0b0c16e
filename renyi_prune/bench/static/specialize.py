"""Recording launches (worker side: TRITON_INTERPRET unset, kernels compiled, not interpreted).

**What is compiled is what a launch compiles.** A kernel's code depends on how the JIT specializes its
arguments at launch (an integer equal to 1 becomes a constant, one divisible by 16 and a 16-byte-aligned
pointer get a ``tt.divisibility`` attribute; that decides vectorized loads and software pipelining). So
the report does not declare a signature by hand: it makes Triton's driver report the target GPU (a
stand-in driver, no device touched), calls the package's own launchers on CPU stand-in tensors laid out
as timm lays them out, each autotuner held to one tile, and catches each launch in Triton's
``knobs.runtime.jit_cache_hook`` just before it would compile (:func:`_specialization`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import triton

from .cases import _DTYPES, SHAPE, Case, _tiles, _tuner
from .tutorial import _tutorial_attn_fwd


class _StandInDriver:
    """Triton's runtime driver as far as a launch needs it to specialize and compile: a GPU of
    capability ``arch`` (device number = ``arch``, so each arch gets its own JIT caches). Nothing runs."""

    def __init__(self, arch: int) -> None:
        self.arch = arch

    def get_current_target(self) -> Any:
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.arch, 32)

    def get_current_device(self) -> int:
        return self.arch

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


@contextlib.contextmanager
def _stand_in_gpu(arch: int, records: list | None = None) -> Iterator[None]:
    """Within: Triton targets ``arch``; with ``records``, every launch appends (JITFunction,
    specialization data) in the JIT cache hook and returns without compiling or running."""
    from triton import knobs
    from triton.runtime.driver import driver

    def hook(*, fn: Any, compile: dict, **_: Any) -> bool:
        records.append((fn.jit_function, compile["specialization_data"]))
        return True  # skip the compile and the launch

    saved = (driver._active, knobs.runtime.jit_cache_hook)
    driver.set_active(_StandInDriver(arch))
    knobs.runtime.jit_cache_hook = hook if records is not None else None
    try:
        yield
    finally:
        driver._active, knobs.runtime.jit_cache_hook = saved


@contextlib.contextmanager
def _one_tile(
    kernels: Sequence[str], tile: tuple[int, int, int, int] | None, arch: str | None = None
) -> Iterator[None]:
    """Within: the autotuners of ``kernels`` on ``arch`` (None: their default tile lists) hold only
    ``tile`` (their first tile if None), so that a launch compiles that one config instead of
    benchmarking all of them."""
    saved = []
    for kernel in kernels:
        tuner = _tuner(kernel, arch)
        saved.append((tuner, tuner.configs))
        tiles = _tiles(kernel, arch)  # a tile of dk/dv that dq lacks: dq (launched too) at its first
        tuner.configs = [tuner.configs[tiles.index(tile) if tile in tiles else 0]]
    try:
        yield
    finally:
        for tuner, configs in saved:
            tuner.configs = configs


def _stand_ins(case: Case) -> dict[str, Any]:
    """CPU tensors shaped and strided as in a timm ViT (DeiT-S, head dim ``case.head_dim``)."""
    import torch

    from ...kernels import ENT_MIN, entropy_mode

    B, N, H, D = SHAPE["B"], SHAPE["N"], SHAPE["H"], case.head_dim
    dtype = getattr(torch, _DTYPES[case.dtype])
    q, k, v = torch.empty(B, N, 3, H, D, dtype=dtype).permute(2, 0, 3, 1, 4).unbind(0)
    bnhd = [torch.empty(B, N, H, D, dtype=dtype).transpose(1, 2) for _ in range(2)]  # out, dO
    stats = [torch.empty(B, H, N) for _ in range(3)]  # lse, entropy, its gradient
    alpha = 1.0 if case.alpha is None else case.alpha
    argmax = torch.empty((B, H, N) if entropy_mode(alpha) == ENT_MIN else (0,), dtype=torch.int32)
    return dict(q=q, k=k, v=v, out=bnhd[0], dout=bnhd[1], lse=stats[0], ent=stats[1], gent=stats[2],
                argmax=argmax, scale=D**-0.5, alpha=alpha)  # fmt: skip


def _launch(case: Case) -> None:
    """Launch ``case``'s op through the package's launcher (the tutorial: its kernel) on stand-ins."""
    from ...kernels import attention_column_power_sum, attention_entropy_bwd, attention_entropy_fwd

    t = _stand_ins(case)
    if case.kernel == "fwd":
        attention_entropy_fwd(t["q"], t["k"], t["v"], t["scale"], t["alpha"])
    elif case.kernel in ("dkdv", "dq", "bwd_preprocess"):
        grad_ent = t["gent"] if case.ent_grad else None
        attention_entropy_bwd(t["dout"], grad_ent, t["q"], t["k"], t["v"], t["out"], t["lse"], t["ent"],
                              t["argmax"], t["scale"], t["alpha"])  # fmt: skip
    elif case.kernel == "colnorm":
        attention_column_power_sum(t["q"], t["k"], t["lse"], t["scale"], t["alpha"])
    else:
        _launch_tutorial(case, t)


def _launch_tutorial(case: Case, t: dict[str, Any]) -> None:
    q, k, v, out, lse = t["q"], t["k"], t["v"], t["out"], t["lse"]
    B, H, N, D = q.shape
    bm, bn, warps, stages = case.tile
    _tutorial_attn_fwd[(triton.cdiv(N, bm), B * H, 1)](
        q, k, v, t["scale"], lse, out, *q.stride(), *k.stride(), *v.stride(), *out.stride(), B, H, N,
        HEAD_DIM=D, BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages,
    )  # fmt: skip


_JIT_NAMES = {"fwd": "_attn_entropy_fwd_kernel", "dkdv": "_bwd_dkdv_kernel", "dq": "_bwd_dq_kernel",
              "bwd_preprocess": "_bwd_preprocess_kernel", "colnorm": "_attn_colnorm_kernel",
              "tutorial_fwd": "_tutorial_attn_fwd"}  # fmt: skip


def _specialization(case: Case) -> tuple[Any, str]:
    """(JITFunction, specialization data) of ``case``'s kernel as its launch specializes it; for mode
    ``none`` with the constant MODE set to ENT_NONE."""
    records: list = []
    with _stand_in_gpu(case.arch_number, records), _one_tile(_tuned_by(case), case.tile, case.arch):
        _launch(case)
    fn, data = next((fn, d) for fn, d in records if fn.fn.__name__ == _JIT_NAMES[case.kernel])
    if case.mode == "none" and "MODE" in fn.arg_names:
        spec = json.loads(data)
        mode_key = [fn.arg_names.index("MODE")]
        spec["constant_vals"][spec["constant_keys"].index(mode_key)] = 0
        data = json.dumps(spec)
    return fn, data


def _tuned_by(case: Case) -> tuple[str, ...]:
    """The autotuned launchers ``case``'s launch goes through (the backward launches dk/dv and dq)."""
    if case.kernel in ("fwd", "colnorm"):
        return (case.kernel,)
    return ("dkdv", "dq") if case.kernel in ("dkdv", "dq", "bwd_preprocess") else ()
