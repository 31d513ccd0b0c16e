"""Command-line options of the end-to-end benchmark (:mod:`renyi_prune.bench.e2e`) and their checks."""

from __future__ import annotations

import argparse

import torch

from .._argtypes import Parser, UsageError, keep_rate, nonneg_float, nonneg_int, positive_int
from .._argtypes import alpha as alpha_type
from ..config import DEFAULT_PRUNE_BLOCKS
from . import _common
from ._e2e_setup import (
    CPU_DEFAULTS,
    DEFAULT_BATCH,
    DEFAULT_CONFIGS,
    DEFAULT_KEEP_RATES,
    DEFAULT_MODELS,
    DTYPES,
    SMOKE,
    Settings,
    config_names,
)

DESCRIPTION = (
    "End-to-end images/s and GFLOPs of timm DeiTs, unpruned and pruned by EViT, EViT + fusion and Rényi "
    "entropy (fused Triton kernel, or materialized attention as in the paper): paper Table 3."
)


EPILOG = (
    "On the CPU (--device cpu, or no CUDA) the defaults are CPU-sized (DeiT-S, batch 32, keep rates 0.7 "
    "0.5, fp32, 5 timed runs) and an estimate of the run time is printed first. Results go to "
    "./bench-results/<device>/ unless --out says otherwise."
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's parser (``prog`` as shown in messages); errors are one line and exit code 2.

    Example:
        >>> args = build_parser().parse_args(["--models", "deit_small_patch16_224", "--keep-rates", "0.7"])
        >>> args.models, args.keep_rates, args.configs, args.alpha
        (['deit_small_patch16_224'], [0.7], None, [1.0])
    """
    parser = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, on any parser (e.g. a ``renyi-prune bench e2e`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench e2e")
        >>> add_arguments(p)
        >>> args = p.parse_args(["--smoke", "--compile", "--configs", "evit", "renyi"])
        >>> args.smoke, args.compile, args.configs, args.gflops
        (True, True, ['evit', 'renyi'], True)
    """
    # fmt: off
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="timm model names, created with pretrained=False (default: "
                   f"{' '.join(DEFAULT_MODELS)}; on the CPU {' '.join(CPU_DEFAULTS['models'])})")
    p.add_argument("--configs", nargs="+", choices=config_names(), metavar="NAME",
                   help=f"configurations among {', '.join(config_names())} (default: "
                   f"{' '.join(DEFAULT_CONFIGS)}: paper Table 3)")
    p.add_argument("--keep-rates", type=keep_rate, nargs="+", metavar="R",
                   help=f"keep rates in (0, 1] (default: {' '.join(map(str, DEFAULT_KEEP_RATES))}; on the "
                   f"CPU {' '.join(map(str, CPU_DEFAULTS['keep_rates']))})")
    p.add_argument("--img-size", type=positive_int, metavar="PX",
                   help="input resolution passed to timm.create_model (default: the model's own, e.g. 224)")
    p.add_argument("--batch", type=positive_int,
                   help=f"images per forward (default {DEFAULT_BATCH}; on the CPU {CPU_DEFAULTS['batch']})")
    p.add_argument("--dtype", choices=sorted(DTYPES),
                   help="autocast dtype; fp32 = no autocast (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--alpha", type=alpha_type, nargs="+", default=[1.0], metavar="A",
                   help="Rényi order(s) α for configurations with one (renyi); several give one row each, "
                   "timed in the same rounds on the CPU (default 1.0; inf allowed)")
    p.add_argument("--prune-blocks", type=nonneg_int, nargs="+", metavar="I",
                   help="0-based pruning block indices (default 3 6 9)")
    p.add_argument("--compile", action="store_true",
                   help="time torch.compile(model, fullgraph=True) instead of the eager model (default "
                   "output e2e_compile.csv)")
    p.add_argument("--compile-mode", help="torch.compile mode, e.g. max-autotune (default: torch's default)")
    p.add_argument("--no-gflops", dest="gflops", action="store_false",
                   help="skip the fvcore GFLOPs count (blank column); it is blank anyway without fvcore")
    p.add_argument("--repeats", type=positive_int,
                   help="timed runs per configuration (default 10 on CUDA, 5 on CPU, 1 with --smoke)")
    p.add_argument("--run-ms", type=nonneg_float,
                   help="target duration of one timed run in ms (default 200 on CUDA; 0 = one call, CPU "
                   "default)")
    p.add_argument("--warmup-ms", type=nonneg_float,
                   help="minimum warm-up in ms, discarded (default 500 on CUDA, 0 on CPU; at least 2 / 1 "
                   "calls)")
    p.add_argument("--interleave", action=argparse.BooleanOptionalAction,
                   help="time the configurations round-robin, one timed run of each per round, ratios as "
                   "medians of per-round ratios (default: on for the CPU, off on CUDA and with --compile)")
    _common.add_output_arguments(
        p,
        "CSV path (default ./bench-results/<device>/e2e[_<px>px][_compile].csv in the current directory; "
        "with --smoke the same name under the system temp dir); the PNG is written next to it",
        "deit_tiny at 64 px, batch 2, keep rates 0.7 0.5, 1 timed run: seconds on CPU; explicit options "
        "still win",
        "no progress lines on stderr",
    )
    # fmt: on


def settings_from_args(args: argparse.Namespace, device: str) -> Settings:
    """The :class:`Settings` of parsed options: their values, else the defaults (``--smoke``: tiny ones;
    on the CPU: :data:`CPU_DEFAULTS`; on CUDA: the paper's GPU sizes).

    Example:
        >>> s = settings_from_args(build_parser().parse_args(["--smoke", "--batch", "4"]), "cpu")
        >>> list(s.models), s.img_size, s.batch, list(s.keep_rates), s.repeats
        (['deit_tiny_patch16_224'], 64, 4, [0.7, 0.5], 1)
        >>> s = settings_from_args(build_parser().parse_args([]), "cpu")
        >>> list(s.models), s.batch, list(s.keep_rates)
        (['deit_small_patch16_224'], 32, [0.7, 0.5])
    """
    smoke = args.smoke
    img_size = args.img_size if args.img_size is not None else (SMOKE["img_size"] if smoke else None)
    default = SMOKE if smoke else CPU_DEFAULTS if not device.startswith("cuda") else None
    return Settings(
        models=args.models or (list(default["models"]) if default else list(DEFAULT_MODELS)),
        configs=args.configs or list(DEFAULT_CONFIGS),
        keep_rates=args.keep_rates or (list(default["keep_rates"]) if default else list(DEFAULT_KEEP_RATES)),
        img_size=img_size,
        batch=args.batch or (default["batch"] if default else DEFAULT_BATCH),
        dtype=args.dtype,
        alpha=args.alpha,
        prune_blocks=args.prune_blocks or list(DEFAULT_PRUNE_BLOCKS),
        compile=args.compile,
        compile_mode=args.compile_mode,
        gflops=args.gflops,
        device=device,
        repeats=args.repeats if args.repeats is not None else (SMOKE["repeats"] if smoke else None),
        run_ms=args.run_ms,
        warmup_ms=args.warmup_ms,
        verbose=not args.quiet,
        interleave=args.interleave,
    )


def check_settings(settings: Settings) -> None:
    """Check what argparse cannot, before anything is timed: the models exist in timm and are ViTs with
    every pruning block, the prune blocks are distinct.

    Raises:
        UsageError: naming the bad model or block.

    Example:
        >>> check_settings(Settings(models=["deit_tiny_patch16_224"], prune_blocks=[3, 6, 9]))
        >>> check_settings(Settings(models=["deit_tiny_patch16_224"], prune_blocks=[3, 12]))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._argtypes.UsageError: argument --prune-blocks: block 12 is beyond ... (indices 0 to 11)
    """
    import timm

    unknown = [m for m in settings.models if not timm.is_model(m)]
    if unknown:
        raise UsageError(
            f"argument --models: unknown timm model(s) {', '.join(unknown)} (see timm.list_models())"
        )
    if settings.interleave and settings.compile:
        raise UsageError(
            "argument --interleave: not with --compile (each configuration is compiled and timed on its own)"
        )
    blocks = list(settings.prune_blocks)
    if len(set(blocks)) != len(blocks):
        raise UsageError(f"argument --prune-blocks: repeated block indices {blocks}")
    for name in settings.models:
        kwargs = {} if settings.img_size is None else {"img_size": settings.img_size}
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialization cost
                model = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as err:
            raise UsageError(f"argument --models: cannot create {name}: {_common.first_line(err)}") from None
        depth = len(getattr(model, "blocks", ()))
        if depth == 0:
            raise UsageError(f"argument --models: {name} is not a Vision Transformer with .blocks")
        beyond = [b for b in blocks if b >= depth]
        if beyond:
            raise UsageError(
                f"argument --prune-blocks: block {beyond[0]} is beyond {name}'s {depth} blocks "
                f"(indices 0 to {depth - 1})"
            )
