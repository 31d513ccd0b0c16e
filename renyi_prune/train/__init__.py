"""Fine-tuning and evaluation with patch pruning: ``renyi-prune train`` and ``renyi-prune eval``.

The protocol of "Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803, Sec. 4):
fine-tune an (ImageNet-pretrained) DeiT for 100 epochs with AdamW and batch 256, RandomCrop,
RandomHorizontalFlip, Mixup, CutMix and RandomErasing, with the pruning blocks 4, 7, 10 (indices 3, 6, 9)
active during training and test, α chosen per keep rate. Built from timm's standard pieces:

* model: :func:`timm.create_model` (``--model``, ``--pretrained`` from the hub, ``--checkpoint`` local
  weights, ``--img-size``, ``--model-kwargs``), the classifier sized for the dataset;
* data: :mod:`renyi_prune.data` (Fashion-MNIST offline or an ImageFolder; timm transforms with
  RandomErasing) and :class:`timm.data.Mixup` (Mixup + CutMix + label smoothing);
* optimization: :func:`timm.optim.create_optimizer_v2` (AdamW default), :func:`timm.scheduler.
  create_scheduler_v2` (cosine with linear warm-up, stepped every update), :class:`timm.loss.
  SoftTargetCrossEntropy` with mixing, else :class:`timm.loss.LabelSmoothingCrossEntropy` / cross
  entropy; ``torch.autocast`` (bf16 / fp16 + :class:`timm.utils.NativeScaler`), gradient clipping
  (:func:`timm.utils.dispatch_clip_grad`); meters and accuracy from :mod:`timm.utils`;
* pruning: one :class:`renyi_prune.PruneConfig` (:func:`renyi_prune.patch` before training) and a
  keep-rate warm-up (:func:`renyi_prune.keep_rate_warmup` + :func:`renyi_prune.set_keep_rate` every step);
* distribution: ``torchrun`` → :func:`timm.utils.init_distributed_device_so`,
  :class:`torch.nn.parallel.DistributedDataParallel` and :class:`torch.utils.data.DistributedSampler`;
  rank 0 logs and writes. A plain ``python`` run (no ``WORLD_SIZE`` > 1) never touches ``torch.distributed``;
* seeds: :func:`timm.utils.random_seed`; resume: :func:`timm.models.resume_checkpoint`.

Modules: :mod:`.config` (:class:`TrainConfig`, :class:`EvalConfig`), :mod:`.options` (the command-line
options), :mod:`.cli` (options → config, ``run_train`` / ``run_eval``), :mod:`.run` (:func:`train`),
:mod:`.evaluation` (:func:`evaluate_checkpoint`), :mod:`.loop` (epochs), :mod:`.checkpoint` (files),
:mod:`.optim` (optimizer, schedule, Mixup, loss), :mod:`.model`, :mod:`.loaders`, :mod:`.runtime`,
:mod:`.presets` (``--preset``: :data:`PRESETS`), :mod:`.summary` (the start-up summary with an estimated
time, and :class:`TrainConfigWarning` for settings that cannot work as intended).

Outputs of ``train`` in ``output`` (rank 0, each file written atomically, so a crash never leaves a file
that looks complete): ``config.json`` (resolved options, environment), ``checkpoint.pth`` after every
epoch (timm's keys ``state_dict``, ``optimizer``, ``amp_scaler``, ``epoch``, ``arch``, and the scheduler,
RNG states and metrics history; resume it to continue exactly where it stopped) and ``metrics.jsonl``
(one JSON object per epoch, see :data:`METRIC_FIELDS`). A run refuses a folder that holds another run's
checkpoint (unless it resumes from that checkpoint), so the files of two runs never mix, and while a run
uses its folder it holds the folder's lock file (``.renyi-prune.lock``: pid, host, start time), so that a
second run into the same folder is refused; a run that fails or is interrupted says which epoch did not
complete and which epoch the checkpoint holds. The checkpoint stores the absolute path of the data, so
resuming and ``eval`` find it from any folder.

Units: images/s; GFLOPs in fvcore's convention (one multiply-add = one FLOP, as in the paper's Table 3)
for one image at the evaluation keep rate; top-1 / top-5 in percent; lr as set in the optimizer.
"""

from .checkpoint import CHECKPOINT_FORMAT, METRIC_FIELDS
from .cli import (
    add_eval_arguments,
    add_train_arguments,
    config_to_argv,
    parse_eval_args,
    parse_train_args,
    run_eval,
    run_train,
)
from .config import EvalConfig, TrainConfig
from .evaluation import evaluate_checkpoint
from .loop import evaluate
from .presets import PRESETS
from .run import train
from .summary import TrainConfigWarning

__all__ = [
    "CHECKPOINT_FORMAT",
    "METRIC_FIELDS",
    "PRESETS",
    "EvalConfig",
    "TrainConfig",
    "TrainConfigWarning",
    "add_eval_arguments",
    "add_train_arguments",
    "config_to_argv",
    "evaluate",
    "evaluate_checkpoint",
    "parse_eval_args",
    "parse_train_args",
    "run_eval",
    "run_train",
    "train",
]
