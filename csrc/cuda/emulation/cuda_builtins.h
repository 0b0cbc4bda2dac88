#pragma once

// The CUDA names the kernels in csrc/cuda use, defined for the host on top of the warp emulator, so that the .cu
// sources compile unchanged as C++ (with HNLM_CUDA_EMULATION, see csrc/cuda/utils.cuh). Included after every
// ATen/c10 header: the macros below (threadIdx, ...) must not leak into them.

#include <cmath>
#include <cstdint>
#include <algorithm>

#include "warp_emulator.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

using cuda_emulation::dim3;

#define threadIdx (::cuda_emulation::current_thread().thread_idx)
#define blockIdx (::cuda_emulation::current_thread().block_idx)
#define blockDim (::cuda_emulation::current_thread().block_dim)
#define gridDim (::cuda_emulation::current_thread().grid_dim)

// CUDA's global device math and min/max overloads.
using std::abs;
using std::isnan;
using std::max;
using std::min;

struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

// A GPU faults on a misaligned vector load ("misaligned address"); here it is a kernel failure.
template <typename T>
inline T __ldg(const T* address) {
  if (reinterpret_cast<std::uintptr_t>(address) % alignof(T) != 0)
    ::cuda_emulation::kernel_fail(sizeof(T) == 16  ? "misaligned address in a 16-byte __ldg"
                                  : sizeof(T) == 8 ? "misaligned address in an 8-byte __ldg"
                                                   : "misaligned address in an __ldg",
                                  __FILE__, __LINE__);
  return *address;
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = ::cuda_emulation::kWarpSize) {
  return ::cuda_emulation::shfl_xor(mask, value, lane_mask, width);
}

// One OS thread runs every lane, so a read-modify-write is atomic.
template <typename T>
inline T gpuAtomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

#undef CUDA_KERNEL_ASSERT
#define CUDA_KERNEL_ASSERT(cond)                                                                         \
  do {                                                                                                   \
    if (!(cond)) ::cuda_emulation::kernel_fail("device-side assertion `" #cond "` failed", __FILE__, __LINE__); \
  } while (0)
