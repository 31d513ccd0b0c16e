"""Token-importance criteria behind one API (``renyi_prune.patch(model, criterion=...)``).

Each criterion lives in its own module of this package and registers itself on import; every module
here is imported below, so adding a criterion is adding one file. See :class:`Criterion`.

* ``renyi`` — head-mean Rényi attention entropy H_α of the token's row; lowest kept
  (Aizawa & Igaue, arXiv 2604.03803). ``shannon`` is ``renyi`` with α = 1.
* ``evit`` — CLS attention to the token, head mean; highest kept (Liang et al., ICLR 2022).
* ``colln`` — column ℓ_n norm of P, head mean; highest kept (Su, Zhang & Zhang, Col-Ln).
* ``headvar`` / ``headmad`` — variance / MAD across heads of the attention the token receives;
  highest kept (Igaue & Aizawa, ACPR 2025).
* ``random`` — uniform noise from a seeded generator; the control.
"""

import importlib
import pkgutil

from .base import (
    NEEDS,
    AttentionPass,
    BlockContext,
    Criterion,
    available_criteria,
    get_criterion,
    register_criterion,
    run_attention,
    unregister_criterion,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "NEEDS",
    "AttentionPass",
    "BlockContext",
    "Criterion",
    "available_criteria",
    "get_criterion",
    "register_criterion",
    "run_attention",
    "unregister_criterion",
]
