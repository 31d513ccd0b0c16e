"""Regenerate the result tables of README.md from ``benchmarks/results/`` (no hand-typed numbers).

README.md has two generated blocks, each between a pair of marker comments:

* ``<!-- results:start -->`` ... ``<!-- results:end -->`` in "Benchmarks and accuracy": the latest result
  of each benchmark kind (``kernel_fwd.csv``, ``kernel_fwdbwd.csv``, ``e2e.csv``, ``e2e_384px.csv``,
  ``e2e_compile.csv`` under ``benchmarks/results/<device-slug>/``, written by ``renyi-prune bench kernel``
  / ``bench e2e``) and of the accuracy study (``benchmarks/results/accuracy/<config>/``, written by
  ``benchmarks/accuracy_study.py``), as compact tables with device, versions, commit and date taken from
  the files, and links to the full results. A kind without results says so.
* ``<!-- flops:start -->`` ... ``<!-- flops:end -->`` in "FLOPs": GFLOPs per image of timm's
  ``deit_small_patch16_224`` (random weights, 224 px), unpruned and pruned, computed here by
  :func:`renyi_prune.count_flops` (about 6 s on a CPU).

"Latest" is, among the folders holding a file of that kind, the one whose run started last (the ``date``
column of the CSV, ``date`` of the accuracy study's ``environment.json``); GPU results rank above CPU
ones, so a stray CPU run never replaces GPU numbers in the README.

Usage::

    python benchmarks/readme_tables.py            # rewrite README.md in place
    python benchmarks/readme_tables.py --check    # exit 1 with a diff if README.md is out of date
    python benchmarks/readme_tables.py --no-flops # leave the FLOPs block as it is (no model is built)

``benchmarks/run_gpu.sh`` runs it after the benchmarks; ``tests/test_readme.py`` runs the check.

Modules: ``readme_sources.py`` (reading results, cell formats), ``readme_render.py`` (the Markdown of both
blocks), ``readme_findings.py`` (the generated "Finding:" sentence under each results table),
``readme_probe.py`` (the committed `renyi-prune probe` studies); this file
replaces the blocks in README.md and is the command line.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (REPO, HERE):  # the package from a checkout without installing it; the sibling modules
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from readme_render import (  # noqa: E402
    FLOPS_IMG_SIZE,
    FLOPS_KEEP_RATES,
    FLOPS_MODEL,
    FLOPS_ROWS,
    GENERATED_NOTE,
    NO_GPU_BENCHMARK,
    flops_table,
    render_accuracy,
    render_e2e,
    render_flops,
    render_kernel,
    render_results,
)
from readme_sources import (  # noqa: E402
    ACCURACY_DIR,
    ACCURACY_FILES,
    BENCH_KINDS,
    RESULTS_DIR,
    AccuracyResult,
    BenchKind,
    BenchResult,
    accuracy_studies,
    latest_bench,
    read_csv,
    rel_link,
)

__all__ = [
    "ACCURACY_DIR",
    "ACCURACY_FILES",
    "BENCH_KINDS",
    "FLOPS_IMG_SIZE",
    "FLOPS_KEEP_RATES",
    "FLOPS_MODEL",
    "FLOPS_ROWS",
    "GENERATED_NOTE",
    "MARKERS",
    "NO_GPU_BENCHMARK",
    "README",
    "RESULTS_DIR",
    "AccuracyResult",
    "BenchKind",
    "BenchResult",
    "MarkerError",
    "accuracy_studies",
    "flops_table",
    "latest_bench",
    "main",
    "read_csv",
    "readme_diff",
    "render_accuracy",
    "render_e2e",
    "render_flops",
    "render_kernel",
    "render_results",
    "replace_block",
    "updated_readme",
]

README = REPO / "README.md"
#: Marker lines of the generated blocks: ``{name: (start, end)}``.
MARKERS = {
    "results": ("<!-- results:start -->", "<!-- results:end -->"),
    "flops": ("<!-- flops:start -->", "<!-- flops:end -->"),
}


class MarkerError(ValueError):
    """README.md lacks a marker pair, or has it more than once or out of order."""


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the lines between the ``name`` markers replaced by ``content``.

    Raises:
        MarkerError: the marker pair is missing, repeated or out of order.

    Example:
        >>> replace_block("a\\n<!-- flops:start -->\\nold\\n<!-- flops:end -->\\n", "flops", "new")
        'a\\n<!-- flops:start -->\\nnew\\n<!-- flops:end -->\\n'
    """
    start, end = MARKERS[name]
    pattern = re.compile(rf"^{re.escape(start)}\n.*?^{re.escape(end)}$", re.S | re.M)
    matches = pattern.findall(text)
    if len(matches) != 1 or text.count(start) != 1 or text.count(end) != 1:
        raise MarkerError(f"README needs exactly one '{start}' line followed by one '{end}' line")
    return pattern.sub(lambda _: f"{start}\n{content}\n{end}", text)


def updated_readme(
    text: str,
    results_dir: Path = RESULTS_DIR,
    link_root: Path = REPO,
    flops: dict[str, float | dict[float, float]] | None = None,
    with_flops: bool = True,
) -> str:
    """README text with both generated blocks brought up to date (``with_flops=False``: results only)."""
    text = replace_block(text, "results", render_results(results_dir, link_root))
    if with_flops:
        text = replace_block(text, "flops", render_flops(flops))
    return text


def readme_diff(
    readme: Path = README,
    results_dir: Path = RESULTS_DIR,
    flops: dict[str, float | dict[float, float]] | None = None,
    with_flops: bool = True,
) -> str:
    """A unified diff from ``readme`` to its up-to-date text; empty when it is in sync."""
    readme = Path(readme)
    old = readme.read_text(encoding="utf-8")
    new = updated_readme(old, results_dir, readme.parent, flops, with_flops)
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{readme.name} (committed)",
            tofile=f"{readme.name} (from {rel_link(Path(results_dir), readme.parent)}/)",
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite README.md (exit 0), or with ``--check`` exit 1 and print a diff if it is out of date;
    exit 2 if the README lacks the markers."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if README.md is out of date")
    p.add_argument(
        "--readme", type=Path, default=README, help="the README to update (default: the checkout's)"
    )
    p.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)"
    )
    p.add_argument("--no-flops", dest="flops", action="store_false", help="leave the FLOPs block as it is")
    args = p.parse_args(argv)
    try:
        if args.check:
            diff = readme_diff(args.readme, args.results, with_flops=args.flops)
            if diff:
                print(
                    f"{args.readme} is out of date; run `python benchmarks/readme_tables.py`:\n",
                    file=sys.stderr,
                )
                sys.stderr.write(diff)
                return 1
            print(f"{args.readme} is up to date")
            return 0
        old = args.readme.read_text(encoding="utf-8")
        new = updated_readme(old, args.results, args.readme.parent, with_flops=args.flops)
    except MarkerError as exc:
        print(f"error: {args.readme}: {exc}", file=sys.stderr)
        return 2
    if new != old:
        from renyi_prune._io import atomic_write_bytes

        atomic_write_bytes(args.readme, new.encode("utf-8"))
        print(f"updated {args.readme}")
    else:
        print(f"{args.readme} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
