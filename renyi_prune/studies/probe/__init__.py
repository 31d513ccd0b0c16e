"""``renyi-prune probe``: what training-free pruning costs a real pretrained ViT (issue 15, parts 1 and 2).

The CLS features of a pretrained backbone (default: the offline DINOv2 ViT-S/14) are extracted from the
train images **unpruned**; a linear probe (logistic regression, C by cross-validation) and a k-NN
classifier (cosine, k = 20, DINOv2's weighting) are fitted on them; the test images are classified
unpruned and pruned by each criterion x keep rate x α, with no fine-tuning. Reported per row: top-1 of
both classifiers with a 95 % bootstrap interval, GFLOPs (fvcore), images/s and the kept patch tokens.
With several α for renyi, α is chosen per keep rate on a validation split carved out of the train
images (never on the test images) and that choice's test top-1 is reported next to the fixed-α rows.

Modules (imports point down the list): :mod:`.config` (:class:`ProbeConfig`, :data:`PRESETS`),
:mod:`.backbone` (model, preprocessing, split forward), :mod:`.data` (splits, subsets, validation),
:mod:`.cache` (feature cache), :mod:`.features` (extraction), :mod:`.classifiers` (probes, bootstrap),
:mod:`.selection` (α choice), :mod:`.plots`, :mod:`.report` (files), :mod:`.run` (:func:`run_probe`),
:mod:`.cli` (the command's options).
"""

from .classifiers import fit_probes, knn_weights, top1_interval
from .config import PRESETS, ProbeConfig, default_cache_dir
from .run import run_probe
from .selection import CHOSEN_LABEL, choose_alpha

__all__ = [
    "CHOSEN_LABEL",
    "PRESETS",
    "ProbeConfig",
    "choose_alpha",
    "default_cache_dir",
    "fit_probes",
    "knn_weights",
    "run_probe",
    "top1_interval",
]
