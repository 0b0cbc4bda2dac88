#!/usr/bin/env bash
# Issue 4 on a lent GPU, in one call: build the CUDA extension, run the CUDA tests, compute-sanitizer once (memcheck,
# racecheck), and the kernel benchmarks. Every stage has a time limit and its own log under $OUT (default gpu_out/);
# $OUT/summary.txt has one line per stage. Needs only torch (with CUDA), numpy and scipy: RecBole is not imported.
#
# Prepare on the CPU machine (the GPU image has Python 3.12 and may lack pytest, setuptools and ninja):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 -d .whl pytest pytest-benchmark setuptools wheel ninja
#   python3 -m pip download --only-binary=:all: --python-version 3.12 -d .whl/pyg torch_geometric && rm .whl/pyg/numpy-*
# (.whl/pyg, ~6 MB: PyG's LGConv baseline for the benchmark, optional; numpy is left to the image)
# then run it with the `device` tool, carrying .whl:  bash scripts/gpu_check.sh   (QUICK=1: smaller benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-8}

stage() {  # stage NAME SECONDS CMD...: run CMD with a time limit, log to $OUT/NAME.log, record its exit status
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
  tail -n 4 "$OUT/$name.log"
  return $rc
}

: > "$OUT/summary.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee "$OUT/versions.txt"
if [ -d .whl ]; then
  stage tools 120 "$PY" -m pip install --no-index --find-links .whl pytest pytest-benchmark setuptools wheel ninja
fi
if [ -d .whl/pyg ]; then  # optional: without it the benchmark leaves out the PyG rows
  stage pyg 90 "$PY" -m pip install --no-index --find-links .whl/pyg torch_geometric
fi
stage build 420 "$PY" -m pip install --no-build-isolation --no-deps -e . || exit 1
stage dispatch 60 "$PY" -c "import recbole_hnlm.ops as o; print('WITH_EXT', o.WITH_EXT, 'WITH_CUDA_EXT', o.WITH_CUDA_EXT); assert o.WITH_CUDA_EXT" || exit 1
# the emulated backend (CPU, already run by CI) is left out here: device time is for the GPU
stage tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/ops -rs -m "not emulation"
if command -v compute-sanitizer > /dev/null; then
  stage memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$PY" -m pytest -q -p no:cacheprovider tests/ops/test_cuda_kernels.py -m "not emulation" \
    -k "(hub5000 and float32) or same_bits"
  stage racecheck 240 compute-sanitizer --tool racecheck --error-exitcode 9 \
    "$PY" -m pytest -q -p no:cacheprovider tests/ops/test_cuda_kernels.py -m "not emulation" -k "mixgcf and float32"
else
  echo "compute-sanitizer not found: sanitizer stages skipped" | tee -a "$OUT/summary.txt"
fi
if [ "${QUICK:-0}" = 1 ]; then
  stage bench 240 "$PY" benchmarks/run_gpu_benchmarks.py --graphs yelp2018 --dtypes float32 --rounds 5 --skip-epoch
else
  stage bench 420 "$PY" benchmarks/run_gpu_benchmarks.py --graphs yelp2018 amazon-book --dtypes float32 bfloat16 \
    --rounds 20
fi
cat "$OUT/summary.txt"
