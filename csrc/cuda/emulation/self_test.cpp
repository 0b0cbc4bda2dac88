// Kernels that test the warp emulator itself (tests/ops/test_warp_emulator.py), exposed as the op
// recbole_hnlm_cuda_emulation::emulator_self_test(name) -> the per-thread results of one launch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <stdexcept>

#include "cuda_builtins.h"

namespace {

// Each thread: the butterfly sum of (thread index + 1) over its warp, as hnlm_cuda::warp_sum does.
void warp_sum_kernel(float* out) {
  float value = static_cast<float>(threadIdx.x + 1);
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  out[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

// Each thread: the value of lane ^ 1 within segments of 4 lanes, then of lane ^ 8 with width 8 (PTX shfl.bfly: a
// source past the end of the caller's segment leaves the caller its own value, one in an earlier segment is read).
void shuffle_width_kernel(float* out) {
  const float lane = static_cast<float>(threadIdx.x % 32);
  const float pair = __shfl_xor_sync(0xffffffffu, lane, 1, 4);
  const float far = __shfl_xor_sync(0xffffffffu, lane, 8, 8);
  out[threadIdx.x] = pair * 100 + far;
}

void early_return_kernel(float* out) {  // lane 3 leaves while the warp shuffles: divergence
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

void two_shuffle_sites_kernel(float* out) {  // odd and even lanes at different shuffles: divergence
  out[threadIdx.x] = threadIdx.x % 2 ? __shfl_xor_sync(0xffffffffu, 1.0f, 1) : __shfl_xor_sync(0xffffffffu, 2.0f, 2);
}

void misaligned_load_kernel(float* out) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(out + 1));
  out[threadIdx.x] = v.x;
}

void exception_kernel(float* out) {  // a C++ exception inside a kernel: reported with its thread
  if (threadIdx.x == 5) throw std::runtime_error("thrown in a kernel");
  out[threadIdx.x] = 1.0f;
}

void assertion_kernel(float* out) {
  CUDA_KERNEL_ASSERT(threadIdx.x != 40);
  out[threadIdx.x] = 1.0f;
}

int warps_started = 0;  // warp_order: how many warps of the launch have started

void warp_order_kernel(float* out) {  // lane 0 of each warp: its position in the order the warps ran
  if (threadIdx.x % 32 == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = static_cast<float>(warps_started++);
}

at::Tensor emulator_self_test(c10::string_view name) {
  // warp_sum: 2 blocks of 2 warps; partial_warp: the same sums in a block of 48 threads (a warp of 16 lanes, whose
  // full-mask shuffle names lanes that do not exist); assertion: 2 warps; warp_order: 16 blocks of 2 warps; the rest:
  // one warp
  const unsigned blocks = name == "warp_sum" ? 2 : (name == "warp_order" ? 16 : 1);
  const unsigned threads =
      name == "partial_warp" ? 48 : (name == "warp_sum" || name == "assertion" || name == "warp_order" ? 64 : 32);
  auto out = at::zeros({blocks * threads + 4}, at::kFloat);
  void (*kernel)(float*) = nullptr;
  if (name == "warp_sum" || name == "partial_warp") kernel = warp_sum_kernel;
  else if (name == "shuffle_width") kernel = shuffle_width_kernel;
  else if (name == "early_return") kernel = early_return_kernel;
  else if (name == "two_shuffle_sites") kernel = two_shuffle_sites_kernel;
  else if (name == "misaligned_load") kernel = misaligned_load_kernel;
  else if (name == "assertion") kernel = assertion_kernel;
  else if (name == "exception") kernel = exception_kernel;
  else if (name == "warp_order") kernel = warp_order_kernel;
  TORCH_CHECK(kernel != nullptr, "unknown emulator self test ", name);
  warps_started = 0;
  float* data = out.data_ptr<float>();
  cuda_emulation::launch(dim3(blocks), dim3(threads), [&] { kernel(data); });
  return name == "warp_order" ? out.narrow(0, 0, blocks * threads / 32) : out.narrow(0, 0, blocks * threads);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(recbole_hnlm_cuda_emulation, m) {
  m.def("emulator_self_test(str name) -> Tensor", &emulator_self_test);
}
