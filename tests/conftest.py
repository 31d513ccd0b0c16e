"""Shared test helpers, all of them fixtures (the interpreter switch itself is in the root ``conftest.py``).

Test modules request them by name and never import this file (nor each other). The helpers that are
plain functions (``timm_qkv``, ``timm_model``, ``vit32``, ``images32``, ``assert_same_choices``,
``cut_gap``, ``nonfinite_inputs``) and the values (``device``, ``tol``) are session-scoped, so
module-scoped fixtures and hypothesis ``@given`` tests can use them too; inputs shared as cases
parametrize a fixture (``nonfinite_case``). Module-level code (``parametrize`` lists, ``skipif``
conditions) cannot request fixtures: it tests ``torch.cuda.is_available()`` itself."""

import math
import os

import pytest
import timm
import torch
from hypothesis import settings
from timm.models.vision_transformer import VisionTransformer

# Property tests draw the same examples on every run and machine (derandomize, no example database),
# so a green run stays green on rerun; HYPOTHESIS_PROFILE=explore draws new, more examples locally.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Per-dtype tolerances for the kernel vs the fp64 reference computed from the same (rounded) inputs.
# fp32 on GPU runs IEEE fp32 dots (TF32 off, PyTorch's default); half dtypes round P to the input
# dtype before the P·V product, as every flash kernel does.
_TOL = {
    torch.float32: {"out": 2e-5, "ent": 2e-5, "lse": 2e-5},
    torch.float16: {"out": 2e-3, "ent": 2e-4, "lse": 2e-4},
    torch.bfloat16: {"out": 1.5e-2, "ent": 2e-4, "lse": 2e-4},
}


@pytest.fixture(scope="session")
def device() -> str:
    """The device the tests run on: "cuda" when a GPU is present, else "cpu" (kernels interpreted)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def tol() -> dict:
    """Per-dtype tolerances ``tol[dtype]["out" | "ent" | "lse"]`` for the kernel vs the fp64 reference
    (the tolerance policy of ``CONTRIBUTING.md``)."""
    return _TOL


@pytest.fixture
def nan_empty(monkeypatch):
    """Make ``torch.empty`` return NaN-filled float tensors, so outputs a kernel never writes show up."""
    real_empty = torch.empty

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", empty)


@pytest.fixture(scope="session")
def timm_qkv(device):
    """``timm_qkv(B, H, N, D, dtype=float32, device=<test device>, scale=1.0, seed=0)`` → q, k, v as timm
    makes them: strided (B, H, N, D) views of one (B, N, 3·H·D) projection, N(0, scale²) entries."""
    default_device = device

    def timm_qkv(B: int, H: int, N: int, D: int, dtype=torch.float32, device: str | None = None,
                 scale: float = 1.0, seed: int = 0):  # fmt: skip
        """q, k, v as timm makes them: strided views of one (B, N, 3·H·D) projection."""
        g = torch.Generator().manual_seed(seed)
        qkv = (torch.randn(B, N, 3, H, D, generator=g) * scale).to(
            device=device or default_device, dtype=dtype
        )
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    return timm_qkv


@pytest.fixture(scope="session")
def timm_model(device):
    """``timm_model(name, **kwargs)``: the timm model ``name`` with random weights (seed 0), in eval mode on
    the test device."""

    def timm_model(name: str, **kwargs):
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kwargs).eval().to(device)

    return timm_model


@pytest.fixture(scope="session")
def vit32(device):
    """``vit32(**kwargs)``: a tiny timm ViT for 32 px images: 8 px patches (16 patches), width 64, depth 4,
    2 heads of 32, 10 classes (``kwargs`` override these); random weights (seed 0), eval mode, test device."""

    def vit32(**kwargs):
        torch.manual_seed(0)
        config = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, num_classes=10)
        return VisionTransformer(**{**config, **kwargs}).eval().to(device)

    return vit32


@pytest.fixture(scope="session")
def images32(device):
    """``images32(batch=2, seed=1)``: (batch, 3, 32, 32) N(0, 1) images (``vit32``'s size), test device."""

    def images32(batch: int = 2, seed: int = 1) -> torch.Tensor:
        return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)

    return images32


def _ranked(score: torch.Tensor, keep: str, prefix: int) -> torch.Tensor:
    """Patch scores of each row (B, n − prefix) sorted best first (``keep``: "lowest" or "highest")."""
    s = score[:, prefix:].double()
    return s.sort(dim=1, descending=keep == "highest").values


def _cut_gap(score: torch.Tensor, k: int, keep: str, prefix: int = 1) -> float:
    """Smallest gap, over the batch, between the k-th and the (k+1)-th best patch score: how far the
    scores are from a near-tie at the cut. Kept sets from two code paths must be equal when this
    exceeds the paths' rounding difference (then a test of equal kept sets holds on any hardware)."""
    ranked = _ranked(score, keep, prefix)
    if k >= ranked.shape[1]:
        return math.inf
    return (ranked[:, k - 1] - ranked[:, k]).abs().min().item()


def _assert_same_choices(kept_a: dict, kept_b: dict, scores: dict, keep: str, prefix: int = 1,
                        atol: float = 1e-5) -> bool:  # fmt: skip
    """Kept tokens of two runs (``{block: (B, prefix + k)}`` original positions, no fused tokens)
    agree up to near-ties: a patch may be kept by one run only if its score in ``scores`` (run a's
    :func:`renyi_prune.token_scores`) lies within ``atol`` of the cut. Floating point differs between
    code paths, BLAS kernels and batch sizes, so only choices with a margin are compared. Blocks after
    one that chose differently saw other tokens and are not compared. Returns whether all blocks
    chose the same tokens."""
    prev = None  # original positions of the tokens entering the block (None: all, in order)
    for i in sorted(kept_a):
        a, b, score = kept_a[i].cpu(), kept_b[i].cpu(), scores[i].cpu()
        assert a.shape == b.shape, (i, a.shape, b.shape)
        k = a.shape[1] - prefix
        ranked = _ranked(score, keep, prefix)
        same = True
        for row in range(a.shape[0]):
            diff = set(a[row, prefix:].tolist()) ^ set(b[row, prefix:].tolist())
            if not diff:
                continue
            same = False
            cut = ranked[row, k - 1].item()
            inputs = list(range(score.shape[1])) if prev is None else prev[row].tolist()
            for p in diff:
                s = score[row, inputs.index(p)].item()
                assert abs(s - cut) <= atol * max(1.0, abs(cut)), f"block {i}, row {row}: {p}: {s} vs {cut}"
        if not same:
            return False
        prev = a
    return True


@pytest.fixture(scope="session")
def cut_gap():
    """``cut_gap(score, k, keep, prefix=1)``: the margin of a cut (see :func:`_cut_gap`)."""
    return _cut_gap


@pytest.fixture(scope="session")
def assert_same_choices():
    """``assert_same_choices(kept_a, kept_b, scores, keep, prefix=1, atol=1e-5)``: kept tokens of two
    runs agree up to near-ties of the cut (see :func:`_assert_same_choices`)."""
    return _assert_same_choices


@pytest.fixture
def cli_error_line(capsys: pytest.CaptureFixture[str]):
    """``cli_error_line()``: the CLI's stderr captured so far, which must be exactly one line and no
    traceback; returns that line (and consumes the captured output, as ``capsys.readouterr``)."""

    def cli_error_line() -> str:
        """The CLI's stderr, which must be exactly one line and no traceback; returns that line."""
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        return lines[0]

    return cli_error_line


# Non-finite inputs (test_nonfinite.py, test_cpu_attention.py): one NaN or ±inf in q, k or v, or a query
# row whose logits are all −inf.


def _set(tensor, index, value):
    def apply(q, k, v):
        {"q": q, "k": k, "v": v}[tensor][index] = value

    return apply


def _no_key_row(q, k, v):
    """Query row (0, 0, 3) sees only −inf logits (a key coordinate of ∓inf against a q of ±1)."""
    k[0, 0, :, 0] = math.inf
    q[0, 0, 3] = 0.0
    q[0, 0, 3, 0] = -1.0


_NONFINITE_CASES = {
    "nan q row": _set("q", (0, 1, 5, 2), math.nan),
    "nan k": _set("k", (1, 0, 7, 0), math.nan),
    "nan v": _set("v", (0, 0, 11, 4), math.nan),
    "+inf q": _set("q", (1, 1, 2, 3), math.inf),
    "-inf q": _set("q", (0, 0, 9, 1), -math.inf),
    "+inf k": _set("k", (0, 1, 30, 0), math.inf),
    "+inf v": _set("v", (1, 0, 0, 0), math.inf),
    "a row with no key": _no_key_row,
}


@pytest.fixture(params=list(_NONFINITE_CASES))
def nonfinite_case(request) -> str:
    """The name of each non-finite case in turn: a test that requests it runs once per case."""
    return request.param


@pytest.fixture(scope="session")
def nonfinite_inputs():
    """``nonfinite_inputs(case, dtype=float32)`` → CPU q, k, v (B, H, N, D) = (2, 2, 37, 16), N(0, 1) with
    seed 0, holding the non-finite values of ``case`` (a name that ``nonfinite_case`` takes)."""

    def nonfinite_inputs(case: str, dtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(2, 2, 37, 16, generator=g) for _ in range(3))
        _NONFINITE_CASES[case](q, k, v)
        return q.to(dtype), k.to(dtype), v.to(dtype)

    return nonfinite_inputs


# Fixtures of the training and CLI tests (tiny ViTs on a few fake Fashion-MNIST images).


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny models: they gain nothing from more, and spinning OpenMP
    workers on a shared 2-core machine make every op many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def eager(monkeypatch):
    """The eager CPU attention path instead of the interpreted kernels (the op reads TRITON_INTERPRET
    at each call)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.fixture
def no_real_fashion_mnist(monkeypatch):
    """Fashion-MNIST lookups go to a missing folder: a test never reads the real dataset by accident."""
    from renyi_prune.data import FASHION_MNIST_ENV

    monkeypatch.setenv(FASHION_MNIST_ENV, "/nonexistent/fashion-mnist")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of random images in Fashion-MNIST's files: 8 training and 4 validation images."""
    from renyi_prune.data import write_fake_fashion_mnist

    return write_fake_fashion_mnist(tmp_path_factory.mktemp("data"), train_images=8, val_images=4)
