"""Rényi entropy at extreme orders, every path against a 50-digit mpmath truth.

α → 1 (where log(Σ p^α)/(1 − α) is 0/0), α in the tens to 1e9 (where p^α and α·log p leave fp32's
range) and α beyond fp32's largest float: the fused kernel (Triton, interpreted on CPU), the eager
reference in fp32 (the default CPU path of demo, train and ``backend="eager"``) and in fp64 must all
match the truth and stay in [0, log M] with a finite value wherever the lse is finite.
"""

import math

import mpmath
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import renyi_prune
from renyi_prune import attention_with_entropy, renyi_entropy
from renyi_prune.reference import attention_with_entropy_reference

ALPHAS = [
    1 - 1e-12, 1 + 1e-12, 1 - 1e-9, 1 + 1e-9, 1 - 1e-6, 1 + 1e-6, 1 - 1e-3, 1 + 1e-3,
    30.0, 60.0, 1e3, 1e6, 1e9, 3e38, 1e39, 1e300,
]  # fmt: skip
N = 23


def _truth(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """H_α = log(Σ p^α)/(1 − α) of each row of fp64 ``logits`` (..., M), at 50 digits."""
    rows = logits.reshape(-1, logits.shape[-1]).tolist()
    out = []
    with mpmath.workdps(50):
        a = mpmath.mpf(alpha)
        for row in rows:
            s = [mpmath.mpf(x) for x in row]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(x) for x in s))
            power_sum = mpmath.fsum(mpmath.exp(a * (x - lse)) for x in s)
            out.append(float(mpmath.log(power_sum) / (1 - a)))
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape[:-1])


@pytest.fixture(scope="module")
def case(timm_qkv):
    """(q, k, v) fp32 with rows from near-uniform to peaked, and their fp64 logits."""
    q, k, v = timm_qkv(1, 3, N, 32, seed=11)
    q = q * torch.tensor([0.2, 1.0, 3.0]).view(1, 3, 1, 1)  # one head per regime
    logits = (q.double() @ k.double().transpose(-2, -1)) * 32**-0.5
    return q, k, v, logits


def _check(ent: torch.Tensor, truth: torch.Tensor, atol: float) -> None:
    assert torch.isfinite(ent).all(), "finite lse, so the entropy must be finite"
    assert (ent >= -atol).all() and (ent <= math.log(N) + atol).all(), "H_α must lie in [0, log M]"
    torch.testing.assert_close(ent.double(), truth, atol=atol, rtol=0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_every_path_matches_high_precision_truth(case, alpha, monkeypatch):
    q, k, v, logits = case
    truth = _truth(logits, alpha)
    # fused kernel: fp32 logits carry ~1e-7 relative rounding, which moves H by ~1e-6 at any α
    _, ent = attention_with_entropy(q, k, v, alpha=alpha, head_reduce="none", backend="triton")
    _check(ent, truth, atol=2e-5)
    # eager reference in fp32 (the default CPU path) and fp64 (the ground truth of the tests)
    _, ent32, _ = attention_with_entropy_reference(q, k, v, alpha=alpha, head_reduce="none")
    _check(ent32, truth, atol=2e-5)
    qd, kd, vd = (t.double() for t in (q, k, v))
    _, ent64, _ = attention_with_entropy_reference(qd, kd, vd, alpha, head_reduce="none")
    _check(ent64, truth, atol=1e-9)


@pytest.mark.parametrize("alpha", [1 - 1e-9, 1 + 1e-6, 60.0, 1e3, 3e38, 1e300])
def test_renyi_entropy_of_probabilities_is_stable(case, alpha):
    """The public ``renyi_entropy(p, α)`` (from probabilities) follows the same log-domain forms."""
    _, _, _, logits = case
    p = torch.softmax(logits, dim=-1)
    truth = _truth(logits, alpha)
    _check(renyi_entropy(p, alpha), truth, atol=1e-9)
    _check(renyi_entropy(p.float(), alpha), truth, atol=2e-5)


def test_entropy_gradient_near_one_is_finite(case):
    """Autograd through the eager entropy at α = 1 ± 1e-9 is finite and close to Shannon's."""
    q, k, v, _ = case
    grads = []
    for alpha in (1.0, 1 - 1e-9, 1 + 1e-9):
        qd = q.double().requires_grad_(True)
        _, ent, _ = attention_with_entropy_reference(qd, k.double(), v.double(), alpha)
        ent.sum().backward()
        grads.append(qd.grad)
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads[2], grads[0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("alpha", [60.0, 1 + 1e-9])
def test_eager_and_triton_paths_prune_alike_at_extreme_orders(alpha, assert_same_choices):
    """A patched ViT keeps the same patches on the eager path as on the kernel (up to near-ties):
    before the log-domain entropy, α = 60 gave +inf scores in fp32 on the eager path (every patch
    tied, so the first ones were kept) and α = 1 + 1e-9 gave entropies of ±200 nats."""
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2).eval()
    with torch.no_grad():  # peaked attention, as a trained ViT has
        for blk in vit.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs = {}
    for backend in ("triton", "eager"):
        renyi_prune.patch(vit, keep_rate=0.5, alpha=alpha, prune_blocks=(1, 2), backend=backend)
        with torch.no_grad():
            vit(x)
        runs[backend] = renyi_prune.kept_token_indices(vit), renyi_prune.token_scores(vit)
    renyi_prune.unpatch(vit)
    (kept, scores), (kept_eager, scores_eager) = runs["triton"], runs["eager"]
    torch.testing.assert_close(scores_eager[1], scores[1], atol=2e-5, rtol=0)
    assert ((scores[1] >= 0) & (scores[1] <= math.log(65))).all()
    assert_same_choices(kept, kept_eager, scores, "lowest")
