"""NaN/Inf inputs follow scaled_dot_product_attention; a NaN entropy never decides who survives;
kept tokens are deterministic and do not depend on the rest of the batch."""

import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch.nn.attention import SDPBackend, sdpa_kernel

import renyi_prune
from renyi_prune import attention_column_norm, attention_with_entropy, attention_with_entropy_reference
from renyi_prune.column_norm import attention_column_norm_reference
from renyi_prune.criteria import get_criterion
from renyi_prune.pruning import select_tokens

# the interpreter (NumPy) warns about the inf − inf and 0/0 these tests provoke on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ALPHAS = [0.0, 0.5, 1.0, 2.0, math.inf]


def _sdpa(q, k, v):
    """PyTorch's math backend: the definition (CPU's flash backend returns 0 for NaN rows)."""
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.double(), k.double(), v.double())


@pytest.mark.parametrize("backend", ["triton", "eager"])
def test_output_follows_sdpa(nonfinite_case, backend, nonfinite_inputs):
    q, k, v = nonfinite_inputs(nonfinite_case)
    expected = _sdpa(q, k, v)
    for alpha in ALPHAS:
        out, ent, lse = attention_with_entropy(
            q, k, v, alpha=alpha, head_reduce="none", return_lse=True, backend=backend
        )
        assert torch.equal(out.isnan(), expected.isnan()), (alpha, out.isnan().sum(), expected.isnan().sum())
        assert torch.equal(out.isinf(), expected.isinf())
        finite = torch.isfinite(expected)
        torch.testing.assert_close(out.double()[finite], expected[finite], atol=1e-4, rtol=1e-4)
        # the rule for the entropy: NaN exactly where the row's lse is not finite
        assert torch.equal(ent.isnan(), ~torch.isfinite(lse)), alpha
        assert not ent.isinf().any()


@pytest.mark.parametrize("backend", ["triton", "eager"])
def test_gradients_follow_sdpa_for_a_row_with_no_key(backend, nonfinite_inputs):
    q, k, v = (t.requires_grad_() for t in nonfinite_inputs("a row with no key"))
    out, _ = attention_with_entropy(q, k, v, backend=backend)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().double().requires_grad_() for t in (q, k, v))
    expected = torch.autograd.grad(_sdpa(q2, k2, v2).square().sum(), (q2, k2, v2))
    for got, want in zip(grads, expected, strict=True):
        assert torch.equal(got.isnan(), want.isnan())
        finite = torch.isfinite(want)
        torch.testing.assert_close(got.double()[finite], want[finite], atol=1e-4, rtol=1e-4)


def test_column_norm_matches_the_reference(nonfinite_case, nonfinite_inputs):
    """The Col-Ln pass from the kernel's lse agrees with the reference wherever both are finite and
    never returns ±inf (a row with no attendable key adds 0 to every column; which columns a NaN
    row poisons may differ, as torch.amax and the kernel's max treat NaN differently)."""
    q, k, _ = nonfinite_inputs(nonfinite_case)
    _, _, lse = attention_with_entropy(q, k, k, return_lse=True, backend="triton")
    qd, kd = q.double(), k.double()
    _, _, r_lse = attention_with_entropy_reference(qd, kd, kd, head_reduce="none")
    for order in (1.0, 2.0, math.inf):
        got = attention_column_norm(q, k, order=order, lse=lse, head_reduce="none")
        want = attention_column_norm_reference(qd, kd, order=order, lse=r_lse, head_reduce="none")
        assert not got.isinf().any()
        both = torch.isfinite(got) & torch.isfinite(want)
        assert both.sum() >= got.numel() // 2, order  # the other head and batch entry stay finite
        torch.testing.assert_close(got.double()[both], want[both], atol=1e-4, rtol=1e-4)


def test_nan_scores_rank_last_and_ties_by_position():
    nan = math.nan
    score = torch.tensor([[0.0, 3.0, nan, 1.0, nan, 1.0, 2.0]])  # token 0: CLS
    assert select_tokens(score, 1, 3, "lowest").tolist() == [[0, 3, 5, 6]]
    assert select_tokens(score, 1, 3, "highest").tolist() == [[0, 1, 3, 6]]
    assert select_tokens(score, 1, 5, "lowest").tolist() == [[0, 1, 2, 3, 5, 6]]  # first NaN by position
    all_nan = torch.full((1, 7), nan)
    assert select_tokens(all_nan, 1, 2, "lowest").tolist() == [[0, 1, 2]]


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2).eval()


@pytest.mark.parametrize("criterion", ["renyi", "evit", "colln", "headvar"])
def test_kept_indices_are_deterministic_and_batch_independent(vit, criterion, assert_same_choices):
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    images[3, :, :8, :8] = math.nan  # one poisoned sample must not change the others' choices
    renyi_prune.patch(vit, keep_rate=0.5, prune_blocks=(1, 2), criterion=criterion)
    try:

        def kept(x):
            with torch.no_grad():
                vit(x)
            return renyi_prune.kept_token_indices(vit), renyi_prune.token_scores(vit)

        full, full_scores = kept(images)
        again, again_scores = kept(images)
        for i in full:
            assert torch.equal(full[i], again[i])
            assert torch.equal(full_scores[i].isnan(), again_scores[i].isnan())
            assert torch.equal(full_scores[i].nan_to_num(), again_scores[i].nan_to_num())
        # other batch sizes run other BLAS kernels: the same choices up to near-ties at the cut
        keep = get_criterion(criterion).keep
        perm = torch.tensor([4, 0, 2, 1])  # without the poisoned sample, in another order
        part, _ = kept(images[perm])
        by_sample = {i: full[i][perm] for i in full}
        assert_same_choices(by_sample, part, {i: s[perm] for i, s in full_scores.items()}, keep)
        alone, _ = kept(images[2:3])
        alone_scores = {i: s[2:3] for i, s in full_scores.items()}
        assert_same_choices({i: full[i][2:3] for i in full}, alone, alone_scores, keep)
    finally:
        renyi_prune.unpatch(vit)
