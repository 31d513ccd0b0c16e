"""argparse extensions shared by every ``renyi-prune`` command (cli, train/eval, the benchmarks).

* argument types (``type=`` callables): each raises :class:`argparse.ArgumentTypeError` with a one-line
  reason naming the bad value (argparse turns it into ``PROG: error: argument --opt: reason``);
* :class:`Parser`: an :class:`argparse.ArgumentParser` whose errors are one line, no usage block;
* :class:`UsageError`: a combination of options argparse cannot check by itself, found when a command
  starts; a :class:`ValueError`, reported by the commands exactly like an argparse error (exit code 2).

Nothing here imports torch until a ``--device`` value is checked.

Example:
    >>> keep_rate("0.7"), alpha("inf"), positive_int("8"), probability("0.25"), fraction("0.875")
    (0.7, inf, 8, 0.25, 0.875)
    >>> keep_rate("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: keep rate must be in (0, 1], got 1.5
    >>> existing_file("/")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a file: /
    >>> output_file("/")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: is a folder, not a file: /
    >>> device("gpu:0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a torch device: 'gpu:0'
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "UsageError",
    "alpha",
    "device",
    "existing_dir",
    "existing_file",
    "fraction",
    "keep_rate",
    "nonneg_float",
    "nonneg_int",
    "number",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
    "probability",
]


class UsageError(ValueError):
    """A combination of arguments that argparse cannot check by itself; reported like an argparse error.

    Raised by :func:`renyi_prune.train.train` / :func:`~renyi_prune.train.evaluate_checkpoint` (and the
    benchmarks) for a configuration they reject, so a script sees a :class:`ValueError`; the CLI prints
    ``renyi-prune <command>: error: <message>`` and exits with code 2.

    Example:
        >>> raise UsageError("--alpha is for --criterion renyi, not 'evit'")
        Traceback (most recent call last):
        ...
        renyi_prune._argtypes.UsageError: --alpha is for --criterion renyi, not 'evit'
    """


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``PROG: error: MESSAGE`` on stderr, exit code 2.

    Subparsers made with ``add_subparsers().add_parser`` are of this class too.

    Example:
        >>> p = Parser(prog="renyi-prune x")
        >>> _ = p.add_argument("--n", type=positive_int)
        >>> p.parse_args(["--n", "0"])  # prints "renyi-prune x: error: argument --n: must be >= 1, got 0"
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--mode x` must not silently mean `--models x`
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


# --------------------------------------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------------------------------------


def number(text: str) -> float:
    """Any float (``inf`` and ``nan`` parse; callers bound them)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _in_unit_interval(text: str, what: str) -> float:
    x = number(text)
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"{what} must be in (0, 1], got {text}")
    return x


def keep_rate(text: str) -> float:
    """A keep rate r in (0, 1]."""
    return _in_unit_interval(text, "keep rate")


def fraction(text: str) -> float:
    """A fraction in (0, 1] (e.g. a center-crop fraction)."""
    return _in_unit_interval(text, "value")


def alpha(text: str) -> float:
    """A Rényi order α ≥ 0; ``inf`` (or ``infinity``) is the min-entropy."""
    a = number(text)
    if math.isnan(a) or a < 0:
        raise argparse.ArgumentTypeError(f"Rényi order alpha must be >= 0 or inf, got {text}")
    return a


def nonneg_float(text: str) -> float:
    """A finite number ≥ 0."""
    x = number(text)
    if not x >= 0 or math.isinf(x):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return x


def positive_float(text: str) -> float:
    """A finite number > 0."""
    x = nonneg_float(text)
    if x == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return x


def probability(text: str) -> float:
    """A probability in [0, 1]."""
    x = nonneg_float(text)
    if x > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return x


def _int_at_least(text: str, minimum: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
    return n


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """An integer ≥ 0."""
    return _int_at_least(text, 0)


def existing_dir(text: str) -> Path:
    """A folder that exists (``~`` expanded)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{'not a folder' if path.exists() else 'folder not found'}: {text}")
    return path


def existing_file(text: str) -> Path:
    """A file that exists (``~`` expanded)."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{'not a file' if path.exists() else 'file not found'}: {text}")
    return path


def output_dir(text: str) -> Path:
    """An output folder: absent (it is created) or a folder, not a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"exists and is not a folder: {text}")
    return path


def output_file(text: str) -> Path:
    """An output file: absent (it is created, with its folders) or a file, not a folder."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, not a file: {text}")
    if any(p.exists() and not p.is_dir() for p in path.parents):
        raise argparse.ArgumentTypeError(f"a parent of {text} is a file, not a folder")
    return path


def device(text: str) -> str:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ...) that this machine has; returned as given."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}, but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise argparse.ArgumentTypeError(f"{text!r}, but this machine has {count} GPU(s)")
    return text
