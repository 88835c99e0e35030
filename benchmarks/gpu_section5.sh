#!/usr/bin/env bash
# Section 5 on an NVIDIA GPU: one prepared script, run from the repository root of a fresh checkout.
#
#   bash benchmarks/gpu_section5.sh [OUT]        # OUT: where the logs and run folders go (default gpu-out)
#
# It installs earnshaw with the CUDA extra into .venv-gpu (PyPI must be reachable, or PIP_FIND_LINKS must point
# at a wheel folder), checks that JAX sees the GPU, then, in order of value, as far as time allows:
#   1. every Table 2 cell packed (one program per depth) against one program per cell, ms per step on the GPU;
#   2. the cost model of the full Table 2, packed and unpacked (`earnshaw reproduce table2 --estimate`);
#   3. Figure 1 at width 125 with 10^4 and 10^5 training samples (10^6 steps, 2 seeds): does the sample size
#      explain the gap to the paper's 0.002?
# Each step writes its log under OUT, so what finished survives a machine taken back mid-run.
set -euo pipefail
OUT=${1:-gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ ! -x .venv-gpu/bin/python ]; then
  "$PY" -m venv .venv-gpu
  .venv-gpu/bin/python -m pip install -q --upgrade pip
  .venv-gpu/bin/python -m pip install -q -r requirements.lock
  .venv-gpu/bin/python -m pip install -q --no-deps -e .
  .venv-gpu/bin/python -m pip install -q -e '.[cuda]'
fi
BIN=.venv-gpu/bin
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } | tee "$OUT/gpu.txt"
$BIN/python -c "import jax; d = jax.devices()[0]; print(jax.__version__, d.platform, d.device_kind); \
assert d.platform == 'gpu', 'JAX does not see a GPU: is the cuda extra installed?'" | tee -a "$OUT/gpu.txt"

# 1. packed against unpacked, every Table 2 cell (100 steps each, best of 2)
$BIN/python -m benchmarks.bench_section5 --packed --no-torch --steps 200 --repeat 2 2>&1 | tee "$OUT/packed.txt"

# 2. what the full protocol costs on this GPU, both ways
$BIN/earnshaw reproduce table2 --estimate --probe 500 --packed 2>&1 | tee "$OUT/estimate_packed.txt"
$BIN/earnshaw reproduce table2 --estimate --probe 500 2>&1 | tee "$OUT/estimate_unpacked.txt"

# 3. Figure 1, width 125: the paper's 10^6 steps, 10^4 then 10^5 training samples
for n in 10000 100000; do
  $BIN/earnshaw reproduce figure1 --widths 125 --seeds 2 --n-train "$n" --lr "$(python3 -c "print(0.1 / $n)")" \
    --out "$OUT/runs" --json 2>&1 | tee "$OUT/figure1_w125_n$n.txt"
done
