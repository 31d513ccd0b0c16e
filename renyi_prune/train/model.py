"""The model of a run: :func:`timm.create_model` with the run's options, its input size, and weights from
a file (a checkpoint of ``renyi-prune train``, a timm/PyTorch state dict or ``.safetensors``); or a
``transformers`` image model saved with ``save_pretrained`` in a local folder (:func:`transformers_folder`,
:func:`load_transformers_model`; ``renyi-prune demo`` / ``eval`` with ``--model FOLDER``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._argtypes import UsageError
from .._io import BadFileError, read_state_dict
from ..config import PruneConfig
from ..pretrained import filter_state_dict
from ..pruning import patch
from .checkpoint import read_checkpoint


def check_model_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise UsageError(f"argument --model: unknown timm model {name!r} (see timm.list_models())")


def create_model(
    name: str,
    num_classes: int,
    img_size: int | None,
    model_kwargs: dict[str, Any],
    pretrained: bool = False,
    drop_path: float = 0.0,
    drop: float = 0.0,
) -> nn.Module:
    import timm

    check_model_name(name)
    kwargs = dict(model_kwargs)
    kwargs["num_classes"] = num_classes
    if img_size is not None:
        kwargs["img_size"] = img_size
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if drop:
        kwargs["drop_rate"] = drop
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise UsageError(f"--model {name} does not accept these arguments {sorted(kwargs)}: {err}") from None
    except Exception as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load the pretrained weights of {name!r} ({type(err).__name__}: {err}); this needs "
            "internet access to the Hugging Face hub. Offline, pass local weights with --checkpoint instead "
            "of --pretrained."
        ) from err
    if img_size is not None:
        check_img_size(model, img_size)
    return model


def check_img_size(model: nn.Module, img_size: int) -> None:
    """Refuse an ``--img-size`` that is not a multiple of the model's patch size (timm would silently drop
    the pixels of the last partial patch row and column).

    Raises:
        UsageError: naming the size, the patch size and the nearest sizes that work.

    Example:
        >>> import timm
        >>> try:
        ...     check_img_size(timm.create_model("vit_tiny_patch16_224", img_size=30, patch_size=4), 30)
        ... except UsageError as err:
        ...     print(err)
        argument --img-size: 30 is not a multiple of the model's patch size 4 (e.g. 28 or 32)
    """
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch is None:
        return
    patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
    for p in dict.fromkeys(patch):
        if img_size % p:
            lower, upper = img_size // p * p, (img_size // p + 1) * p
            nearest = f"{lower} or {upper}" if lower else str(upper)
            raise UsageError(
                f"argument --img-size: {img_size} is not a multiple of the model's patch size {p} (e.g. "
                f"{nearest})"
            )


def model_img_size(model: nn.Module) -> int:
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None:
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))[-2:]
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size[0] != size[1]:
        raise UsageError(f"non-square model input {size}; pass --img-size")
    return int(size[0])


def load_weights(model: nn.Module, path: str | os.PathLike[str], reset_head: bool) -> list[str]:
    """Load a state dict into ``model`` (timm's checkpoint filter resamples position embeddings).

    With ``reset_head`` a classifier whose shape differs is left at its fresh initialization (fine-tuning on
    another label set); any other mismatch, or a file that holds no weights, raises :class:`UsageError`
    (``--checkpoint`` does not fit ``--model``) naming the keys. Returns notes for the log.
    """
    ours = read_checkpoint(path, "--checkpoint")
    if ours is not None:
        state = dict(ours["model"])
    else:
        try:
            state = read_state_dict(path)
        except BadFileError as err:
            raise UsageError(f"argument --checkpoint: {err}") from None
    state = filter_state_dict(state, model)
    own = model.state_dict()
    heads = model.pretrained_cfg.get("classifier", "head")
    heads = [heads] if isinstance(heads, str) else list(heads)
    mismatched = {
        k: (tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    }
    is_head = lambda k: any(k == h or k.startswith(h + ".") for h in heads)  # noqa: E731
    notes = []
    head_keys = [k for k in mismatched if is_head(k)]
    if head_keys and reset_head:
        for k in head_keys:
            del state[k]
        notes.append(
            f"classifier {', '.join(head_keys)} re-initialized: checkpoint {mismatched[head_keys[0]][0]}, "
            f"model {mismatched[head_keys[0]][1]}"
        )
    elif head_keys:
        k = head_keys[0]
        raise UsageError(
            f"argument --checkpoint {path}: classifier {k} has shape {list(mismatched[k][0])}, the model "
            "needs "
            f"{list(mismatched[k][1])}"
            " (pass --num-classes to match the checkpoint, or evaluate on the dataset it was trained on)"
        )
    other = {k: v for k, v in mismatched.items() if not is_head(k)}
    if other:
        raise UsageError(
            f"argument --checkpoint: {path} does not fit the model: (checkpoint, model) shapes "
            f"{dict(list(other.items())[:4])}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (reset_head and is_head(k))]
    if missing or unexpected:
        raise UsageError(
            f"argument --checkpoint: {path} does not fit the model: missing keys {missing[:6]}, unexpected "
            f"keys {unexpected[:6]}"
        )
    return notes


def apply_pruning(prune: PruneConfig, model: nn.Module) -> None:
    """Patch ``model``; a setting :func:`renyi_prune.patch` rejects for this model (a prune block beyond its
    depth, an α list of the wrong length, an unsupported model) is a usage error."""
    try:
        patch(model, prune)
    except (TypeError, ValueError) as err:
        raise UsageError(f"cannot prune {type(model).__name__} as asked ({prune.label}): {err}") from None


#: ImageNet normalization: what a ``transformers`` folder without ``preprocessor_config.json`` is given.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: PIL resampling codes of a ``preprocessor_config.json`` → timm interpolation names.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def transformers_folder(model: str | os.PathLike[str] | None) -> Path | None:
    """The folder ``model`` names if it is a saved ``transformers`` model, ``None`` for a timm model name.

    A saved model is an existing directory holding a ``config.json`` (what ``save_pretrained`` writes);
    anything that is not an existing directory is taken for a timm model name.

    Raises:
        ValueError: ``model`` is an existing directory without ``config.json`` (the message names it).

    Example:
        >>> import tempfile
        >>> from renyi_prune.train.model import transformers_folder
        >>> transformers_folder("deit_tiny_patch16_224") is None
        True
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     transformers_folder(tmp)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: model folder ... holds no config.json (not a transformers model saved with ...)
    """
    if model is None:
        return None
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model folder {path} holds no config.json (not a transformers model saved with save_pretrained)"
        )
    return path


def load_transformers_model(folder: str | os.PathLike[str]) -> tuple[nn.Module, int, dict[str, Any]]:
    """A ``transformers`` image model saved with ``save_pretrained``, loaded offline from ``folder``.

    The class is the first of ``config.json``'s ``architectures`` (e.g. ``ViTForImageClassification``,
    ``Dinov2Model``), else ``AutoModelForImageClassification``; weights come from the folder only
    (``local_files_only``, no hub access). The model must be one :func:`renyi_prune.patch` supports
    (ViT, DeiT, DINOv2, DINOv2 with registers).

    Returns:
        ``(model, img_size, preprocessing)``: the model in eval mode on the CPU, its input side in pixels
        (``config.image_size``) and ``{"mean", "std", "interpolation", "crop_pct", "source"}``: mean/std
        from the folder's ``preprocessor_config.json`` (``image_mean`` / ``image_std``, and its
        ``resample`` as the interpolation) when present, else the ImageNet defaults (0.485, 0.456, 0.406)
        / (0.229, 0.224, 0.225) and bicubic; crop fraction 1.0 (the image is resized to the input size,
        as transformers' image processors do); ``source`` is the file or ``"ImageNet defaults"``.

    Raises:
        ValueError: ``folder`` holds no ``config.json``, or the config has no square ``image_size``.
        ImportError: ``transformers`` is not installed (the message says ``pip install renyi-prune[hf]``).
        TypeError: no pruning adapter handles the model (the registry's message lists the families).

    Example:
        >>> import tempfile
        >>> from transformers import ViTConfig, ViTForImageClassification
        >>> from renyi_prune.train.model import load_transformers_model
        >>> config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        ...                    num_attention_heads=2, intermediate_size=64, num_labels=10)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ViTForImageClassification(config).save_pretrained(tmp)
        ...     model, size, prep = load_transformers_model(tmp)
        >>> type(model).__name__, size, prep["mean"], prep["source"]
        ('ViTForImageClassification', 32, (0.485, 0.456, 0.406), 'ImageNet defaults')
    """
    path = transformers_folder(folder)
    if path is None:
        raise ValueError(f"model folder {folder} does not exist")
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            f"{path} is a transformers model; loading it needs transformers: pip install renyi-prune[hf]"
        ) from err
    from ..adapters import adapter_for

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    arch = next(iter(getattr(config, "architectures", None) or []), None)
    cls = getattr(transformers, arch, None) if arch else None
    cls = cls if cls is not None else transformers.AutoModelForImageClassification
    model = cls.from_pretrained(path, local_files_only=True).eval()
    adapter_for(model)  # TypeError naming the model type and the supported families
    size = getattr(config, "image_size", None)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if not isinstance(size[0], int) or size[0] != size[1]:
        raise ValueError(f"{path}/config.json: need a square image_size, got {config.image_size!r}")
    return model, int(size[0]), _preprocessing(path)


def _preprocessing(path: Path) -> dict[str, Any]:
    """Mean/std/interpolation of ``path/preprocessor_config.json``, else ImageNet's (see
    :func:`load_transformers_model`)."""
    prep = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic", "crop_pct": 1.0,
            "source": "ImageNet defaults"}  # fmt: skip
    pre_file = path / "preprocessor_config.json"
    saved = json.loads(pre_file.read_text()) if pre_file.is_file() else {}
    if saved.get("image_mean") is not None and saved.get("image_std") is not None:
        prep.update(mean=tuple(saved["image_mean"]), std=tuple(saved["image_std"]), source=str(pre_file))
        prep["interpolation"] = _RESAMPLE.get(saved.get("resample"), "bicubic")
    return prep


class Logits(nn.Module):
    """A ``transformers`` classifier as a plain ``x → logits`` module (the evaluation loop's interface);
    the wrapped model stays reachable as ``.model`` (patch that one)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits
