"""The command line of the static report: ``renyi-prune bench static`` (:func:`add_arguments`,
:func:`run`), ``python -m renyi_prune.bench.static`` and ``benchmarks/static_report.py`` (:func:`main`).

Outputs go to ``./bench-results/static/`` in the current directory (``--quick``: the system temp dir), or
``--out DIR``; the committed report of a checkout is regenerated with ``--out benchmarks/results/static``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import triton

from ..._argtypes import Parser, UsageError, output_dir, positive_int
from ..._io import atomic_open
from .. import _common
from .cases import _DTYPES, ARCHS, CSV_COLUMNS, KERNELS, Case, enumerate_cases, gate_cases
from .compile import compile_cases
from .gates import evaluate_gates
from .report import _markdown, _ptxas_version

DESCRIPTION = (
    "static kernel report: registers, spills, shared memory, main-loop instructions and ptxas "
    "warnings of every kernel x tile x entropy mode x arch, compiled on the CPU (no GPU needed)"
)


def _head_dim(text: str) -> int:
    d = positive_int(text)
    if not 16 <= d <= 128:
        raise argparse.ArgumentTypeError(f"head dim must be in [16, 128], got {text}")
    return d


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The report's standalone parser (``python -m renyi_prune.bench.static``).

    Example:
        >>> args = build_parser().parse_args(["--arch", "sm_90", "--kernels", "fwd", "dkdv", "--jobs", "2"])
        >>> args.arch, args.kernels, args.dtype, args.quick, args.jobs
        (['sm_90'], ['fwd', 'dkdv'], None, False, 2)
    """
    parser = Parser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The report's options, on any parser (e.g. the ``renyi-prune bench static`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench static")
        >>> add_arguments(p)
        >>> p.parse_args(["--quick", "--out", "/tmp/static"]).quick
        True
    """
    # fmt: off
    p.add_argument("--arch", nargs="+", choices=list(ARCHS), metavar="ARCH",
                   help=f"GPU architectures among {', '.join(ARCHS)} (default: all)")
    p.add_argument("--dtype", nargs="+", choices=list(_DTYPES), metavar="DTYPE",
                   help=f"input dtypes among {', '.join(_DTYPES)} (default: bf16)")
    p.add_argument("--kernels", nargs="+", choices=list(KERNELS), metavar="KERNEL",
                   help=f"kernels among {', '.join(KERNELS)} (default: all; tutorial_fwd is the Triton "
                   "tutorial's forward, the reference of the gates)")
    p.add_argument("--head-dim", type=_head_dim, metavar="D",
                   help="head dim D of the stand-in inputs, 16 to 128 (default: 64, DeiT-S)")
    p.add_argument("--quick", action="store_true",
                   help="only the compiles the gate tests need (sm_90, bf16, forward at 128x128 with 8 "
                   "warps, the tutorial's forward, dk/dv); written under the system temp dir")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="worker processes (default: the CPU count, at most 8)")
    p.add_argument("--out", type=output_dir, metavar="DIR",
                   help="output folder (default: ./bench-results/static/ in the current directory; with "
                   f"--quick {_common.SMOKE_DIR / 'static'})")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    # fmt: on


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
        print(
            f"[static] {done[0]}/{total} {case} {tile if row['BLOCK_M'] else ''}: {what}",
            file=sys.stderr,
            flush=True,
        )

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
