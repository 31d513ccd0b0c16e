"""What a probe run does: :class:`ProbeConfig` (backbone, data, sizes, the pruning configurations), the
presets (:data:`PRESETS`) and the list of :class:`renyi_prune.PruneConfig` rows it compares.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...config import DEFAULT_PRUNE_BLOCKS, PruneConfig
from ...demo.config import build_configs, check_criteria, criterion_names

__all__ = ["PRESETS", "ProbeConfig", "default_cache_dir"]

#: ``dtype`` names and the autocast dtype each runs the forwards in (``None``: no autocast).
AUTOCAST_DTYPES: Mapping[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}

#: Environment variable naming the feature cache folder (else ``<renyi-prune cache>/probe``).
CACHE_ENV_VAR = "RENYI_PRUNE_PROBE_CACHE"

_ALL_ALPHAS = (0.5, 1.0, 2.0, 3.0, math.inf)

#: Named settings of ``--preset``; options given on the command line override them. ``default`` runs
#: offline on a 2-core CPU in a few minutes; ``study`` / ``study-112`` are the committed study.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "default": {
        "img_size": 112,
        "train_images": 2000,
        "test_images": 1000,
        "keep_rates": (0.7, 0.5),
        "alphas": (1.0, 2.0, math.inf),
        "criteria": ("renyi", "evit", "evit+fusion", "random"),
    },
    "study": {
        "img_size": 224,
        "dtype": "bf16",  # 1.75x faster than fp32 on a 2-core AVX512-BF16 CPU; the committed run took 111 min
        "train_images": 10000,
        "test_images": 5000,
        "keep_rates": (0.9, 0.7, 0.5, 0.3),
        "alphas": _ALL_ALPHAS,
        "criteria": tuple(criterion_names()),
    },
    "study-112": {
        "img_size": 112,
        "train_images": 10000,
        "test_images": 5000,
        "keep_rates": (0.9, 0.7, 0.5, 0.3),
        "alphas": _ALL_ALPHAS,
        "criteria": tuple(criterion_names()),
    },
}


def default_cache_dir() -> Path:
    """The feature cache: ``$RENYI_PRUNE_PROBE_CACHE``, else ``probe/`` in the package's cache folder
    (:func:`renyi_prune.pretrained.default_cache_dir`: ``$RENYI_PRUNE_CACHE`` or e.g.
    ``~/.cache/renyi-prune``).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {CACHE_ENV_VAR: "/tmp/feats"}):
        ...     default_cache_dir().as_posix()
        '/tmp/feats'
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    from ...pretrained import default_cache_dir as package_cache

    return package_cache() / "probe"


@dataclass(frozen=True)
class ProbeConfig:
    """One ``renyi-prune probe`` run.

    Attributes:
        model: timm model name, a ``transformers`` ``save_pretrained`` folder, or ``None`` for the
            offline DINOv2 ViT-S/14. checkpoint: local weights for a timm ``model``.
        dataset: ``"fashion-mnist"`` or ``"imagefolder"`` (``None``: imagefolder when ``data`` is
            given, else fashion-mnist). data: the dataset folder (ImageFolder: ``train/`` and ``val/``).
        img_size: input side in pixels (a multiple of the patch size); ``None``: the model's own.
        train_images, test_images: sizes of the stratified subsets (``None``: the whole split).
        batch_size: images per forward. threads: torch intra-op threads (``None``: torch's default).
        criteria: demo criterion names (:func:`renyi_prune.demo.criterion_names`).
        keep_rates: keep rates in (0, 1]. alphas: Rényi orders (renyi only).
        prune_blocks: 0-based pruning blocks (default 3, 6, 9).
        choose_alpha: pick α per keep rate on a validation split of the train images (``None``: when
            renyi is compared with several α). val_fraction: its share of the train images.
        device: torch device (``None``: cuda if available, else cpu).
        cache_dir: feature cache (``None``: :func:`default_cache_dir`); use_cache: read and write it.
        seed: subsets, validation split, cross-validation folds and bootstrap. bootstrap: resamples.
        progress: tqdm bars on stderr. dtype: ``"fp32"``, or ``"bf16"`` to run the forwards under
            ``torch.autocast`` in bfloat16 (faster on CPUs with AVX512-BF16/AMX and on GPUs; the
            criteria's statistics are still computed in fp32).

    Raises:
        ValueError: a bad criterion, keep rate, α, block, size or fraction (named in the message).

    Example:
        >>> cfg = ProbeConfig(keep_rates=(0.5,), alphas=(1.0, 2.0), criteria=("evit", "renyi"))
        >>> [c.label if c else "unpruned" for c in cfg.prune_configs()]
        ['unpruned', 'renyi α=1 r=0.5', 'renyi α=2 r=0.5', 'evit r=0.5']
        >>> cfg.alpha_choice, ProbeConfig(alphas=(2.0,)).alpha_choice
        (True, False)
    """

    model: str | None = None
    checkpoint: Path | None = None
    dataset: str | None = None
    data: Path | None = None
    img_size: int | None = 112
    train_images: int | None = 2000
    test_images: int | None = 1000
    batch_size: int = 64
    threads: int | None = None
    criteria: tuple[str, ...] = ("renyi", "evit", "evit+fusion", "random")
    keep_rates: tuple[float, ...] = (0.7, 0.5)
    alphas: tuple[float, ...] = (1.0, 2.0, math.inf)
    prune_blocks: tuple[int, ...] = DEFAULT_PRUNE_BLOCKS
    choose_alpha: bool | None = None
    val_fraction: float = 0.2
    device: str | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    seed: int = 0
    bootstrap: int = 2000
    progress: bool = True
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "criteria", tuple(check_criteria(self.criteria)))
        for name in ("keep_rates", "alphas", "prune_blocks"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        for name in ("train_images", "test_images", "img_size", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if self.batch_size < 1 or self.bootstrap < 1:
            raise ValueError(
                f"batch_size and bootstrap must be >= 1, got {self.batch_size}, {self.bootstrap}"
            )
        if self.dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(AUTOCAST_DTYPES)}, got {self.dtype!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.choose_alpha and not self._alpha_choice_possible:
            raise ValueError(
                f"choosing alpha needs the renyi criterion and at least two alphas, got criteria "
                f"{list(self.criteria)} and alphas {list(self.alphas)}"
            )
        self.prune_configs()  # checks keep rates, alphas and blocks

    @property
    def _alpha_choice_possible(self) -> bool:
        return "renyi" in self.criteria and len(self.alphas) >= 2

    @property
    def alpha_choice(self) -> bool:
        """Whether α is chosen on the validation split (``choose_alpha``, or ``None`` and possible)."""
        return self._alpha_choice_possible if self.choose_alpha is None else self.choose_alpha

    def prune_configs(self) -> list[PruneConfig | None]:
        """Unpruned (``None``), then per keep rate renyi at every α and the other criteria."""
        return build_configs(self.keep_rates, self.alphas, self.criteria, self.prune_blocks)

    def renyi_configs(self) -> list[PruneConfig]:
        """The renyi rows (those α is chosen among), in :meth:`prune_configs` order."""
        return [c for c in self.prune_configs() if c is not None and c.criterion == "renyi"]

    def replace(self, **changes: Any) -> ProbeConfig:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (paths as text, α = ∞ as ``"inf"``)."""
        from ..._io import jsonable

        return jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def from_preset(preset: str, overrides: Mapping[str, Any]) -> ProbeConfig:
    """:data:`PRESETS` ``[preset]`` with ``overrides`` (keys whose value is ``None`` are left out).

    Raises:
        ValueError: unknown preset, or a value :class:`ProbeConfig` rejects.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return ProbeConfig(**{**PRESETS[preset], **given})


def fmt_alpha(alpha: float | None) -> str:
    """α for tables: ``"∞"``, ``""`` (none) or ``f"{alpha:g}"``."""
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return ""
    return "∞" if math.isinf(alpha) else f"{alpha:g}"


def describe_configs(configs: Sequence[PruneConfig | None]) -> str:
    """``"unpruned, renyi α=1 r=0.7, ..."`` for logs."""
    return ", ".join("unpruned" if c is None else c.label for c in configs)
