"""``random``: a uniformly random subset of patches, from a seeded generator — the control.

Each pruning block owns a ``torch.Generator`` seeded with ``seed`` (default 0) plus its block index,
created on the model's device when the model is patched (the criterion's ``setup`` hook); re-patching
restarts the sequence. The criterion is not deterministic: a gradient checkpoint must not redraw.
"""

import torch

from .._validate import check_int
from .base import Criterion, register_criterion


def _uniform(attention_pass, params):
    B, _, N, _ = attention_pass.q.shape
    generator = params["generator"]
    scores = torch.rand((B, N), generator=generator, device=generator.device)
    return scores.to(attention_pass.q.device)


def _seeded_generator(params, context):
    """The block's params plus its generator, seeded with ``seed + block index`` on the model's device."""
    generator = torch.Generator(device=context.device).manual_seed(int(params["seed"]) + context.index)
    return {**params, "generator": generator}


register_criterion(
    Criterion(
        "random",
        keep="lowest",
        needs=frozenset(),
        score=_uniform,
        params={"seed": 0},
        check=lambda params: check_int("seed", params["seed"], 0),
        setup=_seeded_generator,
        deterministic=False,
        description="uniform random scores from a seeded generator (control)",
    )
)
