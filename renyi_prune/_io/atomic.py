"""Atomic output files: a temporary file beside the target, renamed onto it only once complete, so that an
interrupted write never leaves a partial file that looks complete; strict-JSON copies of results.

Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_bytes", "jsonable", "write_json"]


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and :func:`os.replace` it onto ``path``.

    On any exception the temporary file is deleted and ``path`` keeps its old content (or stays absent).
    Parent folders are created. ``mode`` is ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`os.fdopen`
    (e.g. ``newline=""`` for CSV). The file gets mode 0644 (mkstemp's default is 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(data)


def jsonable(value: Any, nan: Any = "nan") -> Any:
    """A strict-JSON copy of ``value``: ±inf → ``"inf"``/``"-inf"``, NaN → ``nan``, paths → str, tuples →
    lists, torch dtypes → their name (``"bfloat16"``); dict keys become strings.

    Example:
        >>> jsonable({"alpha": float("inf"), "loss": float("nan"), "blocks": (3, 6), 1: Path("a/b")})
        {'alpha': 'inf', 'loss': 'nan', 'blocks': [3, 6], '1': 'a/b'}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return nan if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): jsonable(v, nan) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, nan) for v in value]
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return value


def write_json(path: str | os.PathLike[str], obj: Any, nan: Any = "nan") -> None:
    """Write :func:`jsonable` ``obj`` to ``path`` as indented UTF-8 JSON with a final newline, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(jsonable(obj, nan), fh, indent=2, allow_nan=False)
        fh.write("\n")
