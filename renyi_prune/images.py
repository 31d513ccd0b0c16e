"""Real photographs that work offline, and the timm eval preprocessing that turns them into model input.

:func:`sample_images` returns natural RGB photos that ship inside scikit-image and scikit-learn (no
download), :func:`load_image_dir` reads a folder of images, and :func:`preprocess` applies timm's own
evaluation transform (resize shorter side, center crop, ImageNet normalization) to a batch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["IMAGE_EXTENSIONS", "load_image_dir", "open_rgb", "preprocess", "sample_images"]

#: File extensions (lower case) picked up by :func:`load_image_dir`.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

_DEMO_HINT = "install it with `pip install scikit-image scikit-learn` (or `pip install renyi-prune[demo]`)"


def _skimage_loaders() -> list[tuple[str, Callable[[], Any]]]:
    try:
        import skimage.data as data
    except ImportError as err:
        raise ImportError(f"sample_images() needs scikit-image: {_DEMO_HINT}") from err
    # Natural RGB photographs bundled in the scikit-image wheel itself (no pooch download).
    return [
        ("astronaut", data.astronaut),  # 512 x 512, Eileen Collins (NASA)
        ("chelsea", data.chelsea),  # 300 x 451, a cat
        ("coffee", data.coffee),  # 400 x 600, a cup of coffee
        ("rocket", data.rocket),  # 427 x 640, Falcon 9 launch
        ("motorcycle", lambda: data.stereo_motorcycle()[0]),  # 500 x 741, left view of a stereo pair
    ]


def sample_images() -> list[tuple[str, Image.Image]]:
    """Natural photographs bundled with scikit-image and scikit-learn, available offline.

    Returns:
        ``[(name, image), ...]`` in a fixed order: ``astronaut``, ``chelsea``, ``coffee``, ``rocket``,
        ``motorcycle`` (from ``skimage.data``) and ``china``, ``flower`` (from
        ``sklearn.datasets.load_sample_images``). Each image is an RGB ``PIL.Image.Image`` (``mode == "RGB"``,
        8 bits per channel) at its original size (longer side 451 to 741 px).

    Raises:
        ImportError: scikit-image or scikit-learn is not installed.
        RuntimeError: none of the images could be loaded. An image that fails on its own (e.g. a data file
            missing from a stripped installation) is skipped with a :class:`RuntimeWarning`.

    Example:
        >>> from renyi_prune.images import sample_images
        >>> photos = sample_images()
        >>> [name for name, _ in photos]
        ['astronaut', 'chelsea', 'coffee', 'rocket', 'motorcycle', 'china', 'flower']
        >>> cat = dict(photos)["chelsea"]
        >>> cat.mode, cat.size  # (width, height) in pixels
        ('RGB', (451, 300))
    """
    loaders = _skimage_loaders()
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise ImportError(f"sample_images() needs scikit-learn: {_DEMO_HINT}") from err

    out: list[tuple[str, Image.Image]] = []
    for name, loader in loaders:
        try:
            out.append((name, Image.fromarray(loader()).convert("RGB")))
        except Exception as err:  # one missing file should not break the demo
            warnings.warn(f"skipping sample image {name!r}: {err}", RuntimeWarning, stacklevel=2)
    try:
        bunch = load_sample_images()
        for filename, array in zip(bunch.filenames, bunch.images, strict=True):
            out.append((Path(filename).stem, Image.fromarray(array).convert("RGB")))
    except Exception as err:
        warnings.warn(f"skipping scikit-learn sample images: {err}", RuntimeWarning, stacklevel=2)
    if not out:
        raise RuntimeError("no sample image could be loaded from scikit-image or scikit-learn")
    return out


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """The image file ``path``, fully decoded and converted to RGB (grayscale, palette and RGBA images
    included; alpha is dropped).

    Raises:
        OSError: the file cannot be read or decoded (missing, not an image, truncated, ...); the message
            names the file, whatever PIL's own error says.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("L", (40, 30)).save(folder / "gray.png")
        >>> image = open_rgb(folder / "gray.png")
        >>> image.mode, image.size
        ('RGB', (40, 30))
        >>> _ = (folder / "cut.png").write_bytes((folder / "gray.png").read_bytes()[:40])
        >>> open_rgb(folder / "cut.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        OSError: cannot read image .../cut.png: ...
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # what PIL raises
        raise OSError(f"cannot read image {path}: {err}") from err


def load_image_dir(path: str | os.PathLike[str]) -> list[tuple[str, Image.Image]]:
    """Load every image file directly inside a folder (not recursive).

    Files are matched by extension, case-insensitively (see :data:`IMAGE_EXTENSIONS`), and returned sorted
    by file name. Each image is fully decoded and converted to RGB (grayscale, palette and RGBA images
    included; alpha is dropped).

    Args:
        path: Folder to read.

    Returns:
        ``[(file_name, image), ...]`` where ``file_name`` is the base name including the extension and
        ``image`` an RGB ``PIL.Image.Image``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotADirectoryError: ``path`` exists but is not a folder.
        ValueError: the folder holds no file with an image extension.
        OSError: a file with an image extension cannot be decoded (the message names it, see
            :func:`open_rgb`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> from renyi_prune.images import load_image_dir
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     folder = Path(tmp)
        ...     Image.new("L", (40, 30)).save(folder / "b.png")  # grayscale
        ...     Image.new("RGBA", (20, 20)).save(folder / "a.PNG")  # extension in upper case, with alpha
        ...     _ = (folder / "notes.txt").write_text("not an image")  # skipped
        ...     images = load_image_dir(folder)
        >>> [(name, image.mode, image.size) for name, image in images]
        [('a.PNG', 'RGB', (20, 20)), ('b.png', 'RGB', (40, 30))]
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.name,
    )
    if not files:
        raise ValueError(f"no images found in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return [(file.name, open_rgb(file)) for file in files]


def preprocess(
    images: Image.Image | Iterable[Image.Image | tuple[str, Image.Image]],
    img_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
    *,
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """Batch images with timm's evaluation transform.

    Uses ``timm.data.create_transform(img_size, is_training=False, ...)``: resize the shorter side to
    ``floor(img_size / crop_pct)`` (aspect ratio kept), center-crop ``img_size x img_size``, scale to
    ``[0, 1]`` and normalize with ``mean`` / ``std``. The defaults (bicubic, ``crop_pct=1.0``, ImageNet
    statistics) are the pretrained configuration of timm's DINOv2 models, so the whole center square of
    the photo is kept.

    Args:
        images: One PIL image, or an iterable of PIL images or of ``(name, image)`` pairs as returned by
            :func:`sample_images` / :func:`load_image_dir`. Non-RGB images are converted to RGB.
        img_size: Output height and width in pixels.
        mean: Per-channel normalization mean (RGB, on the ``[0, 1]`` scale).
        std: Per-channel normalization standard deviation.
        crop_pct: Fraction of the resized shorter side kept by the center crop (timm's ``crop_pct``).
        interpolation: Resize filter name understood by timm (``"bicubic"``, ``"bilinear"``, ...).

    Returns:
        ``float32`` CPU tensor of shape ``(B, 3, img_size, img_size)``, contiguous.

    Raises:
        ValueError: no images were given, ``img_size`` is not positive, ``crop_pct`` is not in
            ``(0, 1]``, or ``mean`` / ``std`` do not have 3 entries.
        TypeError: an element is neither a PIL image nor a ``(name, image)`` pair.

    Example:
        >>> from PIL import Image
        >>> from renyi_prune.images import preprocess
        >>> red = Image.new("RGB", (320, 240), (255, 0, 0))
        >>> x = preprocess([("red", red), Image.new("L", (50, 80))], img_size=224)
        >>> x.shape, x.dtype
        (torch.Size([2, 3, 224, 224]), torch.float32)
        >>> round(x[0, 0].mean().item(), 3)  # red channel of pure red: (1 - 0.485) / 0.229
        2.249
    """
    from timm.data import create_transform

    if img_size <= 0:
        raise ValueError(f"img_size must be positive, got {img_size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 (RGB) entries, got {len(mean)} and {len(std)}")
    items = [images] if isinstance(images, Image.Image) else list(images)
    if not items:
        raise ValueError("preprocess() got no images")

    transform = create_transform(
        input_size=img_size,
        is_training=False,
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        crop_pct=crop_pct,
        crop_mode="center",
    )
    tensors = []
    for i, item in enumerate(items):
        img = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if not isinstance(img, Image.Image):
            raise TypeError(f"images[{i}] is {type(item).__name__}, expected a PIL image or (name, image)")
        tensors.append(transform(img.convert("RGB")))
    return torch.stack(tensors).to(torch.float32).contiguous()
