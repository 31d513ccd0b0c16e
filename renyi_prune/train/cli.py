"""``renyi-prune train`` / ``renyi-prune eval``: parsed options → :class:`TrainConfig` / :class:`EvalConfig`
→ :func:`~renyi_prune.train.run.train` / :func:`~renyi_prune.train.run.evaluate_checkpoint`, and back
(:func:`config_to_argv`: the command line of a config, which the accuracy study records)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .._argtypes import Parser, UsageError
from ..config import DEFAULT_PRUNE_BLOCKS, PruneConfig
from ..criteria import available_criteria, get_criterion
from .config import EvalConfig, TrainConfig
from .options import PRUNE_DESTS, add_eval_arguments, add_train_arguments
from .presets import apply_preset
from .runtime import is_main_process
from .summary import TrainConfigWarning

__all__ = [
    "add_eval_arguments",
    "add_train_arguments",
    "config_to_argv",
    "parse_eval_args",
    "parse_train_args",
    "run_eval",
    "run_train",
]


def parse_train_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of ``renyi-prune train`` options (for scripts and tests).

    Raises:
        SystemExit: a bad value (code 2, after one line ``renyi-prune train: error: ...`` on stderr).
        UsageError: pruning options that do not fit together (see :func:`train_config`).

    Example:
        >>> c = parse_train_args(["--keep-rate", "0.5", "--alpha", "inf", "--criterion", "renyi"])
        >>> c.prune.keep_rate, c.prune.alpha, c.prune.criterion, c.prune.prune_blocks
        (0.5, inf, 'renyi', (3, 6, 9))
        >>> parse_train_args(["--keep-rate", "0"])  # stderr: ... keep rate must be in (0, 1], got 0
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """
    parser = Parser(prog="renyi-prune train")
    add_train_arguments(parser)
    return train_config(parser.parse_args(argv))


def parse_eval_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """The :class:`EvalConfig` of ``renyi-prune eval`` options (for scripts and tests).

    Raises:
        SystemExit: a bad value (code 2, after one line ``renyi-prune eval: error: ...`` on stderr).
        UsageError: pruning options that do not fit together.

    Example:
        >>> c = parse_eval_args(["--checkpoint", __file__, "--no-prune", "--batch-size", "64"])
        >>> c.no_prune, c.batch_size, c.prune
        (True, 64, None)
    """
    parser = Parser(prog="renyi-prune eval")
    add_eval_arguments(parser)
    return eval_config(parser.parse_args(argv))


def _fields(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``renyi-prune train`` options (with the values of ``--preset`` for
    the options not given, :func:`~renyi_prune.train.presets.apply_preset`).

    Raises:
        UsageError: pruning options without ``--keep-rate``, ``--alpha`` for a criterion without α, or a
            pruning setting :class:`renyi_prune.PruneConfig` rejects (message: its reason).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_train_arguments(parser)
        >>> train_config(parser.parse_args(["--keep-rate", "0.5", "--criterion", "evit"])).prune.label
        'evit r=0.5'
    """
    args = apply_preset(args)
    warmup = {
        "--keep-rate-warmup-epochs": args.keep_rate_warmup_epochs > 0,
        "--keep-rate-start-epoch": args.keep_rate_start_epoch > 0,
    }
    return TrainConfig(**{**_fields(TrainConfig, args), "prune": _prune_config(args, warmup)})


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of parsed ``renyi-prune eval`` options.

    Raises:
        UsageError: as :func:`train_config`, ``--no-prune`` with ``--keep-rate``, or no ``--checkpoint``
            while ``--model`` is not a folder (a transformers model saved with ``save_pretrained``).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_eval_arguments(parser)
        >>> eval_config(parser.parse_args(["--checkpoint", __file__, "--keep-rate", "0.7"])).prune.label
        'renyi α=1 r=0.7'
    """
    folder = args.model is not None and os.path.isdir(os.path.expanduser(args.model))
    if args.checkpoint is None and not folder:
        raise UsageError(
            "the following arguments are required: --checkpoint (unless --model is a folder holding a "
            "transformers model saved with save_pretrained)"
        )
    prune = _prune_config(args, {})
    if args.no_prune and prune is not None:
        raise UsageError("--no-prune contradicts --keep-rate")
    return EvalConfig(**{**_fields(EvalConfig, args), "prune": prune})


def _one_or_tuple(values: Sequence[Any] | None) -> Any:
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _prune_config(args: argparse.Namespace, schedule: dict[str, bool]) -> PruneConfig | None:
    """The :class:`PruneConfig` the pruning options ask for, or None (no ``--keep-rate``)."""
    if args.keep_rate is None:
        given = [f"--{d.replace('_', '-')}" for d in PRUNE_DESTS[1:] if getattr(args, d)]
        given += [flag for flag, on in schedule.items() if on]
        if given:
            raise UsageError(f"{', '.join(given)} need(s) --keep-rate (without it the model is not pruned)")
        return None
    criterion = args.criterion or "renyi"
    if args.alpha is not None and "alpha" not in get_criterion(criterion).params:
        with_alpha = [c for c in available_criteria() if "alpha" in get_criterion(c).params]
        raise UsageError(f"--alpha is for --criterion {' / '.join(with_alpha)}, not {criterion!r}")
    blocks = DEFAULT_PRUNE_BLOCKS if args.prune_blocks is None else args.prune_blocks
    try:
        return PruneConfig(
            criterion,
            keep_rate=_one_or_tuple(args.keep_rate),
            alpha=_one_or_tuple(args.alpha),
            prune_blocks=blocks,
            fuse_pruned=args.fuse_pruned,
            params=dict(args.criterion_param),
        )
    except (TypeError, ValueError) as err:
        raise UsageError(f"cannot prune as asked: {err}") from None


def _text(value: Any) -> str:
    return "inf" if value == float("inf") else str(value)


def _kwarg_text(key: str, value: Any) -> str:
    """``KEY=VALUE`` that ``--model-kwargs`` reads back as ``value`` (literal-like strings quoted)."""
    if isinstance(value, str):
        try:
            import ast

            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return f"{key}={value}"
        return f"{key}={value!r}"
    return f"{key}={value!r}"


def _prune_argv(prune: PruneConfig) -> list[str]:
    argv = [
        "--keep-rate",
        *map(_text, prune.keep_rates if isinstance(prune.keep_rate, tuple) else [prune.keep_rate]),
    ]
    argv += ["--criterion", prune.criterion]
    if prune.alpha is not None:
        argv += ["--alpha", *map(_text, prune.alpha if isinstance(prune.alpha, tuple) else [prune.alpha])]
    if prune.prune_blocks != DEFAULT_PRUNE_BLOCKS:
        argv += ["--prune-blocks", *map(str, prune.prune_blocks)]
    if prune.fuse_pruned:
        argv.append("--fuse-pruned")
    if prune.params:
        argv += ["--criterion-param", *(_kwarg_text(k, v) for k, v in prune.params.items())]
    return argv


def config_to_argv(config: TrainConfig | EvalConfig) -> list[str]:
    """The ``renyi-prune train`` (or ``eval``, for an :class:`EvalConfig`) options that build ``config``, in
    the order of ``--help``; fields at their default are left out.

    Example:
        >>> from renyi_prune import PruneConfig
        >>> c = TrainConfig(epochs=2, model_kwargs={"depth": 4}, prune=PruneConfig("evit", keep_rate=0.5),
        ...                 progress=False)
        >>> " ".join(config_to_argv(c))
        '--model-kwargs depth=4 --keep-rate 0.5 --criterion evit --epochs 2 --no-progress'
        >>> parse_train_args(config_to_argv(c)) == c
        True
        >>> config_to_argv(EvalConfig("run/checkpoint.pth", no_prune=True))
        ['--checkpoint', 'run/checkpoint.pth', '--no-prune']
    """
    training = isinstance(config, TrainConfig)
    default = TrainConfig() if training else EvalConfig()
    parser = Parser(prog="renyi-prune " + ("train" if training else "eval"))
    (add_train_arguments if training else add_eval_arguments)(parser)
    argv: list[str] = []
    for action in parser._actions:  # in the order of --help
        if action.dest == PRUNE_DESTS[0] and config.prune != default.prune:
            argv += _prune_argv(config.prune)
        if action.dest in PRUNE_DESTS or not hasattr(default, action.dest):  # pruning, or --help
            continue
        value = getattr(config, action.dest)
        if value != getattr(default, action.dest):
            argv += _option_argv(action, value)
    return argv


def _option_argv(action: argparse.Action, value: Any) -> list[str]:
    """The command line of one option (not a pruning one) set to ``value``."""
    flag = action.option_strings[0]
    if action.nargs == 0:  # store_true / store_false
        return [flag]
    if action.dest == "model_kwargs":
        return [flag, *(_kwarg_text(k, v) for k, v in value.items())]
    if isinstance(value, tuple):
        return [flag, *map(_text, value)]
    return [flag, _text(value)]


def run_train(args: argparse.Namespace | TrainConfig) -> int:
    """``renyi-prune train``: fine-tune (or train) a timm ViT with patch pruning; returns the exit code 0.

    Runs :func:`~renyi_prune.train.run.train` (``args``: the parsed options or a :class:`TrainConfig`),
    then prints what it wrote (or, resuming a finished run, that there was nothing to train). Errors are
    raised (see ``train``); the CLI turns them into exit codes 1 (a failure) / 2 (:class:`UsageError` and
    the other start-up problems).

    Example:
        The first of two epochs of a 2-block ViT of width 8 on 8 random images, stopped after epoch 1:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> data = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=8, val_images=4)
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> tiny = "--model-kwargs patch_size=14 embed_dim=8 depth=2 num_heads=1 --img-size 28 --batch-size 4"
        >>> argv = [*tiny.split(), "--data", str(data), "--dataset", "fashion-mnist", "--output", str(out)]
        >>> run_train(parse_train_args([*argv, "--epochs", "2", "--stop-after-epoch", "1", "--no-progress"]))
        ... # doctest: +ELLIPSIS
        renyi-prune train: .../run
          model     deit_small_patch16_224 (patch_size=14 embed_dim=8 depth=2 num_heads=1): ...
        epoch 1/2 ...
        wrote .../run/checkpoint.pth, metrics.jsonl, config.json (epoch 1: top1 ...%)
        0
    """
    from .run import train

    config = args if isinstance(args, TrainConfig) else train_config(args)
    with one_line_warnings():
        result = train(config)
    last = result["last"]
    if not is_main_process():
        return 0
    if result["epochs_trained"] == 0:
        stop = f" (--stop-after-epoch {config.stop_after_epoch})" if config.stop_after_epoch else ""
        print(
            f"nothing to train: {config.resume} already holds epoch {last['epoch']} of --epochs "
            f"{config.epochs}{stop}; no file was written"
        )
    elif last is not None:
        print(
            f"wrote {result['output']}/checkpoint.pth, metrics.jsonl, config.json "
            f"(epoch {last['epoch']}: top1 {last['top1']:.2f}%)"
        )
    return 0


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within: a :class:`~renyi_prune.train.summary.TrainConfigWarning` is shown as one line
    ``renyi-prune train: warning: ...`` (no file and line of the source); other warnings as before."""
    original = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, TrainConfigWarning):
            return f"renyi-prune train: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = original


def run_eval(args: argparse.Namespace | EvalConfig) -> int:
    """``renyi-prune eval``: top-1/top-5, GFLOPs and images/s of a checkpoint, pruned or not; returns 0.

    Prints one line; with ``--output FILE`` also writes the full result (see
    :func:`~renyi_prune.train.run.evaluate_checkpoint`) as JSON. ``args``: the parsed options or an
    :class:`EvalConfig`. Errors are raised; the CLI turns them into exit codes 1 (a failure) / 2
    (:class:`UsageError`).

    Example:
        A 2-block ViT of width 8 (random weights) on 4 random images, with a JSON copy of the result:

        >>> import json, tempfile, timm, torch
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> root = write_fake_fashion_mnist(tempfile.mkdtemp(), train_images=1, val_images=4)
        >>> kwargs = {"patch_size": 14, "embed_dim": 8, "depth": 2, "num_heads": 1}
        >>> torch.save(timm.create_model("vit_tiny_patch16_224", img_size=28, **kwargs).state_dict(),
        ...            root / "weights.pth")
        >>> argv = ["--checkpoint", str(root / "weights.pth"), "--model", "vit_tiny_patch16_224",
        ...         "--img-size", "28", "--num-classes", "1000", "--data", str(root), "--dataset",
        ...         "fashion-mnist", "--output", str(root / "eval.json"), "--no-progress", "--model-kwargs"]
        >>> run_eval(parse_eval_args(argv + [f"{k}={v}" for k, v in kwargs.items()]))  # doctest: +ELLIPSIS
        unpruned: top1 ...%  top5 ...%  loss ...  ... GFLOPs  ... img/s  (4 images)
        0
        >>> sorted(json.loads((root / "eval.json").read_text()))[:4]
        ['checkpoint', 'dataset', 'environment', 'gflops']
    """
    from .evaluation import evaluate_checkpoint

    r = evaluate_checkpoint(args if isinstance(args, EvalConfig) else eval_config(args))
    if is_main_process():
        print(
            f"{r['label']}: top1 {r['top1']:.2f}%  top5 {r['top5']:.2f}%  loss {r['loss']:.4f}  "
            f"{r['gflops']:.3f} GFLOPs  {r['images_per_s']:.0f} img/s  ({r['images']} images)"
        )
    return 0
