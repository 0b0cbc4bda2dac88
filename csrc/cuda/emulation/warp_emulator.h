#pragma once

// Runs a CUDA kernel on the host: blocks one after another, each warp's 32 threads as cooperative fibers of one
// OS thread. A thread runs until it reaches a warp shuffle or returns; when every live lane of the warp waits at the
// shuffle, the values are exchanged and the lanes resume. So warp-synchronous code runs as written, in lockstep at
// every shuffle, and warp divergence at a full-mask shuffle (a lane that returned early, lanes at different
// shuffles) is reported instead of hanging or reading garbage as it would on a GPU.
//
// What it checks is the logic of the kernels and their launchers (indexing, edge ranges, argmax, atomics on cut
// rows, alignment of vector loads, device assertions), not the GPU: memory ordering between warps, timing and
// occupancy are not modelled. Built only into the test library (csrc/cuda/emulation/, tests/ops/cuda_emulation.py).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

namespace cuda_emulation {

constexpr int kWarpSize = 32;

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// threadIdx, blockIdx, blockDim and gridDim of the calling (emulated) thread.
struct ThreadIndex {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};

// Runs `thread_body` once per thread of a 1-D grid of 1-D blocks. Throws c10::Error with the first failure (device
// assertion, misaligned vector load, divergent shuffle) and the block/thread it happened in.
void launch(dim3 grid, dim3 block, const std::function<void()>& thread_body);

// Order of the warps of the following launches: grid order (seed 0, the default), or a permutation of all the
// grid's warps drawn from `seed` and a launch counter, so two launches of one kernel run in different orders. A GPU
// may run warps in any order, and no kernel in csrc/cuda cooperates within a block, so every such order is a valid
// schedule: results that depend on it (the order of atomic adds) differ between seeds, as between GPU runs.
void set_warp_schedule(std::uint64_t seed);

// Only valid inside a running kernel.
const ThreadIndex& current_thread();

// Abandons the launch from inside a kernel: launch() throws with this message. Takes a literal: the calling
// fiber's stack is never unwound, so a temporary std::string there would leak.
[[noreturn]] void kernel_fail(const char* message, const char* file, int line);

// __shfl_xor_sync on raw bytes (at most 16): waits for the warp, returns the value of lane `lane ^ lane_mask`.
void shuffle_xor(unsigned mask, void* value, std::size_t size, int lane_mask, int width);

template <typename T>
T shfl_xor(unsigned mask, T value, int lane_mask, int width) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffled values are up to 16 bytes");
  shuffle_xor(mask, &value, sizeof(T), lane_mask, width);
  return value;
}

}  // namespace cuda_emulation
