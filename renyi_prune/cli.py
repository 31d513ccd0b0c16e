"""Command-line interface: ``renyi-prune <command> [options]``.

Commands are registered in :data:`COMMANDS` (name → :class:`Command`: a function that adds the
subparser's options and a function that runs it), so adding ``bench`` or ``train`` later is one entry.

Exit codes: 0 success; 1 the command failed at run time (one line ``renyi-prune <command> failed:
<reason>`` on stderr, no traceback unless ``--traceback``); 2 bad command-line arguments (argparse's
usage message); 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._argtypes import alpha, existing_dir, existing_file, keep_rate, positive_int  # noqa: F401

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "main"]

PROG = "renyi-prune"

#: ``renyi-prune demo --criteria`` names: the keys of :data:`renyi_prune.demo.DEMO_CRITERIA`, repeated
#: here so that parsing the command line does not import torch (a test checks they agree).
DEMO_CRITERIA = ("renyi", "evit", "evit+fusion", "colln", "headvar", "headmad", "random")


class UsageError(Exception):
    """A combination of arguments that argparse cannot check by itself; reported like an argparse error."""


# --------------------------------------------------------------------------------------------------------
# Argument types: each raises argparse.ArgumentTypeError with a one-line reason
# --------------------------------------------------------------------------------------------------------


def demo_criterion(text: str) -> str:
    """A ``renyi-prune demo`` criterion name (one of :data:`DEMO_CRITERIA`)."""
    if text not in DEMO_CRITERIA:
        raise argparse.ArgumentTypeError(
            f"unknown criterion {text!r}; choose from {', '.join(DEMO_CRITERIA)}"
        )
    return text


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``run(args) -> exit code`` runs it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("renyi_prune_out"),
        metavar="DIR",
        help="output folder for the PNGs and report.md/report.json (default: %(default)s)",
    )
    p.add_argument(
        "--images",
        type=existing_dir,
        metavar="DIR",
        help="folder of images (default: the bundled scikit-image/scikit-learn photos)",
    )
    p.add_argument(
        "--model", metavar="NAME", help="timm model name (default: the offline pretrained DINOv2 ViT-S/14)"
    )
    p.add_argument("--checkpoint", type=existing_file, metavar="PATH", help="local weights for --model")
    p.add_argument(
        "--img-size",
        type=positive_int,
        default=224,
        metavar="PX",
        help="input resolution, a multiple of the patch size (default: %(default)s)",
    )
    p.add_argument(
        "--keep-rates",
        type=keep_rate,
        nargs="+",
        default=[0.7, 0.5, 0.3],
        metavar="R",
        help="keep rates in (0, 1] (default: 0.7 0.5 0.3)",
    )
    p.add_argument(
        "--alphas",
        type=alpha,
        nargs="+",
        default=[1.0, 2.0, math.inf],
        metavar="A",
        help="Rényi orders >= 0, 'inf' allowed, for the renyi criterion (default: 1 2 inf)",
    )
    p.add_argument(
        "--criteria",
        type=demo_criterion,
        nargs="+",
        default=list(DEMO_CRITERIA),
        metavar="NAME",
        help="criteria to compare with the unpruned model, among "
        f"{', '.join(DEMO_CRITERIA)} (default: all; evit+fusion = evit with EViT's token fusion, "
        "colln with order 2, headvar/headmad with source cls, random with seed 0)",
    )
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--max-images", type=positive_int, metavar="N", help="use only the first N images")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        metavar="N",
        help="timed forward passes per configuration (default: %(default)s)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model (the timm architecture the weights belong to)")
    import torch

    from .demo import run_demo

    if args.device is not None:
        try:
            torch.device(args.device)
        except RuntimeError as err:
            raise UsageError(f"argument --device: {err}") from None
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


def _bench_modules() -> dict:
    from .bench import e2e, kernel

    return {"kernel": kernel, "e2e": e2e}


def _add_bench_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    helps = {
        "kernel": "fused attention+entropy kernel vs SDPA vs eager (ms, TFLOP/s, memory; fwd or fwd+bwd)",
        "e2e": "images/s and GFLOPs of pruned timm models: unpruned, EViT (+fusion), Rényi fused/eager",
    }
    for name, module in _bench_modules().items():
        module.add_arguments(sub.add_parser(name, help=helps[name], description=helps[name]))


def _run_bench(args: argparse.Namespace) -> int:
    return _bench_modules()[args.bench].run(args)


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from .train import add_train_arguments

    add_train_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from .train import run_train

    return run_train(args)


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    from .train import add_eval_arguments

    add_eval_arguments(p)


def _run_eval(args: argparse.Namespace) -> int:
    from .train import run_eval

    return run_eval(args)


COMMANDS: dict[str, Command] = {
    "demo": Command(
        help="prune a pretrained ViT on real photos: entropy maps, Rényi vs other criteria: fidelity, "
        "FLOPs, speed",
        add_arguments=_add_demo_arguments,
        run=_run_demo,
    ),
    "bench": Command(
        help="benchmarks: 'bench kernel' (fused op vs SDPA/eager) and 'bench e2e' (pruned models, images/s)",
        add_arguments=_add_bench_arguments,
        run=_run_bench,
    ),
    "train": Command(
        help="fine-tune a timm model with pruning (Fashion-MNIST built in, or --data DIR ImageFolder)",
        add_arguments=_add_train_arguments,
        run=_run_train,
    ),
    "eval": Command(
        help="evaluate a checkpoint with pruning: top-1/top-5, GFLOPs, images/s",
        add_arguments=_add_eval_arguments,
        run=_run_eval,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``renyi-prune`` parser with one subparser per entry of :data:`COMMANDS`."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Rényi attention-entropy patch pruning for timm Vision Transformers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback when a command fails"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(command_parser=sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``renyi-prune``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed the message)
        return exc.code if isinstance(exc.code, int) else 2
    command = COMMANDS[args.command]
    try:
        return command.run(args)
    except UsageError as err:
        args.command_parser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.traceback:
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG} {args.command} failed: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
