"""Shared test helpers (the interpreter switch itself is in the root ``conftest.py``)."""

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Per-dtype tolerances for the kernel vs the fp64 reference computed from the same (rounded) inputs.
# fp32 on GPU runs IEEE fp32 dots (TF32 off, PyTorch's default); half dtypes round P to the input
# dtype before the P·V product, as every flash kernel does.
TOL = {
    torch.float32: {"out": 2e-5, "ent": 2e-5, "lse": 2e-5},
    torch.float16: {"out": 2e-3, "ent": 2e-4, "lse": 2e-4},
    torch.bfloat16: {"out": 1.5e-2, "ent": 2e-4, "lse": 2e-4},
}


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def nan_empty(monkeypatch):
    """Make ``torch.empty`` return NaN-filled float tensors, so outputs a kernel never writes show up."""
    real_empty = torch.empty

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", empty)


def timm_qkv(
    B: int,
    H: int,
    N: int,
    D: int,
    dtype=torch.float32,
    device: str = DEVICE,
    scale: float = 1.0,
    seed: int = 0,
):
    """q, k, v as timm makes them: strided views of one (B, N, 3·H·D) projection."""
    g = torch.Generator().manual_seed(seed)
    qkv = (torch.randn(B, N, 3, H, D, generator=g) * scale).to(device=device, dtype=dtype)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)
