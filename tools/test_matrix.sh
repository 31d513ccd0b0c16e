#!/usr/bin/env bash
# Run the README's test command under other CPU math kernels and in random order, one run each, and
# print each run's summary line and wall time. Floating-point results of NumPy's OpenBLAS (which the
# Triton interpreter's tl.dot uses) and of PyTorch's MKL/ATen kernels differ between these settings;
# the suite must pass under all of them. Each setting applies to its run only.
#
#   tools/test_matrix.sh            # every setting below
#   tools/test_matrix.sh Zen        # the named ones only
#   SEED=123 tools/test_matrix.sh random-order   # replay a random order
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
declare -A RUNS=(
  [Haswell]="OPENBLAS_CORETYPE=Haswell"
  [SkylakeX]="OPENBLAS_CORETYPE=SkylakeX"
  [Zen]="OPENBLAS_CORETYPE=Zen ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2"
  [Prescott]="OPENBLAS_CORETYPE=Prescott ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2"
  [random-order]="-p randomly --randomly-seed=${SEED:-$(date +%s)}"
)
ORDER=(Haswell SkylakeX Zen Prescott random-order)
[ $# -gt 0 ] && ORDER=("$@")
status=0
for name in "${ORDER[@]}"; do
  setting=${RUNS[$name]:?unknown setting $name}
  start=$(date +%s)
  if [ "$name" = random-order ]; then
    "$PY" -c "import pytest_randomly" 2>/dev/null || { echo "$name: needs pytest-randomly (pip install -e '.[dev]')"; status=1; continue; }
    line=$("$PY" -m pytest $setting -q 2>&1 | tee "/tmp/renyi_prune_matrix_$name.log" | grep -E "passed|failed|error" | tail -1)
  else
    line=$(env -u OPENBLAS_L2_SIZE $setting "$PY" -m pytest -p no:randomly -q 2>&1 | tee "/tmp/renyi_prune_matrix_$name.log" | grep -E "passed|failed|error" | tail -1)
  fi
  echo "$name [$setting] $(($(date +%s) - start))s: $line"
  grep -q " failed\| error" <<<"$line" && status=1
done
exit $status
