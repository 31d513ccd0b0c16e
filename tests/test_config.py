"""PruneConfig: JSON round trips, from_name, and patch(model, config) against the same settings as keywords
(issue 13). Its argument checks (every error path names the bad value) are in test_validation.py."""

import json
import math
import re

import pytest
import torch

import renyi_prune
from renyi_prune import PruneConfig, num_kept


@pytest.mark.parametrize(
    "config",
    [
        PruneConfig(),
        PruneConfig(alpha=math.inf, keep_rate=0.5),
        PruneConfig(keep_rate=(0.9, 0.7, 0.5), alpha=(1.0, 2.0, math.inf), prune_blocks=(9, 3, 6)),
        PruneConfig.from_name("evit+fusion", keep_rate=[0.7, 0.5, 0.3]),
        PruneConfig("colln", params={"order": 3.0}, prune_blocks=[1]),
        PruneConfig("random", params={"seed": 4}, keep_rate=0.25),
        PruneConfig("renyi", params={"backend": "eager"}, alpha=0.5),
    ],
    ids=lambda c: c.label,
)
def test_json_round_trip(config):
    data = json.loads(json.dumps(config.to_dict(), allow_nan=False))  # strict JSON: α = ∞ as "inf"
    again = PruneConfig.from_dict(data)
    assert again == config and hash(again) == hash(config)
    assert again.label == config.label and again.keep_rates == config.keep_rates
    assert again.alphas == config.alphas


def test_from_name_label_and_per_block_values():
    fused = PruneConfig.from_name("evit+fusion", keep_rate=0.5)
    assert (fused.criterion, fused.fuse_pruned, fused.name) == ("evit", True, "evit+fusion")
    assert PruneConfig.from_name(fused.name, keep_rate=0.5) == fused
    plain = PruneConfig.from_name("renyi")
    assert not plain.fuse_pruned and plain.name == "renyi"
    c = PruneConfig(keep_rate=(0.9, 0.5), alpha=(2.0, math.inf), prune_blocks=(6, 3))
    assert c.prune_blocks == (3, 6) and c.keep_rates == (0.9, 0.5) and c.alphas == (2.0, math.inf)
    assert [dict(p) for p in c.block_params] == [
        {"alpha": 2.0, "backend": "auto"},
        {"alpha": math.inf, "backend": "auto"},
    ]
    assert PruneConfig("colln").alphas == (None, None, None)
    assert [dict(p) for p in PruneConfig("colln").block_params] == [{"order": 2.0}] * 3


def _run(model, x):
    with torch.no_grad():
        out = model(x)
    return out, renyi_prune.kept_token_indices(model), renyi_prune.token_scores(model)


@pytest.mark.parametrize(
    "settings",
    [
        dict(keep_rate=[0.7, 0.5], alpha=[2.0, math.inf], prune_blocks=(1, 2)),
        dict(criterion="evit", fuse_pruned=True, keep_rate=0.5, prune_blocks=(1, 3)),
        dict(criterion="random", seed=5, keep_rate=0.5, prune_blocks=(1, 2)),
        dict(criterion="colln", order=3.0, keep_rate=0.6, prune_blocks=(2,)),
    ],
)
def test_patch_with_a_config_is_patch_with_keywords(settings, images32, vit32):
    """The same computation run twice: the kept tokens and outputs are equal bit for bit."""
    fields = {k: v for k, v in settings.items() if k in ("criterion", "keep_rate", "alpha", "prune_blocks",
                                                        "fuse_pruned")}  # fmt: skip
    params = {k: v for k, v in settings.items() if k not in fields}
    config = PruneConfig(**fields, params=params)
    x = images32()
    a = _run(renyi_prune.patch(vit32(), config), x)
    b = _run(renyi_prune.patch(vit32(), **settings), x)
    assert torch.equal(a[0], b[0])
    for got, want in zip(a[1:], b[1:], strict=True):
        assert got.keys() == want.keys() and all(torch.equal(got[i], want[i]) for i in got)


def test_keywords_override_the_config(images32, vit32):
    model = vit32()
    config = PruneConfig("colln", keep_rate=0.5, params={"order": 3.0}, prune_blocks=(1, 2))
    renyi_prune.patch(model, config, keep_rate=0.75)
    states = {i: blk._renyi_prune for i, blk in enumerate(model.blocks) if "_renyi_prune" in blk.__dict__}
    assert [s.keep_rate for s in states.values()] == [0.75, 0.75]
    assert all(s.params == {"order": 3.0} for s in states.values())  # the config's parameter stays
    _run(model, images32())
    counts = [t.shape[1] - 1 for t in renyi_prune.kept_token_indices(model).values()]
    assert counts == [num_kept(17, 1, 0.75), num_kept(1 + 12, 1, 0.75)]
    renyi_prune.patch(model, config, order=1.5, prune_blocks=[2])  # a parameter merges into params
    assert model.blocks[2]._renyi_prune.params == {"order": 1.5}
    assert "_renyi_prune" not in model.blocks[1].__dict__
    renyi_prune.patch(model, config, criterion="evit")  # another criterion: colln's order does not carry over
    assert model.blocks[1]._renyi_prune.criterion.name == "evit" and model.blocks[1]._renyi_prune.params == {}
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['order'\]"):
        renyi_prune.patch(model, PruneConfig(prune_blocks=(1,)), order=2.0)
    with pytest.raises(ValueError, match="1.5"):
        renyi_prune.patch(model, config, keep_rate=1.5)
    renyi_prune.unpatch(model)


@pytest.mark.parametrize("second", [0.5, "renyi", {"keep_rate": 0.5}, (1, 2)])
def test_a_positional_second_argument_must_be_a_config(second, vit32):
    model = vit32()
    with pytest.raises(TypeError, match=re.escape(f"must be a PruneConfig, got {second!r}")):
        renyi_prune.patch(model, second)
    assert not renyi_prune.is_patched(model)
