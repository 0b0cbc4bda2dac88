#!/usr/bin/env bash
# Issue 4 on a lent GPU, in one call: build the CUDA extension, run the CUDA tests, compute-sanitizer memcheck once,
# the kernel benchmarks, the fine-tuned encoder's device test, a torch.profiler breakdown of an epoch
# batch, and Nsight Compute profiles of the SpMM and MixGCF kernels. Every stage has its own time limit, cut to what
# is left of BUDGET seconds (default 560), and logs to $OUT (default gpu_out/); $OUT/summary.txt has one line per
# stage. At most 7 files are written (the device tool brings back 8). Stages run in order of importance: with the
# budget spent, the last ones are skipped.
#
# Python: $PYTHON (default python3), e.g. PYTHON=.venv/bin/python after scripts/setup.sh with a CUDA torch. A bare
# GPU image (ours: Python 3.12 with torch, nvcc, pytest, pytest-benchmark, setuptools, ninja, transformers and
# torch_geometric) also works without RecBole: the op tests and benchmarks do not import it. The encoder's device
# test reads RecBole's bundled ml-100k titles for its tokenizer and needs peft; every wheel in .whl/ is installed
# --no-deps (RecBole is pure Python, 2 MB; fetch it where PyPI is reachable: python3 -m pip download --no-deps -d .whl
# recbole==1.2.1, and peft accelerate too if the image lacks them). Without them that stage is skipped, and said so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-560}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
export PYTHONUNBUFFERED=1
PYTEST=("$PY" -m pytest -q -p no:cacheprovider --tb=short -rfEs)

stage() {  # stage NAME LOG SECONDS CMD...: run CMD, limited to SECONDS and to what is left of BUDGET, appending to LOG
  local name=$1 log=$OUT/$2 limit=$3
  shift 3
  local left=$((BUDGET - SECONDS - 15))  # room for the kill grace below and the summary
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then
    echo "$name skipped: ${left}s of the ${BUDGET}s budget left" | tee -a "$OUT/summary.txt"
    return 124
  fi
  echo "=== $name: $* (limit ${limit}s)" >> "$log"
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1  # -k: a stage that ignores SIGTERM (a sanitizer) is killed 10 s on
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s (limit ${limit}s)" | tee -a "$OUT/summary.txt"
  tail -n 3 "$log"
  return $rc
}

: > "$OUT/summary.txt"
{ nvidia-smi; command -v nvcc && nvcc --version | tail -n 2
  "$PY" -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
  'numpy', numpy.__version__, torch.cuda.get_device_name(0))"; } > "$OUT/env.txt" 2>&1
tail -n 1 "$OUT/env.txt"

stage build build.log 300 "$PY" -m pip install -v --no-build-isolation --no-deps -e . || exit 1
# a static libstdc++ in _C (see setup.py) shows as these symbols and a .text of ~1.4 MB instead of ~0.7 MB
{ echo "=== static libstdc++ symbols in _C (expect 0):"
  nm --defined-only recbole_hnlm/_C*.so | grep -c -e _ZNSo9_M_insertIlEERSoT_ -e _ZNKSt7codecvtIDsc11__mbstate_t
  size -A recbole_hnlm/_C*.so | grep -e '^.text' -e '^.nv_fatbin'; } >> "$OUT/build.log" 2>&1
stage dispatch build.log 30 "$PY" -c "import recbole_hnlm.ops as o; print('WITH_EXT', o.WITH_EXT, 'WITH_CUDA_EXT',
  o.WITH_CUDA_EXT); assert o.WITH_CUDA_EXT" || exit 1
# the emulated backend (CPU, already run by CI) is left out here: device time is for the GPU
# the tests of the kernel experiments (RECBOLE_HNLM_SPMM_SHORT_CHAINS, RECBOLE_HNLM_SPMM_GROUPS,
# RECBOLE_HNLM_ARGMAX_GROUPS, the split kernels) run later, after the benchmark, which checks each experiment's
# results against the default kernels before timing it
EXPERIMENTS="split or short_chains or spmm_groups or argmax_groups"
# the device tests only: tests/ops' CPU-only files run in CI (160-260 s on a 2-core machine)
stage tests tests.log 200 "${PYTEST[@]}" tests/ops/test_cuda_kernels.py tests/ops/test_extension_build.py \
  -m "not emulation" -k "not ($EXPERIMENTS)"
if command -v compute-sanitizer > /dev/null; then
  # one cudaMalloc per tensor, so that an access past a tensor's end is outside any allocation memcheck knows
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1
  stage memcheck sanitizer.log 100 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "${PYTEST[@]}" tests/ops/test_cuda_kernels.py -m "not emulation" \
    -k "((float32 and (hub5000 or isolated_hub or shape0 or shape5) or same_bits or scoring_and_selection) and not groups and not short_chains) or (short_chains and float32 and int32 and hub5000 and 64)"
  # no racecheck stage: racecheck checks __shared__ memory only, and no kernel in csrc/cuda uses it (nor
  # __syncthreads/__syncwarp); it ran once on an H200 (docs/performance.md: hazards in cuSPARSE only) and cost 55 s
  unset PYTORCH_NO_CUDA_MEMORY_CACHING
else
  echo "compute-sanitizer not found: sanitizer stages skipped" | tee -a "$OUT/summary.txt"
fi
stage bench-yelp2018 bench.log 170 "$PY" benchmarks/run_gpu_benchmarks.py --graphs yelp2018 \
  --dtypes float32 bfloat16 --rounds 20 --epoch-rounds 3
if ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/recbole_site .whl/*.whl >> "$OUT/llm.log" 2>&1
fi
if PYTHONPATH=/tmp/recbole_site "$PY" -c "import recbole, peft, transformers" >> "$OUT/llm.log" 2>&1; then
  stage llm llm.log 60 env PYTHONPATH=/tmp/recbole_site "${PYTEST[@]}" tests/llm/test_hybrid_encoder_cuda.py
else
  echo "llm skipped: recbole, peft or transformers cannot be imported (carry their wheels in .whl/; llm.log)" \
    | tee -a "$OUT/summary.txt"
fi
stage experiment-tests tests.log 120 "${PYTEST[@]}" tests/ops/test_cuda_kernels.py -m "not emulation" \
  -k "$EXPERIMENTS"
# where an epoch batch goes: wall vs CPU issue vs GPU busy time, and each kernel's share (the epoch target)
stage profile-epoch bench.log 45 "$PY" benchmarks/profile_gpu_kernels.py epoch --batches 20
if command -v ncu > /dev/null; then  # why the kernels take what they take (appended to bench.log; clocks left alone)
  NCU=(ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy
       --section WarpStateStats --section LaunchStats)
  stage ncu-spmm bench.log 60 "${NCU[@]}" --kernel-name regex:spmm_edge_split \
    "$PY" benchmarks/profile_gpu_kernels.py spmm
  stage ncu-mixgcf bench.log 45 "${NCU[@]}" --kernel-name regex:"mixgcf_(mix|scatter|mix_split)_kernel" \
    "$PY" benchmarks/profile_gpu_kernels.py mixgcf
fi
stage bench-amazon-book bench.log 240 "$PY" benchmarks/run_gpu_benchmarks.py --graphs amazon-book \
  --dtypes float32 bfloat16 --rounds 20 --epoch-rounds 3
cat "$OUT/summary.txt"
