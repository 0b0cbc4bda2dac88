#include "cpu/propagation_cpu.h"
#include "extensions.h"

// Device dispatch is the dispatcher's job: this file attaches the CPU kernels; the CUDA kernels
// register under the same names from csrc/cuda/propagation_cuda.cu with TORCH_LIBRARY_IMPL(..., CUDA, ...).
TORCH_LIBRARY_IMPL(recbole_hnlm, CPU, m) {
  m.impl("spmm", &spmm_cpu);
  m.impl("lightgcn_mean", &lightgcn_mean_cpu);
  m.impl("lightgcn_layers", &lightgcn_layers_cpu);
  m.impl("lightgcn_layers_backward", &lightgcn_layers_backward_cpu);
}
