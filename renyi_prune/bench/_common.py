"""Helpers shared by the benchmarks: environment stamps, output paths, quantiles, CSV and PNG output, and
the command-line plumbing (common options, device choice, ``main``, writing the results)."""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import math
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._argtypes import UsageError, output_file
from .._io import atomic_open, atomic_write_bytes
from .._timing import cpu_times, cuda_times, quantiles, time_calls, time_cpu, time_cuda  # noqa: F401
from ..kernels import is_interpreting

PACKAGE_DIR = Path(__file__).resolve().parents[1]


#: Default output root of the benchmarks and studies, relative to the current directory (resolved when a
#: file is written): ``./bench-results/<device-slug>/`` (kernel, e2e), ``./bench-results/static/``,
#: ``./bench-results/accuracy/<config>/``: the layout of a checkout's ``benchmarks/results/``. Nothing is
#: written into the package or its checkout unless ``--out`` says so (``benchmarks/run_gpu.sh`` does).
RESULTS_DIR = Path("bench-results")
#: ``--dtype`` names of the benchmarks.
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Root of smoke-run outputs (the system temp dir): never ``RESULTS_DIR``.
SMOKE_DIR = Path(tempfile.gettempdir()) / "renyi-prune-bench"


def dtype_name(dtype: torch.dtype) -> str:
    """The ``--dtype`` name of ``dtype`` (``"bf16"`` for torch.bfloat16, ...)."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`, else the machine."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str) -> str:
    """Human-readable device: the GPU name, or ``cpu``/``cpu-interpreter`` with the CPU model and torch's
    intra-op threads, e.g. ``cpu (AMD EPYC 7B13, 2 threads)``."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    kind = "cpu-interpreter" if is_interpreting() else "cpu"
    return f"{kind} ({cpu_model()}, {torch.get_num_threads()} threads)"


def device_slug(device: str) -> str:
    """Directory-safe device name, e.g. ``nvidia-h100-80gb-hbm3``, ``cpu-interpreter``, ``cpu-x86_64``."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    elif is_interpreting():
        name = "cpu-interpreter"
    else:
        name = f"cpu-{platform.machine() or 'unknown'}"
    return re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")


def output_path(name: str, device: str, smoke: bool = False) -> Path:
    """``bench-results/<device-slug>/<name>`` (:data:`RESULTS_DIR`, relative to the current directory); with
    ``smoke`` the same under :data:`SMOKE_DIR` (the system temp dir)."""
    return (SMOKE_DIR if smoke else RESULTS_DIR) / device_slug(device) / name


def format_duration(seconds: float) -> str:
    """A rough duration for a run-time estimate: seconds below 2 minutes, then minutes, then hours.

    Example:
        >>> format_duration(42.4), format_duration(330), format_duration(9000)
        ('42 s', '5.5 min', '2.5 h')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def git_commit() -> str:
    """Short commit of the checkout holding this package, ``+dirty`` if tracked files changed; '' if none."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return ""


def timm_version() -> str:
    try:
        import timm

        return timm.__version__
    except ImportError:
        return ""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# timing: one timer for every benchmark, in renyi_prune/_timing.py (imported above)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def free_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def fmt_value(value: object, digits: int = 6) -> str:
    """CSV cell: floats with ``digits`` significant digits, NaN and None empty, ±inf as ``inf``/``-inf``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def write_csv(rows: Sequence[dict], path: Path, columns: Sequence[str], digits: int = 6) -> None:
    """UTF-8 CSV of ``columns`` (cells: :func:`fmt_value`; a missing key is an empty cell) by
    :meth:`pandas.DataFrame.to_csv` (CRLF line ends, as the ``csv`` module writes), written atomically:
    a temp file in the target directory, then ``os.replace``."""
    import pandas as pd

    cells = [{c: fmt_value(r.get(c, ""), digits) for c in columns} for r in rows]
    frame = pd.DataFrame(cells, columns=list(columns), dtype=object)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        frame.to_csv(f, index=False, lineterminator="\r\n")


def format_table(rows: Sequence[dict], cols: Sequence[tuple[str, str, str]]) -> str:
    """A right-aligned plain-text table (tabulate's ``simple`` format via
    :meth:`pandas.DataFrame.to_markdown`); ``cols`` = (key, header, format); NaN/None shown as ``-``, a
    missing key or ``""`` as an empty cell.

    Example:
        >>> print(format_table([{"n": 197, "ms": 0.51}, {"n": 577, "ms": None}],
        ...                    [("n", "N", "{}"), ("ms", "ms", "{:.2f}")]))
          N    ms
        ---  ----
        197  0.51
        577     -
    """
    import pandas as pd

    def cell(value: object, fmt: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return "" if value == "" else fmt.format(value)

    table = pd.DataFrame(
        [[cell(r.get(key, ""), fmt) for key, _, fmt in cols] for r in rows], columns=[h for _, h, _ in cols]
    )
    text = table.to_markdown(index=False, tablefmt="simple", disable_numparse=True, stralign="right")
    return "\n".join(line.rstrip() for line in text.splitlines())


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` not managed by pyplot (no GUI backend, no global state), or None if
    matplotlib is not installed. ``kwargs`` go to ``Figure``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(**kwargs)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """Render ``fig`` to PNG in memory (Agg) and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# command line


def add_output_arguments(p: argparse.ArgumentParser, out_help: str, smoke_help: str, progress: str) -> None:
    """Add the options every benchmark has: ``--device``, ``--out``, ``--smoke``, ``--quiet``, ``--no-plot``
    (``progress``: the help of ``--quiet``)."""
    # fmt: off
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="auto: cuda if available, else cpu (default: %(default)s)")
    p.add_argument("--out", type=output_file, help=out_help)
    p.add_argument("--smoke", action="store_true", help=smoke_help)
    p.add_argument("--quiet", action="store_true", help=progress)
    p.add_argument("--no-plot", dest="plot", action="store_false",
                   help="do not write the PNG next to the CSV (default: written when matplotlib is "
                   "installed)")
    # fmt: on


def resolve_device(choice: str) -> str:
    """``--device`` ``auto`` → ``cuda`` if available, else ``cpu``; :class:`UsageError` for ``cuda``
    without CUDA."""
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("argument --device: cuda, but CUDA is not available on this machine")
    return choice


def main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: Any) -> int:
    """A benchmark's standalone ``main``: parse ``argv`` and ``run``; returns the exit code.

    A bad argument prints one line ``PROG: error: ...`` and gives 2 (argparse's errors and
    :class:`UsageError` alike); ``--help`` gives 0. Other exceptions propagate (with their traceback).
    """
    try:
        return run(parser.parse_args(argv))
    except SystemExit as exc:  # --help, or a bad value (the parser printed the message)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except UsageError as err:  # reported like a bad argument (see renyi_prune._argtypes.Parser.error)
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def correctness_failed(exc: BaseException) -> int:
    """Report a failed correctness guard (nothing was written); returns the exit code 1."""
    print(f"\n*** CORRECTNESS CHECK FAILED: aborted, nothing written ***\n{exc}", file=sys.stderr)
    return 1


def write_results(
    rows: Sequence[dict],
    out_path: Path,
    columns: Sequence[str],
    plot: Callable[[Sequence[dict], Path], bool] | None,
    tag: str,
) -> None:
    """Write the CSV (atomically), then with ``plot`` the PNG next to it (``.png``, atomically); print
    each path written, or on stderr why there is no plot."""
    write_csv(rows, out_path, columns)
    print(f"wrote {out_path}")
    if plot is None:
        return
    png = Path(out_path).with_suffix(".png")
    if plot(rows, png):
        print(f"wrote {png}")
    elif new_figure() is None:
        print(f"[{tag}] matplotlib not installed: no plot", file=sys.stderr)
