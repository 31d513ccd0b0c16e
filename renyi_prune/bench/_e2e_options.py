"""Command-line options of the end-to-end benchmark (:mod:`renyi_prune.bench.e2e`) and their checks."""

from __future__ import annotations

import argparse

import torch

from .._argtypes import (
    Option,
    UsageError,
    add_options,
    keep_rate,
    nonneg_float,
    nonneg_int,
    option,
    positive_int,
)
from .._argtypes import alpha as alpha_type
from ..config import DEFAULT_PRUNE_BLOCKS
from . import _common
from ._e2e_setup import (
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


def _options() -> list[Option]:
    return [
        option("--models", f"timm model names, created with pretrained=False (default: "
               f"{' '.join(DEFAULT_MODELS)})", metavar="NAME", nargs="+"),
        option("--configs", f"configurations among {', '.join(config_names())} (default: "
               f"{' '.join(DEFAULT_CONFIGS)}: paper Table 3)", metavar="NAME", nargs="+",
               choices=config_names()),
        option("--keep-rates", f"keep rates in (0, 1] (default: {' '.join(map(str, DEFAULT_KEEP_RATES))})",
               keep_rate, metavar="R", nargs="+"),
        option("--img-size", "input resolution passed to timm.create_model (default: the model's own, e.g. "
               "224)", positive_int, metavar="PX"),
        option("--batch", f"images per forward (default {DEFAULT_BATCH})", positive_int),
        option("--dtype", "autocast dtype; fp32 = no autocast (default: bf16 on CUDA, fp32 on CPU)",
               choices=sorted(DTYPES)),
        option("--alpha", "Rényi order for renyi configs (default 1.0)", alpha_type, 1.0),
        option("--prune-blocks", "0-based pruning block indices (default 3 6 9)", nonneg_int, metavar="I",
               nargs="+"),
        option("--compile", "time torch.compile(model, fullgraph=True) instead of the eager model (default "
               "output e2e_compile.csv)", action="store_true"),
        option("--compile-mode", "torch.compile mode, e.g. max-autotune (default: torch's default)"),
        option("--no-gflops", "skip the fvcore GFLOPs count (blank column); it is blank anyway without "
               "fvcore", dest="gflops", action="store_false"),
        option("--repeats", "timed runs per configuration (default 10 on CUDA, 3 on CPU, 1 with --smoke)",
               positive_int),
        option("--run-ms", "target duration of one timed run in ms (default 200 on CUDA; 0 = one call, CPU "
               "default)", nonneg_float),
        option("--warmup-ms", "minimum warm-up in ms, discarded (default 500 on CUDA, 0 on CPU; at least 2 / "
               "1 calls)", nonneg_float),
        *_common.output_options(
            "CSV path (default benchmarks/results/<device>/e2e[_<px>px][_compile].csv; with --smoke the same "
            "name under the system temp dir); the PNG is written next to it",
            "deit_tiny at 64 px, batch 2, keep rates 0.7 0.5, 1 timed run: seconds on CPU; explicit options "
            "still win",
            "no progress lines on stderr",
        ),
    ]  # fmt: skip


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's parser (``prog`` as shown in messages); errors are one line and exit code 2.

    Example:
        >>> args = build_parser().parse_args(["--models", "deit_small_patch16_224", "--keep-rates", "0.7"])
        >>> args.models, args.keep_rates, args.configs, args.alpha
        (['deit_small_patch16_224'], [0.7], None, 1.0)
    """
    return _common.build_parser(prog, DESCRIPTION, _options())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, on any parser (e.g. a ``renyi-prune bench e2e`` subparser).

    Example:
        >>> p = argparse.ArgumentParser(prog="renyi-prune bench e2e")
        >>> add_arguments(p)
        >>> args = p.parse_args(["--smoke", "--compile", "--configs", "evit", "renyi"])
        >>> args.smoke, args.compile, args.configs, args.gflops
        (True, True, ['evit', 'renyi'], True)
    """
    add_options(p, _options())


def settings_from_args(args: argparse.Namespace, device: str) -> Settings:
    """The :class:`Settings` of parsed options: their values, else the defaults (``--smoke``: tiny ones).

    Example:
        >>> s = settings_from_args(build_parser().parse_args(["--smoke", "--batch", "4"]), "cpu")
        >>> list(s.models), s.img_size, s.batch, list(s.keep_rates), s.repeats
        (['deit_tiny_patch16_224'], 64, 4, [0.7, 0.5], 1)
    """
    smoke = args.smoke
    img_size = args.img_size if args.img_size is not None else (SMOKE["img_size"] if smoke else None)
    return Settings(
        models=args.models or (SMOKE["models"] if smoke else list(DEFAULT_MODELS)),
        configs=args.configs or list(DEFAULT_CONFIGS),
        keep_rates=args.keep_rates or (SMOKE["keep_rates"] if smoke else list(DEFAULT_KEEP_RATES)),
        img_size=img_size,
        batch=args.batch or (SMOKE["batch"] if smoke else DEFAULT_BATCH),
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
