// csrc/cuda/propagation_cuda.cu, unchanged, compiled as C++ for the warp emulator (HNLM_CUDA_EMULATION).
#include "../propagation_cuda.cu"
