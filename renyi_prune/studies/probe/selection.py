"""α chosen honestly: per keep rate, on a validation split carved out of the train images.

The probes used for the choice are fitted on the other train images (unpruned); the validation images
are pruned with renyi at every α and classified. :func:`choose_alpha` reads only that validation table:
the test images and their labels play no part. The test rows of the chosen α are then reported as
"renyi (α chosen on val)" next to the fixed-α rows (they are the test results of the probes fitted on all
train images, as every other row).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["CHOSEN_LABEL", "choose_alpha"]

#: The ``criterion`` of the rows whose α was chosen on the validation split.
CHOSEN_LABEL = "renyi (α chosen on val)"


def choose_alpha(val: pd.DataFrame) -> dict[float, float]:
    """``{keep rate: α}``: per keep rate, the α of the highest ``val_top1_linear``; ties go to the higher
    ``val_top1_knn``, then to the α listed first.

    Args:
        val: one row per (keep rate, α) with columns ``keep_rate``, ``alpha``, ``val_top1_linear``,
            ``val_top1_knn`` (%), in the order the α were requested.

    Raises:
        KeyError: a column is missing. ValueError: ``val`` is empty.

    Example:
        >>> val = pd.DataFrame({"keep_rate": [0.7, 0.7, 0.5, 0.5], "alpha": [1.0, 2.0, 1.0, 2.0],
        ...                     "val_top1_linear": [80.0, 82.0, 70.0, 70.0],
        ...                     "val_top1_knn": [75.0, 70.0, 66.0, 65.0]})
        >>> choose_alpha(val)
        {0.7: 2.0, 0.5: 1.0}
    """
    if val.empty:
        raise ValueError("no validation rows to choose alpha from")
    order = val.assign(_order=range(len(val)))
    ranked = order.sort_values(
        ["val_top1_linear", "val_top1_knn", "_order"], ascending=[False, False, True], kind="stable"
    )
    best = ranked.drop_duplicates("keep_rate", keep="first")
    by_rate = dict(zip(best["keep_rate"].astype(float), best["alpha"].astype(float), strict=True))
    return {float(r): by_rate[float(r)] for r in dict.fromkeys(val["keep_rate"])}
