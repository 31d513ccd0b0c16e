"""Why the Shannon entropy sum stays on the FP pipe: the error of a tensor-core Σ p·s (issue 12).

The forward kernel's Shannon mode adds one FFMA per attention element (Σ_j p_j s_j), which is what
keeps its main loop at ~1.17× the no-entropy loop (gate: 1.10×; see benchmarks/README.md, "Static
kernel report"). The alternative moves the sum to the idle tensor cores: Σ_j p_j s_j = scale ·
q_i · (Σ_j p_j k_j), a second (BLOCK_M × BLOCK_N) · (BLOCK_N × D) product beside P·V. Its operand P
must be rounded to the input's 16-bit type first, as P·V's is. This script measures what that
rounding costs in entropy accuracy, on CPU in PyTorch (the arithmetic of the two paths, not the
kernel): per row, H = ln l + m − (Σ_j p_j s_j)/l with p_j = e^{s_j − m}, against the fp64 entropy
of the same (rounded) inputs, at DeiT-S shapes (N = 197, H = 6, D = 64) and three logit scales
(the larger, the more peaked the rows). The kernel's tolerance for bf16 entropy is 2e-4 nats
(``tests/conftest.py`` ``TOL``).

Result (``benchmarks/results/static/tensor_core_entropy_error.md``): with P in bf16 the error reaches
~2e-3 nats (~10× the tolerance; with ``l`` summed from the unrounded P, as the output's normalizer is,
0.1 nats on peaked rows); P in fp16 with ``l`` from the rounded P comes closest (2.5e-4 max) but needs
a second conversion of P and of the K tile per key tile, more instructions than the FFMA it replaces.
The kernel's FFMA sum stays within 3e-5 nats.

    python benchmarks/tensor_core_entropy_error.py            # prints a Markdown table
    python benchmarks/tensor_core_entropy_error.py --out \
        benchmarks/results/static/tensor_core_entropy_error.md
"""

from __future__ import annotations

import argparse
import platform
import sys

import pandas as pd
import torch

PATHS = {
    "fp32 FFMA (the kernel)": None,
    "tensor core, P in bf16, l from rounded P": (torch.bfloat16, True),
    "tensor core, P in bf16, l from fp32 P": (torch.bfloat16, False),
    "tensor core, P in fp16, l from rounded P": (torch.float16, True),
}


def entropy_errors(q: torch.Tensor, k: torch.Tensor) -> dict[str, torch.Tensor]:
    """|H − H_fp64| (B, H, N) in nats for each path of :data:`PATHS`; q, k (B, H, N, D) bf16."""
    scale = q.shape[-1] ** -0.5
    exact = torch.distributions.Categorical(logits=q.double() @ k.double().mT * scale).entropy()
    s = q.float() @ k.float().mT * scale
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - m)
    errors = {}
    for name, path in PATHS.items():
        if path is None:
            row_sum, sum_ps = p.sum(-1), (p * s).sum(-1)
        else:
            dtype, rounded_l = path
            pr = p.to(dtype).float()
            sum_ps = (q.float() * (pr @ k.to(dtype).float())).sum(-1) * scale  # q_i · Σ_j p_j k_j
            row_sum = pr.sum(-1) if rounded_l else p.sum(-1)
        entropy = torch.log(row_sum) + m.squeeze(-1) - sum_ps / row_sum
        errors[name] = entropy.double().sub(exact).abs()
    return errors


def table(seed: int = 0) -> pd.DataFrame:
    """One row per (logit scale, path): max and mean absolute error in nats, and the mean entropy."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for logit_scale in (1.0, 3.0, 6.0):
        q, k = (torch.randn(2, 4, 6, 197, 64, generator=g) * logit_scale).bfloat16().unbind(0)
        mean_h = torch.distributions.Categorical(logits=q.double() @ k.double().mT / 8).entropy().mean()
        for name, err in entropy_errors(q, k).items():
            rows.append({"q, k scale": logit_scale, "mean H (nats)": round(float(mean_h), 3),
                         "path": name, "max error (nats)": f"{err.max():.1e}",
                         "mean error (nats)": f"{err.mean():.1e}"})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown table here (default: print it)")
    args = parser.parse_args(argv)
    stamp = f"torch {torch.__version__}, Python {platform.python_version()}, CPU"
    setup = "seed 0, B = 4, H = 6, N = 197, D = 64; `python benchmarks/tensor_core_entropy_error.py`"
    text = f"{table().to_markdown(index=False)}\n\n{stamp}, {setup}\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
