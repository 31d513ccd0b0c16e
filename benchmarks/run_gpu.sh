#!/usr/bin/env bash
# All GPU benchmarks in one command. Every CSV and PNG goes to benchmarks/results/<device-slug>/ of this
# checkout: the script passes --out there explicitly (the benchmarks themselves write to
# ./bench-results/ of the current directory unless told otherwise).
#
#   benchmarks/run_gpu.sh                  # all stages (about 10-15 min on an H100/H200, see README)
#   benchmarks/run_gpu.sh e2e e2e-compile  # only these stages
#   DRY_RUN=1 benchmarks/run_gpu.sh        # print the commands, run nothing
#   COPY_TO=$OUT benchmarks/run_gpu.sh     # also copy benchmarks/results/ into $OUT after every stage
#   benchmarks/run_gpu.sh --quick OUT_DIR  # the <= 8 min run: kernel GPU tests, kernel benchmarks, DeiT-S e2e
#   benchmarks/run_gpu.sh --quick --plan   # its budget line and commands (--smoke OUT_DIR: CPU rehearsal)
#
# --quick hands every argument after it to benchmarks/gpu_quick.py (see its docstring and the README);
# everything below is the full benchmark.
#
# Stages (default: all, in this order):
#   kernel-fwd     kernel forward, DeiT-S shapes, bf16                  -> kernel_fwd.csv/.png
#   kernel-fwdbwd  kernel forward + backward                            -> kernel_fwdbwd.csv/.png
#   e2e            DeiT-Ti/S/B at 224 px, batch 256, bf16, 7 keep rates -> e2e.csv/.png
#   e2e-384        DeiT-B at 384 px, batch 64                           -> e2e_384px.csv/.png
#   e2e-compile    torch.compile(fullgraph=True), DeiT-S, r = 0.7 0.5   -> e2e_compile.csv/.png
#
# After the stages, benchmarks/readme_tables.py --no-flops regenerates README.md's result tables from
# benchmarks/results/ (NO_README=1 skips it; COPY_TO copies results only, so after fetching them into a
# checkout run `python benchmarks/readme_tables.py` there).
#
# With COPY_TO the results of the finished stages survive a run that is cut off later (e.g. by a time
# limit). A stage that fails (e.g. a correctness guard: exit code 1, no CSV) does not stop the others; the
# script exits 1 if any stage (or the README update) failed. PYTHON overrides the interpreter (default:
# python).
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = "--quick" ]; then
  shift
  exec $PY benchmarks/gpu_quick.py "$@"
fi

ALL=(kernel-fwd kernel-fwdbwd e2e e2e-384 e2e-compile)
RES="benchmarks/results/<device-slug>"  # set below, once the stages are known

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=("${ALL[@]}")

command_for() {
  case "$1" in
    kernel-fwd) echo "$PY benchmarks/bench_kernel.py --quiet --out $RES/kernel_fwd.csv" ;;
    kernel-fwdbwd) echo "$PY benchmarks/bench_kernel.py --mode fwdbwd --quiet --out $RES/kernel_fwdbwd.csv" ;;
    e2e) echo "$PY benchmarks/bench_e2e.py --out $RES/e2e.csv" ;;
    e2e-384) echo "$PY benchmarks/bench_e2e.py --models deit_base_patch16_384 --img-size 384 --batch 64 --out $RES/e2e_384px.csv" ;;
    e2e-compile) echo "$PY benchmarks/bench_e2e.py --compile --models deit_small_patch16_224 --keep-rates 0.7 0.5 --configs unpruned evit renyi --out $RES/e2e_compile.csv" ;;
    *) return 1 ;;
  esac
}

for s in "${stages[@]}"; do
  if ! command_for "$s" >/dev/null; then
    echo "run_gpu.sh: unknown stage '$s'; stages: ${ALL[*]}" >&2
    exit 2
  fi
done

# The committed results' folder of this GPU (renyi_prune.bench._common.device_slug); a dry run without
# CUDA (or without torch) shows a placeholder.
slug_cmd="import torch; from renyi_prune.bench._common import device_slug; print(device_slug('cuda'))"
if ! SLUG=$($PY -c "$slug_cmd" 2>/dev/null) || [ -z "$SLUG" ]; then
  if [ -z "${DRY_RUN:-}" ]; then
    echo "run_gpu.sh: no CUDA device (or renyi_prune not importable by $PY): these are GPU benchmarks" >&2
    exit 2
  fi
  SLUG="<device-slug>"
fi
RES="benchmarks/results/$SLUG"

failed=()
for s in "${stages[@]}"; do
  cmd=$(command_for "$s")
  echo "=== [$s] $cmd" >&2
  [ -n "${DRY_RUN:-}" ] && continue
  start=$SECONDS
  if ! $cmd; then
    failed+=("$s")
  fi
  echo "=== [$s] done in $((SECONDS - start)) s" >&2
  if [ -n "${COPY_TO:-}" ] && [ -d benchmarks/results ]; then
    mkdir -p "$COPY_TO" && cp -r benchmarks/results/. "$COPY_TO/"
  fi
done

# README tables from whatever is under benchmarks/results/ now (a failed stage keeps its older CSV, if any)
if [ -z "${NO_README:-}" ]; then
  cmd="$PY benchmarks/readme_tables.py --no-flops"
  echo "=== [readme] $cmd" >&2
  if [ -z "${DRY_RUN:-}" ] && ! $cmd; then
    failed+=("readme")
  fi
fi
[ -n "${DRY_RUN:-}" ] && exit 0

if [ ${#failed[@]} -gt 0 ]; then
  echo "run_gpu.sh: FAILED stages: ${failed[*]}" >&2
  exit 1
fi
echo "run_gpu.sh: all stages done; results under $RES/" >&2
