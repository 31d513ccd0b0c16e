"""Root pytest setup, loaded before tests and doctests import ``renyi_prune``.

Without a GPU, Triton kernels run on Triton's CPU interpreter. ``TRITON_INTERPRET`` must be set
before any ``@triton.jit`` function is created, i.e. before ``renyi_prune`` is imported. Tests that
need the eager CPU path turn it off per call with ``monkeypatch.setenv("TRITON_INTERPRET", "0")``
(the op reads it at each call; the kernel objects stay interpretable).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: each does its tensor math on one thread, so that the
    # workers' thread pools do not spin against each other on the same cores
    torch.set_num_threads(1)
