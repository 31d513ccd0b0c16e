"""Command-line building blocks shared by every ``renyi-prune`` command (cli, train, both benchmarks).

* argument types: each raises :class:`argparse.ArgumentTypeError` with a one-line reason naming the bad
  value (argparse turns it into ``PROG: error: argument --opt: reason``);
* :class:`UsageError`: a combination of options argparse cannot check by itself, found when a command
  starts; reported exactly like an argparse error (exit code 2);
* :class:`Parser`: an :class:`argparse.ArgumentParser` whose errors are one line, no usage block;
* :func:`option` / :func:`add_options`: ``add_argument`` calls as data, so that a command declares its
  options as a table instead of a page of near-identical calls.

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
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Option",
    "Parser",
    "UsageError",
    "add_options",
    "alpha",
    "device",
    "existing_dir",
    "existing_file",
    "fraction",
    "keep_rate",
    "nonneg_float",
    "nonneg_int",
    "number",
    "option",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
    "probability",
]


class UsageError(Exception):
    """A combination of arguments that argparse cannot check by itself; reported like an argparse error.

    The CLI prints ``renyi-prune <command>: error: <message>`` and exits with code 2.

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


def print_error(prog: str, message: object) -> None:
    """Print ``PROG: error: MESSAGE`` (one line) on stderr, as :meth:`Parser.error` does."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------------
# Options as data
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One ``parser.add_argument(*flags, **kwargs)`` call, as data (see :func:`option`)."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
        """``parser.add_argument(*self.flags, **self.kwargs)``."""
        return parser.add_argument(*self.flags, **self.kwargs)


def option(
    flag: str,
    help: str,
    type: Callable[[str], Any] | None = None,
    default: Any = None,
    metavar: str | tuple[str, ...] | None = None,
    **kwargs: Any,
) -> Option:
    """An :class:`Option`: ``flag``, its help, and (positionally) its type, default and metavar.

    Arguments left at None are not passed to ``add_argument`` (argparse's own defaults apply, e.g.
    ``False`` for ``action="store_true"``); ``kwargs`` (``nargs``, ``choices``, ``action``, ``dest``,
    ``required``) are passed as given.

    Example:
        >>> p = Parser(prog="x")
        >>> add_options(p, [option("--rate", "a keep rate (default: %(default)s)", keep_rate, 0.5, "R")])
        >>> p.parse_args([]).rate, p.parse_args(["--rate", "0.25"]).rate
        (0.5, 0.25)
    """
    given = {"type": type, "default": default, "metavar": metavar}
    return Option((flag,), {"help": help, **{k: v for k, v in given.items() if v is not None}, **kwargs})


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: Iterable[Option | None]
) -> None:
    """Add each :class:`Option` of ``options`` to ``parser`` (or an argument group), in order; skip None.

    Example:
        >>> p = Parser(prog="x")
        >>> add_options(p, [option("--n", "count", positive_int, 1), None])
        >>> p.parse_args(["--n", "3"])
        Namespace(n=3)
    """
    for opt in options:
        if opt is not None:
            opt.add_to(parser)


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
