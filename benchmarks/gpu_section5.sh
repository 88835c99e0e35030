#!/usr/bin/env bash
# earnshaw on an NVIDIA GPU: one prepared script, run from the repository root of a checkout.
#
#   bash benchmarks/gpu_section5.sh [OUT]        # OUT: where the logs go (default gpu-out)
#
# Python: with PyPI reachable, it makes .venv-gpu with the pinned dependencies and the CUDA extra. On a machine
# without PyPI whose python3 already has JAX with CUDA (set EARNSHAW_GPU_SYSTEM=1), it uses that python3, installs
# the few missing dependencies from the wheels in .whl/ and runs earnshaw from src/. Then, in order of value, each
# step under its own time limit (seconds, EARNSHAW_GPU_LIMITS="tests packed torch census estimate"):
#   1. the tests that run the solvers, potentials, Problem and Section 5 code, on the GPU (float64 there too);
#   2. every Table 2 cell packed (one program per depth) against one program per cell, ms per step;
#   3. Section 5 training against the PyTorch eager loop on the same GPU (torch from the same machine);
#   4. the Safran-Shamir census (k = 8, 1000 seeds) and its GD against a batched PyTorch loop on the same GPU;
#   5. the cost model of the full Table 2, packed (`earnshaw reproduce table2 --estimate --packed`);
#   6. depth 17 of Table 2, one cell after another and packed (the cells the first lease did not reach);
#   7. the potentials without a closed form (Hermite tables) against erf's closed form on the GPU, a batch of 64
#      and one of 1024 students (benchmarks/bench_potentials.py).
# EARNSHAW_GPU_STEPS picks steps by name (default: all, in this order). Each step writes its log under OUT as it
# runs, so what finished survives a machine taken back mid-run.
set -uo pipefail
OUT=${1:-gpu-out}
mkdir -p "$OUT"
read -r L_TESTS L_PACKED L_TORCH L_CENSUS L_ESTIMATE L_DEPTH17 L_TABLES <<<"${EARNSHAW_GPU_LIMITS:-120 90 90 100 50 90 150}"
STEPS=" ${EARNSHAW_GPU_STEPS:-tests packed torch census estimate depth17 tables} "
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and PyTorch share the card in one process
if [ "${EARNSHAW_GPU_SYSTEM:-0}" = 1 ]; then
  PY=python3
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/earnshaw-site \
      .whl/*.whl || exit 1
  fi
  export PYTHONPATH="$PWD/src:/tmp/earnshaw-site${PYTHONPATH:+:$PYTHONPATH}"
  EARNSHAW=("$PY" -m earnshaw.cli)
else
  if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu
    .venv-gpu/bin/python -m pip install -q --upgrade pip
    .venv-gpu/bin/python -m pip install -q -r requirements.lock
    .venv-gpu/bin/python -m pip install -q --no-deps -e .
    .venv-gpu/bin/python -m pip install -q -e '.[cuda]'
  fi
  PY=.venv-gpu/bin/python
  EARNSHAW=(.venv-gpu/bin/earnshaw)
fi
step() {  # step NAME LIMIT COMMAND...: run under a time limit, log to OUT/NAME.txt, print how it ended
  local name=$1 limit=$2; shift 2
  [[ "$STEPS" == *" $name "* ]] || return 0
  local t0=$SECONDS
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n "${TAIL:-12}" "$OUT/$name.txt"
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || true; } | tee "$OUT/gpu.txt"
$PY -c "import jax, jaxlib, diffrax, optax, numpy; d = jax.devices()[0]; \
print('jax', jax.__version__, 'diffrax', diffrax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, \
d.platform, d.device_kind); assert d.platform == 'gpu', 'JAX does not see a GPU: is the cuda extra installed?'" \
  2>&1 | tee -a "$OUT/gpu.txt" || exit 1

# 1. the tests that exercise the numerics (not the CLI, docs or Ray), on the GPU; one line per test in the log,
#    so a run cut off by its limit still says which passed
#    (EARNSHAW_GPU_TESTS: other test files or ids)
read -r -a TESTS <<<"${EARNSHAW_GPU_TESTS:-tests/test_problem.py tests/test_potentials.py tests/test_compile_count.py \
  tests/test_section5.py tests/test_dynamics.py tests/test_census.py tests/test_order.py tests/test_biases.py \
  tests/test_potentials_fast.py}"
TAIL=25 step tests "$L_TESTS" "$PY" -m pytest -v -n 8 --dist load -m "not slow and not ray" -p no:cacheprovider \
  --junitxml="$OUT/tests.xml" "${TESTS[@]}"

# 2. packed against unpacked, every Table 2 cell (200 steps each, best of 2)
step packed "$L_PACKED" "$PY" -m benchmarks.bench_section5 --packed --no-torch --steps 200 --repeat 2

# 3. against the PyTorch loop a user would write, on the same GPU
TAIL=9 step torch "$L_TORCH" "$PY" -m benchmarks.bench_section5 --cells 2x5,2x20,3x20,5x20,9x20 --steps 300 \
  --repeat 2 --torch-device cuda

# 4. the census on 1000 seeds, GD against a batched PyTorch loop on the GPU
step census "$L_CENSUS" "$PY" -m benchmarks.bench_census --seeds 1000 --torch-device cuda

# 5. what the full protocol costs on this GPU
step estimate "$L_ESTIMATE" "${EARNSHAW[@]}" reproduce table2 --estimate --probe 500 --packed

# 6. depth 17: each width alone and the four packed
step depth17 "$L_DEPTH17" "$PY" -m benchmarks.bench_section5 --cells 17x5,17x10,17x20,17x40 --packed --no-torch \
  --steps 200 --repeat 2

# 7. the Hermite tables against erf on the GPU: value + gradient, one instance and a batch, and GD steps
TAIL=30 step tables "$L_TABLES" bash -c "$PY -m benchmarks.bench_potentials --quick --out '$OUT/potentials_gpu.json' \
  && $PY -m benchmarks.bench_potentials --batch 1024 --quick --no-quadrature"
cat "$OUT/summary.txt"
