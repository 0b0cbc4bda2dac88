// The test library `recbole_hnlm_cuda_emulation`: the op schemas of recbole_hnlm, whose CPU kernels are the CUDA
// sources of csrc/cuda compiled for the host warp emulator (propagation_emulated.cpp, negative_mixing_emulated.cpp).
// Built on demand by tests/ops/cuda_emulation.py; never part of the installed package.
#include "../../op_schemas.h"

#include "warp_emulator.h"

namespace {
void set_warp_schedule(int64_t seed) {
  TORCH_CHECK(seed >= 0, "the warp schedule seed must be >= 0 (0: grid order), got ", seed);
  cuda_emulation::set_warp_schedule(static_cast<std::uint64_t>(seed));
}
}  // namespace

TORCH_LIBRARY(recbole_hnlm_cuda_emulation, m) {
  define_op_schemas(m);
  // test control: the order in which the emulator runs the warps of later launches (warp_emulator.h)
  m.def("set_warp_schedule(int seed) -> ()", &set_warp_schedule);
}
