"""The model of a run: :func:`timm.create_model` with the run's options, its input size, and weights from
a file (a checkpoint of ``renyi-prune train``, a timm/PyTorch state dict or ``.safetensors``)."""

from __future__ import annotations

import os
from typing import Any

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
        return timm.create_model(name, pretrained=pretrained, **kwargs)
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
