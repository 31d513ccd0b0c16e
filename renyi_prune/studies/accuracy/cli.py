"""The command line of the accuracy study (``python benchmarks/accuracy_study.py``): :func:`main`.

A study writes to ``./bench-results/accuracy/<config>/`` in the current directory (``--smoke``: the
system temp dir), or ``--out``; never into the package or its checkout unless ``--out`` says so. The
committed studies of a checkout are (re)made with ``--out benchmarks/results/accuracy/<config>``, an
explicit act, since ``benchmarks/readme_tables.py`` builds the README from whatever is there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ...bench import _common
from .config import CONFIGS
from .files import rerender
from .run import run_study

__all__ = ["RESULTS_DIR", "SMOKE_DIR", "build_parser", "main"]

#: Default output root: ``./bench-results/accuracy/<config-name>/``, relative to the current directory.
RESULTS_DIR = _common.RESULTS_DIR / "accuracy"
#: Output root of ``--smoke``.
SMOKE_DIR = Path(tempfile.gettempdir()) / "renyi-prune-accuracy-smoke"
_DESCRIPTION = (
    "Accuracy study: token-pruning criteria on real data (Fashion-MNIST), the paper's protocol scaled down."
)


def build_parser() -> argparse.ArgumentParser:
    """The study's options (``--config``, ``--smoke``, ``--out``, ``--seeds``, ``--device``, ``--workdir``,
    ``--threads``, ``--rerender``).

    Example:
        >>> args = build_parser().parse_args(["--smoke", "--seeds", "0"])
        >>> args.smoke, args.seeds, args.config
        (True, [0], 'cpu-vit12-d64')
    """
    parser = argparse.ArgumentParser(prog="accuracy_study.py", description=_DESCRIPTION)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu-vit12-d64",
                        help="study configuration (default: %(default)s)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="= --config smoke, output to a temp dir")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: ./bench-results/accuracy/<config> in the current directory; the "
        "committed study: --out benchmarks/results/accuracy/<config>)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="override the fine-tuning seeds")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--workdir", type=Path, help="keep checkpoints here (default: a temp dir, deleted)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, = cores)")
    parser.add_argument("--rerender", type=Path, metavar="DIR",
                        help="only rewrite the summary, report and plot of a finished study from its "
                        "runs.csv")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or ``--rerender``) a study as the command line ``argv`` says; returns the exit status 0.

    Raises:
        SystemExit: bad options (argparse, status 2).
        OSError: the output folder cannot be written.

    Example:
        >>> main(["--smoke", "--out", "smoke-out"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    if args.rerender is not None:
        rerender(args.rerender)
        print(f"rewrote {args.rerender}/summary.csv, results.md, accuracy_vs_gflops.png")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = CONFIGS["smoke" if args.smoke else args.config]
    if args.seeds:
        cfg = replace(cfg, seeds=tuple(args.seeds))
    if args.device:
        cfg = replace(cfg, device=args.device)
    out = args.out or ((SMOKE_DIR if args.smoke else RESULTS_DIR) / cfg.name)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and cfg.name != "smoke":
        print("accuracy_study: TRITON_INTERPRET is set; the Triton interpreter makes this study take hours. "
              "Unset it for the eager CPU path.", file=sys.stderr)  # fmt: skip
    print(f"accuracy study {cfg.name}: {len(cfg.variants)} variants x {len(cfg.keep_rates)} keep rates x "
          f"{len(cfg.seeds)} seeds -> {out}", flush=True)  # fmt: skip
    result = run_study(cfg, out, args.workdir, log=lambda s: print(s, flush=True))
    print(f"wrote {out}/results.md, summary.csv, runs.csv, accuracy_vs_gflops.png, config.json, "
          f"environment.json ({result['wall_s'] / 60:.1f} min)")  # fmt: skip
    return 0
