"""Compiling cases in worker processes: each worker compiles the specialization of a case's launch
(:mod:`.specialize`), reruns Triton's bundled ptxas for its log, reads the SASS (:mod:`.sass`) and writes
one JSON row per case; the parent balances the cases over the workers and fills the derived columns.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import _common
from .cases import CSV_COLUMNS, SMEM_LIMIT, Case, _same_build
from .sass import LoopStats, analyze_sass, parse_ptxas_log, wide_loads
from .specialize import _specialization, _stand_in_gpu


def _tool(name: str) -> str:
    """Path of Triton's bundled NVIDIA tool ``name`` (ptxas, cuobjdump)."""
    from triton import knobs

    return getattr(knobs.nvidia, name).path


def _ptxas(ptx: str, arch: int, options: Any) -> tuple[str, bytes]:
    """(log, cubin) of Triton's own ptxas command for ``ptx`` (``-lineinfo -v --gpu-name=sm_XXa``), rerun
    to keep its log, which Triton discards (and which a cached compile never had)."""
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        fmad = [] if options.enable_fp_fusion else ["--fmad=false"]
        extra = options.ptx_options.split(" ") if options.ptx_options else []
        gpu = f"--gpu-name={sm_arch_from_capability(arch)}"
        cmd = [_tool("ptxas"), "-lineinfo", *fmad, "-v", *extra, gpu, str(src), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return res.stdout + res.stderr, out.read_bytes()


def _sass(cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return subprocess.run([_tool("cuobjdump"), "-sass", str(path)], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip


def _compile(case: Case, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measured columns of ``case``: compile its launch's specialization, rerun ptxas, read the
    SASS. Identical specializations (e.g. α = 2 and 3) are compiled once (``cache``)."""
    fn, data = _specialization(case)
    if data not in cache:
        with _stand_in_gpu(case.arch_number):
            compiled = fn.preload(data)
        fn.device_caches[case.arch_number][0].clear()  # a later launch must reach the hook, not this kernel
        meta = compiled.metadata
        log, cubin = _ptxas(compiled.asm["ptx"], case.arch_number, meta)
        sass = _sass(cubin)
        loop = analyze_sass(sass)
        consts = _constants(fn, data)
        cache[data] = {
            "BLOCK_M": consts.get("BLOCK_M"), "BLOCK_N": consts.get("BLOCK_N"),
            "num_warps": meta.num_warps, "num_stages": meta.num_stages, "shared_bytes": meta.shared,
            "fits_smem": meta.shared <= SMEM_LIMIT[case.arch_number],
            "sass_matches_triton": cubin == compiled.asm["cubin"] or sass == _sass(compiled.asm["cubin"]),
            "wide_loads": wide_loads(sass),
            **parse_ptxas_log(log),
            **_loop_columns(loop, consts.get("BLOCK_M"), consts.get("BLOCK_N"), meta.num_warps),
        }  # fmt: skip
    return dict(cache[data])


def _constants(fn: Any, data: str) -> dict[str, Any]:
    """The scalar constexprs of a specialization, by argument name (e.g. BLOCK_M, MODE)."""
    spec = json.loads(data)
    pairs = zip(spec["constant_keys"], spec["constant_vals"], strict=True)
    return {fn.arg_names[key[0]]: val for key, val in pairs if len(key) == 1}


def _loop_columns(loop: LoopStats | None, bm: int | None, bn: int | None, warps: int) -> dict[str, Any]:
    if loop is None:
        return {}
    per_element = loop.instructions * warps / (bm * bn) if bm and bn else None
    return {
        "loop_instructions": loop.instructions,
        **loop.classes,
        "loop_instr_per_element": per_element,
        "async_copies_in_loop": loop.async_copies,
    }


def _worker() -> None:
    """Worker process: read a JSON list of :class:`Case` fields on stdin, write one JSON row per case on
    stdout (as soon as it is done: the parent shows progress). A failed compile gives a row with
    ``error``."""
    cases = [Case(**{**c, "tile": tuple(c["tile"]) if c["tile"] else None}) for c in json.load(sys.stdin)]
    cache: dict[str, dict[str, Any]] = {}
    for case in cases:
        try:
            row = _compile(case, cache)
        except Exception as exc:  # noqa: BLE001 - reported in the row; the other cases go on
            row = {"error": _common.first_line(exc)}
        print(json.dumps({**_case_columns(case), **row}), flush=True)


def _case_columns(case: Case) -> dict[str, Any]:
    bm, bn, warps, stages = case.tile or (None, None, None, None)
    return {"kernel": case.kernel, "arch": case.arch, "dtype": case.dtype, "mode": case.mode,
            "alpha": case.alpha, "ent_grad": case.ent_grad, "BLOCK_M": bm, "BLOCK_N": bn,
            "num_warps": warps, "num_stages": stages, "head_dim": case.head_dim}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# parent side


def _worker_env() -> dict[str, str]:
    """The environment of a worker: without TRITON_INTERPRET (under it ``@triton.jit`` makes
    interpreter-only functions at import), this checkout first on the path, one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(_common.PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _split(cases: Sequence[Case], jobs: int) -> list[list[int]]:
    """Indices of ``cases`` in ``jobs`` balanced groups; cases that differ only in α stay together (an
    identical specialization is compiled once per worker)."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault((c.kernel, c.arch, c.dtype, c.tile, c.ent_grad, c.head_dim, c.mode), []).append(i)
    shares: list[list[int]] = [[] for _ in range(max(1, jobs))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(shares, key=len).extend(group)
    return [sorted(s) for s in shares if s]


def _run_worker(cases: Sequence[Case], on_row: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Compile ``cases`` in one worker process; its rows in order (``on_row`` sees each as it comes)."""
    cmd = [sys.executable, "-c", "from renyi_prune.bench.static.compile import _worker; _worker()"]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=_worker_env())  # fmt: skip
        try:
            proc.stdin.write(json.dumps([dataclasses.asdict(c) for c in cases]))
            proc.stdin.close()
            rows = []
            for line in proc.stdout:
                rows.append(json.loads(line))
                on_row(rows[-1])
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        if proc.returncode != 0 or len(rows) != len(cases):
            tail = " ".join(err.read().strip().splitlines()[-3:])
            raise RuntimeError(f"static report worker exited with code {proc.returncode}: {tail}")
    return rows


def compile_cases(
    cases: Sequence[Case], jobs: int = 1, on_row: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Compile every case in ``jobs`` worker processes; one row per case, in the order of ``cases``.

    A row has the case's columns (kernel, arch, dtype, mode, alpha, ent_grad, tile) and the measured ones:
    regs, spill_stores/spill_loads (bytes), shared_bytes, fits_smem, the main loop's instruction count and
    mix, loop_instr_per_element, ptxas_warnings/warning_codes, sass_matches_triton (the rerun ptxas gave
    Triton's machine code: the same cubin, or the same SASS where only the source files' timestamps in the
    line table differ); a failed compile has ``error`` instead. Workers run without
    TRITON_INTERPRET whatever this process has.

    Example:
        >>> row, = compile_cases([Case("bwd_preprocess", "sm_80", "bf16", "none", None, None, None)])
        >>> row["kernel"], row["regs"] > 0, row["spill_stores"], row["error"], row["sass_matches_triton"]
        ('bwd_preprocess', True, 0, None, True)
    """
    import threading

    lock = threading.Lock()
    results: dict[int, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def work(indices: list[int]) -> None:
        def seen(row: dict[str, Any]) -> None:
            if on_row is not None:
                with lock:
                    on_row(row)

        try:
            results.update(zip(indices, _run_worker([cases[i] for i in indices], seen), strict=True))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in _split(cases, jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    rows = [{c: None for c in CSV_COLUMNS} | results[i] for i in range(len(cases))]
    _derive(rows)
    return rows


def _derive(rows: list[dict[str, Any]]) -> None:
    """Fill ``extra_mufu_per_element`` and ``loop_vs_none`` (against mode ``none`` of the same kernel and
    build) and ``loop_vs_tutorial`` (forward rows, against the tutorial at the same build)."""
    tiled = [r for r in rows if r["loop_instructions"] and r["BLOCK_M"] and r["BLOCK_N"]]
    none = {(r["kernel"], *_same_build(r)): r for r in tiled if r["mode"] == "none"}
    for r in tiled:
        base = none.get((r["kernel"], *_same_build(r)))
        tut = none.get(("tutorial_fwd", *_same_build(r))) if r["kernel"] == "fwd" else None
        if base is not None:
            r["loop_vs_none"] = r["loop_instructions"] / base["loop_instructions"]
            extra = (r["mufu"] - base["mufu"]) * 32 * r["num_warps"] / (r["BLOCK_M"] * r["BLOCK_N"])
            r["extra_mufu_per_element"] = extra
        if tut is not None:
            r["loop_vs_tutorial"] = r["loop_instructions"] / tut["loop_instructions"]
