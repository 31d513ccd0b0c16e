"""Accuracy study: token-pruning criteria on real data (Fashion-MNIST), the paper's protocol scaled down.

"Rényi Attention Entropy for Patch Pruning" (Aizawa & Igaue, arXiv 2604.03803) fine-tunes ImageNet-pretrained
DeiTs for 100 epochs with pruning at blocks 4/7/10 active during training and test, and compares criteria
at keep rates 0.7/0.5/0.3 (α searched per keep rate). No pretrained weights or ImageNet are reachable
offline, so this study (:func:`run_study`):

1. trains one small ViT from scratch, unpruned (the *base*), with :func:`renyi_prune.train.train`
   (what ``renyi-prune train`` runs);
2. for every criterion variant x keep rate: evaluates the base with pruning switched on (*no fine-tune*,
   :func:`renyi_prune.train.evaluate_checkpoint`), then fine-tunes the base briefly with pruning active
   (a :class:`renyi_prune.train.TrainConfig` with ``checkpoint=base`` and the variant's
   :class:`renyi_prune.PruneConfig`) once per seed and evaluates with pruning at the same keep rate (the
   paper's protocol); the unpruned reference gets the same fine-tuning (so extra training is not mistaken
   for a pruning effect);
3. writes ``runs.csv`` (one row per run), ``summary.csv`` (mean ± std over seeds), ``results.md``,
   ``accuracy_vs_gflops.png``, ``config.json`` (the exact configuration and the equivalent command lines,
   :func:`renyi_prune.train.config_to_argv`) and ``environment.json`` (device, versions, date, git
   commit, machine load), every file written atomically.

Seeds vary the fine-tuning (data order, augmentation, Mixup/CutMix, drop path, the random criterion);
the base model is trained once (seed 0), so the spread does not include base-training variance.

Modules: :mod:`.config` (:class:`StudyConfig`, :data:`CONFIGS`, the train/eval configs of each run),
:mod:`.run` (:func:`run_study`), :mod:`.report` (:func:`summarize`, :func:`markdown`), :mod:`.plots`,
:mod:`.files` (writing, :func:`load_runs`, :func:`rerender`), :mod:`.cli` (:func:`main`, the command
line of ``benchmarks/accuracy_study.py``).
"""

from .cli import RESULTS_DIR, SMOKE_DIR, main
from .config import CONFIGS, StudyConfig, Variant, base_config, config_from_dict, eval_config, finetune_config
from .files import load_runs, rerender, write_outputs
from .plots import plot
from .report import RUN_COLUMNS, SUMMARY_COLUMNS, markdown, summarize
from .run import run_study

__all__ = [
    "CONFIGS", "RESULTS_DIR", "RUN_COLUMNS", "SMOKE_DIR", "SUMMARY_COLUMNS", "StudyConfig", "Variant",
    "base_config", "config_from_dict", "eval_config", "finetune_config", "load_runs", "main", "markdown",
    "plot", "rerender", "run_study", "summarize", "write_outputs",
]  # fmt: skip
