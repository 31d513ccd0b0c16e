"""Command-line options of the kernel benchmark (:mod:`renyi_prune.bench.kernel`) and the shapes they
ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._argtypes import Parser, UsageError, positive_int
from .._argtypes import alpha as alpha_type
from . import _common
from ._kernel_setup import (
    CPU_BATCH_FOR_SEQ,
    CPU_DTYPE,
    DEFAULT_BATCH_FOR_SEQ,
    DEFAULT_HEAD_DIM,
    DEFAULT_HEADS,
    DEFAULT_SEQ,
    DTYPES,
    MODES,
    PROVIDERS,
    SMOKE,
)


def default_batch(N: int, cpu: bool = False) -> int:
    """Batch for a sequence length when --batch is not given: 256 (N ≤ 256), 64 (N ≤ 640), else 16; on the
    CPU (``cpu``) 8, 2 and 1.

    Example:
        >>> default_batch(197), default_batch(577, cpu=True), default_batch(2000, cpu=True)
        (256, 2, 1)
    """
    table, sizes = (CPU_BATCH_FOR_SEQ, (8, 2, 1)) if cpu else (DEFAULT_BATCH_FOR_SEQ, (256, 64, 16))
    if N in table:
        return table[N]
    return sizes[0] if N <= 256 else sizes[1] if N <= 640 else sizes[2]


def default_dtypes(args: argparse.Namespace, cpu: bool = False) -> list[str]:
    """``--dtype`` names: the given ones, else fp32 with ``--smoke`` or on the CPU, else bf16."""
    if args.dtype:
        return list(args.dtype)
    return list(SMOKE["dtype"]) if args.smoke else [CPU_DTYPE] if cpu else ["bf16"]


DESCRIPTION = (
    "Forward (or forward+backward) time of fused attention+Rényi entropy vs SDPA vs eager reference."
)
EPILOG = (
    "On the CPU (--device cpu, or no CUDA) the defaults are CPU-sized (fp32, batch 8/2/1 for N = "
    "197/577/1025) and an estimate of the run time is printed first. 'fused' runs the Triton kernel on the "
    "CPU only under Triton's interpreter, set before renyi_prune is imported (TRITON_INTERPRET=1 "
    "renyi-prune bench kernel --smoke); without it 'fused' is the CPU path (impl=cpu). "
    "Results go to ./bench-results/<device>/ unless --out says otherwise."
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's parser (``prog`` as shown in messages); errors are one line and exit code 2.

    Example:
        >>> args = build_parser().parse_args(["--mode", "fwdbwd", "--seq", "197", "577", "--alpha", "inf"])
        >>> args.mode, args.seq, args.alpha, args.device
        ('fwdbwd', [197, 577], [inf], 'auto')
    """
    parser = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, on any parser (e.g. a ``renyi-prune bench kernel`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench kernel")
        >>> add_arguments(p)
        >>> args = p.parse_args(["--smoke", "--providers", "fused", "sdpa"])
        >>> args.smoke, args.providers, args.mode, args.plot
        (True, ['fused', 'sdpa'], 'fwd', True)
    """
    # fmt: off
    p.add_argument("--mode", default="fwd", choices=MODES,
                   help="fwd: forward only (default); fwdbwd: forward + backward of the output w.r.t. q, "
                   "k, v")
    p.add_argument("--batch", type=positive_int, nargs="+",
                   help="B: one value for all N, or one per --seq value (default: 256 for N=197, 64 for "
                   "N=577, 16 for N=1025; on the CPU 8, 2, 1)")
    p.add_argument("--heads", type=positive_int, help=f"H (default {DEFAULT_HEADS})")
    p.add_argument("--seq", type=positive_int, nargs="+",
                   help=f"token counts N (default {' '.join(map(str, DEFAULT_SEQ))})")
    p.add_argument("--head-dim", type=positive_int, help=f"D (default {DEFAULT_HEAD_DIM})")
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), help="default bf16 (fp32 on the CPU)")
    p.add_argument("--alpha", type=alpha_type, nargs="+", help="Rényi order(s), 'inf' allowed (default 1.0)")
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, help="default: fused sdpa eager")
    p.add_argument("--reps", type=positive_int,
                   help="timed calls: CPU default 5; CUDA default do_bench's 100 ms budget, else about this "
                   "many calls")
    _common.add_output_arguments(
        p,
        "CSV path (default ./bench-results/<device>/kernel_<mode>.csv in the current directory; with "
        "--smoke the same name under the system temp dir); the PNG is written next to it",
        "tiny shapes (B=2, H=2, N=17,65, D=32, fp32, 3 reps) for CPU / TRITON_INTERPRET=1 CI; explicit "
        "options still win",
        "no per-shape progress on stderr",
    )
    # fmt: on


def resolve_shapes(args: argparse.Namespace, cpu: bool = False) -> list[tuple[int, int, int, int]]:
    """The (B, H, N, D) shapes the options ask for (defaults: DeiT-S's, with CPU-sized batches if ``cpu``;
    ``--smoke``: tiny ones).

    Raises:
        UsageError: ``--batch`` has neither 1 value nor one per ``--seq`` value, or a size is < 1.

    Example:
        >>> resolve_shapes(build_parser().parse_args(["--seq", "197", "577", "--batch", "8"]))  # (B, H, N, D)
        [(8, 6, 197, 64), (8, 6, 577, 64)]
        >>> resolve_shapes(build_parser().parse_args(["--smoke"]))
        [(2, 2, 17, 32), (2, 2, 65, 32)]
        >>> resolve_shapes(build_parser().parse_args([]), cpu=True)
        [(8, 6, 197, 64), (2, 6, 577, 64), (1, 6, 1025, 64)]
    """
    smoke = args.smoke
    seq = args.seq or (SMOKE["seq"] if smoke else list(DEFAULT_SEQ))
    H = args.heads or (SMOKE["heads"] if smoke else DEFAULT_HEADS)
    D = args.head_dim or (SMOKE["head_dim"] if smoke else DEFAULT_HEAD_DIM)
    if args.batch is None:
        batch = [SMOKE["batch"][0] if smoke else default_batch(n, cpu) for n in seq]
    elif len(args.batch) == 1:
        batch = args.batch * len(seq)
    elif len(args.batch) == len(seq):
        batch = list(args.batch)
    else:
        raise UsageError(
            f"argument --batch: takes 1 value or one per --seq value ({len(seq)}), got {len(args.batch)}"
        )
    for name, val in (("B", batch), ("H", [H]), ("N", seq), ("D", [D])):
        if any(x <= 0 for x in val):
            raise UsageError(f"{name} must be positive, got {val}")
    return [(b, H, n, D) for b, n in zip(batch, seq, strict=True)]


def default_out_path(mode: str, device: str, smoke: bool = False) -> Path:
    """``bench-results/<device-slug>/kernel_<mode>.csv``, relative to the current directory; with ``smoke``
    the same name under the system temp dir, so that smoke numbers never land among results.

    Example:
        >>> default_out_path("fwd", "cpu").parts[0]
        'bench-results'
    """
    return _common.output_path(f"kernel_{mode}.csv", device, smoke)
