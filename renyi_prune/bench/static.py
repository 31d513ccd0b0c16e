"""Static kernel report: what the compiler makes of every kernel, without a GPU.

Compiles each Triton kernel of :mod:`renyi_prune.kernels` (forward; backward dk/dv, dq and its δ
preprocess; the column-norm pass) for every autotune tile, entropy mode, dtype and GPU architecture
(sm_90, sm_80, sm_86) with Triton's own compiler and bundled ``ptxas``/``cuobjdump``, and writes one CSV
row per compile: registers, spill bytes, shared memory, ptxas warnings, and the instructions of the main
loop (count and mix). Everything is a compile-time fact, not a timing; a CPU-only machine runs it.

**What is compiled is what a launch compiles.** A kernel's code depends on how the JIT specializes its
arguments at launch (an integer equal to 1 becomes a constant, one divisible by 16 and a 16-byte-aligned
pointer get a ``tt.divisibility`` attribute; that decides vectorized loads and software pipelining). So
the report does not declare a signature by hand: in a worker process it makes Triton's driver report the
target GPU (a stand-in driver, no device touched), calls the package's own launchers
(:func:`~renyi_prune.kernels.attention_entropy_fwd`, ``attention_entropy_bwd``,
``attention_column_power_sum``) on CPU stand-in tensors laid out as timm lays them out (q, k, v =
``qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``, outputs and dO in (B, N, H, D) memory order;
DeiT-S: N = 197, H = 6, D = 64), each autotuner held to one tile, and catches each launch in Triton's
``knobs.runtime.jit_cache_hook`` just before it would compile. The hook receives the JIT's
specialization of the launch (signature, constants, attributes, options), and
``JITFunction.preload`` compiles exactly that. Mode ``none`` (``MODE = ENT_NONE``: no entropy work, the
baseline; the op never launches it) is the Shannon launch with that one constant changed.

**The main loop** is read from the SASS (``cuobjdump -sass``): of the backward branches (``BRA`` to a
lower address), the one whose range holds the most MMA instructions (then the longest); its
instructions (``NOP`` padding excluded) are one iteration of the key-tile loop (forward, dq) or the
query-tile loop (dk/dv, column norms), as each warp executes it when no branch inside is taken. Opcodes
are classed by :func:`classify_opcode`.

**Extra MUFU per attention element** of a mode = (MUFU instructions in its loop − those in the loop of
mode ``none``, same kernel, tile, arch and dtype) × 32 lanes × num_warps / (BLOCK_M × BLOCK_N): the
special-function operations (exp2, log2, rcp, ...) an entropy mode adds per element of the BLOCK_M ×
BLOCK_N tile that one loop iteration handles (0 when the entropy reuses p = 2^x).

**Gates** (issue 12; sm_90, bf16, D = 64; :data:`GATES`): per mode the *best config* is the tile with the
fewest loop instructions per attention element (loop_instructions × num_warps / (BLOCK_M × BLOCK_N))
among those without spills; a mode's loop is compared with mode ``none``'s per attention element, each
at its best config. :func:`evaluate_gates` judges them; the Markdown summary lists them.

The forward loop of Triton's fused-attention tutorial is compiled for the same tiles as a reference
(kernel ``tutorial_fwd``; :func:`_tutorial_attn_fwd`, restated from triton-lang/triton,
``python/tutorials/06-fused-attention.py``, MIT license).

Usage (``renyi-prune bench static`` runs :func:`run`; ``benchmarks/static_report.py`` is a thin script)::

    renyi-prune bench static           # all kernels, sm_90 sm_80 sm_86, bf16 -> benchmarks/results/static/
    renyi-prune bench static --quick   # only what the gates need (sm_90), into a temp dir
    renyi-prune bench static --arch sm_90 --dtype bf16 fp16 --kernels fwd --out /tmp/static
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import triton
import triton.language as tl

from .._argtypes import UsageError, add_options, option, output_dir, positive_int
from .._io import atomic_open
from . import _common

__all__ = [
    "ARCHS",
    "CSV_COLUMNS",
    "GATES",
    "KERNELS",
    "Case",
    "Gate",
    "LoopStats",
    "add_arguments",
    "analyze_sass",
    "build_parser",
    "classify_opcode",
    "compile_cases",
    "enumerate_cases",
    "evaluate_gates",
    "gate_cases",
    "main",
    "parse_ptxas_log",
    "run",
    "wide_loads",
]

#: ``--arch`` names and their compute capability.
ARCHS = {"sm_90": 90, "sm_80": 80, "sm_86": 86}
#: Largest shared memory one block may use (bytes): 227 KiB (H100/H200), 163 KiB (A100), 99 KiB (sm_86).
SMEM_LIMIT = {90: 227 * 1024, 80: 163 * 1024, 86: 99 * 1024}
#: Kernels of the report: the package's five and the tutorial's forward (reference).
KERNELS = ("fwd", "dkdv", "dq", "bwd_preprocess", "colnorm", "tutorial_fwd")
#: Stand-in sizes: DeiT-S at 224 px (N = 197 tokens, 6 heads). B enters no stride, hence no specialization.
SHAPE = {"B": 4, "N": 197, "H": 6}
#: Entropy orders of the forward (mode name, α); ``none`` is MODE = ENT_NONE; α = 0.5, 2 and 3 share the
#: direct mode (each with its own fast path), α = 0.9 is the series mode of orders near 1.
FWD_ORDERS = (("none", None), ("shannon", 1.0), ("min", math.inf), ("support", 0.0), ("renyi_direct", 0.5),
              ("renyi_log1p", 0.9), ("renyi_direct", 2.0), ("renyi_direct", 3.0))  # fmt: skip
#: Column-norm orders (mode name, order n).
COLNORM_ORDERS = (("colnorm_power", 2.0), ("colnorm_max", math.inf))
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_MODE_NAMES = {0: "none", 1: "shannon", 2: "min", 3: "support", 4: "renyi_log1p", 5: "renyi_direct"}

CSV_COLUMNS = [
    "kernel", "arch", "dtype", "mode", "alpha", "ent_grad", "BLOCK_M", "BLOCK_N", "num_warps", "num_stages",
    "regs", "spill_stores", "spill_loads", "shared_bytes", "fits_smem", "loop_instructions", "mma", "mufu",
    "fp", "int", "pred", "mem", "sync", "other", "loop_instr_per_element", "extra_mufu_per_element",
    "loop_vs_none", "loop_vs_tutorial", "async_copies_in_loop", "wide_loads", "ptxas_warnings",
    "warning_codes", "sass_matches_triton", "head_dim", "triton", "ptxas", "git_commit", "date", "error",
]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the tutorial's forward loop (reference)


# Restated from the forward kernel of Triton's fused-attention tutorial (triton-lang/triton,
# python/tutorials/06-fused-attention.py, `_attn_fwd` with `_attn_fwd_inner`, non-causal; MIT license,
# Copyright 2018-2020 Philippe Tillet, 2020-2025 OpenAI): block-pointer loads without boundary checks
# (N a multiple of the tiles), online softmax in log2 units, P cast to V's dtype (the tutorial casts to
# fp16, which bf16 V does not take). Compiled only, never run: the reference loop of the gates.
@triton.jit
def _tutorial_attn_fwd(Q, K, V, sm_scale, M, Out,
                       stride_qz, stride_qh, stride_qm, stride_qk, stride_kz, stride_kh, stride_kn, stride_kk,
                       stride_vz, stride_vh, stride_vk, stride_vn, stride_oz, stride_oh, stride_om, stride_on,
                       Z, H, N_CTX,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    q_off = (off_hz // H).to(tl.int64) * stride_qz + (off_hz % H).to(tl.int64) * stride_qh
    kv_off = (off_hz // H).to(tl.int64) * stride_kz + (off_hz % H).to(tl.int64) * stride_kh
    v_off = (off_hz // H).to(tl.int64) * stride_vz + (off_hz % H).to(tl.int64) * stride_vh
    o_off = (off_hz // H).to(tl.int64) * stride_oz + (off_hz % H).to(tl.int64) * stride_oh
    Q_ptr = tl.make_block_ptr(Q + q_off, (N_CTX, HEAD_DIM), (stride_qm, stride_qk), (start_m * BLOCK_M, 0),
                              (BLOCK_M, HEAD_DIM), (1, 0))  # fmt: skip
    K_ptr = tl.make_block_ptr(K + kv_off, (HEAD_DIM, N_CTX), (stride_kk, stride_kn), (0, 0),
                              (HEAD_DIM, BLOCK_N), (0, 1))  # fmt: skip
    V_ptr = tl.make_block_ptr(V + v_off, (N_CTX, HEAD_DIM), (stride_vk, stride_vn), (0, 0),
                              (BLOCK_N, HEAD_DIM), (1, 0))  # fmt: skip
    O_ptr = tl.make_block_ptr(Out + o_off, (N_CTX, HEAD_DIM), (stride_om, stride_on), (start_m * BLOCK_M, 0),
                              (BLOCK_M, HEAD_DIM), (1, 0))  # fmt: skip
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504
    q = tl.load(Q_ptr)
    for start_n in range(0, N_CTX, BLOCK_N):  # the tutorial's _attn_fwd_inner, CAUSAL = False
        start_n = tl.multiple_of(start_n, BLOCK_N)
        qk = tl.dot(q, tl.load(K_ptr))
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        l_ij = tl.sum(p, 1)
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + l_ij
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(V.dtype.element_ty), tl.load(V_ptr), acc)
        m_i = m_ij
        V_ptr = tl.advance(V_ptr, (BLOCK_N, 0))
        K_ptr = tl.advance(K_ptr, (0, BLOCK_N))
    m_i += tl.math.log2(l_i)
    tl.store(M + off_hz * N_CTX + start_m * BLOCK_M + tl.arange(0, BLOCK_M), m_i)
    tl.store(O_ptr, (acc / l_i[:, None]).to(Out.type.element_ty))


# --------------------------------------------------------------------------------------------------
# cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One compile of the report: a kernel at one tile, entropy mode, dtype and architecture.

    ``tile`` is (BLOCK_M, BLOCK_N, num_warps, num_stages), None for the δ preprocess (one fixed launch);
    ``alpha`` the order the op is launched with (None for mode ``none``); ``ent_grad`` 0/1 for the
    backward kernels (whether the entropy is differentiated), None otherwise.

    Example:
        >>> Case("fwd", "sm_90", "bf16", "shannon", 1.0, None, (128, 64, 4, 3)).arch_number
        90
    """

    kernel: str
    arch: str
    dtype: str
    mode: str
    alpha: float | None
    ent_grad: int | None
    tile: tuple[int, int, int, int] | None
    head_dim: int = 64

    @property
    def arch_number(self) -> int:
        """The compute capability, e.g. 90 for ``sm_90``."""
        return ARCHS[self.arch]


def _tiles(kernel: str, arch: str | None = None) -> list[tuple[int, int, int, int]]:
    """The autotune tiles of ``kernel`` on ``arch`` (e.g. ``"sm_90"``; None: the default list) as its
    launcher declares them (the tutorial: the forward's)."""
    configs = _tuner(kernel if kernel != "tutorial_fwd" else "fwd", arch).configs
    return [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in configs]


def _tuner(kernel: str, arch: str | None) -> Any:
    """The autotuner a launch of ``kernel`` goes through on ``arch`` (None: the default tile list)."""
    return _launcher(kernel).tuner(None if arch is None else ARCHS[arch])


def _launcher(kernel: str) -> Any:
    """The :class:`~renyi_prune.kernels._common.TiledKernel` that launches ``kernel``."""
    import importlib

    module, name = {
        "fwd": ("attention_entropy_fwd", "_fwd_launch"),
        "dkdv": ("attention_entropy_bwd", "_dkdv_launch"),
        "dq": ("attention_entropy_bwd", "_dq_launch"),
        "colnorm": ("attention_colnorm", "_colnorm_launch"),
    }[kernel]
    return getattr(importlib.import_module(f"renyi_prune.kernels.{module}"), name)


def _orders(kernel: str, ent_grad: int | None) -> Sequence[tuple[str, float | None]]:
    if kernel == "colnorm":
        return COLNORM_ORDERS
    if kernel == "tutorial_fwd" or ent_grad == 0:
        return (("none", None),)
    return FWD_ORDERS if kernel == "fwd" else FWD_ORDERS[1:]


def enumerate_cases(
    archs: Sequence[str] = tuple(ARCHS),
    dtypes: Sequence[str] = ("bf16",),
    kernels: Sequence[str] = KERNELS,
    head_dim: int = 64,
) -> list[Case]:
    """Every (kernel, tile, mode, ent_grad) of ``kernels`` for each of ``archs`` and ``dtypes``.

    Forward: its tiles × modes ``none``, Shannon, min, support, Rényi α = 0.5, 0.9, 2, 3. Backward dk/dv and
    dq: their tiles × (``none`` without entropy gradient, and every order with it). Column norms: tiles ×
    orders 2 and ∞. The δ preprocess: one launch. The tutorial's forward: the forward's tiles (head dims
    that are powers of two only).

    Example:
        >>> cases = enumerate_cases(["sm_90"], ["bf16"], ["fwd"])
        >>> len(cases), cases[0].mode, sorted({c.mode for c in cases})[:3]
        (48, 'none', ['min', 'none', 'renyi_direct'])
        >>> len(enumerate_cases())  # the full default report: 147 compiles on sm_90, 131 on sm_80 and sm_86
        409
        >>> [len(enumerate_cases([arch], kernels=["dkdv", "dq"])) for arch in ARCHS]  # per-arch tile lists
        [80, 64, 64]
    """
    cases = []
    for arch in archs:
        for dtype in dtypes:
            for kernel in kernels:
                if kernel == "tutorial_fwd" and head_dim & (head_dim - 1):
                    continue  # the tutorial's blocks span the head dim: powers of two only
                if kernel == "bwd_preprocess":
                    cases.append(Case(kernel, arch, dtype, "none", None, None, None, head_dim))
                    continue
                grads = (0, 1) if kernel in ("dkdv", "dq") else (None,)
                for tile in _tiles(kernel, arch):
                    for ent_grad in grads:
                        for mode, alpha in _orders(kernel, ent_grad):
                            cases.append(Case(kernel, arch, dtype, mode, alpha, ent_grad, tile, head_dim))
    return cases


#: The forward tile the gate tests compile: the best config of every mode in the committed report for
#: Triton 3.6.0 (the report's gates take each mode's best over all tiles; rerun it when tiles change).
GATE_TILE = (128, 128, 8, 2)


def gate_cases(tile: tuple[int, int, int, int] | None = None) -> list[Case]:
    """The compiles the gates need at one forward tile (``tile``, default :data:`GATE_TILE`, or the
    forward's first tile if that is no longer one of its tiles): sm_90, bf16, forward in mode ``none``,
    Shannon, min, Rényi α = 0.5, 2, 3, the tutorial's forward at the same tile, and dk/dv at its largest
    key tile (the one that spills) with and without the entropy gradient (the C7515 and spill gates).

    Example:
        >>> [(c.kernel, c.mode) for c in gate_cases()][-3:]
        [('tutorial_fwd', 'none'), ('dkdv', 'none'), ('dkdv', 'shannon')]
        >>> gate_cases()[0].tile, gate_cases()[-1].tile
        ((128, 128, 8, 2), (64, 128, 8, 2))
    """
    if tile is None:
        tile = GATE_TILE if GATE_TILE in _tiles("fwd") else _tiles("fwd")[0]
    orders = [(mode, alpha) for mode, alpha in FWD_ORDERS if mode not in ("support", "renyi_log1p")]
    fwd = [Case("fwd", "sm_90", "bf16", mode, alpha, None, tile) for mode, alpha in orders]
    dkdv_tile = max(_tiles("dkdv", "sm_90"), key=lambda t: (t[1], t[0]))
    return [
        *fwd,
        Case("tutorial_fwd", "sm_90", "bf16", "none", None, None, tile),
        Case("dkdv", "sm_90", "bf16", "none", None, 0, dkdv_tile),
        Case("dkdv", "sm_90", "bf16", "shannon", 1.0, 1, dkdv_tile),
    ]


# --------------------------------------------------------------------------------------------------
# SASS and ptxas output


_SASS_LINE = re.compile(
    r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P(?:T|\d+)\s+)?"  # address, guard predicate
    r"([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)[^;]*;"  # opcode with its modifiers, operands
)
_BRANCH_TARGET = re.compile(r"\bBRA\s+(?:\S+\s+)?`?\(?(?:\.L_x_\d+)?\)?\s*0x([0-9a-f]+)")

_OPCODE_CLASSES = {
    "mma": "HGMMA HMMA IMMA DMMA QGMMA IGMMA BGMMA",
    "mufu": "MUFU",
    "fp": "FFMA FADD FMUL FMNMX FSEL FSET FSWZADD FRND F2F F2FP F2I I2F I2FP F2IP HADD2 HMUL2 HFMA2 HMNMX2 "
          "HSET2 DADD DMUL DFMA",
    "int": "IADD3 IADD IADD32I IMAD IMUL LOP3 LOP SHF SHL SHR LEA IABS IMNMX VIADD VIMNMX SGXT BMSK BREV FLO "
           "POPC PRMT SEL IDP ISCADD",
    "pred": "ISETP FSETP PSETP PLOP3 P2R R2P HSETP2 DSETP VOTE VOTEU FCHK ELECT UP2UR UR2UP",
    "mem": "LDG STG LDS STS LDSM STSM LDGSTS LD ST LDL STL ATOM ATOMG ATOMS RED REDG LDC ULDC UTMALDG "
           "UTMASTG UTMAPF UTMACCTL UBLKCP CCTL",
    "sync": "BAR SYNCS WARPGROUP DEPBAR LDGDEPBAR MEMBAR WARPSYNC BSSY BSYNC ERRBAR FENCE ARRIVES "
            "UCGABAR_ARV UCGABAR_WAIT NANOSLEEP USETMAXREG",
}  # fmt: skip
_OPCODE_CLASS = {op: cls for cls, ops in _OPCODE_CLASSES.items() for op in ops.split()}
#: Instruction classes of the loop mix, in CSV order.
CLASSES = ("mma", "mufu", "fp", "int", "pred", "mem", "sync", "other")


def classify_opcode(opcode: str) -> str:
    """The class of a SASS opcode (modifiers ignored): ``mma`` (HGMMA, HMMA, ...), ``mufu``, ``fp`` (FFMA,
    FADD, FMUL, FMNMX, FSEL, conversions F2F/F2FP/I2F, half2 arithmetic), ``int`` (IADD3, IMAD, LOP3, SHF,
    LEA, SEL, PRMT, ...), ``pred`` (ISETP, FSETP, PLOP3, P2R/R2P, VOTE), ``mem`` (global/shared/constant
    loads and stores, LDGSTS, LDSM, TMA), ``sync`` (BAR, SYNCS mbarriers, WARPGROUP, DEPBAR, BSSY/BSYNC)
    or ``other`` (moves, shuffles, special registers, branches). Uniform-datapath opcodes (``U`` prefix)
    go with their vector twins (UIADD3 → int).

    Example:
        >>> ops = ("HGMMA.64x64x16.F32.BF16", "MUFU.EX2", "FMNMX", "UIADD3", "ISETP.GE.AND", "LDGSTS.E.128")
        >>> [classify_opcode(op) for op in ops]
        ['mma', 'mufu', 'fp', 'int', 'pred', 'mem']
        >>> [classify_opcode(op) for op in ("SYNCS.ARRIVE.TRANS64", "SHFL.BFLY", "MOV")]
        ['sync', 'other', 'other']
    """
    base = opcode.split(".", 1)[0]
    if base in _OPCODE_CLASS:
        return _OPCODE_CLASS[base]
    if base.startswith("U") and base[1:] in _OPCODE_CLASS:
        return _OPCODE_CLASS[base[1:]]
    return "other"


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """The main loop of a kernel's SASS: its address range, instruction count (NOPs excluded) and mix.

    Example:
        >>> LoopStats(0x100, 0x120, 3, {"mma": 1, "mufu": 1, "other": 1}).classes["mma"]
        1
    """

    start: int
    end: int
    instructions: int
    classes: dict[str, int]
    async_copies: int = 0


#: Asynchronous global → shared copies (cp.async, TMA): in the main loop they show software pipelining.
_ASYNC_COPIES = ("LDGSTS", "UTMALDG", "UBLKCP")


def wide_loads(sass: str) -> int:
    """Number of 128-bit global loads (``LDG.E.128``, ``LDGSTS....128``) and TMA copies (``UTMALDG``) in
    ``cuobjdump -sass`` text: nonzero when the JIT's specialization let the loads vectorize.

    Example:
        >>> sass = '''
        ...   /*0010*/  LDGSTS.E.BYPASS.LTC128B.128 [R1], desc[UR4][R2.64] ;
        ...   /*0020*/  LDG.E.U16 R3, desc[UR4][R4.64] ;
        ... '''
        >>> wide_loads(sass)
        1
    """
    return sum(op.startswith("UTMALDG") or (op.split(".")[0] in ("LDG", "LDGSTS") and op.endswith(".128"))
               for _, op, _ in _sass_instructions(sass))  # fmt: skip


def _sass_instructions(sass: str) -> list[tuple[int, str, str]]:
    """(address, opcode with its modifiers, line) of each instruction of ``cuobjdump -sass`` text."""
    out = []
    for line in sass.splitlines():
        m = _SASS_LINE.search(line)
        if m:
            out.append((int(m.group(1), 16), m.group(2), line))
    return out


def analyze_sass(sass: str) -> LoopStats | None:
    """The main loop of ``cuobjdump -sass`` text: the backward branch whose range [target, branch] holds
    the most MMA instructions (then the longest range), with its instructions counted by class
    (:func:`classify_opcode`, ``NOP`` excluded). None if the code has no backward branch.

    Example:
        >>> sass = '''
        ...   /*0000*/  MOV R1, c[0x0][0x28] ;
        ...   /*0010*/  HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], RZ ;
        ...   /*0020*/  MUFU.EX2 R3, R2 ;
        ...   /*0030*/  NOP ;
        ...   /*0040*/  @P0 BRA 0x10 ;
        ...   /*0050*/  EXIT ;
        ... '''
        >>> loop = analyze_sass(sass)
        >>> loop.start, loop.end, loop.instructions
        (16, 64, 3)
        >>> loop.classes["mma"], loop.classes["mufu"], loop.classes["other"]
        (1, 1, 1)
        >>> analyze_sass("/*0000*/ EXIT ;") is None
        True
    """
    instrs = [(a, op.split(".")[0], op, line) for a, op, line in _sass_instructions(sass)]
    best: tuple[tuple[int, int], LoopStats] | None = None
    for addr, base, _, line in instrs:
        target = _BRANCH_TARGET.search(line) if base == "BRA" else None
        if target is None or int(target.group(1), 16) >= addr:  # forward, or the trap `BRA .` after EXIT
            continue
        start = int(target.group(1), 16)
        body = [(b, op) for a, b, op, _ in instrs if start <= a <= addr and b != "NOP"]
        classes = dict.fromkeys(CLASSES, 0)
        for _, op in body:
            classes[classify_opcode(op)] += 1
        copies = sum(b in _ASYNC_COPIES for b, _ in body)
        rank = (classes["mma"], addr - start)
        if best is None or rank > best[0]:
            best = (rank, LoopStats(start, addr, len(body), classes, copies))
    return None if best is None else best[1]


def parse_ptxas_log(log: str) -> dict[str, Any]:
    """Registers, spill bytes and diagnostics from ``ptxas -v`` output.

    Diagnostics are the ``ptxas warning`` messages and the coded performance advisories ptxas prints as
    ``info`` (e.g. ``(C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized``).

    Returns:
        ``regs``, ``spill_stores``, ``spill_loads`` (bytes; None when absent), ``ptxas_warnings`` (the
        distinct diagnostic texts joined by `` | ``) and ``warning_codes`` (e.g. ``C7515``, space-separated).

    Example:
        >>> log = '''ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are
        ... serialized due to non wgmma instructions defining accumulator registers of a wgmma
        ... ptxas info    : Function properties for k
        ...     0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
        ... ptxas info    : Used 255 registers, used 1 barriers'''
        >>> info = parse_ptxas_log(log)
        >>> info["regs"], info["spill_stores"], info["spill_loads"], info["warning_codes"]
        (255, 8, 12, 'C7515')
    """
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    warnings = []
    for block in re.split(r"(?=ptxas (?:info|warning|error|fatal))", log):
        text = " ".join(block.split())
        diagnostic = text.startswith("ptxas warning") or re.search(r"\(C\d{4}\)", text)
        if diagnostic and text not in warnings:
            warnings.append(text)
    codes = sorted({c for w in warnings for c in re.findall(r"\((C\d{4})\)", w)})
    return {
        "regs": int(regs.group(1)) if regs else None,
        "spill_stores": int(spills.group(1)) if spills else None,
        "spill_loads": int(spills.group(2)) if spills else None,
        "ptxas_warnings": " | ".join(warnings),
        "warning_codes": " ".join(codes),
    }


# --------------------------------------------------------------------------------------------------
# recording launches (worker side: TRITON_INTERPRET unset, kernels compiled, not interpreted)


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

    from ..kernels import ENT_MIN, entropy_mode

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
    from ..kernels import attention_column_power_sum, attention_entropy_bwd, attention_entropy_fwd

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


def _tool(name: str) -> str:
    """Path of Triton's bundled NVIDIA tool ``name`` (ptxas, cuobjdump)."""
    from triton import knobs

    return getattr(knobs.nvidia, name).path


def _ptxas(ptx: str, arch: int, options: Any) -> tuple[str, bytes]:
    """(log, cubin) of Triton's own ptxas command for ``ptx`` (``-lineinfo -v --gpu-name=sm_XXa``), rerun
    to keep its log, which Triton discards (and which a cached compile never had)."""
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        fmad = [] if options.enable_fp_fusion else ["--fmad=false"]
        extra = options.ptx_options.split(" ") if options.ptx_options else []
        gpu = f"--gpu-name={sm_arch_from_capability(arch)}"
        cmd = [_tool("ptxas"), "-lineinfo", *fmad, "-v", *extra, gpu, str(src), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return res.stdout + res.stderr, out.read_bytes()


def _sass(cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return subprocess.run([_tool("cuobjdump"), "-sass", str(path)], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip


def _compile(case: Case, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measured columns of ``case``: compile its launch's specialization, rerun ptxas, read the
    SASS. Identical specializations (e.g. α = 2 and 3) are compiled once (``cache``)."""
    fn, data = _specialization(case)
    if data not in cache:
        with _stand_in_gpu(case.arch_number):
            compiled = fn.preload(data)
        fn.device_caches[case.arch_number][0].clear()  # a later launch must reach the hook, not this kernel
        meta = compiled.metadata
        log, cubin = _ptxas(compiled.asm["ptx"], case.arch_number, meta)
        sass = _sass(cubin)
        loop = analyze_sass(sass)
        consts = _constants(fn, data)
        cache[data] = {
            "BLOCK_M": consts.get("BLOCK_M"), "BLOCK_N": consts.get("BLOCK_N"),
            "num_warps": meta.num_warps, "num_stages": meta.num_stages, "shared_bytes": meta.shared,
            "fits_smem": meta.shared <= SMEM_LIMIT[case.arch_number],
            "sass_matches_triton": cubin == compiled.asm["cubin"] or sass == _sass(compiled.asm["cubin"]),
            "wide_loads": wide_loads(sass),
            **parse_ptxas_log(log),
            **_loop_columns(loop, consts.get("BLOCK_M"), consts.get("BLOCK_N"), meta.num_warps),
        }  # fmt: skip
    return dict(cache[data])


def _constants(fn: Any, data: str) -> dict[str, Any]:
    """The scalar constexprs of a specialization, by argument name (e.g. BLOCK_M, MODE)."""
    spec = json.loads(data)
    pairs = zip(spec["constant_keys"], spec["constant_vals"], strict=True)
    return {fn.arg_names[key[0]]: val for key, val in pairs if len(key) == 1}


def _loop_columns(loop: LoopStats | None, bm: int | None, bn: int | None, warps: int) -> dict[str, Any]:
    if loop is None:
        return {}
    per_element = loop.instructions * warps / (bm * bn) if bm and bn else None
    return {"loop_instructions": loop.instructions, **loop.classes, "loop_instr_per_element": per_element,
            "async_copies_in_loop": loop.async_copies}


def _worker() -> None:
    """Worker process: read a JSON list of :class:`Case` fields on stdin, write one JSON row per case on
    stdout (as soon as it is done: the parent shows progress). A failed compile gives a row with
    ``error``."""
    cases = [Case(**{**c, "tile": tuple(c["tile"]) if c["tile"] else None}) for c in json.load(sys.stdin)]
    cache: dict[str, dict[str, Any]] = {}
    for case in cases:
        try:
            row = _compile(case, cache)
        except Exception as exc:  # noqa: BLE001 - reported in the row; the other cases go on
            row = {"error": _common.first_line(exc)}
        print(json.dumps({**_case_columns(case), **row}), flush=True)


def _case_columns(case: Case) -> dict[str, Any]:
    bm, bn, warps, stages = case.tile or (None, None, None, None)
    return {"kernel": case.kernel, "arch": case.arch, "dtype": case.dtype, "mode": case.mode,
            "alpha": case.alpha, "ent_grad": case.ent_grad, "BLOCK_M": bm, "BLOCK_N": bn,
            "num_warps": warps, "num_stages": stages, "head_dim": case.head_dim}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# compiling in worker processes (parent side)


def _worker_env() -> dict[str, str]:
    """The environment of a worker: without TRITON_INTERPRET (under it ``@triton.jit`` makes
    interpreter-only functions at import), this checkout first on the path, one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(_common.PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _split(cases: Sequence[Case], jobs: int) -> list[list[int]]:
    """Indices of ``cases`` in ``jobs`` balanced groups; cases that differ only in α stay together (an
    identical specialization is compiled once per worker)."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault((c.kernel, c.arch, c.dtype, c.tile, c.ent_grad, c.head_dim, c.mode), []).append(i)
    shares: list[list[int]] = [[] for _ in range(max(1, jobs))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(shares, key=len).extend(group)
    return [sorted(s) for s in shares if s]


def _run_worker(cases: Sequence[Case], on_row: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Compile ``cases`` in one worker process; its rows in order (``on_row`` sees each as it comes)."""
    cmd = [sys.executable, "-c", "from renyi_prune.bench.static import _worker; _worker()"]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=_worker_env())  # fmt: skip
        try:
            proc.stdin.write(json.dumps([dataclasses.asdict(c) for c in cases]))
            proc.stdin.close()
            rows = []
            for line in proc.stdout:
                rows.append(json.loads(line))
                on_row(rows[-1])
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        if proc.returncode != 0 or len(rows) != len(cases):
            tail = " ".join(err.read().strip().splitlines()[-3:])
            raise RuntimeError(f"static report worker exited with code {proc.returncode}: {tail}")
    return rows


def compile_cases(
    cases: Sequence[Case], jobs: int = 1, on_row: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Compile every case in ``jobs`` worker processes; one row per case, in the order of ``cases``.

    A row has the case's columns (kernel, arch, dtype, mode, alpha, ent_grad, tile) and the measured ones:
    regs, spill_stores/spill_loads (bytes), shared_bytes, fits_smem, the main loop's instruction count and
    mix, loop_instr_per_element, ptxas_warnings/warning_codes, sass_matches_triton (the rerun ptxas gave
    Triton's machine code: the same cubin, or the same SASS where only the source files' timestamps in the
    line table differ); a failed compile has ``error`` instead. Workers run without
    TRITON_INTERPRET whatever this process has.

    Example:
        >>> row, = compile_cases([Case("bwd_preprocess", "sm_80", "bf16", "none", None, None, None)])
        >>> row["kernel"], row["regs"] > 0, row["spill_stores"], row["error"], row["sass_matches_triton"]
        ('bwd_preprocess', True, 0, None, True)
    """
    import threading

    lock = threading.Lock()
    results: dict[int, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def work(indices: list[int]) -> None:
        def seen(row: dict[str, Any]) -> None:
            if on_row is not None:
                with lock:
                    on_row(row)

        try:
            results.update(zip(indices, _run_worker([cases[i] for i in indices], seen), strict=True))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in _split(cases, jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    rows = [{c: None for c in CSV_COLUMNS} | results[i] for i in range(len(cases))]
    _derive(rows)
    return rows


# --------------------------------------------------------------------------------------------------
# derived columns, gates


def _same_build(row: dict[str, Any]) -> tuple:
    return (row["arch"], row["dtype"], row["head_dim"], row["BLOCK_M"], row["BLOCK_N"], row["num_warps"],
            row["num_stages"])  # fmt: skip


def _derive(rows: list[dict[str, Any]]) -> None:
    """Fill ``extra_mufu_per_element`` and ``loop_vs_none`` (against mode ``none`` of the same kernel and
    build) and ``loop_vs_tutorial`` (forward rows, against the tutorial at the same build)."""
    tiled = [r for r in rows if r["loop_instructions"] and r["BLOCK_M"] and r["BLOCK_N"]]
    none = {(r["kernel"], *_same_build(r)): r for r in tiled if r["mode"] == "none"}
    for r in tiled:
        base = none.get((r["kernel"], *_same_build(r)))
        tut = none.get(("tutorial_fwd", *_same_build(r))) if r["kernel"] == "fwd" else None
        if base is not None:
            r["loop_vs_none"] = r["loop_instructions"] / base["loop_instructions"]
            extra = (r["mufu"] - base["mufu"]) * 32 * r["num_warps"] / (r["BLOCK_M"] * r["BLOCK_N"])
            r["extra_mufu_per_element"] = extra
        if tut is not None:
            r["loop_vs_tutorial"] = r["loop_instructions"] / tut["loop_instructions"]


@dataclasses.dataclass(frozen=True)
class Gate:
    """One gate of issue 12, judged on the sm_90, bf16, D = 64 rows of a report.

    ``kind``: ``loop`` (per attention element, the forward loop of mode (``mode``, ``alpha``) at its best
    config over mode ``none``'s at its best config), ``tutorial`` (mode ``none``'s forward loop at its best
    config over the tutorial's loop at the same tile), ``mufu`` (extra MUFU per attention element of the
    mode at its best config), ``c7515`` (builds of ``kernel`` with ptxas advisory C7515, 'wgmma
    serialized') or ``spills`` (builds of ``kernel`` that spill). Passed when the value is ≤ ``limit``.

    Example:
        >>> Gate("shannon_loop", "loop", 1.10, mode="shannon", alpha=1.0).limit
        1.1
    """

    name: str
    kind: str
    limit: float
    mode: str = "none"
    alpha: float | None = None
    kernel: str = "fwd"


#: The gates of issue 12 (sm_90, bf16, D = 64, best config per mode).
GATES = (
    Gate("shannon_loop", "loop", 1.10, "shannon", 1.0),
    Gate("min_loop", "loop", 1.10, "min", math.inf),
    Gate("renyi_a2_loop", "loop", 1.10, "renyi_direct", 2.0),
    Gate("renyi_a3_loop", "loop", 1.10, "renyi_direct", 3.0),
    Gate("renyi_a0.5_loop", "loop", 1.35, "renyi_direct", 0.5),
    Gate("none_vs_tutorial", "tutorial", 1.05),
    Gate("shannon_mufu", "mufu", 0.0, "shannon", 1.0),
    Gate("renyi_a2_mufu", "mufu", 0.0, "renyi_direct", 2.0),
    Gate("renyi_a3_mufu", "mufu", 0.0, "renyi_direct", 3.0),
    Gate("min_mufu", "mufu", 0.0, "min", math.inf),
    *(Gate(f"no_c7515_{k}", "c7515", 0, kernel=k) for k in ("fwd", "dkdv", "dq", "colnorm")),
    *(Gate(f"no_spills_{k}", "spills", 0, kernel=k) for k in ("fwd", "dkdv", "dq", "colnorm")),
)


def _gate_rows(rows: Sequence[dict[str, Any]], kernel: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["kernel"] == kernel and r["arch"] == "sm_90" and r["dtype"] == "bf16"
            and r["head_dim"] == 64 and not r["error"]]  # fmt: skip


def _best(rows: Sequence[dict[str, Any]], mode: str, alpha: float | None) -> dict[str, Any] | None:
    """The forward row of (``mode``, ``alpha``) with the fewest loop instructions per attention element
    among builds that neither spill nor exceed shared memory (the first such tile on a tie)."""
    fits = [r for r in _gate_rows(rows, "fwd") if r["mode"] == mode and r["alpha"] == alpha
            and r["loop_instr_per_element"] and not r["spill_stores"] and r["fits_smem"]]  # fmt: skip
    return min(fits, key=lambda r: r["loop_instr_per_element"], default=None)


def _tile(row: dict[str, Any]) -> str:
    return f"{row['BLOCK_M']}x{row['BLOCK_N']}, {row['num_warps']} warps, {row['num_stages']} stages"


def _measure(gate: Gate, rows: Sequence[dict[str, Any]]) -> tuple[float | None, str]:
    """(value, how it was measured) of ``gate``; value None when ``rows`` lack what it needs."""
    if gate.kind in ("c7515", "spills"):
        builds = _gate_rows(rows, gate.kernel)
        c7515 = gate.kind == "c7515"
        bad = [r for r in builds if ("C7515" in r["warning_codes"] if c7515 else r["spill_stores"])]
        what = "with C7515" if c7515 else "spilling"
        return (len(bad) if builds else None), f"{len(bad)} of {len(builds)} sm_90 builds {what}"
    best, none = _best(rows, gate.mode, gate.alpha), _best(rows, "none", None)
    if gate.kind == "mufu":
        value = None if best is None else best["extra_mufu_per_element"]
        return value, "" if best is None else f"at {_tile(best)}: {best['mufu']} MUFU in the loop"
    if gate.kind == "tutorial":
        tutorials = {_same_build(r): r for r in _gate_rows(rows, "tutorial_fwd")}
        tut = tutorials.get(_same_build(none)) if none is not None else None
        if tut is None:
            return None, ""
        detail = f"{none['loop_instructions']} vs {tut['loop_instructions']} instructions at {_tile(none)}"
        return none["loop_instructions"] / tut["loop_instructions"], detail
    if best is None or none is None:
        return None, ""
    value = best["loop_instr_per_element"] / none["loop_instr_per_element"]
    detail = f"{best['loop_instructions']} instructions at {_tile(best)} vs {none['loop_instructions']} at "
    return value, detail + _tile(none)


def evaluate_gates(rows: Sequence[dict[str, Any]], gates: Sequence[Gate] = GATES) -> list[dict[str, Any]]:
    """Judge ``gates`` on report rows (as :func:`compile_cases` returns them, after the derived columns).

    Returns:
        One dict per gate: ``gate`` (its name), ``value``, ``limit``, ``passed`` (None when the rows lack
        the builds the gate needs) and ``detail`` (the numbers behind the value).

    Example:
        >>> evaluate_gates([], GATES[:1])
        [{'gate': 'shannon_loop', 'value': None, 'limit': 1.1, 'passed': None, 'detail': 'not measured'}]
    """
    out = []
    for gate in gates:
        value, detail = _measure(gate, rows)
        passed = None if value is None else value <= gate.limit + 1e-12
        out.append({"gate": gate.name, "value": value, "limit": gate.limit, "passed": passed,
                    "detail": detail if value is not None else "not measured"})  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# output


def _ptxas_version() -> str:
    out = subprocess.run([_tool("ptxas"), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"V(\d+\.\d+\.\d+)", out)
    return found.group(1) if found else ""


def _md_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> list[str]:
    def cell(v: object) -> str:
        return "–" if v is None or v == "" else (f"{v:.3g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]


def _gate_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    verdict = {True: "pass", False: "**FAIL**", None: "not measured"}
    body = [(r["gate"], r["value"], r["limit"], verdict[r["passed"]], r["detail"]) for r in results]
    return _md_table(("gate", "value", "limit", "result", "measured"), body)


def _mode_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    body = []
    for mode, alpha in FWD_ORDERS:
        r = _best(rows, mode, alpha)
        if r is not None:
            cols = ("regs", "loop_instructions", "loop_instr_per_element", "mma", "mufu", "fp", "int", "pred",
                    "extra_mufu_per_element", "loop_vs_none", "loop_vs_tutorial")
            body.append((mode, alpha, _tile(r), *(r[c] for c in cols)))
    header = ("mode", "α", "best tile", "regs", "loop instr", "per element", "MMA", "MUFU", "FP", "int",
              "pred", "extra MUFU/element", "vs none", "vs tutorial")  # fmt: skip
    return _md_table(header, body)


def _kernel_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    body = []
    keys = dict.fromkeys((r["kernel"], r["arch"], r["dtype"]) for r in rows)
    for kernel, arch, dtype in keys:
        rs = [r for r in rows if (r["kernel"], r["arch"], r["dtype"]) == (kernel, arch, dtype)]
        rs = [r for r in rs if not r["error"]]
        loops = [r["loop_instructions"] for r in rs if r["loop_instructions"]]
        spills = [r["spill_stores"] or 0 for r in rs]
        body.append((
            kernel, arch, dtype, len(rs), max((r["regs"] for r in rs), default=None),
            sum(s > 0 for s in spills), max(spills, default=None), sum(not r["fits_smem"] for r in rs),
            sum("C7515" in r["warning_codes"] for r in rs), f"{min(loops)}–{max(loops)}" if loops else None,
        ))  # fmt: skip
    header = ("kernel", "arch", "dtype", "builds", "max regs", "builds spilling", "max spill stores (B)",
              "builds over smem", "builds with C7515", "loop instr")  # fmt: skip
    return _md_table(header, body)


def _markdown(rows: Sequence[dict[str, Any]], csv_name: str) -> str:
    """The Markdown summary of a report: its stamp, the gates, the forward's modes at their best tiles
    (sm_90, bf16), and per kernel, arch and dtype the registers, spills, shared memory and C7515 counts."""
    first = rows[0] if rows else {}
    errors = [r for r in rows if r["error"]]
    lines = [
        f"# Static kernel report: Triton {first.get('triton', '')}, ptxas {first.get('ptxas', '')}", "",
        f"Compile-time facts, not timings; `renyi-prune bench static` ({first.get('date', '')}, commit "
        f"{first.get('git_commit') or '?'}). Every row: [`{csv_name}`]({csv_name}). Stand-in inputs: timm's "
        f"q/k/v views at N = {SHAPE['N']}, H = {SHAPE['H']}; see `benchmarks/README.md` for the definitions.",
        "", "## Gates (issue 12: sm_90, bf16, D = 64, best config per mode)", "",
        *_gate_lines(evaluate_gates(rows)), "",
        "## Forward, each mode at its best tile (sm_90, bf16)", "", *_mode_lines(rows), "",
        "## Registers, spills, shared memory and C7515 per kernel", "", *_kernel_lines(rows), "",
    ]  # fmt: skip
    if errors:
        failed = [f"- {r['kernel']} {r['arch']} {r['dtype']} {r['mode']}: {r['error']}" for r in errors]
        lines += ["## Failed compiles", "", *failed, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# command line


DESCRIPTION = (
    "static kernel report: registers, spills, shared memory, main-loop instructions and ptxas "
    "warnings of every kernel x tile x entropy mode x arch, compiled on the CPU (no GPU needed)"
)


def _head_dim(text: str) -> int:
    d = positive_int(text)
    if not 16 <= d <= 128:
        raise argparse.ArgumentTypeError(f"head dim must be in [16, 128], got {text}")
    return d


def _options() -> list:
    return [
        option("--arch", f"GPU architectures among {', '.join(ARCHS)} (default: all)", metavar="ARCH",
               nargs="+", choices=list(ARCHS)),
        option("--dtype", f"input dtypes among {', '.join(_DTYPES)} (default: bf16)", metavar="DTYPE",
               nargs="+", choices=list(_DTYPES)),
        option("--kernels", f"kernels among {', '.join(KERNELS)} (default: all; tutorial_fwd is the Triton "
               "tutorial's forward, the reference of the gates)", metavar="KERNEL", nargs="+",
               choices=list(KERNELS)),
        option("--head-dim", "head dim D of the stand-in inputs, 16 to 128 (default: 64, DeiT-S)", _head_dim,
               metavar="D"),
        option("--quick", "only the compiles the gate tests need (sm_90, bf16, forward at 128x128 with 8 "
               "warps, the tutorial's forward, dk/dv); written under the system temp dir",
               action="store_true"),
        option("--jobs", "worker processes (default: the CPU count, at most 8)", positive_int, metavar="N"),
        option("--out", "output folder (default: benchmarks/results/static/; with --quick "
               f"{_common.SMOKE_DIR / 'static'})", output_dir, metavar="DIR"),
        option("--quiet", "no progress lines", action="store_true"),
    ]  # fmt: skip


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The report's standalone parser (``python -m renyi_prune.bench.static``).

    Example:
        >>> args = build_parser().parse_args(["--arch", "sm_90", "--kernels", "fwd", "dkdv", "--jobs", "2"])
        >>> args.arch, args.kernels, args.dtype, args.quick, args.jobs
        (['sm_90'], ['fwd', 'dkdv'], None, False, 2)
    """
    return _common.build_parser(prog, DESCRIPTION, _options())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The report's options, on any parser (e.g. the ``renyi-prune bench static`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench static")
        >>> add_arguments(p)
        >>> p.parse_args(["--quick", "--out", "/tmp/static"]).quick
        True
    """
    add_options(p, _options())


def _selection(args: argparse.Namespace) -> tuple[list[Case], str]:
    """The cases the options ask for and the file stem of their outputs (``triton-<version>`` for the
    default selection, with what differs from it appended)."""
    chosen = {"arch": args.arch, "dtype": args.dtype, "kernels": args.kernels, "head_dim": args.head_dim}
    stem = f"triton-{triton.__version__}"
    if args.quick:
        given = [f"--{k.replace('_', '-')}" for k, v in chosen.items() if v is not None]
        if given:
            raise UsageError(f"--quick compiles the gates' fixed set; it takes no {', '.join(given)}")
        return gate_cases(), stem + "-quick"
    archs, dtypes = args.arch or list(ARCHS), args.dtype or ["bf16"]
    kernels, head_dim = args.kernels or list(KERNELS), args.head_dim or 64
    for given, default in ((archs, list(ARCHS)), (dtypes, ["bf16"]), (kernels, list(KERNELS))):
        if list(dict.fromkeys(given)) != default:
            stem += "-" + "-".join(dict.fromkeys(given))
    stem += f"-d{head_dim}" if head_dim != 64 else ""
    return enumerate_cases(archs, list(dict.fromkeys(dtypes)), list(dict.fromkeys(kernels)), head_dim), stem


def _progress(total: int, quiet: bool) -> Callable[[dict[str, Any]], None]:
    done = [0]

    def show(row: dict[str, Any]) -> None:
        done[0] += 1
        if quiet:
            return
        tile = f"{row['BLOCK_M']}x{row['BLOCK_N']}/{row['num_warps']}w{row['num_stages']}s"
        what = row.get("error") or f"{row.get('loop_instructions')} loop instr, {row.get('regs')} regs"
        case = " ".join(str(row[c]) for c in ("kernel", "arch", "dtype", "mode"))
        case += f" a={row['alpha']} g={row['ent_grad']}"
        print(f"[static] {done[0]}/{total} {case} {tile if row['BLOCK_M'] else ''}: {what}", file=sys.stderr,
              flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    """Compile the cases the options select, write ``<stem>.csv`` and ``<stem>.md`` into the output folder
    and print the gates; returns 0, or 1 when a compile failed (its row has ``error``; both files are
    still written).

    Raises:
        UsageError: ``--quick`` with options that choose the cases.

    Example:
        >>> args = build_parser().parse_args(["--quick", "--arch", "sm_80"])
        >>> run(args)
        Traceback (most recent call last):
        ...
        renyi_prune._argtypes.UsageError: --quick compiles the gates' fixed set; it takes no --arch
    """
    cases, stem = _selection(args)
    out_dir = args.out or (_common.SMOKE_DIR / "static" if args.quick else _common.RESULTS_DIR / "static")
    jobs = args.jobs or min(8, os.cpu_count() or 1)
    start = time.time()
    rows = compile_cases(cases, jobs, _progress(len(cases), args.quiet))
    stamp = {"triton": triton.__version__, "ptxas": _ptxas_version(), "git_commit": _common.git_commit(),
             "date": _common.utc_now()}  # fmt: skip
    for r in rows:
        r.update(stamp)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    _common.write_csv(rows, csv_path, CSV_COLUMNS)
    with atomic_open(md_path, "w", encoding="utf-8") as f:
        f.write(_markdown(rows, csv_path.name))
    for g in evaluate_gates(rows):
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[g["passed"]]
        value = "-" if g["value"] is None else f"{g['value']:.3g}"
        print(f"gate {g['gate']}: {verdict} ({value} vs limit {g['limit']:g}) {g['detail']}")
    print(f"wrote {csv_path} and {md_path.name} ({len(rows)} compiles in {time.time() - start:.0f} s)")
    errors = [r for r in rows if r["error"]]
    for r in errors:
        print(f"[static] compile failed: {r['kernel']} {r['arch']} {r['dtype']} {r['mode']}: {r['error']}",
              file=sys.stderr)  # fmt: skip
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report with command-line arguments ``argv`` (default ``sys.argv[1:]``); returns the exit
    code: 0 written, 1 a compile failed (written, with ``error`` in its row), 2 bad arguments.

    Example:
        >>> main(["--arch", "sm_70"])  # stderr: ... argument --arch: invalid choice: 'sm_70' ...
        2
    """
    return _common.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
