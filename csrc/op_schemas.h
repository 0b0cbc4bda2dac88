#pragma once

#include "extensions.h"

// Schemas of every op. The kernels are attached per dispatch key elsewhere (csrc/<op>.cpp for CPU,
// csrc/cuda/*.cu for CUDA with TORCH_LIBRARY_IMPL), so a backend is added without touching this file or
// the CPU sources. Autograd is composed in Python (recbole_hnlm/ops/*.py) from these forward-only ops.
// Two libraries define them: `recbole_hnlm` (csrc/module.cpp) and, in the tests only, the CUDA sources
// run on the host emulator, `recbole_hnlm_cuda_emulation` (csrc/cuda/emulation/library.cpp).
inline void define_op_schemas(torch::Library& m) {
  m.def("spmm(Tensor rowptr, Tensor col, Tensor val, Tensor x) -> Tensor");
  m.def("lightgcn_mean(Tensor rowptr, Tensor col, Tensor val, Tensor ego, int num_layers) -> Tensor");
  m.def("lightgcn_layers(Tensor rowptr, Tensor col, Tensor val, Tensor ego, int num_layers) -> Tensor");
  m.def("lightgcn_layers_backward(Tensor rowptr, Tensor col, Tensor val, Tensor grad_layers) -> Tensor");
  m.def(
      "mixgcf_mix(Tensor query, Tensor pos_layers, Tensor item_layers, Tensor candidates, Tensor alpha)"
      " -> (Tensor, Tensor)");
  m.def(
      "mixgcf_mix_backward(Tensor grad_z, Tensor chosen, Tensor alpha, int num_items)"
      " -> (Tensor, Tensor)");
  m.def("candidate_scores(Tensor user, Tensor items, Tensor candidates) -> Tensor");
  m.def("select_candidates(Tensor user, Tensor items, Tensor candidates, Tensor? target=None) -> Tensor");
}
