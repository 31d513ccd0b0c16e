"""``evaluate_checkpoint(config)``: top-1/top-5, GFLOPs and images/s of a checkpoint, or of a
``transformers`` model saved in a local folder, pruned or not (``renyi-prune eval``)."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from .._argtypes import UsageError
from .._io import check_writable, write_json
from ..config import PruneConfig
from ..data import build_transform, subset
from .checkpoint import read_checkpoint
from .config import EvalConfig
from .loaders import data_config, dataset_name, load_datasets, val_loader
from .loop import count_gflops, evaluate
from .model import (
    Logits,
    apply_pruning,
    check_model_name,
    create_model,
    load_transformers_model,
    load_weights,
    model_img_size,
    transformers_folder,
)
from .runtime import amp_dtype, default_workers, environment, setup_runtime

__all__ = ["evaluate_checkpoint"]


def _checkpoint_pruning(config: EvalConfig, ckpt: dict[str, Any] | None) -> PruneConfig | None:
    """``config.prune``, else (unless ``no_prune``) the pruning the checkpoint was trained with."""
    if config.prune is not None or config.no_prune or ckpt is None or not ckpt.get("pruning"):
        return config.prune
    fields = {k: v for k, v in ckpt["pruning"].items() if k not in ("warmup_epochs", "start_epoch")}
    return PruneConfig.from_dict(fields)


def _model_and_data(config: EvalConfig, ckpt: dict[str, Any] | None) -> dict[str, Any]:
    """Model name, kwargs, input size and data: the options, else the checkpoint's run's."""
    if ckpt is None:
        if config.model is None:
            raise UsageError(
                f"--checkpoint {config.checkpoint} is not from renyi-prune train: name its --model"
            )
        return {
            "name": config.model,
            "model_kwargs": dict(config.model_kwargs),
            "img_size": config.img_size,
            "dataset": dataset_name(config),
            "data": config.data,
            "base_data": None,
        }
    cfg = ckpt["model_config"]
    if config.model is not None and config.model != cfg["model"]:
        raise UsageError(f"--model {config.model} but the checkpoint holds {cfg['model']}")
    own_data = config.data is not None or config.dataset is not None
    return {
        "name": cfg["model"],
        "model_kwargs": {**cfg["model_kwargs"], **dict(config.model_kwargs)},
        "img_size": config.img_size or cfg["img_size"],
        "dataset": dataset_name(config, ckpt["dataset"]["name"]),
        "data": config.data if own_data else ckpt["dataset"]["data"],
        "base_data": ckpt["data_config"],
    }


def evaluate_checkpoint(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.checkpoint`` as ``config`` says (``renyi-prune eval``).

    The model, input size, normalization, dataset and pruning default to what the checkpoint was trained
    with (for a checkpoint of :func:`~renyi_prune.train.train`); the config's fields override them.

    ``config.model`` may instead be a folder holding a ``transformers`` image classifier saved with
    ``save_pretrained`` (ViT, DeiT, DINOv2; no ``checkpoint``: the weights are the folder's, loaded
    offline by :func:`~renyi_prune.train.model.load_transformers_model`). It runs at its
    ``config.image_size``, with ``config.num_labels`` classes, normalized with the folder's
    ``preprocessor_config.json`` mean/std when present, else the dataset's (Fashion-MNIST) or ImageNet's
    (an ImageFolder); ``config.prune`` is the pruning (none by default).

    Returns:
        ``{"top1", "top5"}`` (percent), ``"loss"`` (mean cross entropy), ``"images"``, ``"images_per_s"``
        (forward passes only, all processes), ``"gflops"`` (GFLOPs of one image at the keep rate used,
        fvcore's convention: one multiply-add = one FLOP), ``"pruning"`` (the configuration used as
        :meth:`PruneConfig.to_dict`, or None), ``"label"``, ``"model"``, ``"model_kwargs"``, ``"img_size"``,
        ``"dataset"``, ``"checkpoint"`` (None for a transformers folder), ``"environment"``. With
        ``config.output`` the same is written to that file as JSON (atomically).

    Raises:
        UsageError: a foreign checkpoint without a model name, a model disagreeing with the checkpoint, an
            unknown model, weights that do not fit the model, a data folder without the dataset, a pruning
            setting the model does not allow; no checkpoint and no transformers folder, a folder without
            ``config.json``, a transformers model no pruning adapter supports (the message lists the
            families), fewer labels than the dataset's classes, ``checkpoint`` / ``model_kwargs`` /
            another ``img_size`` with a transformers folder.
        ImportError: a transformers folder while ``transformers`` is not installed (``pip install
            renyi-prune[hf]``).
        DatasetNotFoundError: the dataset the checkpoint was trained on is missing.

    Example:
        A timm state dict (random weights) on 8 random images, unpruned:

        >>> import tempfile, timm, torch
        >>> from pathlib import Path
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> work = Path(tempfile.mkdtemp())
        >>> data = write_fake_fashion_mnist(work, train_images=1, val_images=8)
        >>> kwargs = dict(patch_size=7, embed_dim=16, depth=4, num_heads=2)
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=28, num_classes=10, **kwargs)
        >>> torch.save(vit.state_dict(), work / "vit.pth")
        >>> r = evaluate_checkpoint(EvalConfig(work / "vit.pth", model="vit_tiny_patch16_224",
        ...     model_kwargs=kwargs, img_size=28, data=data, dataset="fashion-mnist", progress=False))
        >>> r["images"], r["label"], r["img_size"], 0 <= r["top1"] <= 100, r["gflops"] > 0
        (8, 'unpruned', 28, True, True)
    """
    if config.output is not None:  # before anything is loaded, so that a result is never computed in vain
        check_writable(config.output.parent)
    try:
        folder = transformers_folder(config.model)
    except ValueError as err:
        raise UsageError(f"argument --model: {err}") from None
    if folder is not None:
        return _evaluate_transformers(config, folder)
    return _evaluate_timm(config)


def _evaluate_timm(config: EvalConfig) -> dict[str, Any]:
    """:func:`evaluate_checkpoint` for a checkpoint of a timm model."""
    if config.checkpoint is None:
        raise UsageError("--checkpoint is needed (unless --model is a folder holding a transformers model)")
    ckpt = read_checkpoint(config.checkpoint, "--checkpoint")
    prune = _checkpoint_pruning(config, ckpt)
    found = _model_and_data(config, ckpt)
    check_model_name(found["name"])
    runtime = setup_runtime(config.device)
    amp = amp_dtype(config.amp, runtime.device)
    splits, classes = load_datasets(config, found["dataset"], found["data"], splits=("val",))
    num_classes = config.num_classes or (ckpt["model_config"]["num_classes"] if ckpt else len(classes))
    if num_classes < len(classes):
        raise UsageError(
            f"the model has {num_classes} classes, the {found['dataset']} dataset {len(classes)}"
        )
    model = create_model(found["name"], num_classes, found["img_size"], found["model_kwargs"])
    img_size = model_img_size(model)
    load_weights(model, config.checkpoint, reset_head=False)
    base = found["base_data"]
    if base is not None and config.img_size is not None:
        base = {**base, "img_size": img_size}
    splits["val"].transform = build_transform(
        data_config(config, found["dataset"], model, img_size, base), False
    )
    result = _evaluate_on(config, runtime, amp, model, splits["val"], img_size, prune)
    return _finish(
        config, runtime, result, model=found["name"], model_kwargs=found["model_kwargs"], img_size=img_size,
        dataset=found["dataset"], checkpoint=str(config.checkpoint),
    )  # fmt: skip


def _evaluate_on(
    config: EvalConfig, runtime: Any, amp: Any, model: nn.Module, val_set: Any, img_size: int,
    prune: PruneConfig | None, wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Move ``model`` to the device, prune it, evaluate it (``wrap(model)`` if given) on ``val_set``
    (``max_val_images`` of it); the result with the GFLOPs of one image, the pruning and its label."""
    model.to(runtime.device)
    if prune is not None:
        apply_pruning(prune, model)
    workers = config.workers if config.workers is not None else default_workers(runtime)
    loader = val_loader(subset(val_set, config.max_val_images), config.batch_size, workers, runtime)
    evaluated = model if wrap is None else wrap(model)
    progress = config.progress and runtime.is_main
    result = evaluate(evaluated, loader, runtime.device, amp, progress=progress, runtime=runtime)
    result["gflops"] = count_gflops(model, img_size)
    result.update(
        pruning=prune.to_dict() if prune is not None else None,
        label=prune.label if prune is not None else "unpruned",
    )
    return result


def _finish(config: EvalConfig, runtime: Any, result: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``result`` with ``fields`` and the environment; written to ``config.output`` (rank 0) if given."""
    result.update(fields, environment=environment(runtime))
    if config.output is not None and runtime.is_main:
        write_json(config.output, result)
    return result


def _evaluate_transformers(config: EvalConfig, folder: Path) -> dict[str, Any]:
    """:func:`evaluate_checkpoint` for a ``transformers`` classifier saved in ``folder``."""
    for given, flag in ((config.checkpoint, "--checkpoint"), (config.model_kwargs, "--model-kwargs")):
        if given:
            raise UsageError(f"{flag} {given}: the transformers model in {folder} brings its own")
    try:
        model, img_size, prep = load_transformers_model(folder)
    except (TypeError, ValueError) as err:
        raise UsageError(f"argument --model: {err}") from None
    if config.img_size is not None and config.img_size != img_size:
        raise UsageError(
            f"--img-size {config.img_size}, but the transformers model in {folder} takes {img_size} px"
        )
    labels = int(getattr(model.config, "num_labels", 0) or 0)
    if config.num_classes is not None and config.num_classes != labels:
        raise UsageError(f"--num-classes {config.num_classes}, but the model in {folder} has {labels} labels")
    runtime = setup_runtime(config.device)
    amp = amp_dtype(config.amp, runtime.device)
    dataset = dataset_name(config)
    splits, classes = load_datasets(config, dataset, config.data, splits=("val",))
    if labels < len(classes):
        raise UsageError(f"the model in {folder} has {labels} labels, the {dataset} dataset {len(classes)}")
    own = prep["source"] != "ImageNet defaults"  # the folder's preprocessor_config.json
    base = {**prep, "img_size": img_size} if own else None
    stand_in = types.SimpleNamespace(pretrained_cfg=prep)  # data_config reads the model's pretrained_cfg
    splits["val"].transform = build_transform(data_config(config, dataset, stand_in, img_size, base), False)
    result = _evaluate_on(config, runtime, amp, model, splits["val"], img_size, config.prune, wrap=Logits)
    normalization = {"mean": list(prep["mean"]), "std": list(prep["std"]), "source": prep["source"]}
    return _finish(
        config, runtime, result, model=str(folder.resolve()), model_kwargs={}, img_size=img_size,
        dataset=dataset, checkpoint=None, normalization=normalization,
    )  # fmt: skip
