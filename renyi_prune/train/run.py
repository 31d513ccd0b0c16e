"""``train(config)`` and ``evaluate_checkpoint(config)``: a run from its configuration to its files.

:func:`train` checks the configuration, claims the output folder (a lock), builds model, data, optimizer
(:func:`timm.optim.create_optimizer_v2`), schedule (:func:`timm.scheduler.create_scheduler_v2`, stepped
every update), Mixup/CutMix (:class:`timm.data.Mixup`) and loss (:mod:`timm.loss`), resumes
(:func:`timm.models.resume_checkpoint`) if asked, then runs the epochs of :mod:`renyi_prune.train.loop`,
writing ``checkpoint.pth`` and ``metrics.jsonl`` after each (:mod:`renyi_prune.train.checkpoint`).
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._argtypes import UsageError
from .._io import locked_folder, write_json
from ..data import DataConfig, build_transform, subset
from ..pruning import set_keep_rate
from . import checkpoint as ckpt_io
from .config import TrainConfig
from .loaders import data_config, dataset_name, load_datasets, train_loader, train_transform, val_loader
from .loop import TrainParts, count_gflops, evaluate, preserve_rng, train_one_epoch
from .model import apply_pruning, check_model_name, create_model, load_weights, model_img_size
from .optim import build_optimizer, build_scheduler, loss_and_mixup
from .records import checkpoint_state, config_record, epoch_record, format_record, model_config
from .runtime import (
    amp_dtype,
    default_workers,
    epoch_seed,
    is_main_process,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_runtime,
)
from .summary import summary_lines, time_steps, warn_config, warn_validation_cost

__all__ = ["train"]


def train(config: TrainConfig) -> dict[str, Any]:
    """Fine-tune (or train) a timm model with patch pruning as ``config`` says (``renyi-prune train``).

    Holds the lock of ``config.output`` (rank 0, :func:`renyi_prune._io.locked_folder`) from before any
    data is read to the end, writes (rank 0, each file atomically) ``config.json`` before the first epoch,
    then after every epoch ``checkpoint.pth`` and ``metrics.jsonl`` (one line per epoch so far,
    :data:`~renyi_prune.train.METRIC_FIELDS`), and prints one line per epoch. An exception or Ctrl-C during
    an epoch carries a note (``add_note``) saying which epoch did not complete and which epoch
    ``checkpoint.pth`` holds. Resuming (``config.resume``) a run that already reached ``epochs`` (or
    ``stop_after_epoch``) trains and writes nothing. Without ``data`` / ``dataset``, a resumed run reads
    the data of the checkpoint's run. Before the first step rank 0 prints a start-up summary (model, data,
    pruning, augmentation, optimization, runtime, and the time estimated from a few timed steps:
    :mod:`renyi_prune.train.summary`); settings that cannot work as intended (a learning-rate warm-up as
    long as the run, ...) are warned about first (:class:`~renyi_prune.train.summary.TrainConfigWarning`).

    Returns:
        ``{"output": DIR, "history": [per-epoch records (METRIC_FIELDS)], "last": the last record,
        "config": the resolved configuration (None when nothing was trained), "epochs_trained": epochs this
        call trained}`` (on every rank; only rank 0 writes files).

    Raises:
        UsageError: settings that do not fit (the message names the options), e.g. an odd batch with
            Mixup/CutMix, a training set smaller than one batch, a resume checkpoint of another model, an
            unknown model, a data folder without the dataset, a pruning setting :func:`renyi_prune.patch`
            rejects for the model (a prune block beyond its depth), checkpoint weights that do not fit, a
            checkpoint / resume file that is empty, truncated or holds Python objects besides tensors, an
            output folder holding another run's checkpoint (unless resuming from that checkpoint).
        OutputFolderError: the output folder cannot be created or written, or another run holds it.
        DatasetNotFoundError: the default dataset is missing (message: how to install it).
        FloatingPointError: the training loss became NaN/inf.
        RuntimeError: pretrained weights could not be downloaded.

    Example:
        One epoch of a tiny ViT (2 blocks of width 16, 16 patches of 7 px) on 16 random 28 px images:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from renyi_prune import PruneConfig
        >>> from renyi_prune.data import write_fake_fashion_mnist
        >>> work = Path(tempfile.mkdtemp())
        >>> data = write_fake_fashion_mnist(work / "data", train_images=16, val_images=8)
        >>> config = TrainConfig(dataset="fashion-mnist", data=data, output=work / "run", img_size=28,
        ...     model="vit_tiny_patch16_224", model_kwargs=dict(patch_size=7, embed_dim=16, depth=2,
        ...     num_heads=1), batch_size=8, epochs=1, progress=False, prune=PruneConfig(keep_rate=0.5,
        ...     prune_blocks=[1]))
        >>> result = train(config)  # doctest: +ELLIPSIS
        renyi-prune train: .../run
          model     vit_tiny_patch16_224 (patch_size=7 embed_dim=16 depth=2 num_heads=1): ...
          pruning   renyi α=1 r=0.5 at blocks 1 (0-based)
        ...
        epoch 1/1  loss ... keep 0.5 ... GFLOPs ...
        >>> result["last"]["num_updates"], sorted(p.name for p in result["output"].iterdir())
        (2, ['checkpoint.pth', 'config.json', 'metrics.jsonl'])
    """
    _check_train_config(config)
    config, resume = ckpt_io.read_resume(config)
    output = config.output
    stop_epoch = min(config.stop_after_epoch or config.epochs, config.epochs)
    if resume is not None and resume["epoch"] >= stop_epoch:  # a finished run: nothing to train or write
        history = list(resume["history"])
        return dict(output=output, history=history, last=history[-1], config=None, epochs_trained=0)
    warn_config(config)
    resuming_here = resume is not None and config.resume.resolve() == (output / "checkpoint.pth").resolve()
    claim = locked_folder(output, "renyi-prune train") if is_main_process() else contextlib.nullcontext()
    with claim:  # before any data is read: a folder that cannot be used fails the run at once
        ckpt_io.check_output_folder(output, resuming=resuming_here)
        return _Run(config, resume, stop_epoch, resuming_here).run()


def _check_train_config(config: TrainConfig) -> None:
    """The usage errors found from the configuration alone."""
    if config.pretrained and config.checkpoint is not None:
        raise UsageError("give either --pretrained or --checkpoint, not both")
    if (config.mixup > 0 or config.cutmix > 0) and config.batch_size % 2:
        raise UsageError(
            f"--batch-size {config.batch_size}: Mixup/CutMix need an even batch (or --mixup 0 --cutmix 0)"
        )
    if config.scale[0] > config.scale[1] or not 0 < config.scale[0] <= 1:
        raise UsageError(f"argument --scale: need 0 < MIN <= MAX, got {list(config.scale)}")
    if config.ratio[0] > config.ratio[1]:
        raise UsageError(f"argument --ratio: need MIN <= MAX, got {list(config.ratio)}")
    if config.stop_after_epoch is not None and config.stop_after_epoch > config.epochs:
        raise UsageError(f"--stop-after-epoch {config.stop_after_epoch} is beyond --epochs {config.epochs}")
    if config.prune is None and (config.keep_rate_warmup_epochs > 0 or config.keep_rate_start_epoch > 0):
        raise UsageError("--keep-rate-warmup-epochs, --keep-rate-start-epoch need(s) --keep-rate")
    check_model_name(config.model)


@dataclass
class _Run:
    """One call of :func:`train` once the configuration is checked and the output folder is this run's."""

    config: TrainConfig
    resume: dict[str, Any] | None
    stop_epoch: int
    resuming_here: bool

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.runtime = setup_runtime(cfg.device)
        self.amp = amp_dtype(cfg.amp, self.runtime.device)
        seed_everything(cfg.seed, self.runtime.rank)
        notes = self._build_model_and_data()
        parts = self._build_training()
        start_epoch, num_updates, history = self._restore(parts)
        record = self._record()
        if self.runtime.is_main:
            write_json(cfg.output / "config.json", record)
            for note in notes:
                print(f"renyi-prune train: {note}", file=sys.stderr)
        self.gflops = count_gflops(parts.unwrapped, self.img_size) if self.runtime.is_main else None
        if self.runtime.is_main:
            self._print_summary(parts, self.stop_epoch - start_epoch)
        if self.resume is not None:
            self._restore_rng(parts.unwrapped)
        history = self._epochs(parts, start_epoch, num_updates, history)
        if self.runtime.distributed:
            torch.distributed.barrier()
        return {
            "output": cfg.output,
            "history": history,
            "last": history[-1] if history else None,
            "config": record,
            "epochs_trained": self.stop_epoch - start_epoch,
        }

    def _build_model_and_data(self) -> list[str]:
        """Classes first (the classifier size), then the model (its input size), then the transforms."""
        cfg = self.config
        self.dataset = dataset_name(cfg)
        splits, self.classes = load_datasets(cfg, self.dataset, cfg.data)
        self.num_classes = cfg.num_classes or len(self.classes)
        if self.num_classes < len(self.classes):
            raise UsageError(
                f"--num-classes {self.num_classes} is less than the dataset's {len(self.classes)} classes"
            )
        model = create_model(
            cfg.model,
            self.num_classes,
            cfg.img_size,
            cfg.model_kwargs,
            pretrained=cfg.pretrained,
            drop_path=cfg.drop_path,
            drop=cfg.drop,
        )
        self.img_size = model_img_size(model)
        notes = []
        if cfg.checkpoint is not None and self.resume is None:
            notes = load_weights(model, cfg.checkpoint, reset_head=True)
        self.data_cfg: DataConfig = data_config(cfg, self.dataset, model, self.img_size)
        splits["train"].transform = train_transform(cfg, self.data_cfg)
        splits["val"].transform = build_transform(self.data_cfg, False)
        self.split_sizes = (len(splits["train"]), len(splits["val"]))
        self.train_set = subset(splits["train"], cfg.max_train_images)
        self.val_set = subset(splits["val"], cfg.max_val_images)
        model.to(self.runtime.device)
        if cfg.prune is not None:  # after .to(): seeded criteria (random) make their generator on the device
            apply_pruning(cfg.prune, model)
        self.model = model
        return notes

    def _build_training(self) -> TrainParts:
        cfg, runtime = self.config, self.runtime
        self.workers = cfg.workers if cfg.workers is not None else default_workers(runtime)
        self.train_loader, self.loader_gen = train_loader(
            self.train_set, cfg.batch_size, self.workers, cfg.seed, runtime
        )
        self.val_loader = val_loader(self.val_set, cfg.batch_size, self.workers, runtime)
        model = self.model
        if runtime.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        self.lr = cfg.lr if cfg.lr is not None else 5e-4 * cfg.batch_size * runtime.world_size / 512
        optimizer = build_optimizer(cfg, self.model, self.lr)
        scheduler = build_scheduler(cfg, optimizer, len(self.train_loader))
        from timm.utils import NativeScaler

        scaler = NativeScaler(device=runtime.device.type) if self.amp == torch.float16 else None
        loss_fn, mixup = loss_and_mixup(cfg, self.num_classes)
        return TrainParts(
            model, self.model, optimizer, scheduler, loss_fn, mixup, scaler, self.amp, cfg, runtime
        )

    def _print_summary(self, parts: TrainParts, epochs: int) -> None:
        """The start-up summary (:func:`~renyi_prune.train.summary.summary_lines`), with the time estimated
        from a few timed steps of the model on the run's first training images."""
        cfg, device = self.config, self.runtime.device
        times = time_steps(parts.unwrapped, self.train_set, cfg.batch_size, device, self.amp)
        print("\n".join(summary_lines(self, epochs, times)), flush=True)
        warn_validation_cost(self, epochs, times)

    def _restore(self, parts: TrainParts) -> tuple[int, int, list[dict[str, Any]]]:
        """(first epoch, updates so far, history): from the resume checkpoint, else (0, 0, [])."""
        self.model_config = model_config(self.config, self.num_classes, self.img_size)
        if self.resume is None:
            return 0, 0, []
        cfg, saved = self.config, self.resume
        if saved["model_config"] != self.model_config:
            raise UsageError(
                f"--resume {cfg.resume} holds {saved['model_config']}, but the options build "
                f"{self.model_config}"
            )
        epoch = ckpt_io.resume(cfg.resume, parts.unwrapped, parts.optimizer, parts.scheduler, parts.scaler)
        ckpt_io.warn_changed_options(saved.get("args", {}), cfg.to_dict())
        return epoch, saved["num_updates"], list(saved["history"])

    def _restore_rng(self, model: nn.Module) -> None:
        states, world = self.resume["rng"], self.runtime.world_size
        if len(states) != world:
            warnings.warn(
                f"--resume: checkpoint has RNG states for {len(states)} processes, this run has {world}; the "
                "random streams restart from --seed",
                stacklevel=4,
            )
            return
        set_rng_state(states[self.runtime.rank], model, self.runtime.device)

    def _record(self) -> dict[str, Any]:
        """``config.json``: the options, what they resolved to, and the environment."""
        resolved = dict(
            lr=self.lr, dataset=self.dataset, classes=self.classes, train_images=len(self.train_set),
            val_images=len(self.val_set), data_config=self.data_cfg.as_dict(), model_config=self.model_config,
            amp=str(self.amp).replace("torch.", "") if self.amp else "none", workers=self.workers,
        )  # fmt: skip
        return config_record(self.config, resolved, self.runtime)

    def _epochs(self, parts: TrainParts, start_epoch: int, num_updates: int, history: list) -> list:
        """Train ``start_epoch`` … ``stop_epoch`` - 1; a failure carries a note on what the folder holds."""
        cfg = self.config
        done = start_epoch if self.resuming_here else 0  # epochs in output/checkpoint.pth
        try:
            for epoch in range(start_epoch, self.stop_epoch):
                history.append(self._epoch(parts, epoch, num_updates))
                num_updates = history[-1]["num_updates"]
                self._save(parts, history)
                done = epoch + 1
        except (Exception, KeyboardInterrupt) as err:  # say what the output folder holds (the CLI prints it)
            if self.runtime.is_main:
                ckpt_io.add_note(err, ckpt_io.failed_epoch_note(cfg.output, done + 1, cfg.epochs, done))
            raise
        return history

    def _epoch(self, parts: TrainParts, epoch: int, num_updates: int) -> dict[str, Any]:
        """Train and validate one epoch; returns its ``metrics.jsonl`` record."""
        cfg, runtime = self.config, self.runtime
        started = time.perf_counter()
        if self.train_loader.sampler is not None and hasattr(self.train_loader.sampler, "set_epoch"):
            self.train_loader.sampler.set_epoch(epoch)
        self.loader_gen.manual_seed(epoch_seed(cfg.seed, epoch, runtime.rank))
        stats = train_one_epoch(parts, self.train_loader, epoch, num_updates)
        if parts.scheduler is not None:
            parts.scheduler.step(epoch + 1)
        if cfg.has_keep_rate_warmup:
            set_keep_rate(parts.unwrapped, cfg.prune.keep_rate)  # evaluate at the target keep rate
        with preserve_rng(parts.unwrapped):  # validation must not change the training's RNG streams
            ev = evaluate(
                parts.model,
                self.val_loader,
                runtime.device,
                self.amp,
                desc=f"val {epoch + 1}/{cfg.epochs}",
                progress=cfg.progress and runtime.is_main,
                runtime=runtime,
            )
        return epoch_record(cfg, epoch, stats, ev, self.gflops, time.perf_counter() - started)

    def _save(self, parts: TrainParts, history: list[dict[str, Any]]) -> None:
        """``checkpoint.pth`` (with every process's RNG state) and ``metrics.jsonl``; one line on stdout."""
        cfg, runtime = self.config, self.runtime
        rng = [rng_state(parts.unwrapped, runtime.device)]
        if runtime.distributed:
            gathered: list[Any] = [None] * runtime.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not runtime.is_main:
            return
        state = checkpoint_state(
            cfg, history, parts.scheduler, rng, self.model_config, self.data_cfg, self.dataset
        )
        ckpt_io.save_checkpoint(
            cfg.output / "checkpoint.pth", state, parts.unwrapped, parts.optimizer, parts.scaler
        )
        ckpt_io.write_metrics(cfg.output / "metrics.jsonl", history)
        print(format_record(history[-1], cfg.epochs), flush=True)
