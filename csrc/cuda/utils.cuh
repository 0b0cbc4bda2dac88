#pragma once

// Shared pieces of the CUDA kernels: launch helpers, warp reductions, vector loads, argmax semantics.
//
// With HNLM_CUDA_EMULATION defined, the same .cu sources compile as C++ for the host: kernels run on the warp
// emulator (emulation/warp_emulator.h) and the ops register under `recbole_hnlm_cuda_emulation` for CPU tensors.
// The tests (tests/ops/test_cuda_kernels.py) run every CUDA test case both ways.

#include "../utils.h"

#ifdef HNLM_CUDA_EMULATION
#include "emulation/cuda_builtins.h"
#define HNLM_CUDA_LIBRARY recbole_hnlm_cuda_emulation
#define HNLM_CUDA_DISPATCH_KEY CPU
#undef CHECK_CUDA
#define CHECK_CUDA(x) CHECK_CPU(x)
#else
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#define HNLM_CUDA_LIBRARY recbole_hnlm
#define HNLM_CUDA_DISPATCH_KEY CUDA
#endif

namespace hnlm_cuda {

inline void check_block_count(int64_t blocks) {
  TORCH_CHECK(blocks >= 1 && blocks <= 0x7fffffff, "a launch needs 1 to 2^31 - 1 blocks, got ", blocks);
}

#ifdef HNLM_CUDA_EMULATION
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};

template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), int64_t blocks, int threads, Args... args) {
  check_block_count(blocks);
  cuda_emulation::launch(dim3(static_cast<unsigned>(blocks)), dim3(threads), [&] { kernel(args...); });
}
#else
using DeviceGuard = c10::cuda::CUDAGuard;

// kernel<<<blocks, threads, 0, current stream>>>(args...), then the launch error check.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), int64_t blocks, int threads, Args... args) {
  check_block_count(blocks);
  kernel<<<static_cast<unsigned>(blocks), threads, 0, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

constexpr int kWarp = 32;
constexpr int kBlock = 256;  // 8 warps per block
constexpr int kWarpsPerBlock = kBlock / kWarp;

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int64_t blocks_for_warps(int64_t warps) { return std::max<int64_t>(1, ceil_div(warps, kWarpsPerBlock)); }

// Index of the calling thread's warp in the grid, and its lane: every kernel here maps one warp to one work item.
__device__ __forceinline__ int64_t global_warp() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ __forceinline__ int lane_id() { return threadIdx.x % kWarp; }

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;  // every lane holds the sum (butterfly), in a fixed order: deterministic
}

// torch.argmax / torch.argmin on CUDA: the first NaN wins, otherwise the first extremum (strict comparison keeps
// the smallest position on ties). Same rule as the CPU kernels (csrc/cpu/negative_mixing_cpu.cpp).
template <bool kMax, typename acc_t>
__device__ __forceinline__ bool improves(acc_t value, acc_t best) {
  if (isnan(best)) return false;
  if (isnan(value)) return true;
  return kMax ? value > best : value < best;
}

template <typename scalar_t>
constexpr bool is_16bit_float = std::is_same<scalar_t, at::Half>::value || std::is_same<scalar_t, at::BFloat16>::value;

// The load word of VEC 16-bit elements (4, 8 or 16 bytes), and its 32-bit parts in address order.
template <int VEC> struct Words16;
template <> struct Words16<2> { using type = unsigned int; };
template <> struct Words16<4> { using type = uint2; };
template <> struct Words16<8> { using type = uint4; };
__device__ __forceinline__ void split_words(unsigned int w, uint32_t (&o)[1]) { o[0] = w; }
__device__ __forceinline__ void split_words(uint2 w, uint32_t (&o)[2]) { o[0] = w.x; o[1] = w.y; }
__device__ __forceinline__ void split_words(uint4 w, uint32_t (&o)[4]) {
  o[0] = w.x; o[1] = w.y; o[2] = w.z; o[3] = w.w;
}

// VEC consecutive elements of a row, converted to the op-math type, in one vector load when the type has one:
// float with VEC 2/4 (float2/float4), half/bfloat16 with VEC 2/4/8 (4, 8 or 16 bytes, unpacked in registers; the
// element at the lower address is the low half of its 32-bit word). The launcher checks alignment. Other types
// load element-wise.
template <typename scalar_t, typename acc_t, int VEC>
__device__ __forceinline__ void load_vec(const scalar_t* __restrict__ p, acc_t (&out)[VEC]) {
  if constexpr (std::is_same<scalar_t, float>::value && VEC == 4) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  } else if constexpr (std::is_same<scalar_t, float>::value && VEC == 2) {
    const float2 v = __ldg(reinterpret_cast<const float2*>(p));
    out[0] = v.x; out[1] = v.y;
  } else if constexpr (is_16bit_float<scalar_t> && (VEC == 2 || VEC == 4 || VEC == 8)) {
    uint32_t words[VEC / 2];
    split_words(__ldg(reinterpret_cast<const typename Words16<VEC>::type*>(p)), words);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const auto bits = static_cast<uint16_t>(words[i / 2] >> (16 * (i % 2)));
      out[i] = static_cast<acc_t>(scalar_t(bits, scalar_t::from_bits()));
    }
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) out[i] = static_cast<acc_t>(p[i]);
  }
}

// Vector of up to 16 bytes (float: 4, 2 or 1 elements; half/bfloat16: 8, 4, 2 or 1) that keeps every row start of
// every strided operand aligned and needs the fewest passes of `lanes` lanes over d, the narrower one on a tie (more
// lanes busy): with a whole warp, float d = 64 -> 2, d = 128 -> 4; bfloat16 d = 64 -> 2, d = 128 -> 4, d = 256 -> 8;
// with 16 lanes, float d = 64 -> 4.
inline int vector_width(int64_t d, std::initializer_list<std::pair<const void*, int64_t>> rows, size_t itemsize,
                        int lanes = kWarp) {
  int best = 1;
  for (int vec = 2; vec * itemsize <= 16; vec *= 2) {
    bool ok = d % vec == 0;
    for (const auto& row : rows) {
      const auto address = reinterpret_cast<uintptr_t>(row.first);
      ok = ok && address % (vec * itemsize) == 0 && row.second % vec == 0;
    }
    if (ok && ceil_div(d, int64_t(lanes) * vec) < ceil_div(d, int64_t(lanes) * best)) best = vec;
  }
  return best;
}

// launch(std::integral_constant<int, VEC>()) for the width `vec` that vector_width chose: 8 for half/bfloat16, 4 and 2
// for float and half/bfloat16; double (and any other width) loads element-wise, VEC = 1. Instantiates only those.
template <typename scalar_t, typename Launch>
void with_vector_width(int vec, const Launch& launch) {
  if constexpr (is_16bit_float<scalar_t>) {
    if (vec == 8) return launch(std::integral_constant<int, 8>());
  }
  if constexpr (is_16bit_float<scalar_t> || std::is_same<scalar_t, float>::value) {
    if (vec == 4) return launch(std::integral_constant<int, 4>());
    if (vec == 2) return launch(std::integral_constant<int, 2>());
  }
  launch(std::integral_constant<int, 1>());
}

// launch(std::integral_constant<int, GROUPS>()) for groups 2 or 4, else 1 (the kernel experiments' lane groups).
template <typename Launch>
void with_groups(int groups, const Launch& launch) {
  if (groups == 2) return launch(std::integral_constant<int, 2>());
  if (groups == 4) return launch(std::integral_constant<int, 4>());
  launch(std::integral_constant<int, 1>());
}

}  // namespace hnlm_cuda
