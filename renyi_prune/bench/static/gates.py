"""The gates of issue 12, judged on the sm_90, bf16, D = 64 rows of a report.

Per mode the *best config* is the tile with the fewest loop instructions per attention element
(loop_instructions × num_warps / (BLOCK_M × BLOCK_N)) among those without spills; a mode's loop is
compared with mode ``none``'s per attention element, each at its best config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .cases import _same_build


@dataclasses.dataclass(frozen=True)
class Gate:
    """One gate of issue 12, judged on the sm_90, bf16, D = 64 rows of a report.

    ``kind``: ``loop`` (per attention element, the forward loop of mode (``mode``, ``alpha``) at its best
    config over mode ``none``'s at its best config), ``tutorial`` (mode ``none``'s forward loop at its best
    config over the tutorial's loop at the same tile), ``mufu`` (extra MUFU per attention element of the
    mode at its best config), ``c7515`` (builds of ``kernel`` with ptxas advisory C7515, 'wgmma
    serialized') or ``spills`` (builds of ``kernel`` that spill). Passed when the value is ≤ ``limit``.

    Example:
        >>> Gate("shannon_loop", "loop", 1.10, mode="shannon", alpha=1.0).limit
        1.1
    """

    name: str
    kind: str
    limit: float
    mode: str = "none"
    alpha: float | None = None
    kernel: str = "fwd"


#: The gates of issue 12 (sm_90, bf16, D = 64, best config per mode).
GATES = (
    Gate("shannon_loop", "loop", 1.10, "shannon", 1.0),
    Gate("min_loop", "loop", 1.10, "min", math.inf),
    Gate("renyi_a2_loop", "loop", 1.10, "renyi_direct", 2.0),
    Gate("renyi_a3_loop", "loop", 1.10, "renyi_direct", 3.0),
    Gate("renyi_a0.5_loop", "loop", 1.35, "renyi_direct", 0.5),
    Gate("none_vs_tutorial", "tutorial", 1.05),
    Gate("shannon_mufu", "mufu", 0.0, "shannon", 1.0),
    Gate("renyi_a2_mufu", "mufu", 0.0, "renyi_direct", 2.0),
    Gate("renyi_a3_mufu", "mufu", 0.0, "renyi_direct", 3.0),
    Gate("min_mufu", "mufu", 0.0, "min", math.inf),
    *(Gate(f"no_c7515_{k}", "c7515", 0, kernel=k) for k in ("fwd", "dkdv", "dq", "colnorm")),
    *(Gate(f"no_spills_{k}", "spills", 0, kernel=k) for k in ("fwd", "dkdv", "dq", "colnorm")),
)


def _gate_rows(rows: Sequence[dict[str, Any]], kernel: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["kernel"] == kernel and r["arch"] == "sm_90" and r["dtype"] == "bf16"
            and r["head_dim"] == 64 and not r["error"]]  # fmt: skip


def _best(rows: Sequence[dict[str, Any]], mode: str, alpha: float | None) -> dict[str, Any] | None:
    """The forward row of (``mode``, ``alpha``) with the fewest loop instructions per attention element
    among builds that neither spill nor exceed shared memory (the first such tile on a tie)."""
    fits = [r for r in _gate_rows(rows, "fwd") if r["mode"] == mode and r["alpha"] == alpha
            and r["loop_instr_per_element"] and not r["spill_stores"] and r["fits_smem"]]  # fmt: skip
    return min(fits, key=lambda r: r["loop_instr_per_element"], default=None)


def _tile(row: dict[str, Any]) -> str:
    return f"{row['BLOCK_M']}x{row['BLOCK_N']}, {row['num_warps']} warps, {row['num_stages']} stages"


def _measure(gate: Gate, rows: Sequence[dict[str, Any]]) -> tuple[float | None, str]:
    """(value, how it was measured) of ``gate``; value None when ``rows`` lack what it needs."""
    if gate.kind in ("c7515", "spills"):
        builds = _gate_rows(rows, gate.kernel)
        c7515 = gate.kind == "c7515"
        bad = [r for r in builds if ("C7515" in r["warning_codes"] if c7515 else r["spill_stores"])]
        what = "with C7515" if c7515 else "spilling"
        return (len(bad) if builds else None), f"{len(bad)} of {len(builds)} sm_90 builds {what}"
    best, none = _best(rows, gate.mode, gate.alpha), _best(rows, "none", None)
    if gate.kind == "mufu":
        value = None if best is None else best["extra_mufu_per_element"]
        return value, "" if best is None else f"at {_tile(best)}: {best['mufu']} MUFU in the loop"
    if gate.kind == "tutorial":
        tutorials = {_same_build(r): r for r in _gate_rows(rows, "tutorial_fwd")}
        tut = tutorials.get(_same_build(none)) if none is not None else None
        if tut is None:
            return None, ""
        detail = f"{none['loop_instructions']} vs {tut['loop_instructions']} instructions at {_tile(none)}"
        return none["loop_instructions"] / tut["loop_instructions"], detail
    if best is None or none is None:
        return None, ""
    value = best["loop_instr_per_element"] / none["loop_instr_per_element"]
    detail = f"{best['loop_instructions']} instructions at {_tile(best)} vs {none['loop_instructions']} at "
    return value, detail + _tile(none)


def evaluate_gates(rows: Sequence[dict[str, Any]], gates: Sequence[Gate] = GATES) -> list[dict[str, Any]]:
    """Judge ``gates`` on report rows (as :func:`compile_cases` returns them, after the derived columns).

    Returns:
        One dict per gate: ``gate`` (its name), ``value``, ``limit``, ``passed`` (None when the rows lack
        the builds the gate needs) and ``detail`` (the numbers behind the value).

    Example:
        >>> evaluate_gates([], GATES[:1])
        [{'gate': 'shannon_loop', 'value': None, 'limit': 1.1, 'passed': None, 'detail': 'not measured'}]
    """
    out = []
    for gate in gates:
        value, detail = _measure(gate, rows)
        passed = None if value is None else value <= gate.limit + 1e-12
        out.append({"gate": gate.name, "value": value, "limit": gate.limit, "passed": passed,
                    "detail": detail if value is not None else "not measured"})  # fmt: skip
    return out
