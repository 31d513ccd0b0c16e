"""Every public entry point against the list of bad inputs of the robustness issue: the op, the reference
and the column pass, PruneConfig, patch and its readers, criteria, schedules, adapters, FLOPs, and the
readers of images and weights files.

Each case must raise TypeError (wrong type) or ValueError (wrong value) with the offending value in
the message (a file that cannot be read: an error naming the file), or, for B = 0 and N = 1, return
well-formed results. The command line's errors are tested with each command (test_cli.py, test_demo.py,
test_train_robustness.py).
"""

import io
import math
import pathlib
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

import renyi_prune
from renyi_prune import (
    PruneConfig,
    attention_column_norm,
    attention_probs,
    attention_with_entropy,
    attention_with_entropy_reference,
    count_flops,
    keep_rate_warmup,
    num_kept,
    renyi_entropy,
)
from renyi_prune.column_norm import attention_column_norm_reference
from renyi_prune.criteria import Criterion, register_criterion
from renyi_prune.data import image_folder
from renyi_prune.images import load_image_dir, preprocess
from renyi_prune.pretrained import load_model
from renyi_prune.pruning import select_tokens


def qkv(B=1, H=2, N=10, D=16, M=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    M = N if M is None else M
    return (
        torch.randn(B, H, N, D, generator=g).to(dtype),
        torch.randn(B, H, M, D, generator=g).to(dtype),
        torch.randn(B, H, M, D, generator=g).to(dtype),
    )


# q, k, v-taking entry points, each called as fn(q, k, v, **kwargs)
QKV_FUNCTIONS = {
    "op/triton": partial(attention_with_entropy, backend="triton"),
    "op/eager": partial(attention_with_entropy, backend="eager"),
    "reference": attention_with_entropy_reference,
    "column_norm": lambda q, k, v, **kw: attention_column_norm(q, k, **kw),
    "column_norm_reference": lambda q, k, v, **kw: attention_column_norm_reference(q, k, **kw),
    "attention_probs": lambda q, k, v, **kw: attention_probs(q, k, **kw),
}
TAKES_V = {"op/triton", "op/eager", "reference"}
TAKES_ALPHA = TAKES_V


def _bad_tensor_cases(name):
    cases = [
        ("rank", lambda q, k, v: (q[0], k, v), ValueError, r"rank 3 shape \(2, 10, 16\)"),
        ("batch", lambda q, k, v: (q, k[:, :1], v[:, :1]), ValueError, "does not match"),
        ("head dim", lambda q, k, v: (q[..., :8], k, v), ValueError, r"\(1, 2, 10, 8\)"),
        ("dtype mix", lambda q, k, v: (q.half(), k, v), ValueError, "float16"),
        ("int dtype", lambda q, k, v: (q.int(), k.int(), v.int()), TypeError, "torch.int32"),
        ("not a tensor", lambda q, k, v: (q.tolist(), k, v), TypeError, "list"),
        ("device mix", lambda q, k, v: (q.to("meta"), k, v), ValueError, "meta"),
        ("D = 0", lambda q, k, v: (q[..., :0], k[..., :0], v[..., :0]), ValueError, "D must be >= 1"),
        ("M = 0", lambda q, k, v: (q, k[:, :, :0], v[:, :, :0]), ValueError, "M=0"),
    ]
    if name in TAKES_V:
        cases.append(("v shape", lambda q, k, v: (q, k, v[:, :, :3]), ValueError, "same shape"))
    return [pytest.param(name, *c[1:], id=f"{name}-{c[0]}") for c in cases]


@pytest.mark.parametrize(
    "name, make, exc, match", [case for name in QKV_FUNCTIONS for case in _bad_tensor_cases(name)]
)
def test_bad_tensors_are_named(name, make, exc, match):
    with pytest.raises(exc, match=match):
        QKV_FUNCTIONS[name](*make(*qkv()))


BAD_ARGUMENTS = [
    ({"scale": "0.25"}, TypeError, "'0.25'"),
    ({"scale": math.inf}, ValueError, "inf"),
    ({"scale": math.nan}, ValueError, "nan"),
    ({"head_reduce": "max"}, ValueError, "'max'"),
    ({"alpha": -0.5}, ValueError, "-0.5"),
    ({"alpha": math.nan}, ValueError, "nan"),
    ({"alpha": "2"}, TypeError, "'2'"),
    ({"alpha": None}, TypeError, "None"),
    ({"alpha": True}, TypeError, "True"),
]


def _takes(name, kwargs):
    if "alpha" in kwargs and name not in TAKES_ALPHA:
        return False
    return "head_reduce" not in kwargs or name != "attention_probs"


@pytest.mark.parametrize(
    "name, kwargs, exc, match",
    [(name, *case) for name in QKV_FUNCTIONS for case in BAD_ARGUMENTS if _takes(name, case[0])],
)
def test_bad_arguments_are_named(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        QKV_FUNCTIONS[name](*qkv(), **kwargs)


@pytest.mark.parametrize("order, exc", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                        ("2", TypeError)])  # fmt: skip
def test_bad_column_norm_order(order, exc):
    q, k, _ = qkv()
    for fn in (attention_column_norm, attention_column_norm_reference):
        with pytest.raises(exc, match="order"):
            fn(q, k, order=order)


def test_head_dim_range_on_the_triton_path_and_fp64_fallback():
    for D in (8, 136):
        q, k, v = qkv(D=D)
        with pytest.raises(ValueError, match=f"D={D}"):
            attention_with_entropy(q, k, v)
        with pytest.raises(ValueError, match=f"D={D}"):
            attention_column_norm(q, k)
        attention_with_entropy(q, k, v, backend="eager")  # the reference takes any D
    # fp64: the eager reference answers in fp64 (the Triton kernels compute in fp32)
    q, k, v = qkv(dtype=torch.float64)
    out, ent = attention_with_entropy(q, k, v, alpha=2.0)
    r_out, r_ent, _ = attention_with_entropy_reference(q, k, v, alpha=2.0)
    assert out.dtype == ent.dtype == torch.float64
    assert torch.equal(out, r_out) and torch.equal(ent, r_ent)
    with pytest.raises(ValueError, match="float64"):
        attention_with_entropy(q, k, v, backend="triton")


@pytest.mark.parametrize("name", QKV_FUNCTIONS)
def test_empty_batch_and_single_token(name):
    fn = QKV_FUNCTIONS[name]
    empty = fn(*qkv(B=0))
    for t in empty if isinstance(empty, tuple) else (empty,):
        assert t.shape[0] == 0
    one = fn(*qkv(N=1))
    for t in one if isinstance(one, tuple) else (one,):
        assert t.shape[0] == 1 and torch.isfinite(t).all()
    if name in TAKES_V:  # a single key: P = 1, entropy 0 for every α
        for alpha in (0.0, 0.5, 1.0, 2.0, math.inf):
            _, ent, *_ = fn(*qkv(N=1), alpha=alpha)
            assert torch.equal(ent, torch.zeros_like(ent))


def test_flag_types():
    with pytest.raises(TypeError, match="entropy_grad"):
        attention_with_entropy(*qkv(), entropy_grad="yes")
    with pytest.raises(TypeError, match="return_lse"):
        attention_with_entropy(*qkv(), return_lse=1)
    with pytest.raises(ValueError, match="'gpu'"):
        attention_with_entropy(*qkv(), backend="gpu")


def test_renyi_entropy_and_reference_arguments():
    with pytest.raises(TypeError, match="list"):
        renyi_entropy([0.5, 0.5])
    with pytest.raises(TypeError, match="int64"):
        renyi_entropy(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="compute_dtype"):
        attention_with_entropy_reference(*qkv(), compute_dtype=torch.int32)


# --- the op and the column pass on timm's strided q, k, v (timm_qkv: the test device unless CPU is asked) ---


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda q, k, v: (q[0], k, v), ValueError, "rank 3"),
        (lambda q, k, v: (q, k[:, :1], v[:, :1]), ValueError, "does not match"),
        (lambda q, k, v: (q, k, v[..., :8]), ValueError, "same shape"),
        (lambda q, k, v: (q.half(), k, v), ValueError, "one dtype"),
        (lambda q, k, v: (q.int(), k.int(), v.int()), TypeError, "torch.int32"),
        (lambda q, k, v: (q.numpy(), k, v), TypeError, "ndarray"),
        (lambda q, k, v: (q.to("meta"), k, v), ValueError, "one device"),
    ],
)
def test_op_bad_inputs(make, exc, match, timm_qkv):
    q, k, v = (t.cpu() for t in timm_qkv(1, 2, 10, 16, device="cpu"))
    with pytest.raises(exc, match=match):
        attention_with_entropy(*make(q, k, v))


@pytest.mark.parametrize("alpha", [-0.5, float("nan"), "2", None, True])
def test_op_bad_alpha(alpha, timm_qkv):
    q, k, v = timm_qkv(1, 1, 4, 16)
    with pytest.raises((ValueError, TypeError), match="alpha"):
        attention_with_entropy(q, k, v, alpha=alpha)


def test_op_bad_head_dim_scale_and_reduce(timm_qkv):
    q, k, v = timm_qkv(1, 1, 4, 8)
    with pytest.raises(ValueError, match="D=8"):
        attention_with_entropy(q, k, v)
    q, k, v = timm_qkv(1, 1, 4, 16)
    with pytest.raises(ValueError, match="scale"):
        attention_with_entropy(q, k, v, scale=float("inf"))
    with pytest.raises(ValueError, match="'max'"):
        attention_with_entropy(q, k, v, head_reduce="max")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(order=0.0), ValueError, "0.0"),
        (dict(order=-1.0), ValueError, "-1.0"),
        (dict(order=math.nan), ValueError, "nan"),
        (dict(order="2"), TypeError, "'2'"),
        (dict(order=True), TypeError, "True"),
        (dict(head_reduce="max"), ValueError, "'max'"),
        (dict(scale=math.inf), ValueError, "inf"),
        (dict(lse=torch.zeros(1, 2, 16)), ValueError, r"\(1, 2, 16\)"),
        (dict(lse=torch.zeros(1, 2, 17, dtype=torch.float16)), ValueError, "float16"),
        (dict(lse=[0.0] * 17), TypeError, "list"),
    ],
)
def test_column_norm_bad_arguments(kwargs, exc, match, timm_qkv):
    q, k, _ = timm_qkv(1, 2, 17, 16)
    with pytest.raises(exc, match=match):
        attention_column_norm(q, k, **kwargs)


def test_column_norm_bad_tensors(timm_qkv):
    q, k, _ = timm_qkv(1, 2, 17, 16)
    with pytest.raises(ValueError, match="rank 3"):
        attention_column_norm(q[0], k)
    with pytest.raises(ValueError, match="one dtype"):
        attention_column_norm(q, k.half())
    with pytest.raises(ValueError, match="does not match"):
        attention_column_norm(q, k[:, :1])
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention_column_norm(q, None)
    q8, k8, _ = timm_qkv(1, 2, 17, 8)
    with pytest.raises(ValueError, match="D=8"):
        attention_column_norm(q8, k8)


# --- PruneConfig ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, exc, match",
    [
        ({"criterion": "entropy"}, ValueError, "unknown criterion 'entropy'"),
        ({"criterion": 3}, ValueError, "unknown criterion 3"),
        ({"params": {"alpha": 2.0}}, ValueError, r"give alpha as PruneConfig\(alpha=...\)"),
        ({"criterion": "colln", "params": {"ordr": 2}}, ValueError, r"no parameter\(s\) \['ordr'\]"),
        ({"criterion": "evit", "alpha": 2.0}, ValueError, r"takes no alpha \(got alpha=2.0\)"),
        ({"keep_rate": 0.0}, ValueError, "got 0.0"),
        ({"keep_rate": 1.5}, ValueError, "1.5"),
        ({"keep_rate": math.nan}, ValueError, "nan"),
        ({"keep_rate": "0.5"}, TypeError, "'0.5'"),
        ({"keep_rate": True}, TypeError, "True"),
        ({"keep_rate": (0.5, 0.5)}, ValueError, "2 values for 3 pruning blocks"),
        ({"keep_rate": (0.5, 0.5, 1.2)}, ValueError, "1.2"),
        ({"alpha": -1.0}, ValueError, "-1.0"),
        ({"alpha": math.nan}, ValueError, "nan"),
        ({"alpha": "inf"}, TypeError, "'inf'"),
        ({"alpha": (1.0, 2.0, 3.0, 4.0)}, ValueError, "4 values for 3 pruning blocks"),
        ({"prune_blocks": "3,6"}, TypeError, "'3,6'"),
        ({"prune_blocks": 3}, TypeError, "got 3"),
        ({"prune_blocks": [1.5]}, TypeError, "1.5"),
        ({"prune_blocks": [True]}, TypeError, "True"),
        ({"prune_blocks": [-1]}, ValueError, "-1 is negative"),
        ({"prune_blocks": [3, 3]}, ValueError, r"repeated indices: \[3, 3\]"),
        ({"prune_blocks": []}, ValueError, "empty"),
        ({"fuse_pruned": "yes"}, TypeError, "'yes'"),
        ({"criterion": "colln", "params": {"order": -2.0}}, ValueError, "-2.0"),
        ({"criterion": "random", "params": {"seed": -1}}, ValueError, "-1"),
        ({"criterion": "random", "params": {"seed": 1.5}}, TypeError, "1.5"),
        ({"params": {"backend": "gpu"}}, ValueError, "'gpu'"),
        ({"criterion": "headvar", "params": {"source": "rows"}}, ValueError, "'rows'"),
    ],
)
def test_prune_config_names_every_bad_field(fields, exc, match):
    with pytest.raises(exc, match=match):
        PruneConfig(**fields)


def test_prune_config_from_name_replace_and_from_dict_errors():
    with pytest.raises(ValueError, match=r"'evit\+fusion' asks for fusion, but fuse_pruned=False"):
        PruneConfig.from_name("evit+fusion", fuse_pruned=False)
    with pytest.raises(ValueError, match="unknown criterion 'nope'"):
        PruneConfig.from_name("nope+fusion")
    with pytest.raises(ValueError, match="2.0"):
        PruneConfig().replace(keep_rate=2.0)
    with pytest.raises(TypeError, match="bogus"):
        PruneConfig.from_dict({"criterion": "renyi", "bogus": 1})


# --- patch, criteria, schedule, FLOPs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def vit():
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2).eval()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"keep_rate": 0.0}, ValueError, "keep_rate must be in \\(0, 1\\], got 0.0"),
        ({"keep_rate": 1.01}, ValueError, "1.01"),
        ({"keep_rate": -0.1}, ValueError, "-0.1"),
        ({"keep_rate": math.nan}, ValueError, "nan"),
        ({"keep_rate": "0.5"}, TypeError, "'0.5'"),
        ({"keep_rate": [0.5, 0.5, 0.5]}, ValueError, "3 values for 2 pruning blocks"),
        ({"keep_rate": [0.5, 2.0]}, ValueError, "2.0"),
        ({"alpha": [1.0]}, ValueError, "1 values for 2 pruning blocks"),
        ({"alpha": -1.0}, ValueError, "-1.0"),
        ({"alpha": [1.0, -1.0]}, ValueError, "-1.0"),
        ({"alpha": "inf"}, TypeError, "'inf'"),
        ({"prune_blocks": [1, 4]}, ValueError, "index 4 is out of range for a model with 4 blocks"),
        ({"prune_blocks": [-1]}, ValueError, "-1"),
        ({"prune_blocks": [1, 1]}, ValueError, "repeated"),
        ({"prune_blocks": []}, ValueError, "empty"),
        ({"prune_blocks": 2}, TypeError, "2"),
        ({"prune_blocks": "1,2"}, TypeError, "'1,2'"),
        ({"prune_blocks": ["1"]}, TypeError, "'1'"),
        ({"prune_blocks": [1.0]}, TypeError, "1.0"),
        ({"prune_blocks": b"\x01"}, TypeError, "x01"),
        ({"criterion": "entropy"}, ValueError, "'entropy'"),
        ({"criterion": "evit", "alpha": 2.0}, ValueError, "takes no alpha"),
        ({"criterion": "colln", "order": -2.0}, ValueError, "-2.0"),
        ({"criterion": "colln", "ordr": 2.0}, ValueError, r"no parameter\(s\) \['ordr'\]"),
        ({"criterion": "random", "seed": -1}, ValueError, "-1"),
        ({"criterion": "random", "seed": 1.5}, TypeError, "1.5"),
        ({"criterion": "renyi", "backend": "gpu"}, ValueError, "'gpu'"),
        ({"criterion": "headvar", "source": "rows"}, ValueError, "'rows'"),
        ({"fuse_pruned": "yes"}, TypeError, "'yes'"),
    ],
)
def test_patch_rejects_bad_arguments_at_patch_time(vit, kwargs, exc, match):
    kwargs = {"prune_blocks": (1, 2), **kwargs}
    with pytest.raises(exc, match=match):
        renyi_prune.patch(vit, **kwargs)
    assert not renyi_prune.is_patched(vit)


def test_patch_names_what_it_does_not_support():
    from timm.models.vision_transformer import ResPostBlock

    families = re.escape(str(renyi_prune.available_adapters()))
    with pytest.raises(TypeError, match="Linear"):
        renyi_prune.patch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="got str"):
        renyi_prune.patch("deit_small_patch16_224")
    with pytest.raises(TypeError, match=f"unsupported model ResNet; supported families: {families}"):
        renyi_prune.patch(timm.create_model("resnet18", pretrained=False))
    relpos = timm.create_model("vit_relpos_small_patch16_224", pretrained=False, depth=2, img_size=32)
    with pytest.raises(TypeError, match=f"VisionTransformerRelPos; supported families: {families}"):
        renyi_prune.patch(relpos, prune_blocks=[1])
    small = dict(img_size=32, patch_size=16, embed_dim=64, depth=4, num_heads=2)
    with pytest.raises(TypeError, match=r"model.blocks\[1\] is timm.models.vision_transformer.ResPostBlock,"):
        renyi_prune.patch(VisionTransformer(**small, block_fn=ResPostBlock), prune_blocks=[1])
    with pytest.raises(ValueError, match=r"model.blocks\[1\].attn.attn_drop.p=0.1"):
        renyi_prune.patch(VisionTransformer(**small, attn_drop_rate=0.1), prune_blocks=[1])
    no_cls = VisionTransformer(**small, class_token=False, global_pool="avg")
    for kwargs in ({"criterion": "evit"}, {"fuse_pruned": True}):
        with pytest.raises(ValueError, match="need a CLS token"):
            renyi_prune.patch(no_cls, prune_blocks=[1], **kwargs)
    assert not renyi_prune.is_patched(no_cls)
    renyi_prune.patch(no_cls, prune_blocks=[1])  # entropy needs no CLS token


def test_readers_reject_non_modules():
    for fn in (renyi_prune.unpatch, renyi_prune.is_patched, renyi_prune.kept_token_indices,
               renyi_prune.token_scores, renyi_prune.pruning_generators):  # fmt: skip
        with pytest.raises(TypeError, match="dict"):
            fn({"blocks": []})


def test_set_keep_rate_and_readers(vit):
    with pytest.raises(ValueError, match="not patched"):
        renyi_prune.set_keep_rate(vit, 0.5)
    with pytest.raises(ValueError, match="not patched"):
        renyi_prune.token_scores(vit)
    renyi_prune.patch(vit, prune_blocks=(1, 2))
    try:
        for reader in (renyi_prune.kept_token_indices, renyi_prune.token_scores):
            with pytest.raises(ValueError, match="pruning block 1 has not run yet"):
                reader(vit)
        with pytest.raises(ValueError, match="3 values for 2"):
            renyi_prune.set_keep_rate(vit, [0.5, 0.5, 0.5])
        with pytest.raises(ValueError, match="-0.5"):
            renyi_prune.set_keep_rate(vit, -0.5)
    finally:
        renyi_prune.unpatch(vit)


def test_patched_model_on_an_empty_batch_and_a_single_patch(vit):
    renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), fuse_pruned=True)
    try:
        with torch.no_grad():
            assert vit(torch.randn(0, 3, 32, 32)).shape == (0, 1000)
        assert all(idx.shape == (0, idx.shape[1]) for idx in renyi_prune.kept_token_indices(vit).values())
    finally:
        renyi_prune.unpatch(vit)
    one_patch = VisionTransformer(img_size=8, patch_size=8, embed_dim=64, depth=3, num_heads=2).eval()
    renyi_prune.patch(one_patch, keep_rate=0.1, prune_blocks=(1, 2))  # N = 1 patch + CLS: kept
    with torch.no_grad():
        assert torch.isfinite(one_patch(torch.randn(2, 3, 8, 8))).all()
    assert [idx.tolist() for idx in renyi_prune.kept_token_indices(one_patch).values()] == [[[0, 1]] * 2] * 2


def test_select_tokens_and_num_kept_arguments():
    score = torch.rand(2, 5)
    with pytest.raises(TypeError, match=r"\(5,\)"):
        select_tokens(score[0], 1, 2, "lowest")
    with pytest.raises(ValueError, match="k=5"):
        select_tokens(score, 1, 5, "lowest")
    with pytest.raises(ValueError, match="num_prefix_tokens=6"):
        select_tokens(score, 6, 0, "lowest")
    with pytest.raises(ValueError, match="'middle'"):
        select_tokens(score, 1, 2, "middle")
    assert select_tokens(score[:0], 1, 2, "lowest").shape == (0, 3)
    with pytest.raises(ValueError, match="1.5"):
        num_kept(197, 1, 1.5)
    with pytest.raises(ValueError, match="num_tokens=0"):
        num_kept(0, 1, 0.5)
    with pytest.raises(TypeError, match="197.0"):
        num_kept(197.0, 1, 0.5)


def test_criteria_registry_and_schedule_arguments():
    with pytest.raises(TypeError, match="dict"):
        register_criterion({"name": "x"})
    with pytest.raises(TypeError, match="name"):
        Criterion("", "lowest", (), lambda a, p: a.entropy)
    with pytest.raises(TypeError, match="score"):
        Criterion("x", "lowest", (), score=None)
    with pytest.raises(ValueError, match="'logits'"):
        Criterion("x", "lowest", {"logits"}, lambda a, p: a.entropy)
    with pytest.raises(TypeError, match="Criterion.setup must be callable or None, got 'seed'"):
        Criterion("x", "lowest", (), lambda a, p: a.entropy, setup="seed")
    with pytest.raises(TypeError, match=r"Criterion.attention must be callable or None, got \{'alpha': 2\}"):
        Criterion("x", "lowest", (), lambda a, p: a.entropy, attention={"alpha": 2})
    with pytest.raises(TypeError, match="Criterion.deterministic must be a bool, got 1"):
        Criterion("x", "lowest", (), lambda a, p: a.entropy, deterministic=1)
    with pytest.raises(TypeError, match="2.5"):
        keep_rate_warmup(2.5, 0.5, ramp_steps=3)
    with pytest.raises(ValueError, match="-1"):
        keep_rate_warmup(-1, 0.5, ramp_steps=3)
    with pytest.raises(ValueError, match="initial keep rate"):
        keep_rate_warmup(0, 0.5, ramp_steps=3, initial=1.5)
    with pytest.raises(TypeError, match="target keep rate"):
        keep_rate_warmup(0, [0.5, "0.3"], ramp_steps=3)


def test_adapter_registry_arguments():
    from renyi_prune.adapters import ModelAdapter, register_adapter, unregister_adapter
    from renyi_prune.adapters.timm_vit import TimmViTAdapter

    with pytest.raises(TypeError, match="TimmViTAdapter"):  # the class, not an instance
        register_adapter(TimmViTAdapter)
    with pytest.raises(TypeError, match="ModelAdapter.family must be a non-empty str, got ''"):
        register_adapter(ModelAdapter())
    with pytest.raises(ValueError, match="no model adapter for family 'keras'"):
        unregister_adapter("keras")
    with pytest.raises(TypeError, match="got dict"):
        renyi_prune.adapter_for({"blocks": []})


def test_count_flops_arguments(vit):
    with pytest.raises(TypeError, match="str"):
        count_flops("deit_small_patch16_224")
    for bad in (0, -32, (32,), 32.0, True):
        with pytest.raises(ValueError, match="img_size"):
            count_flops(vit, img_size=bad)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size"):
            count_flops(vit, img_size=32, batch_size=bad)


def test_count_flops_advances_no_generator(vit):
    renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), criterion="random")
    try:
        gens = renyi_prune.pruning_generators(vit)
        before = [g.get_state() for g in gens] + [torch.get_rng_state()]
        count_flops(vit, img_size=32)
        after = [g.get_state() for g in gens] + [torch.get_rng_state()]
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    finally:
        renyi_prune.unpatch(vit)


# --- files and images: the error names the file and what is wrong with it ------------------------------

WEIGHTS_MODEL = "vit_tiny_patch16_224"


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_a_corrupt_image_in_an_image_folder_is_named(tmp_path):
    (tmp_path / "val" / "cat").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "val" / "cat" / "a.png")
    bad = _truncated_png(tmp_path / "val" / "dog" / "b.png")
    ds = image_folder(tmp_path, "val")
    assert ds[0][1] == 0  # the good image loads
    with pytest.raises(OSError, match="cannot read image") as info:
        ds[1]
    assert str(bad) in str(info.value)


def test_a_corrupt_image_in_the_demo_folder_is_named(tmp_path):
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    bad = _truncated_png(tmp_path / "broken.png")
    with pytest.raises(OSError, match="cannot read image") as info:
        load_image_dir(tmp_path)
    assert str(bad) in str(info.value)


def test_load_model_names_what_is_wrong_with_the_weights_file(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(ValueError, match=f"empty file \\(0 bytes\\): {empty}"):
        load_model(WEIGHTS_MODEL, checkpoint=empty)
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"corrupt or truncated file: {cut}"):
        load_model(WEIGHTS_MODEL, checkpoint=cut)
    objects = tmp_path / "objects.pth"
    state = timm.create_model(WEIGHTS_MODEL).state_dict()
    torch.save({"model": state, "where": pathlib.PurePosixPath("/x")}, objects)
    with pytest.raises(ValueError) as info:
        load_model(WEIGHTS_MODEL, checkpoint=objects)
    message = str(info.value)
    assert "weights_only" not in message and "(pathlib.PurePosixPath)" in message and "torch.save" in message


def test_preprocess_arguments() -> None:
    img = Image.new("RGB", (50, 40))
    with pytest.raises(ValueError):
        preprocess([])
    with pytest.raises(TypeError):
        preprocess([np.zeros((4, 4, 3))])
    with pytest.raises(ValueError):
        preprocess([img], crop_pct=1.5)
