"""argparse argument types shared by every ``renyi-prune`` command.

Each raises :class:`argparse.ArgumentTypeError` with a one-line reason naming the bad value.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = ["alpha", "existing_dir", "existing_file", "keep_rate", "nonneg_int", "number", "positive_int"]


def number(text: str) -> float:
    """Any float (``inf`` and ``nan`` parse; callers bound them)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def keep_rate(text: str) -> float:
    """A keep rate r in (0, 1]."""
    r = number(text)
    if not 0.0 < r <= 1.0:
        raise argparse.ArgumentTypeError(f"keep rate must be in (0, 1], got {text}")
    return r


def alpha(text: str) -> float:
    """A Rényi order α ≥ 0; ``inf`` (or ``infinity``) is the min-entropy."""
    a = number(text)
    if math.isnan(a) or a < 0:
        raise argparse.ArgumentTypeError(f"Rényi order alpha must be >= 0 or inf, got {text}")
    return a


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
    """A folder that exists."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{'not a folder' if path.exists() else 'folder not found'}: {text}")
    return path


def existing_file(text: str) -> Path:
    """A file that exists."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{'not a file' if path.exists() else 'file not found'}: {text}")
    return path
