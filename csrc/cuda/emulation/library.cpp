// The test library `recbole_hnlm_cuda_emulation`: the op schemas of recbole_hnlm, whose CPU kernels are the CUDA
// sources of csrc/cuda compiled for the host warp emulator (propagation_emulated.cpp, negative_mixing_emulated.cpp).
// Built on demand by tests/ops/cuda_emulation.py; never part of the installed package.
#include "../../op_schemas.h"

TORCH_LIBRARY(recbole_hnlm_cuda_emulation, m) { define_op_schemas(m); }
