"""Input weights files whose problems are named: empty, truncated, or holding more than tensors.

torch and timm are imported only when a weights file is read, so the CLI can import this cheaply.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["BadFileError", "check_weights_file", "read_state_dict", "unreadable_weights"]


class BadFileError(ValueError):
    """An input file that exists but cannot be used: empty, truncated or corrupt, or holding Python objects
    that are not loaded for safety. The message names the file and says which.

    A start-up problem: the CLI reports it like a bad argument (exit code 2).
    """

    __module__ = "renyi_prune._io"  # its public home: tracebacks and pickles name the re-export


def check_weights_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`BadFileError` if ``path`` is empty, or a ``torch.save`` zip archive cut short (an
    interrupted write or copy); any other file passes (its loader says what else may be wrong).

    Example:
        >>> import tempfile
        >>> empty = Path(tempfile.mkdtemp()) / "empty.pth"
        >>> empty.touch()
        >>> check_weights_file(empty)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._io.BadFileError: empty file (0 bytes): .../empty.pth
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadFileError(f"empty file (0 bytes): {path}")
    with open(path, "rb") as fh:
        is_zip_start = fh.read(4) == b"PK\x03\x04"
    if is_zip_start and not zipfile.is_zipfile(path):
        raise BadFileError(
            f"corrupt or truncated file: {path} (a zip archive without its end: the write or copy that made "
            "it did not finish)"
        )


def _unsafe_globals(path: Path) -> list[str]:
    import torch

    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is None or not zipfile.is_zipfile(path):
        return []
    try:
        return list(find(str(path)))
    except Exception:
        return []


def unreadable_weights(path: str | os.PathLike[str], err: BaseException) -> BadFileError:
    """The :class:`BadFileError` to raise when loading the weights file ``path`` failed with ``err``.

    A file that holds Python objects besides tensors, which ``torch.load`` refuses to unpickle by default,
    gets advice the user can follow instead of torch's own (an option of ``torch.load``, which no command of
    this package has).
    """
    path = Path(path)
    if "weights_only" not in str(err):
        reason = " ".join(str(err).split()) or type(err).__name__
        return BadFileError(f"cannot read weights from {path}: {reason}")
    names = _unsafe_globals(path)
    what = f" ({', '.join(names)})" if names else ""
    return BadFileError(
        f"{path} holds Python objects besides tensors{what}, which are not loaded since unpickling them can "
        "run arbitrary code. If you trust the file, load it in Python with torch.load (weights only switched "
        "off) and torch.save just its state dict (the dict of tensors) to a new file to pass here"
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state dict in a weights file: :func:`timm.models.load_state_dict` (a state dict, one under
    ``"state_dict"`` / ``"model"`` / EMA keys, or ``.safetensors``), tensors only, on the CPU.

    Raises:
        BadFileError: the file is empty, truncated or corrupt, or holds Python objects besides tensors
            (:func:`check_weights_file`, :func:`unreadable_weights`).
    """
    from timm.models import load_state_dict

    check_weights_file(path)
    try:
        return load_state_dict(str(path))
    except Exception as err:
        raise unreadable_weights(path, err) from err
