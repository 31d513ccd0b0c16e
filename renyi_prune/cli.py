"""Command-line interface: ``renyi-prune <command> [options]``.

Commands are registered in :data:`COMMANDS` (name → :class:`Command`: a function that adds the
subparser's options and a function that runs it), so adding a command is one entry.

Exit codes: 0 success; 1 the command failed at run time (one line ``renyi-prune <command> failed:
<what failed>`` on stderr, no traceback unless ``--traceback``); 2 bad command-line arguments or a start-up
problem (one line ``renyi-prune <command>: error: <the bad value and why>``: options that do not fit, an
input file that is empty or truncated, an output folder that cannot be written or that another run holds);
130 interrupted (``renyi-prune <command>: interrupted``, then what the output holds). Every output file is
written to a temporary name and renamed when complete (:mod:`renyi_prune._io`), so a failed or interrupted
run never leaves a partial file that looks complete.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._argtypes import (
    Parser,
    UsageError,
    alpha,
    device,
    existing_dir,
    existing_file,
    keep_rate,
    output_dir,
    positive_int,
)
from ._io import BadFileError, OutputFolderError
from .demo.config import (  # the registry's names; loads no timm
    DEFAULT_REPEATS,
    check_criteria,
    criterion_names,
)

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "describe_failure", "main"]

PROG = "renyi-prune"


def demo_criterion(text: str) -> str:
    """A ``renyi-prune demo`` criterion name (one of :func:`renyi_prune.demo.criterion_names`)."""
    try:
        return check_criteria([text])[0]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``run(args) -> exit code`` runs it.

    ``run`` raises :class:`UsageError` for options that do not fit together (exit code 2) and any other
    exception for a failure (exit code 1); :func:`main` turns both into one line on stderr.

    Example:
        >>> hello = Command("say hello", lambda p: p.add_argument("--name", default="world"),
        ...                 lambda args: print(f"hello {args.name}") or 0)
        >>> parser = argparse.ArgumentParser(prog="hello")
        >>> _ = hello.add_arguments(parser)
        >>> hello.run(parser.parse_args(["--name", "ViT"]))
        hello ViT
        0
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], Any]
    run: Callable[[argparse.Namespace], int]


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``renyi_prune.<module>.<name>``, imported when first called."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(*args)

    call.__name__ = call.__qualname__ = name
    return call


def _add_demo_arguments(p: argparse.ArgumentParser) -> None:
    # fmt: off
    p.add_argument("--out", type=output_dir, default=Path("renyi_prune_out"), metavar="DIR",
                   help="output folder for the PNGs and report.md/report.json (default: %(default)s)")
    p.add_argument("--images", type=existing_dir, metavar="DIR",
                   help="folder of images (default: the bundled scikit-image/scikit-learn photos)")
    p.add_argument("--model", metavar="NAME",
                   help="timm model name, or a folder of a transformers model saved with save_pretrained "
                   "(default: the offline pretrained DINOv2 ViT-S/14)")
    p.add_argument("--checkpoint", type=existing_file, metavar="PATH", help="local weights for --model")
    p.add_argument("--img-size", type=positive_int, metavar="PX",
                   help="input resolution, a multiple of the patch size (default: 224; a transformers "
                   "folder: its config's image_size)")
    p.add_argument("--keep-rates", type=keep_rate, nargs="+", default=[0.7, 0.5, 0.3], metavar="R",
                   help="keep rates in (0, 1] (default: 0.7 0.5 0.3)")
    p.add_argument("--alphas", type=alpha, nargs="+", default=[1.0, 2.0, math.inf], metavar="A",
                   help="Rényi orders >= 0, 'inf' allowed, for the renyi criterion (default: 1 2 inf)")
    p.add_argument("--criteria", type=demo_criterion, nargs="+", default=criterion_names(), metavar="NAME",
                   help=f"criteria to compare with the unpruned model, among {', '.join(criterion_names())} "
                   "(default: all, each with its registered default parameters; evit+fusion = evit with "
                   "EViT's token fusion)")
    p.add_argument("--device", type=device,
                   help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--max-images", type=positive_int, metavar="N", help="use only the first N images")
    p.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, metavar="N",
                   help="timed forward passes per configuration (default: %(default)s)")
    # fmt: on


def _run_demo(args: argparse.Namespace) -> int:
    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model (the timm architecture the weights belong to)")
    from .demo import run_demo

    report = run_demo(
        args.out,
        images_dir=args.images,
        model_name=args.model,
        checkpoint=args.checkpoint,
        img_size=args.img_size,
        keep_rates=args.keep_rates,
        alphas=args.alphas,
        device=args.device,
        progress=args.progress,
        max_images=args.max_images,
        repeats=args.repeats,
        criteria=args.criteria,
    )
    print(
        f"wrote {args.out}/report.md, report.json, entropy_heatmaps.png, kept_patches.png "
        f"({report['wall_time_s']:.1f} s)"
    )
    return 0


#: ``renyi-prune bench <name>``: the module of each benchmark (``add_arguments`` and ``run``) and its help.
_BENCHMARKS = {
    "kernel": "fused attention+entropy kernel vs SDPA vs eager (ms, TFLOP/s, memory; fwd or fwd+bwd)",
    "e2e": "images/s and GFLOPs of pruned timm models: unpruned, EViT (+fusion), Rényi fused/eager",
    "static": "static kernel report (no GPU): registers, spills, shared memory, main-loop instructions, "
    "ptxas warnings of every kernel, tile, entropy mode and arch; the issue-12 gates",
}


def _add_bench_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name, text in _BENCHMARKS.items():
        bench_parser = sub.add_parser(name, help=text, description=text)
        _lazy(f"bench.{name}", "add_arguments")(bench_parser)
        bench_parser.set_defaults(command_parser=bench_parser)


def _run_bench(args: argparse.Namespace) -> int:
    return _lazy(f"bench.{args.bench}", "run")(args)


_HELP = {
    "demo": "prune a pretrained ViT on real photos: entropy maps, Rényi vs other criteria: fidelity, FLOPs, "
    "speed",
    "bench": "benchmarks: 'bench kernel' (fused op vs SDPA/eager), 'bench e2e' (pruned models, images/s) and "
    "'bench static' (compiled kernels, no GPU)",
    "train": "fine-tune a timm model with pruning (Fashion-MNIST built in, or --data DIR ImageFolder)",
    "eval": "evaluate a checkpoint with pruning: top-1/top-5, GFLOPs, images/s",
    "probe": "linear probe and k-NN of a pretrained ViT (default: offline DINOv2 on Fashion-MNIST), unpruned "
    "vs pruned by each criterion, training-free: top-1 with 95% intervals, GFLOPs, images/s",
}

COMMANDS: dict[str, Command] = {
    "demo": Command(_HELP["demo"], _add_demo_arguments, _run_demo),
    "bench": Command(_HELP["bench"], _add_bench_arguments, _run_bench),
    "train": Command(_HELP["train"], _lazy("train", "add_train_arguments"), _lazy("train", "run_train")),
    "eval": Command(_HELP["eval"], _lazy("train", "add_eval_arguments"), _lazy("train", "run_eval")),
    "probe": Command(
        _HELP["probe"], _lazy("studies.probe.cli", "add_arguments"), _lazy("studies.probe.cli", "run")
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``renyi-prune`` parser with one subparser per entry of :data:`COMMANDS`.

    Parse errors print one line ``renyi-prune <command>: error: ...`` and raise ``SystemExit(2)``. Each
    command's namespace has ``command`` (its name) and ``command_parser`` (its subparser).

    Example:
        >>> args = build_parser().parse_args(["train", "--keep-rate", "0.5", "--alpha", "inf", "--epochs=3"])
        >>> args.command, args.keep_rate, args.alpha, args.epochs
        ('train', [0.5], [inf], 3)
        >>> build_parser().parse_args(["bench", "e2e", "--smoke"]).command_parser.prog
        'renyi-prune bench e2e'
    """
    from . import __version__

    parser = Parser(
        prog=PROG, description="Rényi attention-entropy patch pruning for timm Vision Transformers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback when a command fails"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        # help is a %-format for argparse (description is not): a literal % (e.g. "95% intervals") is %%
        sub_parser = sub.add_parser(name, help=command.help.replace("%", "%%"), description=command.help)
        sub_parser.set_defaults(command_parser=sub_parser)
        command.add_arguments(sub_parser)
    return parser


#: Exceptions whose message says what failed by itself; others are shown as ``TypeName: message``.
_SELF_EXPLAINING = (OSError, ValueError, RuntimeError, ArithmeticError)
#: Problems found before a command does its work, reported like bad arguments (exit code 2).
_STARTUP_ERRORS = (UsageError, BadFileError, OutputFolderError)


def _notes(err: BaseException) -> list[str]:
    """``err``'s notes (``add_note``), each on one line."""
    return [" ".join(str(n).split()) for n in getattr(err, "__notes__", ())]


def describe_failure(err: BaseException) -> str:
    """One line saying what failed: the exception's message (its type first unless the message says it
    all), then its notes (``add_note``: e.g. which epoch failed and what the output folder holds).

    Example:
        >>> describe_failure(FileNotFoundError("no images found in /data/photos"))
        'no images found in /data/photos'
        >>> describe_failure(KeyError("head.weight"))
        "KeyError: 'head.weight'"
        >>> err = FloatingPointError("training loss is nan\\nat epoch 2")
        >>> err.__notes__ = ["checkpoint.pth holds epoch 1"]
        >>> describe_failure(err)
        'training loss is nan at epoch 2; checkpoint.pth holds epoch 1'
    """
    message = " ".join(str(err).split())
    if not message or not isinstance(err, _SELF_EXPLAINING):
        message = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return "; ".join([message, *_notes(err)])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``renyi-prune``; returns the exit code (see the module docstring).

    ``argv`` defaults to ``sys.argv[1:]``. Nothing is raised: a bad argument prints one line
    ``renyi-prune <command>: error: ...`` on stderr and returns 2, a failure ``renyi-prune <command> failed:
    ...`` and returns 1 (with ``--traceback`` the exception propagates instead).

    Example:
        >>> main(["train", "--keep-rate", "1.5"])  # stderr: ...: keep rate must be in (0, 1], got 1.5
        2
        >>> main(["--version"])  # doctest: +ELLIPSIS
        renyi-prune ...
        0
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported by the command's parser, so that the message names the command
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, or a usage error (the parser printed the message)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prog = args.command_parser.prog
    try:
        return COMMANDS[args.command].run(args)
    except _STARTUP_ERRORS as err:  # reported like a bad argument (see Parser.error)
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # the notes say what the output holds, e.g. which epoch
        print("; ".join([f"{prog}: interrupted", *_notes(err)]), file=sys.stderr)
        return 130
    except Exception as err:
        if args.traceback:
            raise
        print(f"{prog} failed: {describe_failure(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
