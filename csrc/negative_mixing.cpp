#include "cpu/negative_mixing_cpu.h"
#include "extensions.h"

// CPU kernels of the negative-selection ops; CUDA registers the same names from
// csrc/cuda/negative_mixing_cuda.cu with TORCH_LIBRARY_IMPL(..., CUDA, ...).
TORCH_LIBRARY_IMPL(recbole_hnlm, CPU, m) {
  m.impl("mixgcf_mix", &mixgcf_mix_cpu);
  m.impl("mixgcf_mix_backward", &mixgcf_mix_backward_cpu);
  m.impl("candidate_scores", &candidate_scores_cpu);
  m.impl("select_candidates", &select_candidates_cpu);
}
