"""The Markdown summary of a report: its stamp, the gates, the forward's modes at their best tiles and
per kernel, arch and dtype the registers, spills, shared memory and C7515 counts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from typing import Any

from .cases import FWD_ORDERS, SHAPE
from .compile import _tool
from .gates import _best, _tile, evaluate_gates


def _ptxas_version() -> str:
    out = subprocess.run([_tool("ptxas"), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"V(\d+\.\d+\.\d+)", out)
    return found.group(1) if found else ""


def _md_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> list[str]:
    def cell(v: object) -> str:
        return "–" if v is None or v == "" else (f"{v:.3g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]


def _gate_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    verdict = {True: "pass", False: "**FAIL**", None: "not measured"}
    body = [(r["gate"], r["value"], r["limit"], verdict[r["passed"]], r["detail"]) for r in results]
    return _md_table(("gate", "value", "limit", "result", "measured"), body)


def _mode_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    body = []
    for mode, alpha in FWD_ORDERS:
        r = _best(rows, mode, alpha)
        if r is not None:
            cols = (
                "regs",
                "loop_instructions",
                "loop_instr_per_element",
                "mma",
                "mufu",
                "fp",
                "int",
                "pred",
                "extra_mufu_per_element",
                "loop_vs_none",
                "loop_vs_tutorial",
            )
            body.append((mode, alpha, _tile(r), *(r[c] for c in cols)))
    header = ("mode", "α", "best tile", "regs", "loop instr", "per element", "MMA", "MUFU", "FP", "int",
              "pred", "extra MUFU/element", "vs none", "vs tutorial")  # fmt: skip
    return _md_table(header, body)


def _kernel_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    body = []
    keys = dict.fromkeys((r["kernel"], r["arch"], r["dtype"]) for r in rows)
    for kernel, arch, dtype in keys:
        rs = [r for r in rows if (r["kernel"], r["arch"], r["dtype"]) == (kernel, arch, dtype)]
        rs = [r for r in rs if not r["error"]]
        loops = [r["loop_instructions"] for r in rs if r["loop_instructions"]]
        spills = [r["spill_stores"] or 0 for r in rs]
        body.append((
            kernel, arch, dtype, len(rs), max((r["regs"] for r in rs), default=None),
            sum(s > 0 for s in spills), max(spills, default=None), sum(not r["fits_smem"] for r in rs),
            sum("C7515" in r["warning_codes"] for r in rs), f"{min(loops)}–{max(loops)}" if loops else None,
        ))  # fmt: skip
    header = ("kernel", "arch", "dtype", "builds", "max regs", "builds spilling", "max spill stores (B)",
              "builds over smem", "builds with C7515", "loop instr")  # fmt: skip
    return _md_table(header, body)


def _markdown(rows: Sequence[dict[str, Any]], csv_name: str) -> str:
    """The Markdown summary of a report: its stamp, the gates, the forward's modes at their best tiles
    (sm_90, bf16), and per kernel, arch and dtype the registers, spills, shared memory and C7515 counts."""
    first = rows[0] if rows else {}
    errors = [r for r in rows if r["error"]]
    lines = [
        f"# Static kernel report: Triton {first.get('triton', '')}, ptxas {first.get('ptxas', '')}", "",
        f"Compile-time facts, not timings; `renyi-prune bench static` ({first.get('date', '')}, commit "
        f"{first.get('git_commit') or '?'}). Every row: [`{csv_name}`]({csv_name}). Stand-in inputs: timm's "
        f"q/k/v views at N = {SHAPE['N']}, H = {SHAPE['H']}; see `benchmarks/README.md` for the definitions.",
        "", "## Gates (issue 12: sm_90, bf16, D = 64, best config per mode)", "",
        *_gate_lines(evaluate_gates(rows)), "",
        "## Forward, each mode at its best tile (sm_90, bf16)", "", *_mode_lines(rows), "",
        "## Registers, spills, shared memory and C7515 per kernel", "", *_kernel_lines(rows), "",
    ]  # fmt: skip
    if errors:
        failed = [f"- {r['kernel']} {r['arch']} {r['dtype']} {r['mode']}: {r['error']}" for r in errors]
        lines += ["## Failed compiles", "", *failed, ""]
    return "\n".join(lines)
