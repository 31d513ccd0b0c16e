"""Where and how a run computes: device and process group (:func:`timm.utils.init_distributed_device_so`),
autocast dtype, seeds (:func:`timm.utils.random_seed`), the RNG states a checkpoint stores, and the
environment record of ``config.json``."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._argtypes import UsageError
from ..pruning import pruning_generators


@dataclass
class Runtime:
    """The process's place in the job: rank, world size, processes on this node, device."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str | None) -> Runtime:
    """Device and process group through :func:`timm.utils.init_distributed_device_so`: ``torch.distributed``
    is initialized only under ``torchrun`` (``WORLD_SIZE`` > 1; nccl on CUDA, else gloo), where a CUDA
    device becomes ``cuda:$LOCAL_RANK``. ``device`` None: cuda if available, else cpu.

    Raises:
        UsageError: ``device`` is CUDA but CUDA is not available.
    """
    from timm.utils.distributed import init_distributed_device_so

    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"argument --device: {name!r} but CUDA is not available")
    info = init_distributed_device_so(device=name)
    dev = torch.device(info["device"])
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    world = info["world_size"]
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)) or world)
    return Runtime(info["global_rank"], world, local_world, dev)


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a plain run: the process that writes and prints."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` (auto = bf16 on a CUDA device that supports it, else none)."""
    if amp == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``dtype`` on ``device`` (a no-op for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA) so that wall-clock timings are true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int, rank: int) -> None:
    """Python's, NumPy's and torch's RNGs from ``seed + rank`` (:func:`timm.utils.random_seed`)."""
    from timm.utils import random_seed

    random_seed(seed, rank)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the data order and loader workers of one epoch: depends only on (seed, epoch, rank)."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 17) % 2**63


def default_workers(runtime: Runtime) -> int:
    """Loader workers per process: 0 on CPU (the model uses every core), else min(8, cores per process)."""
    if runtime.device.type != "cuda":
        return 0
    return min(8, max(1, (os.cpu_count() or 1) // runtime.local_world_size))


def rng_state(model: nn.Module, device: torch.device) -> dict[str, Any]:
    """Every RNG the training loop draws from (Python, NumPy for Mixup, torch, CUDA, pruning criteria)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "pruning": [g.get_state() for g in pruning_generators(model)],
    }


def set_rng_state(state: dict[str, Any], model: nn.Module, device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    generators = pruning_generators(model)
    if len(generators) == len(state.get("pruning", [])):
        for g, s in zip(generators, state["pruning"], strict=True):
            g.set_state(s)


def environment(runtime: Runtime) -> dict[str, Any]:
    """Device name, world size and library versions, for ``config.json`` and eval results."""
    import timm

    device = runtime.device
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return {
        "device": name,
        "world_size": runtime.world_size,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
    }
